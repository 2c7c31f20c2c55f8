"""The item cache and its search index in Redis, all under ``catalog:`` (`RedisItemStore`).

Keys (``<ns>`` is ``catalog:``, or ``catalog:<scope>:`` in tests; ``<s>`` is
``<ns>seller:<seller_id>``):

- ``<ns>item:<id>``: hash ``doc`` (the snapshot's JSON), ``v`` (``last_updated`` in epoch
  microseconds, the compare-and-set version), ``index`` (the ``<s>`` prefix it is indexed
  under), ``n`` (its number in that seller's index), ``meta`` (``status<TAB>category``),
  ``terms`` (its folded words), ``sorted`` (set once it is in every sort key's buckets,
  below) and ``gone``.
- ``<s>:version``: bumped in the same script as every change of the seller's index, so
  anything cached from the index is keyed by it (``<s>:cache:<version>:...``, short TTL).
- ``<s>:docs``: hash number -> sorted-set member (below) of the live items. Numbers are
  small integers, reused (``<s>:free``, a sorted set, lowest first; ``<s>:last`` counts
  the ones ever handed out), so every bitmap below is about one bit per item of the
  seller.
- ``<s>:sort:price``, ``<s>:sort:updated``, ``<s>:sort:sold``: sorted sets of the live
  items scored by the sort key, member ``<id>``, a NUL byte, ``<number>``: equal scores
  order by id (NUL sorts below any character of an id), and a page walk reads the number
  without a lookup.
- ``<s>:bits:status:<status>``, ``<s>:bits:category:<category>``: bitmaps of the live
  items by number.
- ``<s>:bits:price:<bucket>``: bitmaps of the live items whose price falls in a bucket
  (``floor(ln(1 + price) * 20)``, about 5% wide); ``<s>:buckets``: the non-empty buckets.
- ``<s>:bits:updated:<bucket>``, ``<s>:bits:sold:<bucket>``: the same for the other sort
  keys, ``last_updated`` by day (``floor(micros / 86400e6)``) and ``sold_quantity`` on the
  price's log scale; ``<s>:buckets:updated``, ``<s>:buckets:sold``: their non-empty
  buckets. ``<s>:sorted``: how many live items are in every sort key's buckets (a search
  uses them only when that is all; items indexed before they existed join on their next
  put).
- ``<s>:post:prefix:<p>``: the items having a word that starts with ``p``, for every
  ``p`` of 1 to 3 bytes; ``<s>:post:word:<word>``: the items having ``word``, for words
  longer than that; ``<s>:longwords``: lexicographic sorted set of those words (prefix
  lookup by ZRANGEBYLEX). Each is a set of numbers while it has at most 512 members and a
  bitmap once it grows past that (it stays one until it empties).
- ``<s>:counts``: hash ``status<TAB>category`` -> live count, so unfiltered totals and
  facets are one HGETALL.
- ``<s>:tmp:*``: scratch keys a search script creates and deletes before it returns.

Every write is one Lua script, so the cache and the index never disagree and a reader never
sees half a write. Nothing here uses KEYS, SCAN or a pattern.

The consumer's per-record calls (`cached`, `put`, `clear_pending`) made in one turn of the
event loop go to Redis together, in one pipeline (`peepers_common.coalesce`): a batch's
records are handled concurrently, so their reads leave as one round trip, and their
compare-and-set writes and outbox clears share round trips with each other's and with
the next batch's reads. Each call keeps its own result and its own error. Keys of the earlier layout
(``<s>:by:*``, ``<s>:word:*``, ``<s>:meta``, ...) are neither read nor written: an item
written by it is indexed again by its next put.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, cast

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from peepers_catalog.ports import CachedItem, SearchPage, SearchQuery
from peepers_catalog.search_query import Cursor, encode_cursor, validate
from peepers_catalog.search_text import item_terms, terms
from peepers_common.coalesce import Coalescer
from peepers_common.errors import CacheUnavailable, ConfigurationError
from peepers_common.events import ItemSnapshot
from peepers_common.namespaces import Namespace, redis_errors

__all__ = ["PREFIX_BYTES", "SET_LIMIT", "RedisItemStore"]

_ITEM: Final = "item"
_SELLER: Final = "seller"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# Totals and facets of a filtered query, its matches and its sorted matches are reused by
# the next pages while the seller's index is unchanged, for this long.
_CACHE_TTL_S: Final = 30
# Query words of up to this many bytes read one precomputed prefix posting; longer ones
# union the postings of the (few) longer words they start.
PREFIX_BYTES: Final = 3
# A posting is a set of item numbers up to this many members (an intset, 2 or 4 bytes
# each), a bitmap (one bit per item of the seller) above.
SET_LIMIT: Final = 512
# Price buckets per unit of ln(1 + price): each bucket is e^(1/20), about 5%, wide.
_PRICE_BUCKETS_PER_E: Final = 20
# last_updated buckets: one per day (scores are epoch microseconds).
_DAY_MICROS: Final = 86_400_000_000


# One call of a pipeline: a script, its keys and its arguments; or, without a script, an
# HMGET of the one key's fields.
_Call = tuple[AsyncScript | None, Sequence[str], Sequence[str | bytes]]
_STATE_FIELDS: Final = ("doc", "gone", "pending")

# Shared by every script.
_COMMON_LUA: Final = rf"""
local K, SET_LIMIT, R, SEP = {PREFIX_BYTES}, {SET_LIMIT}, {_PRICE_BUCKETS_PER_E}, '\0'
local DAY = {_DAY_MICROS}
local function split(meta)
  local tab = string.find(meta, '\t', 1, true)
  return string.sub(meta, 1, tab - 1), string.sub(meta, tab + 1)
end
-- Monotone in the price, so every item of a bucket between two others' lies between them.
local function bucket(price)
  local p = tonumber(price)
  if not p or p <= 0 then return 0 end
  return math.floor(math.log(1 + p) * R)
end
-- The score bucket of a sort key: monotone in the score, so a bucket's items sort between
-- those of the buckets before and after it. Price and sold quantity on a log scale,
-- last_updated by day.
local function bucket_of(field, score)
  if field == 'updated' then return math.floor(tonumber(score) / DAY) end
  return bucket(score)
end
-- The sorted set of a sort key's non-empty buckets (price keeps its earlier name).
local function buckets_of(s, field)
  if field == 'price' then return s .. ':buckets' end
  return s .. ':buckets:' .. field
end
"""

# Shared by the write scripts: put an item's number into / take it out of seller s's index.
_INDEX_LUA: Final = (
    _COMMON_LUA
    + r"""
local SORTS = {'price', 'updated', 'sold'}
-- Everything an item is found under, key suffix -> {kind, what the kind needs}. scores:
-- sort field -> score; an item indexed before the updated and sold buckets existed has
-- only its price bucket.
local function postings(meta, terms, scores)
  local status, category = split(meta)
  local out = {}
  out['bits:status:' .. status] = {'bits'}
  if category ~= '' then out['bits:category:' .. category] = {'bits'} end
  for _, field in ipairs(SORTS) do
    if scores[field] then
      local b = bucket_of(field, scores[field])
      out['bits:' .. field .. ':' .. b] = {'bucket', field, b}
    end
  end
  for word in string.gmatch(terms, '%S+') do
    for n = 1, math.min(K, #word) do out['post:prefix:' .. string.sub(word, 1, n)] = {'post'} end
    if #word > K then out['post:word:' .. word] = {'word', word} end
  end
  return out
end
local function is_bitmap(key, kind)
  return kind == 'bits' or kind == 'bucket' or redis.call('TYPE', key).ok == 'string'
end
local function add(s, name, what, n)
  local key, kind = s .. ':' .. name, what[1]
  if kind == 'bucket' and redis.call('EXISTS', key) == 0 then
    redis.call('ZADD', buckets_of(s, what[2]), what[3], what[3])
  end
  if is_bitmap(key, kind) then
    redis.call('SETBIT', key, n, 1)
    return
  end
  if redis.call('SADD', key, n) == 0 then return end
  local card = redis.call('SCARD', key)
  if card == 1 and kind == 'word' then redis.call('ZADD', s .. ':longwords', 0, what[2]) end
  if card > SET_LIMIT then
    local members = redis.call('SMEMBERS', key)
    redis.call('DEL', key)
    for _, member in ipairs(members) do redis.call('SETBIT', key, member, 1) end
  end
end
local function remove(s, name, what, n)
  local key, kind = s .. ':' .. name, what[1]
  local empty
  if is_bitmap(key, kind) then
    redis.call('SETBIT', key, n, 0)
    -- Stops at the first set bit: quick unless the bitmap is (nearly) empty.
    empty = redis.call('BITPOS', key, 1) == -1
    if empty then redis.call('DEL', key) end
  else
    redis.call('SREM', key, n)
    empty = redis.call('EXISTS', key) == 0
  end
  if empty and kind == 'bucket' then redis.call('ZREM', buckets_of(s, what[2]), what[3]) end
  if empty and kind == 'word' then redis.call('ZREM', s .. ':longwords', what[2]) end
end
local function count(s, meta, by)
  if redis.call('HINCRBY', s .. ':counts', meta, by) <= 0 then
    redis.call('HDEL', s .. ':counts', meta)
  end
end
-- The scores an indexed item is filed under (sorted: whether it has every sort key's
-- bucket, else only its price bucket).
local function scores_of(s, id, n, sorted)
  local out = {}
  for _, field in ipairs(SORTS) do
    if sorted or field == 'price' then
      out[field] = redis.call('ZSCORE', s .. ':sort:' .. field, id .. SEP .. n)
    end
  end
  return out
end
-- <s>:sorted counts the live items filed under every sort key's bucket: a search uses the
-- buckets only when that is all of them.
local function count_sorted(s, by)
  if redis.call('INCRBY', s .. ':sorted', by) <= 0 then redis.call('DEL', s .. ':sorted') end
end
-- Take item id (number n) out of seller s's index entirely and free its number.
local function drop(s, id, n, meta, terms, sorted)
  local member = id .. SEP .. n
  for name, what in pairs(postings(meta, terms, scores_of(s, id, n, sorted))) do
    remove(s, name, what, n)
  end
  for _, field in ipairs(SORTS) do redis.call('ZREM', s .. ':sort:' .. field, member) end
  if sorted then count_sorted(s, -1) end
  count(s, meta, -1)
  redis.call('HDEL', s .. ':docs', n)
  redis.call('ZADD', s .. ':free', n, n)
end
"""
)

# KEYS: item, seller prefix. ARGV: id, expected version ('' = none or gone), version, doc,
# meta, terms, price, updated, sold, pending events ('' = none).
_PUT_LUA: Final = (
    _INDEX_LUA
    + r"""
local item, s, id = KEYS[1], KEYS[2], ARGV[1]
local meta, terms, price = ARGV[5], ARGV[6], ARGV[7]
local cur = redis.call('HMGET', item, 'v', 'gone', 'doc', 'index', 'n', 'meta', 'terms',
  'sorted')
local version = cur[1]
if cur[2] then version = false end
if (version or '') ~= ARGV[2] then return 0 end
-- The write's events wait in the item's hash until published (the outbox).
if ARGV[10] ~= '' then redis.call('HSET', item, 'pending', ARGV[10]) end
-- n is missing for an item written by the earlier key layout: index it afresh; sorted for
-- one indexed before the updated and sold buckets: add them.
local n, old, sorted = version and cur[5], {}, cur[8]
if n and sorted and cur[3] == ARGV[4] and cur[4] == s then return 1 end
if n and cur[4] == s then
  old = postings(cur[6], cur[7], scores_of(s, id, n, sorted))
  if not sorted then count_sorted(s, 1) end
  if cur[6] ~= meta then
    count(s, cur[6], -1)
    count(s, meta, 1)
  end
elseif n then
  drop(cur[4], id, n, cur[6], cur[7], sorted)
  redis.call('INCR', cur[4] .. ':version')
  n = false
end
if not n then
  n = redis.call('ZPOPMIN', s .. ':free')[1] or (redis.call('INCR', s .. ':last') - 1)
  redis.call('HSET', s .. ':docs', n, id .. SEP .. n)
  count(s, meta, 1)
  count_sorted(s, 1)
end
-- Only what changed: a new price touches two buckets, not every word.
local new = postings(meta, terms, {price = price, updated = ARGV[8], sold = ARGV[9]})
for name, what in pairs(old) do if not new[name] then remove(s, name, what, n) end end
for name, what in pairs(new) do if not old[name] then add(s, name, what, n) end end
local member = id .. SEP .. n
redis.call('ZADD', s .. ':sort:price', price, member)
redis.call('ZADD', s .. ':sort:updated', ARGV[8], member)
redis.call('ZADD', s .. ':sort:sold', ARGV[9], member)
redis.call('HDEL', item, 'gone')
redis.call('HSET', item, 'v', ARGV[3], 'doc', ARGV[4], 'index', s, 'n', n, 'meta', meta,
  'terms', terms, 'sorted', '1')
redis.call('INCR', s .. ':version')
return 1
"""
)

# KEYS: the item. ARGV: the pending events that were published.
_CLEAR_PENDING_LUA: Final = r"""
if redis.call('HGET', KEYS[1], 'pending') == ARGV[1] then redis.call('HDEL', KEYS[1], 'pending') end
return 0
"""

# KEYS: seller prefix, then the items. ARGV: their ids.
_MARK_GONE_LUA: Final = (
    _INDEX_LUA
    + r"""
local s, marked = KEYS[1], 0
for i = 2, #KEYS do
  local cur = redis.call('HMGET', KEYS[i], 'index', 'gone', 'n', 'meta', 'terms', 'sorted')
  if cur[1] == s and not cur[2] then
    if cur[3] then drop(s, ARGV[i - 1], cur[3], cur[4], cur[5], cur[6]) end
    redis.call('HSET', KEYS[i], 'gone', '1')
    redis.call('HDEL', KEYS[i], 'n', 'sorted')
    marked = marked + 1
  end
end
if marked > 0 then redis.call('INCR', s .. ':version') end
return marked
"""
)

# KEYS: seller prefix, item prefix. ARGV: sort field, desc ('1'/'0'), limit, status,
# category, price min, price max ('' = none for the four), cursor score, cursor id ('' =
# first page), cache ttl, query digest, then the query's words.
_SEARCH_LUA: Final = (
    _COMMON_LUA
    + r"""
local s, items = KEYS[1], KEYS[2]
local field, desc, limit = ARGV[1], ARGV[2] == '1', tonumber(ARGV[3])
local sortkey = s .. ':sort:' .. field
local fstatus, fcategory, pmin, pmax = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local cscore, cid, ttl, digest = ARGV[8], ARGV[9], tonumber(ARGV[10]), ARGV[11]
local words = {}
for i = 12, #ARGV do words[#words + 1] = ARGV[i] end
local cache = s .. ':cache:' .. (redis.call('GET', s .. ':version') or '0') .. ':' .. digest
local tmps = {}
local function tmp(name)
  local key = s .. ':tmp:' .. name
  tmps[#tmps + 1] = key
  return key
end
local function bits_of(kind, value) return s .. ':bits:' .. kind .. ':' .. value end
local function id_of(member) return string.sub(member, 1, string.find(member, SEP, 1, true) - 1) end
local function number_of(member)
  return tonumber(string.sub(member, string.find(member, SEP, 1, true) + 1))
end
-- Whether bit n is set in bitmap (a string as GET returns it; bit 0 is the first byte's
-- high bit, as SETBIT numbers them).
local function has(bitmap, n)
  local byte = string.byte(bitmap, math.floor(n / 8) + 1)
  return byte ~= nil and bit.band(byte, bit.rshift(128, n % 8)) ~= 0
end
-- The numbers set in bitmap, ascending; skips zero bytes in C.
local function numbers_in(bitmap)
  local out, at = {}, 1
  while true do
    at = string.find(bitmap, '[^%z]', at)
    if not at then return out end
    local byte, base = string.byte(bitmap, at), (at - 1) * 8
    for j = 0, 7 do
      if bit.band(byte, bit.rshift(128, j)) ~= 0 then out[#out + 1] = base + j end
    end
    at = at + 1
  end
end
-- Byte order, as Redis orders members of equal score (Lua's < follows the locale).
local function before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
-- Redis and Lua commands take at most a few thousand arguments at once.
local function chunked(cmd, key, list, from_reply)
  local out = {}
  for i = 1, #list, 4000 do
    local reply = redis.call(cmd, key, unpack(list, i, math.min(i + 3999, #list)))
    if from_reply then for _, v in ipairs(reply) do out[#out + 1] = v end end
  end
  return out
end
local function bitop(op, dest, keys)
  for i = 1, #keys, 1000 do
    redis.call('BITOP', op, dest, dest, unpack(keys, i, math.min(i + 999, #keys)))
  end
end
local function wanted(status, category)
  return (fstatus == '' or status == fstatus), (fcategory == '' or category == fcategory)
end
local function flat(map)
  local out = {}
  for k, v in pairs(map) do out[#out + 1] = k; out[#out + 1] = v end
  return out
end

-- OR the postings at keys (bitmaps, or sets of numbers) into one bitmap: its key, nil when
-- they hold nothing. A lone bitmap is used where it is (read only).
local function union(keys, name)
  local bitmaps, sets = {}, {}
  for _, key in ipairs(keys) do
    local kind = redis.call('TYPE', key).ok
    if kind == 'string' then bitmaps[#bitmaps + 1] = key
    elseif kind == 'set' then sets[#sets + 1] = key end
  end
  if #bitmaps == 1 and #sets == 0 then return bitmaps[1] end
  if #bitmaps == 0 and #sets == 0 then return nil end
  local dest = tmp(name)
  bitop('OR', dest, bitmaps)
  for i = 1, #sets, 1000 do
    for _, n in ipairs(redis.call('SUNION', unpack(sets, i, math.min(i + 999, #sets)))) do
      redis.call('SETBIT', dest, n, 1)
    end
  end
  return dest
end
-- The items having, for every query word, a word it starts: a bitmap key or nil.
local function text_bits()
  local each = {}
  for i, word in ipairs(words) do
    local keys
    if #word <= K then
      keys = {s .. ':post:prefix:' .. word}
    else
      keys = redis.call('ZRANGEBYLEX', s .. ':longwords', '[' .. word, '[' .. word .. '\255')
      for j, w in ipairs(keys) do keys[j] = s .. ':post:word:' .. w end
    end
    each[i] = union(keys, 'word' .. i)
    if not each[i] then return nil end
  end
  if #each == 1 then return each[1] end
  local dest = tmp('text')
  redis.call('BITOP', 'AND', dest, unpack(each))
  return dest
end
-- The items of base (a bitmap key; nil: all) priced within [pmin, pmax]: the buckets
-- strictly between the bounds' buckets whole, then the bounds' own buckets item by item,
-- walking the price order from each bound until the bucket changes.
local function price_bits(base)
  local low, high = tonumber(pmin), tonumber(pmax)
  local lowb, highb = low and bucket(low), high and bucket(high)
  local dest = tmp('price')
  local inner = redis.call('ZRANGE', s .. ':buckets', lowb and '(' .. lowb or '-inf',
    highb and '(' .. highb or '+inf', 'BYSCORE')
  for i, b in ipairs(inner) do inner[i] = bits_of('price', b) end
  bitop('OR', dest, inner)
  if base then redis.call('BITOP', 'AND', dest, dest, base) end
  local within = base and (redis.call('GET', base) or '')
  local function edge(from, to, b, rev)
    local offset = 0
    while true do
      local got
      if rev then
        got = redis.call('ZRANGE', s .. ':sort:price', from, to, 'BYSCORE', 'REV', 'LIMIT',
          offset, 256, 'WITHSCORES')
      else
        got = redis.call('ZRANGE', s .. ':sort:price', from, to, 'BYSCORE', 'LIMIT', offset,
          256, 'WITHSCORES')
      end
      for i = 1, #got, 2 do
        if bucket(got[i + 1]) ~= b then return end
        local n = number_of(got[i])
        if not within or has(within, n) then redis.call('SETBIT', dest, n, 1) end
      end
      if #got < 512 then return end
      offset = offset + 256
    end
  end
  if low then edge(pmin, high and pmax or '+inf', lowb, false) end
  if high and lowb ~= highb then edge(pmax, low and pmin or '-inf', highb, true) end
  if redis.call('EXISTS', dest) == 0 then return nil end
  return dest
end

-- Positions in z around the cursor item (score cscore, id cid), in ascending order:
-- how many elements sort before it, and how many sort before or at it.
local function around(z)
  local lo = redis.call('ZCOUNT', z, '-inf', '(' .. cscore)
  local hi = redis.call('ZCOUNT', z, '-inf', cscore)
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if before(id_of(redis.call('ZRANGE', z, mid, mid)[1]), cid) then lo = mid + 1 else hi = mid end
  end
  local at = redis.call('ZRANGE', z, lo, lo)[1]
  if at and id_of(at) == cid then return lo, lo + 1 end
  return lo, lo
end
-- Where a page of z starts (ascending) or ends, exclusive (descending).
local function start_of(z)
  if cid == '' then
    if desc then return redis.call('ZCARD', z) end
    return 0
  end
  local before, through = around(z)
  if desc then return before end
  return through
end
-- Relative costs, in walked members (ZRANGE and a bit test): picking a match (HMGET and
-- ZMSCORE) and counting a bucket's matches (BITOP AND and BITCOUNT).
local WALK, PROBE = 4, 4
-- The next page of z, the elements keep(members) accepts (keep == nil: all), as member,
-- score pairs; and whether more may follow. Walks z in chunks sized by the share that
-- matches, reading scores only for the page.
local function page(z, keep, share)
  local out, pos = {}, start_of(z)
  local size = math.max(64, math.min(4096, math.ceil((limit + 1) / share * 1.25)))
  if keep == nil then size = limit + 1 end
  while #out <= limit do
    local first, last
    if desc then
      if pos <= 0 then break end
      first, last = math.max(0, pos - size), pos - 1
      pos = first
    else
      first, last = pos, pos + size - 1
      pos = last + 1
    end
    local got = redis.call('ZRANGE', z, first, last)
    local n = #got
    if n == 0 then break end
    local accepted = keep and keep(got)
    for j = 1, n do
      local i = desc and (n - j + 1) or j
      if keep == nil or accepted[i] then
        out[#out + 1] = {got[i]}
        if #out > limit then break end
      end
    end
    if not desc and n < last - first + 1 then break end
  end
  local more = #out > limit
  if more then out[#out] = nil end
  if #out > 0 then
    local members = {}
    for i, pair in ipairs(out) do members[i] = pair[1] end
    for i, score in ipairs(redis.call('ZMSCORE', z, unpack(members))) do out[i][2] = score end
  end
  return out, more
end
-- The members of the matches (bitmap key) and their scores, in two lists.
local function scored(matches)
  local numbers = numbers_in(redis.call('GET', matches) or '')
  local members = {}
  for _, member in ipairs(chunked('HMGET', s .. ':docs', numbers, true)) do
    if member then members[#members + 1] = member end
  end
  return members, chunked('ZMSCORE', sortkey, members, true)
end
-- The first page of a few matches without sorting them all: one pass keeping the best
-- limit + 1 in page order.
local function first_page(matches)
  local members, scores = scored(matches)
  local function ahead(a, ascore, b)
    local bscore = tonumber(b[2])
    if ascore ~= bscore then
      if desc then return ascore > bscore end
      return ascore < bscore
    end
    if desc then return before(b[1], a) end
    return before(a, b[1])
  end
  local best = {}
  for i, member in ipairs(members) do
    local score = tonumber(scores[i])
    if #best <= limit or ahead(member, score, best[#best]) then
      if #best > limit then best[#best] = nil end
      local j = #best + 1
      while j > 1 and ahead(member, score, best[j - 1]) do
        best[j] = best[j - 1]
        j = j - 1
      end
      best[j] = {member, scores[i]}
    end
  end
  local more = #best > limit
  if more then best[#best] = nil end
  return best, more
end
-- The first page of the matches (bitmap key) from the sort key's score buckets: walks the
-- buckets in page order, counting the matches in each (BITOP AND, BITCOUNT), until they
-- hold limit + 1, then picks the page from those buckets' matches only. Every item of a
-- bucket sorts before every item of the next, so the page is exact. Gives up (nil) once it
-- has cost more than budget (in walked members: a bucket PROBE, a picked match WALK).
local function bucket_page(matches, budget)
  local need, got, spent, offset = limit + 1, 0, 0, 0
  local listed, picked, scratch = buckets_of(s, field), tmp('picked'), tmp('bucket')
  while got < need do
    local chunk
    if desc then
      chunk = redis.call('ZRANGE', listed, offset, offset + 63, 'REV')
    else
      chunk = redis.call('ZRANGE', listed, offset, offset + 63)
    end
    for _, b in ipairs(chunk) do
      redis.call('BITOP', 'AND', scratch, matches, bits_of(field, b))
      local count = redis.call('BITCOUNT', scratch)
      spent = spent + PROBE + WALK * count
      if spent > budget then return nil end
      if count > 0 then
        redis.call('BITOP', 'OR', picked, picked, scratch)
        got = got + count
        if got >= need then break end
      end
    end
    if #chunk < 64 then break end
    offset = offset + 64
  end
  return first_page(picked)
end
-- The matches (bitmap key) as a sorted set scored by the sort key, at z.
local function sort_matches(matches, z)
  local members, scores = scored(matches)
  local args = {}
  for i, member in ipairs(members) do
    args[#args + 1] = scores[i]
    args[#args + 1] = member
  end
  chunked('ZADD', z, args, false)
  redis.call('EXPIRE', z, ttl)
end

local total, by_status, by_category, matches = 0, {}, {}, nil
if #words == 0 and pmin == '' and pmax == '' then
  -- Only status and category: totals and facets come from the kept counts.
  local joint = redis.call('HGETALL', s .. ':counts')
  for i = 1, #joint, 2 do
    local status, category = split(joint[i])
    local count = tonumber(joint[i + 1])
    local status_ok, category_ok = wanted(status, category)
    if category_ok then by_status[status] = (by_status[status] or 0) + count end
    if status_ok and category ~= '' then
      by_category[category] = (by_category[category] or 0) + count
    end
    if status_ok and category_ok then total = total + count end
  end
  if total > 0 and fstatus ~= '' and fcategory ~= '' then
    matches = tmp('matches')
    redis.call('BITOP', 'AND', matches, bits_of('status', fstatus), bits_of('category', fcategory))
  elseif total > 0 and fstatus ~= '' then
    matches = bits_of('status', fstatus)
  elseif total > 0 and fcategory ~= '' then
    matches = bits_of('category', fcategory)
  end
else
  local cached = redis.call('GET', cache .. ':facets')
  if cached then
    cached = cjson.decode(cached)
    -- Its matches may have expired a moment before it.
    if cached[1] > 0 and redis.call('EXISTS', cache .. ':bits') == 0 then cached = nil end
  end
  if cached then
    total, by_status, by_category = cached[1], cached[2], cached[3]
    if total > 0 then matches = cache .. ':bits' end
  else
    -- The words and the price range make the base bitmap; each facet counts it with the
    -- other facet's filter applied (a facet ignores its own filter), one BITOP AND and
    -- one BITCOUNT per value.
    local base = nil
    local empty = false
    if #words > 0 then
      base = text_bits()
      empty = base == nil
    end
    if not empty and (pmin ~= '' or pmax ~= '') then
      base = price_bits(base)
      empty = base == nil
    end
    if not empty then
      local statuses, categories, joint = {}, {}, redis.call('HGETALL', s .. ':counts')
      for i = 1, #joint, 2 do
        local status, category = split(joint[i])
        local status_ok, category_ok = wanted(status, category)
        if category_ok then statuses[status] = true end
        if status_ok and category ~= '' then categories[category] = true end
      end
      local in_category, in_status = base, base
      if fcategory ~= '' then
        in_category = tmp('incategory')
        redis.call('BITOP', 'AND', in_category, base, bits_of('category', fcategory))
      end
      if fstatus ~= '' then
        in_status = tmp('instatus')
        redis.call('BITOP', 'AND', in_status, base, bits_of('status', fstatus))
      end
      local scratch = tmp('count')
      local function count_in(from, key)
        redis.call('BITOP', 'AND', scratch, from, key)
        return redis.call('BITCOUNT', scratch)
      end
      for status in pairs(statuses) do
        local count = count_in(in_category, bits_of('status', status))
        if count > 0 then by_status[status] = count end
      end
      for category in pairs(categories) do
        local count = count_in(in_status, bits_of('category', category))
        if count > 0 then by_category[category] = count end
      end
      matches = cache .. ':bits'
      if fcategory ~= '' then
        redis.call('BITOP', 'AND', matches, in_status, bits_of('category', fcategory))
      else
        redis.call('BITOP', 'OR', matches, in_status)
      end
      total = redis.call('BITCOUNT', matches)
      if total > 0 then
        redis.call('EXPIRE', matches, ttl)
      else
        redis.call('DEL', matches)
        matches = nil
      end
    end
    redis.call('SET', cache .. ':facets', cjson.encode({total, by_status, by_category}), 'EX', ttl)
  end
end

local found, more = {}, false
local z, keep, share, pick = sortkey, nil, 1, nil
if total == 0 then
  z = nil
elseif matches then
  local all = redis.call('ZCARD', sortkey)
  local sorted_z = cache .. ':by:' .. field
  -- Walking costs about (limit + 1) / share members, picking `total` matches at about
  -- WALK times the cost of a walked member. A first page tries the buckets first (when
  -- every item is in them), giving up once they cost more than the cheaper of the two.
  local budget = math.min((limit + 1) * all / total, WALK * total)
  if cid == '' and total > limit + 1 and budget > 2 * WALK * (limit + 1)
      and tonumber(redis.call('GET', s .. ':sorted') or '0') == all
      and redis.call('EXISTS', sorted_z) == 0 then
    found, more = bucket_page(matches, budget)
    if found then z = nil else found, more = {}, false end
  end
  if not z then
    -- Found in the buckets.
  elseif (limit + 1) * all <= WALK * total * total then
    -- Common enough that walking the sorted items finds a page quickly.
    share = total / all
    local bitmap = redis.call('GET', matches) or ''
    keep = function(members)
      local out = {}
      for i, member in ipairs(members) do out[i] = has(bitmap, number_of(member)) end
      return out
    end
  else
    -- Rare: the first page picks from the matches directly; later pages sort them, once
    -- per sort while the index is unchanged.
    z = sorted_z
    if cid ~= '' and redis.call('EXISTS', z) == 0 then sort_matches(matches, z) end
    if cid == '' and redis.call('EXISTS', z) == 0 then z, pick = nil, matches end
  end
end

if z then
  found, more = page(z, keep, share)
elseif pick then
  found, more = first_page(pick)
end
if #tmps > 0 then redis.call('DEL', unpack(tmps)) end
local docs = {}
for i, pair in ipairs(found) do docs[i] = redis.call('HGET', items .. id_of(pair[1]), 'doc') end
local last = more and {id_of(found[#found][1]), found[#found][2]} or {'', ''}
return {total, flat(by_status), flat(by_category), docs, last[2], last[1]}
"""
)


def _no_script(reply: Any) -> bool:
    return isinstance(reply, NoScriptError)


def _checked(reply: Any) -> Any:
    """A pipelined call's reply, or its error as `CacheUnavailable`."""
    if isinstance(reply, Exception):
        msg = f"Redis failed on an item: {reply}"
        raise CacheUnavailable(msg) from reply
    return reply


def _micros(moment: datetime) -> int:
    # Epoch microseconds exactly (the compare-and-set version), from the timedelta's
    # parts: several times cheaper than dividing it by another timedelta.
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _counts(flat: list[Any]) -> dict[str, int]:
    return {_text(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}


class RedisItemStore:
    """`ItemStore` and `ItemSearch` over one Redis, keys under ``namespace`` (``catalog:``).

    Args:
        redis: a client logged in as the catalog ACL user (bytes responses), owned by the
            caller.
        namespace: ``Namespace("catalog")``, or one with a scope in tests.

    Raises:
        CacheUnavailable: from every method, when Redis fails.
        InvalidQuery: from `search`, for a query it cannot answer.
    """

    def __init__(self, redis: aioredis.Redis, namespace: Namespace) -> None:
        if namespace.service != "catalog":
            msg = f"the item store lives under catalog:, not {namespace.prefix!r}"
            raise ConfigurationError(msg)
        self._redis = redis
        self._ns = namespace
        self._put = redis.register_script(_PUT_LUA)
        self._mark_gone = redis.register_script(_MARK_GONE_LUA)
        self._clear_pending = redis.register_script(_CLEAR_PENDING_LUA)
        self._search = redis.register_script(_SEARCH_LUA)
        # The consumer's per-record calls of one event-loop turn: one pipeline.
        self._calls: Coalescer[_Call, Any] = Coalescer(self._pipeline)

    async def _pipeline(self, calls: list[_Call]) -> list[Any]:
        """Run calls in one pipeline; a call's error is its result, for its caller.

        A pipeline does not load scripts by itself without an extra round trip per
        execution (redis-py checks them all first): the calls that find their script
        missing (a restarted Redis) load it and run again.
        """
        results: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(2):
            with redis_errors("reading and writing items"):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for index in todo:
                        script, keys, args = calls[index]
                        if script is None:
                            pipe.hmget(keys[0], list(args))  # type: ignore[unused-awaitable]
                        else:
                            pipe.evalsha(script.sha, len(keys), *keys, *args)  # type: ignore[unused-awaitable]
                    replies = await pipe.execute(raise_on_error=False)
                missing = [i for i, r in zip(todo, replies, strict=True) if _no_script(r)]
                for index, reply in zip(todo, replies, strict=True):
                    results[index] = reply
                if not missing or attempt:
                    break
                for script in {calls[i][0] for i in missing}:
                    if script is not None:
                        script.sha = await self._redis.script_load(script.script)
                todo = missing
        return results

    async def ping(self) -> None:
        """Raise `CacheUnavailable` unless Redis answers (the read API's readiness)."""
        with redis_errors("pinging"):
            await self._redis.ping()

    def _item(self, item_id: str) -> str:
        return self._ns.key(_ITEM, item_id)

    def _seller(self, seller_id: int) -> str:
        return self._ns.key(_SELLER, seller_id)

    async def get(self, item_id: str) -> ItemSnapshot | None:
        with redis_errors("reading an item"):
            doc = await self._redis.hget(self._item(item_id), "doc")
        return None if doc is None else ItemSnapshot.model_validate_json(doc)

    async def get_many(self, item_ids: Iterable[str]) -> dict[str, ItemSnapshot]:
        ids = list(dict.fromkeys(item_ids))
        with redis_errors("reading items"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for item_id in ids:
                    pipe.hget(self._item(item_id), "doc")  # type: ignore[unused-awaitable]
                docs = await pipe.execute()
        return {
            item_id: ItemSnapshot.model_validate_json(doc)
            for item_id, doc in zip(ids, docs, strict=True)
            if doc is not None
        }

    async def cached(self, item_id: str) -> CachedItem:
        doc, gone, pending = _checked(
            await self._calls.submit((None, [self._item(item_id)], _STATE_FIELDS))
        )
        snapshot = None if doc is None else ItemSnapshot.model_validate_json(doc)
        # The client answers bytes (no response decoding).
        return CachedItem(snapshot, gone=gone is not None, pending=cast("bytes | None", pending))

    async def clear_pending(self, item_id: str, pending: bytes) -> None:
        _checked(await self._calls.submit((self._clear_pending, [self._item(item_id)], [pending])))

    async def put(
        self, item: ItemSnapshot, *, expected: datetime | None, pending: bytes | None = None
    ) -> bool:
        meta = f"{item.status}\t{item.category_id or ''}"
        version = str(_micros(item.last_updated))
        args: list[str | bytes] = [
            item.id,
            "" if expected is None else str(_micros(expected)),
            version,
            item.model_dump_json(),
            meta,
            " ".join(sorted(item_terms(item.title, item.sku))),
            str(item.price),
            version,
            str(item.sold_quantity),
            pending or b"",
        ]
        keys = [self._item(item.id), self._seller(item.seller_id)]
        return bool(_checked(await self._calls.submit((self._put, keys, args))))

    async def seller_item_ids(self, seller_id: int) -> set[str]:
        with redis_errors("listing a seller's items"):
            ids = await self._redis.hvals(f"{self._seller(seller_id)}:docs")
        # Members (``<id>`` NUL ``<number>``) come back as bytes: no response decoding.
        return {member.split(b"\0")[0].decode() for member in cast("list[bytes]", ids)}

    async def sample_item_ids(self, seller_id: int, count: int) -> list[str]:
        """Up to ``count`` distinct live items of the seller, picked at random (HRANDFIELD)."""
        with redis_errors("sampling a seller's items"):
            picked = await self._redis.hrandfield(
                f"{self._seller(seller_id)}:docs", count, withvalues=True
            )
        members = cast("list[bytes]", picked)[1::2]  # number, member, number, member, ...
        return [member.split(b"\0")[0].decode() for member in members]

    async def mark_gone(self, seller_id: int, item_ids: Iterable[str]) -> int:
        ids = list(dict.fromkeys(item_ids))
        if not ids:
            return 0
        with redis_errors("marking items gone"):
            marked = await self._mark_gone(
                keys=[self._seller(seller_id), *(self._item(i) for i in ids)], args=ids
            )
        return int(marked)

    async def is_gone(self, item_id: str) -> bool:
        with redis_errors("reading an item"):
            return bool(await self._redis.hexists(self._item(item_id), "gone"))

    async def search(self, query: SearchQuery) -> SearchPage:
        cursor = validate(query)
        words = sorted(set(terms(query.q or "")))
        filters = [
            query.status or "",
            query.category or "",
            "" if query.price_min is None else str(query.price_min),
            "" if query.price_max is None else str(query.price_max),
        ]
        digest = hashlib.sha256("\n".join([*filters, *words]).encode()).hexdigest()[:16]
        args = [
            query.sort.lstrip("-"),
            "1" if query.sort.startswith("-") else "0",
            str(query.limit),
            *filters,
            "" if cursor is None else cursor.score,
            "" if cursor is None else cursor.item_id,
            str(_CACHE_TTL_S),
            digest,
            *words,
        ]
        with redis_errors("searching items"):
            reply = await self._search(
                keys=[self._seller(query.seller_id), self._ns.key(_ITEM, "")], args=args
            )
        total, by_status, by_category, docs, score, last_id = reply
        next_cursor = None
        if last_id:
            next_cursor = encode_cursor(Cursor(query.sort, _text(score), _text(last_id)))
        return SearchPage(
            items=[ItemSnapshot.model_validate_json(doc) for doc in docs],
            total=int(total),
            next_cursor=next_cursor,
            facets={"status": _counts(by_status), "category": _counts(by_category)},
        )
