from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from peepers_catalog.adapters import RedisItemStore
from peepers_catalog.ports import SearchQuery, SortKey
from peepers_common.errors import InvalidQuery
from tests.integration.catalog.conftest import SELLER, MakeItem


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
    @pytest.mark.parametrize("q", [None, "bolsa"])
    async def test_paging_yields_every_match_once_in_sort_order_ties_by_id(
        self, store: RedisItemStore, make_item: MakeItem, sort: SortKey, q: str | None
    ) -> None:
        items = [
            make_item(
                f"MLB{n:02d}",
                title="Bolsa",
                price=Decimal(n % 3),
                sold_quantity=n % 2,
                minutes=n % 4,
            )
            for n in range(23)
        ]
        for item in items:
            await store.put(item, expected=None)
        field = sort.lstrip("-")
        value = {"price": "price", "updated": "last_updated", "sold": "sold_quantity"}[field]
        expected = sorted(
            items, key=lambda i: (getattr(i, value), i.id), reverse=sort.startswith("-")
        )
        got = await _all_pages(store, SearchQuery(SELLER, q=q, sort=sort, limit=5))
        assert got == [item.id for item in expected]

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
