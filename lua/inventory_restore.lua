-- The leader puts the inventory back into an empty Redis (restart without
-- persistence, FLUSHALL), from the file. Fenced: only the current leader may.
-- KEYS[1] inventory hash, KEYS[2] leader key, KEYS[3] epoch key
-- ARGV[1] replica id, ARGV[2] fencing epoch, ARGV[3] new incarnation,
-- ARGV[4] encrypted inventory, ARGV[5] event channel
-- Returns 1 when restored, 0 when an inventory is already there, -1 when the epoch is stale.
if redis.call('GET', KEYS[3]) ~= ARGV[2] or redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return -1
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'incarnation', ARGV[3], 'version', 1, 'data', ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[3] .. ':1')
return 1
