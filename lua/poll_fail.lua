-- Records a failed poll so replicas waiting for it share the error instead of
-- each walking an unreachable device again, and no replica serves the older
-- cached result while the mark lives (poll_record.lua deletes it on the next
-- success); releases the poll lock. An empty
-- message only releases the lock (a poll abandoned without a result).
-- KEYS[1] poll lock, KEYS[2] failure mark
-- ARGV[1] replica id, ARGV[2] error message, ARGV[3] mark ttl (ms)
if ARGV[2] ~= '' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('SET', KEYS[2], now .. '|' .. ARGV[2], 'PX', ARGV[3])
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 1
