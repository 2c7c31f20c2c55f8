-- Delete keys only while they hold the given values: a lock only by its holder, an
-- outbox only while it holds the events just published (not a newer write's).
-- KEYS[i]: a key; ARGV[i]: the value it must hold. Returns how many were deleted.
local deleted = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i] then
    deleted = deleted + redis.call('DEL', key)
  end
end
return deleted
