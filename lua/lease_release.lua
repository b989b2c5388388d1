-- Leader lease release on shutdown: compare-and-delete on holder and epoch.
-- KEYS[1] leader key, KEYS[2] epoch key
-- ARGV[1] replica id, ARGV[2] epoch held
-- Returns 1 when released, 0 when this replica did not hold it.
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
