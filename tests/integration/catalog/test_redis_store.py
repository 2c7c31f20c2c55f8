from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import cast

import redis.asyncio as aioredis

from peepers_catalog.adapters import RedisItemStore
from peepers_catalog.adapters.redis_store import SET_LIMIT
from peepers_catalog.ports import CachedItem, SearchQuery
from peepers_common.namespaces import Namespace
from tests.integration.catalog.conftest import SELLER, T0, MakeItem
from tests.support import unique


class TestPut:
    async def test_a_new_item_is_written_when_nothing_is_cached(
        self, store: RedisItemStore, make_item: MakeItem
    ) -> None:
        item = make_item("MLB1")
        assert await store.put(item, expected=None)
        assert await store.get("MLB1") == item
        assert await store.seller_item_ids(SELLER) == {"MLB1"}

    async def test_a_write_against_a_stale_version_changes_nothing(
        self, store: RedisItemStore, make_item: MakeItem
    ) -> None:
        first = make_item("MLB1")
        await store.put(first, expected=None)
        newer = make_item("MLB1", price=Decimal("12.00"), minutes=1)
        assert await store.put(newer, expected=first.last_updated)
        assert not await store.put(make_item("MLB1", minutes=2), expected=first.last_updated)
        assert not await store.put(make_item("MLB1", minutes=2), expected=None)
        assert await store.get("MLB1") == newer

    async def test_putting_the_same_item_twice_leaves_the_same_state(
        self, store: RedisItemStore, make_item: MakeItem, catalog_redis: aioredis.Redis
    ) -> None:
        item = make_item("MLB1", title="Café")
        await store.put(item, expected=None)
        before = await store.search(SearchQuery(SELLER, q="cafe"))
        assert await store.put(item, expected=item.last_updated)
        after = await store.search(SearchQuery(SELLER, q="cafe"))
        assert after == before
        assert after.total == 1

    async def test_a_changed_item_leaves_its_old_index_entries(
        self, store: RedisItemStore, make_item: MakeItem
    ) -> None:
        old = make_item("MLB1", title="Mesa azul", status="active", category_id="A")
        await store.put(old, expected=None)
        new = make_item("MLB1", title="Cadeira", status="paused", category_id="B", minutes=1)
        await store.put(new, expected=old.last_updated)
        page = await store.search(SearchQuery(SELLER))
        assert page.facets == {"status": {"paused": 1}, "category": {"B": 1}}
        assert (await store.search(SearchQuery(SELLER, q="mesa"))).total == 0
        assert (await store.search(SearchQuery(SELLER, status="active"))).total == 0

    async def test_one_sellers_items_never_reach_another_sellers_index(
        self, store: RedisItemStore, make_item: MakeItem
    ) -> None:
        await store.put(make_item("MLB1"), expected=None)
        await store.put(make_item("MLB2", seller_id=SELLER + 1), expected=None)
        assert await store.seller_item_ids(SELLER) == {"MLB1"}
        assert [i.id for i in (await store.search(SearchQuery(SELLER + 1))).items] == ["MLB2"]

    async def test_get_many_returns_the_cached_ones_only(
        self, store: RedisItemStore, make_item: MakeItem
    ) -> None:
        await store.put(make_item("MLB1"), expected=None)
        await store.put(make_item("MLB2"), expected=None)
        assert set(await store.get_many(["MLB1", "MLB2", "MLB9", "MLB1"])) == {"MLB1", "MLB2"}


class TestGone:
    async def test_a_gone_item_leaves_search_and_facets_but_stays_readable(
        self, store: RedisItemStore, make_item: MakeItem
    ) -> None:
        await store.put(make_item("MLB1", title="Café"), expected=None)
        await store.put(make_item("MLB2", title="Café"), expected=None)
        assert await store.mark_gone(SELLER, ["MLB1", "MLB404"]) == 1
        page = await store.search(SearchQuery(SELLER, q="cafe"))
        assert [i.id for i in page.items] == ["MLB2"]
        assert page.facets["status"] == {"active": 1}
        assert (await store.search(SearchQuery(SELLER))).total == 1
        assert await store.is_gone("MLB1")
        assert await store.get("MLB1") is not None
        assert await store.seller_item_ids(SELLER) == {"MLB2"}

    async def test_marking_twice_counts_once(
        self, store: RedisItemStore, make_item: MakeItem
    ) -> None:
        await store.put(make_item("MLB1"), expected=None)
        assert await store.mark_gone(SELLER, ["MLB1"]) == 1
        assert await store.mark_gone(SELLER, ["MLB1"]) == 0

    async def test_another_sellers_item_is_not_marked(
        self, store: RedisItemStore, make_item: MakeItem
    ) -> None:
        await store.put(make_item("MLB1"), expected=None)
        assert await store.mark_gone(SELLER + 1, ["MLB1"]) == 0
        assert not await store.is_gone("MLB1")

    async def test_a_put_with_no_expected_version_brings_a_gone_item_back(
        self, store: RedisItemStore, make_item: MakeItem
    ) -> None:
        item = make_item("MLB1")
        await store.put(item, expected=None)
        await store.mark_gone(SELLER, ["MLB1"])
        assert not await store.put(make_item("MLB1", minutes=1), expected=item.last_updated)
        assert await store.put(make_item("MLB1", minutes=1), expected=None)
        assert not await store.is_gone("MLB1")
        assert await store.seller_item_ids(SELLER) == {"MLB1"}


async def test_a_search_leaves_no_scratch_keys_behind(
    catalog_redis: aioredis.Redis, make_item: MakeItem, redis_admin: aioredis.Redis
) -> None:
    namespace = Namespace("catalog", scope=unique("catalog"))
    store = RedisItemStore(catalog_redis, namespace)
    for n in range(30):
        await store.put(make_item(f"MLB{n}", title="Niño", status=f"s{n % 10}"), expected=None)
    await store.search(SearchQuery(SELLER, q="nino ni", status="s1"))
    await store.search(SearchQuery(SELLER, status="s1", category="MLB1000"))
    scratch = namespace.key("seller", SELLER, "tmp") + "*"
    assert [key async for key in redis_admin.scan_iter(match=scratch)] == []


async def test_an_emptied_index_leaves_only_its_counters(
    catalog_redis: aioredis.Redis, make_item: MakeItem, redis_admin: aioredis.Redis
) -> None:
    namespace = Namespace("catalog", scope=unique("catalog"))
    store = RedisItemStore(catalog_redis, namespace)
    items = [
        make_item(
            f"MLB{n}",
            title=f"Garrafa térmica {n % 7}",
            sku=f"GAR-{n:04d}",
            price=Decimal(n % 50),
            status=("active", "paused")[n % 2],
            category_id=(None, "A", "B")[n % 3],
        )
        for n in range(SET_LIMIT + 20)
    ]
    for item in items:
        await store.put(item, expected=None)
    for item in items[::3]:
        changed = item.model_copy(
            update={"title": "Copo", "price": Decimal(99), "last_updated": T0 + timedelta(days=1)}
        )
        assert await store.put(changed, expected=item.last_updated)
    await store.mark_gone(SELLER, [item.id for item in items])
    seller = namespace.key("seller", SELLER)
    left = {key.decode() async for key in redis_admin.scan_iter(match=f"{seller}:*")}
    assert left == {f"{seller}:version", f"{seller}:last", f"{seller}:free"}
    assert await store.put(items[0], expected=None)
    assert await store.seller_item_ids(SELLER) == {items[0].id}
    assert await redis_admin.zcard(f"{seller}:free") == len(items) - 1


async def test_an_item_of_the_earlier_key_layout_is_indexed_again_by_its_next_put(
    catalog_redis: aioredis.Redis, make_item: MakeItem
) -> None:
    namespace = Namespace("catalog", scope=unique("catalog"))
    store = RedisItemStore(catalog_redis, namespace)
    seller = namespace.key("seller", SELLER)
    old = [make_item("MLB1", title="Café"), make_item("MLB2", title="Café")]
    for item in old:
        # What the earlier layout wrote: no item number, index entries under other keys.
        await catalog_redis.hset(
            namespace.key("item", item.id),
            mapping={
                "v": str(int(item.last_updated.timestamp() * 1_000_000)),
                "doc": item.model_dump_json(),
                "index": seller,
                "meta": "active\tMLB1000",
                "terms": "cafe",
            },
        )
        await catalog_redis.sadd(f"{seller}:word:cafe", item.id)
    newer = make_item("MLB1", title="Café", minutes=1)
    assert await store.put(newer, expected=old[0].last_updated)
    assert await _ids(store, SearchQuery(SELLER, q="cafe")) == ["MLB1"]
    assert await store.mark_gone(SELLER, ["MLB2"]) == 1
    assert await store.is_gone("MLB2")
    assert await store.seller_item_ids(SELLER) == {"MLB1"}


async def _ids(store: RedisItemStore, query: SearchQuery) -> list[str]:
    return [item.id for item in (await store.search(query)).items]


async def test_an_item_indexed_before_the_sort_buckets_gets_them_from_its_next_put(
    catalog_redis: aioredis.Redis, make_item: MakeItem, redis_admin: aioredis.Redis
) -> None:
    namespace = Namespace("catalog", scope=unique("catalog"))
    store = RedisItemStore(catalog_redis, namespace)
    seller = namespace.key("seller", SELLER)
    # A tenth paused: few enough matches that a first page would come from the buckets.
    items = [
        make_item(
            f"MLB{n:03d}",
            status="paused" if n % 10 == 0 else "active",
            sold_quantity=n,
            minutes=n * 600,
        )
        for n in range(200)
    ]
    for item in items:
        await store.put(item, expected=None)
    # What the previous layout wrote: price buckets only, no `sorted` flag or count.
    for field in ("updated", "sold"):
        listed = cast("list[bytes]", await redis_admin.zrange(f"{seller}:buckets:{field}", 0, -1))
        for b in listed:
            await redis_admin.delete(f"{seller}:bits:{field}:{b.decode()}")
        await redis_admin.delete(f"{seller}:buckets:{field}")
    await redis_admin.delete(f"{seller}:sorted")
    for item in items:
        await redis_admin.hdel(namespace.key("item", item.id), "sorted")
    paused = [item.id for item in items if item.status == "paused"]
    query = SearchQuery(SELLER, status="paused", limit=3)
    # Not every item is in the buckets: the search does without them.
    assert await _ids(store, query) == paused[::-1][:3]
    for item in items[:-1]:
        assert await store.put(item, expected=item.last_updated)
        assert await _ids(store, query) == paused[::-1][:3]
    assert await store.put(items[-1], expected=items[-1].last_updated)
    assert int(await redis_admin.get(f"{seller}:sorted") or 0) == len(items)
    assert await redis_admin.zcard(f"{seller}:buckets:updated") > 1
    assert await _ids(store, replace(query, sort="sold")) == paused[:3]
    assert await _ids(store, query) == paused[::-1][:3]


class TestOutbox:
    async def test_a_writes_events_are_kept_with_it_until_cleared(
        self, store: RedisItemStore, make_item: MakeItem
    ) -> None:
        item = make_item("MLB1")
        assert await store.put(item, expected=None, pending=b'[{"n": 1}]')
        cached = await store.cached("MLB1")
        assert (cached.snapshot, cached.gone, cached.pending) == (item, False, b'[{"n": 1}]')
        await store.clear_pending("MLB1", b'[{"n": 0}]')  # not these events: kept
        assert (await store.cached("MLB1")).pending == b'[{"n": 1}]'
        await store.clear_pending("MLB1", b'[{"n": 1}]')
        assert (await store.cached("MLB1")).pending is None

    async def test_a_losing_write_leaves_no_events_behind(
        self, store: RedisItemStore, make_item: MakeItem
    ) -> None:
        await store.put(make_item("MLB1"), expected=None)
        stale = make_item("MLB1", minutes=5)
        assert not await store.put(stale, expected=T0 - timedelta(days=1), pending=b"[1]")
        cached = await store.cached("MLB1")
        assert cached.pending is None
        assert cached.snapshot == make_item("MLB1")

    async def test_nothing_cached_reads_as_empty(self, store: RedisItemStore) -> None:
        assert await store.cached("MLB404") == CachedItem(None)


class TestSample:
    async def test_a_sample_is_distinct_live_items_of_the_seller(
        self, store: RedisItemStore, make_item: MakeItem
    ) -> None:
        for n in range(30):
            await store.put(make_item(f"MLB{n}"), expected=None)
        await store.put(make_item("MLB99", seller_id=SELLER + 1), expected=None)
        await store.mark_gone(SELLER, ["MLB0", "MLB1"])
        sample = await store.sample_item_ids(SELLER, 20)
        assert len(sample) == len(set(sample)) == 20
        assert set(sample) <= {f"MLB{n}" for n in range(2, 30)}
        assert await store.sample_item_ids(SELLER + 2, 20) == []
