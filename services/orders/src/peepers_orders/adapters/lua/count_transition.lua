-- Count one transition into a seller's day, once per transition id.
-- KEYS[1] the set of counted transition ids, KEYS[2] the day's counters (hash),
-- KEYS[3] the seller's days (sorted set), KEYS[4] the duration set this transition
-- feeds (sorted set; untouched when ARGV[4] is '')
-- ARGV[1] the transition id, ARGV[2] the day (yyyy-mm-dd), ARGV[3] the day's score,
-- ARGV[4] the duration's member (the order id) or '', ARGV[5] the duration in seconds,
-- ARGV[6..] counter/increment pairs (integers: amounts are in cents)
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
for i = 6, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
end
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4]) end
return 1
