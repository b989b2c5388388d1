-- Reads a device's cached poll as of the Redis clock.
-- KEYS[1] cache hash, KEYS[2] failure mark, KEYS[3] poll lock
-- ARGV[1] generation the caller already holds ('' for none): its data is not resent
-- Returns {now_ms, generation (0 = none), age_us, data or '', failure mark or '', poll lock held (0/1)}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local entry = redis.call('HMGET', KEYS[1], 'gen', 'stored_us')
local gen, age, data = 0, 0, ''
if entry[1] then
  gen = tonumber(entry[1])
  age = now_us - tonumber(entry[2])
  if entry[1] ~= ARGV[1] then
    data = redis.call('HGET', KEYS[1], 'data')
  end
end
local failure = redis.call('GET', KEYS[2]) or ''
return {now, gen, age, data, failure, redis.call('EXISTS', KEYS[3])}
