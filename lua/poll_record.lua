-- Stores one poll: the device's new history (compare-and-set on its generation,
-- so histograms are derived from every poll exactly once) and the cached result
-- every replica serves; clears a failure mark and releases the poll lock.
-- KEYS[1] history hash, KEYS[2] cache hash, KEYS[3] poll lock, KEYS[4] failure mark
-- ARGV[1] replica id, ARGV[2] history generation read, ARGV[3] new history,
-- ARGV[4] cached result, ARGV[5] cache ttl (ms), ARGV[6] history ttl (ms; long, so
-- the history of a device that left without cleanup does not stay forever)
-- Returns the new generation (> 0), or 0 when the history changed meanwhile.
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0')
if gen ~= tonumber(ARGV[2]) then
  return 0
end
gen = gen + 1
-- Microseconds: a replica asks whether a result is younger than its own scrape.
local t = redis.call('TIME')
local now_us = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]))
redis.call('HSET', KEYS[1], 'gen', gen, 'data', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'gen', gen, 'stored_us', now_us, 'data', ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('DEL', KEYS[4])
if redis.call('GET', KEYS[3]) == ARGV[1] then
  redis.call('DEL', KEYS[3])
end
return gen
