"""The item cache and its search index in Redis, all under ``catalog:`` (`RedisItemStore`).

Keys (``<ns>`` is ``catalog:``, or ``catalog:<scope>:`` in tests; ``<s>`` is
``<ns>seller:<seller_id>``):

- ``<ns>item:<id>``: hash ``doc`` (the snapshot's JSON), ``v`` (``last_updated`` in epoch
  microseconds, the compare-and-set version), ``index`` (the ``<s>`` prefix it is indexed
  under), ``meta`` (``status<TAB>category``), ``terms`` (its folded words) and ``gone``.
- ``<s>:version``: bumped in the same script as every change of the seller's index, so
  anything cached from the index is keyed by it (``<s>:cache:<version>:...``, short TTL).
- ``<s>:by:price``, ``<s>:by:updated``, ``<s>:by:sold``: sorted sets of the live item ids,
  scored by the sort key; equal scores order by id, the stable tiebreak.
- ``<s>:status:<status>``, ``<s>:category:<category>``: sets of live ids.
- ``<s>:meta``: hash id -> ``status<TAB>category``, to group candidates in one HMGET.
- ``<s>:facets``: hash ``status<TAB>category`` -> live count, so unfiltered totals and
  facets are one HGETALL.
- ``<s>:words``: lexicographic sorted set of the seller's distinct words (prefix lookup by
  ZRANGEBYLEX); ``<s>:word:<word>``: set of the live ids having that word.
- ``<s>:tmp:*``: scratch keys a search script creates and deletes before it returns.

Every write is one Lua script, so the cache and the index never disagree and a reader never
sees half a write. Nothing here uses KEYS, SCAN or a pattern.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

import redis.asyncio as aioredis

from peepers_catalog.ports import SearchPage, SearchQuery
from peepers_catalog.search_query import Cursor, encode_cursor, validate
from peepers_catalog.search_text import item_terms, terms
from peepers_common.errors import ConfigurationError
from peepers_common.events import ItemSnapshot
from peepers_common.namespaces import Namespace, redis_errors

__all__ = ["RedisItemStore"]

_ITEM: Final = "item"
_SELLER: Final = "seller"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# Totals and facets of a text or price query, and its sorted ids, are reused by the next
# pages while the seller's index is unchanged, for this long.
_CACHE_TTL_S: Final = 30

# Shared by the scripts: take an item out of / put it into the seller index under prefix s.
_INDEX_LUA: Final = """
local function split(meta)
  local tab = string.find(meta, '\\t', 1, true)
  return string.sub(meta, 1, tab - 1), string.sub(meta, tab + 1)
end
local function unindex(s, id, meta, terms)
  local status, category = split(meta)
  redis.call('ZREM', s .. ':by:price', id)
  redis.call('ZREM', s .. ':by:updated', id)
  redis.call('ZREM', s .. ':by:sold', id)
  redis.call('SREM', s .. ':status:' .. status, id)
  if category ~= '' then redis.call('SREM', s .. ':category:' .. category, id) end
  redis.call('HDEL', s .. ':meta', id)
  if redis.call('HINCRBY', s .. ':facets', meta, -1) <= 0 then
    redis.call('HDEL', s .. ':facets', meta)
  end
  for word in string.gmatch(terms, '%S+') do
    local key = s .. ':word:' .. word
    redis.call('SREM', key, id)
    if redis.call('SCARD', key) == 0 then redis.call('ZREM', s .. ':words', word) end
  end
end
local function index(s, id, meta, terms, price, updated, sold)
  local status, category = split(meta)
  redis.call('ZADD', s .. ':by:price', price, id)
  redis.call('ZADD', s .. ':by:updated', updated, id)
  redis.call('ZADD', s .. ':by:sold', sold, id)
  redis.call('SADD', s .. ':status:' .. status, id)
  if category ~= '' then redis.call('SADD', s .. ':category:' .. category, id) end
  redis.call('HSET', s .. ':meta', id, meta)
  redis.call('HINCRBY', s .. ':facets', meta, 1)
  for word in string.gmatch(terms, '%S+') do
    redis.call('SADD', s .. ':word:' .. word, id)
    redis.call('ZADD', s .. ':words', 0, word)
  end
end
"""

# KEYS: item, seller prefix. ARGV: id, expected version ('' = none or gone), version, doc,
# meta, terms, price, updated, sold.
_PUT_LUA: Final = (
    _INDEX_LUA
    + """
local item, s, id = KEYS[1], KEYS[2], ARGV[1]
local cur = redis.call('HMGET', item, 'v', 'gone', 'doc', 'index', 'meta', 'terms')
local version = cur[1]
if cur[2] then version = false end
if (version or '') ~= ARGV[2] then return 0 end
if version and cur[3] == ARGV[4] and cur[4] == s then return 1 end
if version then
  unindex(cur[4], id, cur[5], cur[6])
  if cur[4] ~= s then redis.call('INCR', cur[4] .. ':version') end
end
index(s, id, ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
redis.call('HDEL', item, 'gone')
redis.call('HSET', item, 'v', ARGV[3], 'doc', ARGV[4], 'index', s, 'meta', ARGV[5],
  'terms', ARGV[6])
redis.call('INCR', s .. ':version')
return 1
"""
)

# KEYS: seller prefix, then the items. ARGV: their ids.
_MARK_GONE_LUA: Final = (
    _INDEX_LUA
    + """
local s, marked = KEYS[1], 0
for i = 2, #KEYS do
  local cur = redis.call('HMGET', KEYS[i], 'index', 'gone', 'meta', 'terms')
  if cur[1] == s and not cur[2] then
    unindex(s, ARGV[i - 1], cur[3], cur[4])
    redis.call('HSET', KEYS[i], 'gone', '1')
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
_SEARCH_LUA: Final = """
local s, items = KEYS[1], KEYS[2]
local sortkey, desc, limit = s .. ':by:' .. ARGV[1], ARGV[2] == '1', tonumber(ARGV[3])
local fstatus, fcategory, pmin, pmax = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local cscore, cid, ttl, digest = ARGV[8], ARGV[9], tonumber(ARGV[10]), ARGV[11]
local words = {}
for i = 12, #ARGV do words[#words + 1] = ARGV[i] end
local tmps = {}
local function tmp(name)
  local key = s .. ':tmp:' .. name
  tmps[#tmps + 1] = key
  return key
end
local function split(meta)
  local tab = string.find(meta, '\\t', 1, true)
  return string.sub(meta, 1, tab - 1), string.sub(meta, tab + 1)
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
local function wanted(status, category)
  return (fstatus == '' or status == fstatus), (fcategory == '' or category == fcategory)
end
local function flat(map)
  local out = {}
  for k, v in pairs(map) do out[#out + 1] = k; out[#out + 1] = v end
  return out
end

-- Positions in z around the cursor item (score cscore, id cid), in ascending order:
-- how many elements sort before it, and how many sort before or at it.
local function around(z)
  local lo = redis.call('ZCOUNT', z, '-inf', '(' .. cscore)
  local hi = redis.call('ZCOUNT', z, '-inf', cscore)
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if before(redis.call('ZRANGE', z, mid, mid)[1], cid) then lo = mid + 1 else hi = mid end
  end
  local at = redis.call('ZRANGE', z, lo, lo)[1]
  if at == cid then return lo, lo + 1 end
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
-- The next page of z, the elements keep(ids) accepts (keep == nil: all), as id, score
-- pairs; and whether more may follow. Walks z in chunks sized by the share that matches.
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
    local got = redis.call('ZRANGE', z, first, last, 'WITHSCORES')
    local n = #got / 2
    if n == 0 then break end
    local accepted
    if keep then
      local ids = {}
      for i = 1, n do ids[i] = got[2 * i - 1] end
      accepted = keep(ids)
    end
    for j = 1, n do
      local i = desc and (n - j + 1) or j
      if keep == nil or accepted[i] then
        out[#out + 1] = {got[2 * i - 1], got[2 * i]}
        if #out > limit then break end
      end
    end
    if not desc and n < last - first + 1 then break end
  end
  local more = #out > limit
  if more then out[#out] = nil end
  return out, more
end

local total, by_status, by_category, z, keep, share = 0, {}, {}, sortkey, nil, 1
if #words == 0 and pmin == '' and pmax == '' then
  -- Only status and category: totals and facets come from the kept counts.
  local joint = redis.call('HGETALL', s .. ':facets')
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
  if fstatus ~= '' or fcategory ~= '' then
    local all = redis.call('ZCARD', sortkey)
    if total == 0 then
      z = nil
    elseif (limit + 1) * all <= total * total then
      -- Common enough that walking the sorted ids finds a page quickly.
      share = total / all
      keep = function(ids)
        local metas = redis.call('HMGET', s .. ':meta', unpack(ids))
        for i, meta in ipairs(metas) do
          local status_ok, category_ok = wanted(split(meta))
          metas[i] = status_ok and category_ok
        end
        return metas
      end
    else
      -- Rare: sort just the matches.
      z = tmp('sorted')
      local keys = {sortkey}
      if fstatus ~= '' then keys[#keys + 1] = s .. ':status:' .. fstatus end
      if fcategory ~= '' then keys[#keys + 1] = s .. ':category:' .. fcategory end
      local args = {z, #keys}
      for _, key in ipairs(keys) do args[#args + 1] = key end
      args[#args + 1] = 'WEIGHTS'
      for i = 1, #keys do args[#args + 1] = i == 1 and 1 or 0 end
      redis.call('ZINTERSTORE', unpack(args))
    end
  end
else
  local version = redis.call('GET', s .. ':version') or '0'
  local cache = s .. ':cache:' .. version .. ':' .. digest
  local cached = redis.call('GET', cache .. ':facets')
  if cached then
    cached = cjson.decode(cached)
    -- Its matches may have expired a moment before it.
    if cached[1] > 0 and redis.call('EXISTS', cache .. ':matches') == 0 then cached = nil end
  end
  if cached then
    total, by_status, by_category = cached[1], cached[2], cached[3]
  else
    -- The words and the price range make the base set; each facet counts it with the
    -- other facet's filter applied (a facet ignores its own filter).
    local base
    if #words > 0 then
      local sets = {}
      for i, word in ipairs(words) do
        local found = redis.call('ZRANGEBYLEX', s .. ':words', '[' .. word, '[' .. word .. '\\255')
        if #found == 0 then sets = nil; break end
        for j, w in ipairs(found) do found[j] = s .. ':word:' .. w end
        sets[i] = tmp('word' .. i)
        for j = 1, #found, 4000 do
          redis.call('SUNIONSTORE', sets[i], sets[i], unpack(found, j, math.min(j + 3999, #found)))
        end
      end
      base = sets and redis.call('SINTER', unpack(sets)) or {}
      if (pmin ~= '' or pmax ~= '') and #base > 0 then
        local prices = chunked('ZMSCORE', s .. ':by:price', base, true)
        local low, high = tonumber(pmin) or -math.huge, tonumber(pmax) or math.huge
        local kept = {}
        for i, id in ipairs(base) do
          local price = tonumber(prices[i])
          if price and price >= low and price <= high then kept[#kept + 1] = id end
        end
        base = kept
      end
    else
      base = redis.call('ZRANGE', s .. ':by:price', pmin ~= '' and pmin or '-inf',
        pmax ~= '' and pmax or '+inf', 'BYSCORE')
    end
    local metas = chunked('HMGET', s .. ':meta', base, true)
    local matches = {}
    for i, id in ipairs(base) do
      local status, category = split(metas[i])
      local status_ok, category_ok = wanted(status, category)
      if category_ok then by_status[status] = (by_status[status] or 0) + 1 end
      if status_ok and category ~= '' then
        by_category[category] = (by_category[category] or 0) + 1
      end
      if status_ok and category_ok then matches[#matches + 1] = id end
    end
    total = #matches
    if total > 0 then
      chunked('SADD', cache .. ':matches', matches, false)
      redis.call('EXPIRE', cache .. ':matches', ttl)
    end
    redis.call('SET', cache .. ':facets', cjson.encode({total, by_status, by_category}), 'EX', ttl)
  end
  if total == 0 then
    z = nil
  elseif (limit + 1) * redis.call('ZCARD', sortkey) <= total * total then
    -- Common enough that walking the sorted ids finds a page quickly.
    share = total / redis.call('ZCARD', sortkey)
    keep = function(ids)
      local found = redis.call('SMISMEMBER', cache .. ':matches', unpack(ids))
      for i, member in ipairs(found) do found[i] = member == 1 end
      return found
    end
  else
    -- Rare: sort just the matches, once per sort while the index is unchanged.
    z = cache .. ':' .. ARGV[1]
    if redis.call('EXISTS', z) == 0 then
      redis.call('ZINTERSTORE', z, 2, sortkey, cache .. ':matches', 'WEIGHTS', 1, 0)
      redis.call('EXPIRE', z, ttl)
    end
  end
end

local found, more = {}, false
if z then found, more = page(z, keep, share) end
if #tmps > 0 then redis.call('DEL', unpack(tmps)) end
local docs = {}
for i, pair in ipairs(found) do docs[i] = redis.call('HGET', items .. pair[1], 'doc') end
local last = more and found[#found] or {'', ''}
return {total, flat(by_status), flat(by_category), docs, last[2], last[1]}
"""


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


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
        self._search = redis.register_script(_SEARCH_LUA)

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

    async def put(self, item: ItemSnapshot, *, expected: datetime | None) -> bool:
        meta = f"{item.status}\t{item.category_id or ''}"
        args = [
            item.id,
            "" if expected is None else str(_micros(expected)),
            str(_micros(item.last_updated)),
            item.model_dump_json(),
            meta,
            " ".join(sorted(item_terms(item.title, item.sku))),
            str(item.price),
            str(_micros(item.last_updated)),
            str(item.sold_quantity),
        ]
        with redis_errors("writing an item"):
            written = await self._put(
                keys=[self._item(item.id), self._seller(item.seller_id)], args=args
            )
        return bool(written)

    async def seller_item_ids(self, seller_id: int) -> set[str]:
        with redis_errors("listing a seller's items"):
            ids = await self._redis.zrange(f"{self._seller(seller_id)}:by:updated", 0, -1)
        # Members come back as bytes: the client does not decode responses.
        return {item_id.decode() for item_id in cast("list[bytes]", ids)}

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
