-- Write questions at once, all or none: each only over the version it was read at (a
-- compare-and-set), with its indexes and its outbox (the events the write makes).
-- ARGV[1]: the namespace prefix (`messages:` or `messages:<scope>:`)
-- ARGV[2]: a JSON list of {id, seller, item, created, version, expected, data, unanswered,
--          terms, pending}: `expected` is the version read ("" when none was cached),
--          `terms` the words new to the question, `pending` the outbox ("" for none).
-- Returns 1 when written, 0 when one of them changed since it was read (none written).
local p = ARGV[1]
local writes = cjson.decode(ARGV[2])
for _, w in ipairs(writes) do
  local current = redis.call('HGET', p .. 'question:' .. w.id, 'version')
  if (current or '') ~= w.expected then
    return 0
  end
end
for _, w in ipairs(writes) do
  local seller = p .. 'seller:' .. w.seller
  redis.call('HSET', p .. 'question:' .. w.id, 'data', w.data, 'version', w.version)
  redis.call('ZADD', seller .. ':questions', w.created, w.id)
  redis.call('ZADD', p .. 'item:' .. w.item .. ':questions', w.created, w.id)
  redis.call('SADD', p .. 'sellers', w.seller)
  if w.unanswered then
    redis.call('ZADD', seller .. ':inbox', w.created, w.id)
  else
    redis.call('ZREM', seller .. ':inbox', w.id)
  end
  for _, term in ipairs(w.terms) do
    redis.call('SADD', seller .. ':qterm:' .. term, w.id)
  end
  if w.pending ~= '' then
    redis.call('SET', p .. 'outbox:question:' .. w.id, w.pending)
  end
end
return 1
