-- Membership heartbeat: records this replica as alive (Redis clock, so replicas'
-- clocks do not matter) and drops members silent for longer than the member ttl.
-- Also what makes fencing safe to rely on: it reports Redis' maxmemory-policy
-- (anything but noeviction may evict the lease or the epoch), and puts back an
-- epoch counter that Redis lost (eviction, restart without persistence,
-- FLUSHALL) from the highest epoch this replica has seen, so no epoch is
-- handed out twice.
-- KEYS[1] members sorted set, KEYS[2] this replica's info key, KEYS[3] epoch key,
-- KEYS[4] hash of the highest epoch each live member has seen
-- ARGV[1] replica id, ARGV[2] member ttl (ms), ARGV[3] its info (JSON: version,
-- commit, module fingerprint), kept as long as the membership, ARGV[4] the
-- highest epoch this replica has seen
-- Returns {maxmemory-policy, epoch, 1 if the epoch was put back else 0, replicas
-- connected to this Redis, live member ids...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
local policy = string.match(redis.call('INFO', 'memory'), 'maxmemory_policy:(%S+)') or 'unknown'
local epoch = tonumber(redis.call('GET', KEYS[3]) or '0')
-- The floor: what this replica and every live member have seen.
local mine = tonumber(redis.call('HGET', KEYS[4], ARGV[1]) or '0')
if mine < tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
end
local seen = 0
local seen_by = redis.call('HGETALL', KEYS[4])
for i = 1, #seen_by, 2 do
  if redis.call('ZSCORE', KEYS[1], seen_by[i]) then
    seen = math.max(seen, tonumber(seen_by[i + 1]))
  else
    redis.call('HDEL', KEYS[4], seen_by[i])
  end
end
local restored = 0
if epoch < seen then
  redis.call('SET', KEYS[3], seen)
  epoch = seen
  restored = 1
end
local replicas = tonumber(string.match(redis.call('INFO', 'replication'), 'connected_slaves:(%d+)') or '0')
local reply = {policy, epoch, restored, replicas}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  reply[#reply + 1] = member
end
return reply
