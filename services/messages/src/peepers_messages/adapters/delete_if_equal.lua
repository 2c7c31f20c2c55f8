-- Delete a key only if it still holds the given value: a lock only by its holder, an
-- outbox only while it holds the events just published (not a newer write's).
-- KEYS[1]: the key; ARGV[1]: the value expected
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
