-- Applies an inventory change computed by a replica: compare-and-set on the
-- inventory's incarnation and version, bumps the version, publishes the event.
-- KEYS[1] inventory hash, KEYS[2] leader key, KEYS[3] epoch key
-- ARGV[1] incarnation read, ARGV[2] version read, ARGV[3] new encrypted inventory,
-- ARGV[4] event channel, ARGV[5] fencing epoch ('' for an API change, which any
-- replica may apply), ARGV[6] replica id (checked with the epoch)
-- Returns the new version (> 0); 0 when the inventory changed meanwhile (read
-- again and retry); -1 when the epoch is stale; -2 when there is no inventory
-- yet; -3 when another Redis server wrote the inventory (this one reloaded
-- it at a restart, or was promoted from a replica: it may miss the latest
-- changes, so no change builds on it until the leader has put the newest
-- copy back). Records this server's run id with the change.
if ARGV[5] ~= '' then
  if redis.call('GET', KEYS[3]) ~= ARGV[5] or redis.call('GET', KEYS[2]) ~= ARGV[6] then
    return -1
  end
end
local current = redis.call('HMGET', KEYS[1], 'incarnation', 'version', 'server')
if not current[1] then
  return -2
end
local server = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
-- An inventory written before the run id was recorded is taken as it is.
if current[3] and current[3] ~= server then
  return -3
end
if current[1] ~= ARGV[1] or current[2] ~= ARGV[2] then
  return 0
end
local version = tonumber(current[2]) + 1
redis.call('HSET', KEYS[1], 'version', version, 'data', ARGV[3], 'server', server)
redis.call('PUBLISH', ARGV[4], ARGV[1] .. ':' .. version)
return version
