from __future__ import annotations

import math
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import cast

import pytest
import redis.asyncio as aioredis

from bench.catalog_search import naive_search
from peepers_catalog.adapters import RedisItemStore
from peepers_catalog.adapters.redis_store import SET_LIMIT
from peepers_catalog.ports import SearchQuery, SortKey
from peepers_common.errors import InvalidQuery
from peepers_common.events import ItemSnapshot
from peepers_common.namespaces import Namespace
from tests.integration.catalog.conftest import SELLER, MakeItem
from tests.support import unique


async def _ids(store: RedisItemStore, query: SearchQuery) -> list[str]:
    return [item.id for item in (await store.search(query)).items]


async def _all_pages(store: RedisItemStore, query: SearchQuery) -> list[str]:
    ids: list[str] = []
    while True:
        page = await store.search(query)
        ids.extend(item.id for item in page.items)
        if page.next_cursor is None:
            return ids
        query = replace(query, cursor=page.next_cursor)


class TestText:
    @pytest.mark.parametrize(
        ("title", "q"),
        [
            ("Café Torrado", "cafe"),
            ("Ação Social", "acao"),
            ("Camiseta Niño", "nino"),
            ("CAFÉ", "Café"),
            ("Cafeteira", "caf"),
        ],
    )
    async def test_words_match_by_prefix_without_case_or_accents(
        self, store: RedisItemStore, make_item: MakeItem, title: str, q: str
    ) -> None:
        await store.put(make_item("MLB1", title=title), expected=None)
        await store.put(make_item("MLB2", title="Mesa"), expected=None)
        assert await _ids(store, SearchQuery(SELLER, q=q)) == ["MLB1"]

    async def test_every_word_of_the_query_must_match(
        self, store: RedisItemStore, make_item: MakeItem
    ) -> None:
        await store.put(make_item("MLB1", title="Camiseta azul"), expected=None)
        await store.put(make_item("MLB2", title="Camiseta vermelha"), expected=None)
        assert await _ids(store, SearchQuery(SELLER, q="cam azu")) == ["MLB1"]
        assert await _ids(store, SearchQuery(SELLER, q="cam verde")) == []

    async def test_the_sku_is_searched_too(
        self, store: RedisItemStore, make_item: MakeItem
    ) -> None:
        await store.put(make_item("MLB1", sku="TRA-00123"), expected=None)
        await store.put(make_item("MLB2", sku="TRA-00999"), expected=None)
        assert await _ids(store, SearchQuery(SELLER, q="tra-001")) == ["MLB1"]


class TestFilters:
    async def test_filters_combine_and_price_bounds_are_inclusive(
        self, store: RedisItemStore, make_item: MakeItem
    ) -> None:
        prices = ["9.99", "10.00", "15.50", "20.00", "20.01"]
        for n, price in enumerate(prices):
            await store.put(make_item(f"MLB{n}", title="Mesa", price=Decimal(price)), expected=None)
        await store.put(make_item("MLB9", title="Mesa", status="paused"), expected=None)
        query = SearchQuery(
            SELLER,
            q="mesa",
            status="active",
            price_min=Decimal(10),
            price_max=Decimal(20),
            sort="price",
        )
        page = await store.search(query)
        assert [i.id for i in page.items] == ["MLB1", "MLB2", "MLB3"]
        assert page.total == 3
        no_text = await store.search(replace(query, q=None))
        assert [i.id for i in no_text.items] == ["MLB1", "MLB2", "MLB3"]

    async def test_each_facet_counts_the_filtered_set_ignoring_its_own_filter(
        self, store: RedisItemStore, make_item: MakeItem
    ) -> None:
        layout = [("active", "A"), ("active", "A"), ("active", "B"), ("paused", "A")]
        for n, (status, category) in enumerate(layout):
            await store.put(
                make_item(f"MLB{n}", title="Bolsa", status=status, category_id=category),
                expected=None,
            )
        for q in (None, "bolsa"):
            page = await store.search(SearchQuery(SELLER, q=q, status="active", category="A"))
            assert page.total == 2
            assert page.facets == {
                "status": {"active": 2, "paused": 1},
                "category": {"A": 2, "B": 1},
            }


class TestSortAndPaging:
    @pytest.mark.parametrize("sort", ["price", "-price", "updated", "-updated", "sold", "-sold"])
    @pytest.mark.parametrize(
        ("every", "q", "status"),
        [(1, None, None), (1, "bolsa", None), (20, "bolsa", None), (20, None, "paused")],
    )
    async def test_paging_yields_every_match_once_in_sort_order_ties_by_id(
        self,
        store: RedisItemStore,
        make_item: MakeItem,
        sort: SortKey,
        every: int,
        q: str | None,
        status: str | None,
    ) -> None:
        # every=20: so few matches that a page picks them from the matches, not the order.
        items = [
            make_item(
                f"MLB{n:03d}",
                title="Bolsa" if n % every == 0 else "Mesa",
                status="paused" if n % every == 0 else "active",
                price=Decimal(n % 3),
                sold_quantity=n % 2,
                minutes=n % 4,
            )
            for n in range(23 * every)
        ]
        for item in items:
            await store.put(item, expected=None)
        field = sort.lstrip("-")
        value = {"price": "price", "updated": "last_updated", "sold": "sold_quantity"}[field]
        expected = sorted(
            (i for i in items if i.status == "paused"),
            key=lambda i: (getattr(i, value), i.id),
            reverse=sort.startswith("-"),
        )
        query = SearchQuery(SELLER, q=q, status=status, sort=sort, limit=5)
        assert await _all_pages(store, query) == [item.id for item in expected]
        assert await _ids(store, replace(query, limit=4)) == [i.id for i in expected[:4]]

    @pytest.mark.parametrize("status", ["active", "paused"])
    async def test_filtered_pages_cover_every_match_once(
        self, store: RedisItemStore, make_item: MakeItem, status: str
    ) -> None:
        for n in range(40):
            state = "paused" if n % 8 == 0 else "active"
            await store.put(make_item(f"MLB{n:02d}", status=state, minutes=n % 3), expected=None)
        got = await _all_pages(store, SearchQuery(SELLER, status=status, sort="updated", limit=3))
        expected_count = 5 if status == "paused" else 35
        assert len(got) == len(set(got)) == expected_count

    async def test_a_page_resumes_after_its_cursor_item_even_when_that_item_left(
        self, store: RedisItemStore, make_item: MakeItem
    ) -> None:
        for n in range(6):
            await store.put(make_item(f"MLB{n}", price=Decimal(5)), expected=None)
        first = await store.search(SearchQuery(SELLER, sort="price", limit=3))
        await store.mark_gone(SELLER, [first.items[-1].id])
        rest = await store.search(SearchQuery(SELLER, sort="price", cursor=first.next_cursor))
        assert [i.id for i in first.items] + [i.id for i in rest.items] == [
            "MLB0",
            "MLB1",
            "MLB2",
            "MLB3",
            "MLB4",
            "MLB5",
        ]

    async def test_a_cursor_for_another_sort_is_refused(
        self, store: RedisItemStore, make_item: MakeItem
    ) -> None:
        for n in range(3):
            await store.put(make_item(f"MLB{n}"), expected=None)
        page = await store.search(SearchQuery(SELLER, sort="price", limit=1))
        with pytest.raises(InvalidQuery, match="sort"):
            await store.search(SearchQuery(SELLER, sort="-price", cursor=page.next_cursor))


async def test_a_cached_text_result_is_not_served_after_the_index_changed(
    store: RedisItemStore, make_item: MakeItem
) -> None:
    await store.put(make_item("MLB1", title="Café"), expected=None)
    assert (await store.search(SearchQuery(SELLER, q="cafe"))).total == 1
    await store.put(make_item("MLB2", title="Cafeteira"), expected=None)
    assert await _ids(store, SearchQuery(SELLER, q="cafe", sort="updated")) == ["MLB1", "MLB2"]


def _expected(
    items: dict[str, ItemSnapshot], query: SearchQuery
) -> tuple[list[str], int, dict[str, dict[str, int]]]:
    """What a search must answer: the bench's baseline, filtering a list in Python."""
    return naive_search(list(items.values()), replace(query, sort="price", limit=len(items)))


async def _answer(
    store: RedisItemStore, query: SearchQuery
) -> tuple[list[str], int, dict[str, dict[str, int]]]:
    page = await store.search(replace(query, sort="price", limit=200))
    ids = [item.id for item in page.items]
    if page.next_cursor is not None:
        ids += await _all_pages(store, replace(query, sort="price", cursor=page.next_cursor))
    facets = {name: dict(counts) for name, counts in page.facets.items()}
    return ids, page.total, facets


class TestIndexStaysExact:
    """The precomputed prefix postings, word postings and price buckets against a model."""

    WORDS = ("ca", "cafe", "cafeteira", "caneca", "c", "mesa", "me", "mesinha", "azul", "az")

    async def test_after_puts_updates_gone_marks_and_returns(
        self, store: RedisItemStore, make_item: MakeItem
    ) -> None:
        rng = random.Random(11)
        live: dict[str, ItemSnapshot] = {}
        versions: dict[str, ItemSnapshot] = {}

        def random_item(item_id: str, minutes: int) -> ItemSnapshot:
            return make_item(
                item_id,
                title=" ".join(rng.sample(self.WORDS, 2)),
                sku=rng.choice([None, f"CA-{rng.randint(0, 999):03d}"]),
                price=Decimal(rng.randint(0, 3000)) / 100,
                status=rng.choice(["active", "paused"]),
                category_id=rng.choice(["A", "B", None]),
                minutes=minutes,
            )

        queries = [
            SearchQuery(SELLER, q=q)
            for q in ("c", "ca", "caf", "cafe", "cafet", "m", "mes", "mesi", "az", "ca-0", "1")
        ] + [
            SearchQuery(SELLER, q="ca", status="active", category="A"),
            SearchQuery(SELLER, q="me azu", price_min=Decimal("5.5")),
            SearchQuery(SELLER, price_min=Decimal("3.20"), price_max=Decimal("3.35")),
            SearchQuery(SELLER, price_max=Decimal(12), status="paused"),
            SearchQuery(SELLER, price_min=Decimal(0), price_max=Decimal(30), category="B"),
        ]
        for step in range(4):
            for n in range(40):
                item_id = f"MLB{n:02d}"
                roll = rng.random()
                if item_id in versions and roll < 0.25:
                    await store.mark_gone(SELLER, [item_id])
                    live.pop(item_id, None)
                    continue
                item = random_item(item_id, minutes=step)
                previous = versions.get(item_id)
                expected = None if previous is None or item_id not in live else previous
                assert await store.put(
                    item, expected=None if expected is None else expected.last_updated
                )
                versions[item_id] = live[item_id] = item
            for query in queries:
                assert await _answer(store, query) == _expected(live, query), (step, query)
            assert await store.seller_item_ids(SELLER) == set(live)

    async def test_a_posting_grown_past_the_set_limit_stays_exact_as_it_shrinks(
        self, store: RedisItemStore, make_item: MakeItem
    ) -> None:
        count = SET_LIMIT + 20
        items = {
            f"MLB{n:04d}": make_item(f"MLB{n:04d}", title=f"Garrafa {n}", price=Decimal(n % 97))
            for n in range(count)
        }
        for item in items.values():
            await store.put(item, expected=None)
        query = SearchQuery(SELLER, q="garrafa", price_max=Decimal(50))
        assert await _answer(store, query) == _expected(items, query)
        gone = [f"MLB{n:04d}" for n in range(0, count, 2)]
        await store.mark_gone(SELLER, gone)
        for item_id in gone:
            del items[item_id]
        for q in ("garrafa", "gar", "g", "1"):
            query = SearchQuery(SELLER, q=q)
            assert await _answer(store, query) == _expected(items, query)
        await store.mark_gone(SELLER, list(items))
        assert (await store.search(SearchQuery(SELLER, q="garrafa"))).total == 0
        assert (await store.search(SearchQuery(SELLER, q="garr"))).total == 0
        await store.put(make_item("MLB9999", title="Garrafa"), expected=None)
        assert await _ids(store, SearchQuery(SELLER, q="garrafa")) == ["MLB9999"]

    @pytest.mark.parametrize(
        ("low", "high"),
        [
            ("1.00", "1.01"),
            ("0", "0"),
            ("0.99", "100"),
            (None, "7.77"),
            ("7.77", None),
            ("49.99", "50.01"),
            ("10", "10.5"),
            ("20.1", "1000"),
        ],
    )
    async def test_price_ranges_are_exact_at_any_bound(
        self, store: RedisItemStore, make_item: MakeItem, low: str | None, high: str | None
    ) -> None:
        rng = random.Random(5)
        items = {}
        for n in range(150):
            price = Decimal(rng.choice([rng.randint(0, 12000), 100, 777, 1000, 1050])) / 100
            items[f"MLB{n:03d}"] = make_item(f"MLB{n:03d}", title="Vaso", price=price)
        for item in items.values():
            await store.put(item, expected=None)
        for q in (None, "vaso"):
            query = SearchQuery(
                SELLER,
                q=q,
                price_min=None if low is None else Decimal(low),
                price_max=None if high is None else Decimal(high),
            )
            assert await _answer(store, query) == _expected(items, query)

    async def test_an_item_moved_to_another_seller_leaves_the_first_index(
        self, store: RedisItemStore, make_item: MakeItem
    ) -> None:
        first = make_item("MLB1", title="Cafeteira")
        await store.put(first, expected=None)
        await store.put(make_item("MLB2", title="Mesa"), expected=None)
        moved = make_item("MLB1", title="Cafeteira", seller_id=SELLER + 1, minutes=1)
        assert await store.put(moved, expected=first.last_updated)
        assert (await store.search(SearchQuery(SELLER, q="caf"))).total == 0
        assert (await store.search(SearchQuery(SELLER))).facets["status"] == {"active": 1}
        assert await _ids(store, SearchQuery(SELLER + 1, q="cafet")) == ["MLB1"]
        assert await store.seller_item_ids(SELLER) == {"MLB2"}


SORTS: tuple[SortKey, ...] = ("price", "-price", "updated", "-updated", "sold", "-sold")


def _bucket(field: str, score: float) -> int:
    """The score bucket redis_store.py files an item under, for a sort field."""
    if field == "updated":
        return math.floor(score / 86_400_000_000)
    return 0 if score <= 0 else math.floor(math.log(1 + score) * 20)


def _scores(item: ItemSnapshot) -> dict[str, float]:
    micros = (item.last_updated - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return {"price": float(item.price), "updated": micros, "sold": item.sold_quantity}


class TestSortBuckets:
    """First pages taken from the score buckets of the sort key, against a model."""

    async def test_buckets_and_first_pages_stay_exact_as_items_move_and_leave(
        self,
        catalog_redis: aioredis.Redis,
        redis_admin: aioredis.Redis,
        make_item: MakeItem,
    ) -> None:
        namespace = Namespace("catalog", scope=unique("catalog"))
        store = RedisItemStore(catalog_redis, namespace)
        seller = namespace.key("seller", SELLER)
        rng = random.Random(3)
        live: dict[str, ItemSnapshot] = {}

        def random_item(n: int, day: int) -> ItemSnapshot:
            return make_item(
                f"MLB{n:03d}",
                title="Vaso",
                # Ties in every sort key, so the id order inside a bucket matters.
                price=Decimal(rng.choice([0, 1, 250, 999, rng.randint(0, 50_000)])) / 100,
                sold_quantity=rng.choice([0, 0, 1, 2, 40, rng.randint(0, 5000)]),
                status=rng.choice(["active", "paused", "closed"]),
                category_id=rng.choice(["A", "B", "C", "D", "E", None]),
                minutes=(day + rng.randint(0, 40)) * 1440
                + rng.choice([0, 0, rng.randint(0, 1439)]),
            )

        for n in range(400):
            item = random_item(n, 0)
            assert await store.put(item, expected=None)
            live[item.id] = item
        queries = [
            SearchQuery(SELLER, status="paused", category="B"),
            SearchQuery(SELLER, category="C"),
            SearchQuery(SELLER, q="vaso", status="closed", price_min=Decimal(1)),
            SearchQuery(SELLER, price_min=Decimal("2.50"), price_max=Decimal(300)),
        ]
        for step in range(3):
            assert await self._buckets(redis_admin, seller) == self._model(live)
            assert int(await redis_admin.get(f"{seller}:sorted") or 0) == len(live)
            for query in queries:
                for sort in SORTS:
                    for limit in (1, 3, 7):
                        asked = replace(query, sort=sort, limit=limit)
                        expected, total, facets = naive_search(list(live.values()), asked)
                        page = await store.search(asked)
                        got = ([i.id for i in page.items], page.total, page.facets)
                        assert got == (expected, total, facets), (step, asked)
                    every = naive_search(list(live.values()), replace(query, sort=sort, limit=500))
                    assert await _all_pages(store, replace(query, sort=sort, limit=7)) == every[0]
            # Move a third between buckets, mark a tenth gone, bring some back.
            for item_id in rng.sample(sorted(live), len(live) // 3):
                old = live[item_id]
                new = random_item(int(item_id[3:]), step + 1)
                assert await store.put(new, expected=old.last_updated)
                live[item_id] = new
            gone = rng.sample(sorted(live), len(live) // 10)
            assert await store.mark_gone(SELLER, gone) == len(gone)
            for item_id in gone[::2]:
                item = random_item(int(item_id[3:]), step + 2)
                assert await store.put(item, expected=None)
                live[item_id] = item
            for item_id in gone[1::2]:
                del live[item_id]

    @staticmethod
    def _model(live: dict[str, ItemSnapshot]) -> dict[str, dict[int, set[str]]]:
        model: dict[str, dict[int, set[str]]] = {
            field: {} for field in ("price", "updated", "sold")
        }
        for item in live.values():
            for field, score in _scores(item).items():
                model[field].setdefault(_bucket(field, score), set()).add(item.id)
        return model

    @staticmethod
    async def _buckets(redis: aioredis.Redis, seller: str) -> dict[str, dict[int, set[str]]]:
        """Every sort key's bucket bitmaps, as item ids."""
        members = cast("dict[bytes, bytes]", await redis.hgetall(f"{seller}:docs"))
        docs = {int(n): member.split(b"\0")[0].decode() for n, member in members.items()}
        out: dict[str, dict[int, set[str]]] = {}
        for field in ("price", "updated", "sold"):
            listed = f"{seller}:buckets" if field == "price" else f"{seller}:buckets:{field}"
            out[field] = {}
            for b in cast("list[bytes]", await redis.zrange(listed, 0, -1)):
                bitmap = cast("bytes", await redis.get(f"{seller}:bits:{field}:{int(b)}") or b"")
                out[field][int(b)] = {
                    docs[i * 8 + j]
                    for i, byte in enumerate(bitmap)
                    for j in range(8)
                    if byte & (128 >> j)
                }
        return out
