-- Claims the right to poll one device now.
-- KEYS[1] round claim (one poll per collection interval), KEYS[2] poll lock (a walk in progress)
-- ARGV[1] replica id, ARGV[2] round claim ttl (ms; 0 for a scrape-triggered poll,
-- which takes no round claim), ARGV[3] poll lock ttl (ms)
-- Returns 1 when this replica should poll; when the round is claimed already,
-- minus the milliseconds its claim still runs (the caller asks again then, not
-- before); 0 when a walk is in progress.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
if tonumber(ARGV[2]) > 0 then
  if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    local left = redis.call('PTTL', KEYS[1])
    if left > 0 then
      return -left
    end
    return 0
  end
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
return 1
