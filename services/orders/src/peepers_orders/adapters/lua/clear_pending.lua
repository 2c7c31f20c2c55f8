-- Forget an order's pending events once published, if they are still the ones published.
-- KEYS[1] the order's hash; ARGV[1] the pending events that were published
if redis.call('HGET', KEYS[1], 'pending') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'pending')
  return 1
end
return 0
