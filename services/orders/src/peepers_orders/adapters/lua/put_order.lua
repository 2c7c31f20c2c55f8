-- Write one order and its index entries, compare-and-set on the record's version.
-- KEYS[1]     the order's hash (fields: version, data, pending)
-- KEYS[2..n]  the index sorted sets it belongs to now (its state's first)
-- KEYS[n+1..] the other states' sets, which it leaves
-- ARGV[1] expected version (0: nothing stored), ARGV[2] the order (JSON),
-- ARGV[3] pending events ('' for none), ARGV[4] index score, ARGV[5] the order id,
-- ARGV[6] how many of KEYS[2..] are sets it belongs to
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if current ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', current + 1, 'data', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'pending', ARGV[3]) end
local member_of = tonumber(ARGV[6])
for i = 2, #KEYS do
  if i <= member_of + 1 then
    redis.call('ZADD', KEYS[i], ARGV[4], ARGV[5])
  else
    redis.call('ZREM', KEYS[i], ARGV[5])
  end
end
return 1
