-- Membership heartbeat: records this replica as alive (Redis clock, so replicas'
-- clocks do not matter) and drops members silent for longer than the member ttl.
-- KEYS[1] members sorted set, KEYS[2] (optional) this replica's info key
-- ARGV[1] replica id, ARGV[2] member ttl (ms), ARGV[3] its info (JSON: version,
-- commit, module fingerprint), kept as long as the membership
-- Returns the ids of the live members.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
if KEYS[2] then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
end
return redis.call('ZRANGE', KEYS[1], 0, -1)
