-- Read questions as a page's write needs them, in one reply.
-- ARGV[1]: the namespace prefix; ARGV[2..]: question ids.
-- Returns, per question, its outbox and its cached `data` (each nil when absent).
local p = ARGV[1]
local found = {}
for i = 2, #ARGV do
  found[#found + 1] = redis.call('GET', p .. 'outbox:question:' .. ARGV[i])
  found[#found + 1] = redis.call('HGET', p .. 'question:' .. ARGV[i], 'data')
end
return found
