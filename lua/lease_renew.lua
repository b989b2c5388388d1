-- Leader lease renewal: compare-and-set on holder and epoch.
-- KEYS[1] leader key, KEYS[2] epoch key
-- ARGV[1] replica id, ARGV[2] epoch held, ARGV[3] lease ttl (ms)
-- Returns 1 when renewed, 0 when the lease is gone or held by someone else.
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
