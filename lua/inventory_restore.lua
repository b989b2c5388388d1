-- The leader puts the inventory back from the file (or its own newer copy):
-- into an empty Redis (restart without persistence, FLUSHALL), or over one
-- this Redis server did not write itself (reloaded at a restart, possibly
-- older than the file; or inherited as a promoted replica that may have
-- missed writes). It records this server's run id, so changes build on it
-- again. Fenced: only the current leader may.
-- KEYS[1] inventory hash, KEYS[2] leader key, KEYS[3] epoch key
-- ARGV[1] replica id, ARGV[2] fencing epoch, ARGV[3] new incarnation,
-- ARGV[4] encrypted inventory, ARGV[5] event channel; to replace a reloaded
-- inventory, ARGV[6] its incarnation and ARGV[7] its version (replaced only
-- while Redis still holds exactly that one).
-- Returns 1 when restored, 0 when Redis holds another inventory, -1 when the epoch is stale.
if redis.call('GET', KEYS[3]) ~= ARGV[2] or redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return -1
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  if ARGV[6] == nil then
    return 0
  end
  local held = redis.call('HMGET', KEYS[1], 'incarnation', 'version')
  if held[1] ~= ARGV[6] or held[2] ~= ARGV[7] then
    return 0
  end
end
local server = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
redis.call('HSET', KEYS[1], 'incarnation', ARGV[3], 'version', 1, 'data', ARGV[4], 'server', server)
redis.call('PUBLISH', ARGV[5], ARGV[3] .. ':1')
return 1
