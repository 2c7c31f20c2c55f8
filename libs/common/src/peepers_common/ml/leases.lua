-- One lease from the shared outbound budget: the rules of peepers_common/ml/leases.py
-- (MemoryLeaseBudget keeps the same ones in a process; read its docstring first).
-- KEYS: the budget's epoch marker (a hash without TTL: e = the epoch, lost_at = when a
-- lost budget was noticed, lost:<epoch> = that loss is accounted), then per level its
-- :leases (sorted set: lease member -> granted at, ms), :held (hash: total permits
-- counted, and d:<holder> = '<want> <lane> <short>' of each active holder: what it last
-- asked for, its lane, and how much of that it was refused) and :holders (sorted set:
-- holder -> last asked, ms).
-- ARGV: holder, seq, want, lane, active ms, give-back member ('' = none), its unused
-- permits, leaving ('1'/'0'), min retry ms, max retry ms, the live reserve (share of a
-- window bulk leases leave unused), the epoch the holder last saw ('' = none), then per
-- level its amount and counted window in ms.
-- Returns {granted, retry in ms (0 when granted), the epoch, 1 if the holder's epoch was
-- lost}. A lease member is holder|seq|count.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holder, seq, want, lane = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local active_ms, back, unused = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local leaving, min_retry, max_retry = ARGV[8] == '1', tonumber(ARGV[9]), tonumber(ARGV[10])
local reserve, seen = tonumber(ARGV[11]), ARGV[12]
local SEP = '|'

local function parse(member)
  local h, s, c = string.match(member, '^(.*)|([^|]*)|(%d+)$')
  return h, s, tonumber(c)
end

-- A holder that saw another epoch saw a budget that is gone (FLUSHALL, a restart without
-- persistence): ML still counts what it granted, so the first such holder marks the
-- window from now spent in full at every level.
local marker = KEYS[1]
local epoch = redis.call('HGET', marker, 'e')
if not epoch then
  epoch = now .. ':' .. holder .. ':' .. seq
  redis.call('HSET', marker, 'e', epoch)
end
local lost = seen ~= '' and seen ~= epoch
if lost and redis.call('HSETNX', marker, 'lost:' .. seen, now) == 1 then
  redis.call('HSET', marker, 'lost_at', now)
end
local lost_at = tonumber(redis.call('HGET', marker, 'lost_at') or '')

local grant, retry = want, 0
local levels = (#KEYS - 1) / 3
for i = 1, levels do
  local leases, held, holders = KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1]
  local amount, window = tonumber(ARGV[11 + 2 * i]), tonumber(ARGV[12 + 2 * i])
  -- Leases that left the window, and holders that stopped asking.
  local old = redis.call('ZRANGEBYSCORE', leases, '-inf', now - window)
  if #old > 0 then
    local n = 0
    for _, m in ipairs(old) do
      local _, _, c = parse(m)
      n = n + c
    end
    redis.call('HINCRBY', held, 'total', -n)
    redis.call('ZREMRANGEBYSCORE', leases, '-inf', now - window)
  end
  local idle = redis.call('ZRANGEBYSCORE', holders, '-inf', now - active_ms)
  for _, h in ipairs(idle) do redis.call('HDEL', held, 'd:' .. h) end
  if #idle > 0 then redis.call('ZREMRANGEBYSCORE', holders, '-inf', now - active_ms) end
  -- Permits given back were never spent: they leave the count at once.
  if back ~= '' then
    local at = redis.call('ZSCORE', leases, back)
    if at then
      local h, s, c = parse(back)
      redis.call('ZREM', leases, back)
      if c > unused then redis.call('ZADD', leases, at, h .. SEP .. s .. SEP .. (c - unused)) end
      redis.call('HINCRBY', held, 'total', -math.min(unused, c))
    end
  end
  if leaving then
    redis.call('ZREM', holders, holder)
    redis.call('HDEL', held, 'd:' .. holder)
  elseif want > 0 then
    redis.call('ZADD', holders, now, holder)
  end
  local room = amount - tonumber(redis.call('HGET', held, 'total') or '0')
  if lane == 'bulk' then room = room - math.floor(amount * reserve) end
  -- Set aside the other active holders' unmet demand, up to their fair share (a live
  -- lease sets aside only other live holders'). While one of them waits (it was refused
  -- part of its last ask) below its share, the asker is capped at its own share.
  local active = redis.call('ZRANGE', holders, 0, -1)
  if #active > 1 or (#active == 1 and active[1] ~= holder) then
    local used = {}
    for _, m in ipairs(redis.call('ZRANGE', leases, 0, -1)) do
      local h, _, c = parse(m)
      used[h] = (used[h] or 0) + c
    end
    local share = math.max(1, math.floor(amount / #active))
    local waiting = false
    for _, h in ipairs(active) do
      if h ~= holder then
        -- A holder of the previous script (a rolling upgrade) wrote no <short>: 0.
        local d = redis.call('HGET', held, 'd:' .. h) or '0 live'
        local w, l, short = string.match(d, '^(%d+) (%a+) ?(%d*)$')
        if lane == 'bulk' or l == 'live' then
          room = room - math.max(0, math.min(tonumber(w), share - (used[h] or 0)))
          if (tonumber(short) or 0) > 0 and (used[h] or 0) < share then waiting = true end
        end
      end
    end
    if waiting then room = math.min(room, share - (used[holder] or 0)) end
  end
  local spent = lost_at and lost_at + window > now
  if spent then room = 0 end
  if room < grant then
    grant = math.max(room, 0)
    local first = redis.call('ZRANGE', leases, 0, 0, 'WITHSCORES')
    local at = first[2] and tonumber(first[2]) or now
    if spent then at = lost_at end
    retry = math.min(math.max(at + window - now, min_retry), max_retry)
  end
end
for i = 1, levels do
  local window = tonumber(ARGV[12 + 2 * i])
  if grant > 0 then
    redis.call('ZADD', KEYS[3 * i - 1], now, holder .. SEP .. seq .. SEP .. grant)
    redis.call('HINCRBY', KEYS[3 * i], 'total', grant)
  end
  if want > 0 and not leaving then
    redis.call('HSET', KEYS[3 * i], 'd:' .. holder, want .. ' ' .. lane .. ' ' .. (want - grant))
  end
  for k = 3 * i - 1, 3 * i + 1 do redis.call('PEXPIRE', KEYS[k], window + active_ms) end
end
if grant > 0 then retry = 0 end
return {grant, retry, epoch, lost and 1 or 0}
