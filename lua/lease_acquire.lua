-- Leader lease acquisition (SET NX PX) with a fencing epoch.
-- KEYS[1] leader key, KEYS[2] epoch key, KEYS[3] (optional) hash of the highest
-- epoch each live member has seen (heartbeat.lua)
-- ARGV[1] replica id, ARGV[2] lease ttl (ms), ARGV[3] epoch floor (highest epoch seen elsewhere, e.g. the file's)
-- Returns the new epoch (> 0) when this replica now holds the lease; when another
-- replica holds it, minus the current epoch (<= 0), so followers know it too.
-- Every acquisition bumps the epoch, also a re-acquisition by the same replica: writes
-- carrying the previous epoch are refused from now on.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return -tonumber(redis.call('GET', KEYS[2]) or '0')
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local epoch = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[3])
if KEYS[3] then
  for _, seen in ipairs(redis.call('HVALS', KEYS[3])) do
    floor = math.max(floor, tonumber(seen))
  end
end
if epoch <= floor then
  -- Redis lost its data (restart without persistence, FLUSHALL): continue above
  -- the epoch recorded elsewhere so fencing still orders leaders.
  epoch = floor + 1
  redis.call('SET', KEYS[2], epoch)
end
return epoch
