-- Apply one changelog record to its Redis view, never going back in time.
-- KEYS[1]: the entity's hash; KEYS[2]: an index zset (or the entity key again: no index)
-- ARGV[1]: the record's version; ARGV[2]: its JSON; ARGV[3]: index member; ARGV[4]: score
local current = redis.call('HGET', KEYS[1], 'version')
if current and tonumber(current) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'data', ARGV[2])
if KEYS[2] ~= KEYS[1] then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
end
return 1
