"""Fuzzed query strings on every search endpoint, and fuzzed write bodies, never get a 5xx.

Whatever the query, the answer is a JSON body: a page, or ML's 4xx error body (the
claims area's ``{"error", "message"}`` shape for claims search).
"""

from __future__ import annotations

from typing import Any

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peepers_sandbox import DEMO_SELLER_ID
from tests.sandbox.support import bearer

SEARCHES: dict[str, tuple[str, ...]] = {
    f"/users/{DEMO_SELLER_ID}/items/search": (
        "status",
        "sku",
        "seller_sku",
        "orders",
        "offset",
        "limit",
        "search_type",
        "scroll_id",
    ),
    "/orders/search": (
        "seller",
        "buyer",
        "order.status",
        "item",
        "tags",
        "tags.not",
        "q",
        "order.date_created.from",
        "order.date_created.to",
        "order.date_closed.from",
        "order.date_closed.to",
        "order.date_last_updated.from",
        "order.date_last_updated.to",
        "mediations.stage",
        "mediations.status",
        "feedback.status",
        "feedback.sale.rating",
        "feedback.sale.fulfilled",
        "feedback.purchase.rating",
        "feedback.purchase.fulfilled",
        "sort",
        "offset",
        "limit",
    ),
    "/questions/search": (
        "seller_id",
        "item",
        "from",
        "status",
        "sort_fields",
        "sort_types",
        "api_version",
        "offset",
        "limit",
    ),
    "/post-purchase/v1/claims/search": (
        "players.user_id",
        "players.role",
        "resource_id",
        "id",
        "status",
        "stage",
        "type",
        "reason_id",
        "sort",
        "range",
        "offset",
        "limit",
    ),
    "/messages/unread": ("role", "tag"),
}
_SELF = str(DEMO_SELLER_ID)

values = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.sampled_from(
        [
            _SELF,
            "",
            "0",
            "101",
            "9999",
            "2026-12-01",
            "2026-12-01T00:00:00.000-00:00",
            "2026-13-45",
            "date_created:desc",
            "date_created:after:2026-12-01T00:00:00.000-03:00,before:bogus",
            "paid,cancelled",
            "ANSWERED",
            "post_sale",
            "scan",
            "٣",
            "²",
            "1e5",
            "nan",
        ]
    ),
)


def queries(params: tuple[str, ...]) -> st.SearchStrategy[dict[str, str]]:
    keys = st.one_of(st.sampled_from(params), st.text(min_size=1, max_size=12))
    return st.dictionaries(keys, values, max_size=6)


async def assert_no_5xx(http: aiohttp.ClientSession, token: str, path: str, query: Any) -> None:
    async with http.get(path, params=query, headers=bearer(token)) as resp:
        body = await resp.read()
        assert resp.status < 500, (path, query, body[:300])
        assert resp.content_type == "application/json", (path, query, body[:300])


FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(
    path_query=st.sampled_from(sorted(SEARCHES)).flatmap(
        lambda path: st.tuples(st.just(path), queries(SEARCHES[path]))
    )
)
async def test_no_search_query_gets_a_5xx(http, seller_token, path_query) -> None:
    path, query = path_query
    await assert_no_5xx(http, seller_token, path, query)


@FUZZ
@given(
    path=st.sampled_from(sorted(SEARCHES)),
    seeded=st.dictionaries(
        st.sampled_from(["seller", "seller_id", "players.user_id"]), st.just(_SELF)
    ),
    query=st.sampled_from(sorted({p for ps in SEARCHES.values() for p in ps})).flatmap(
        lambda key: st.dictionaries(st.just(key), values, min_size=1)
    ),
)
async def test_a_valid_search_with_one_fuzzed_filter_gets_no_5xx(
    http, seller_token, path, seeded, query
) -> None:
    # The caller filter is right, so the fuzzed value reaches the filter code itself.
    await assert_no_5xx(http, seller_token, path, {**seeded, **query, "tag": "post_sale"})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
BODY_KEYS = ("question_id", "text", "from", "to", "user_id", "option_id", "attachments")


@FUZZ
@given(
    target=st.sampled_from(["answers", "messages", "action_guide"]),
    body=st.one_of(json_values, st.dictionaries(st.sampled_from(BODY_KEYS), json_values)),
)
async def test_no_write_body_gets_a_5xx(sandbox, http, seller_token, target, body) -> None:
    market = sandbox.state.market
    pack_id = market.orders[market.orders_by_seller[DEMO_SELLER_ID][-1]]["pack_id"]
    path = {
        "answers": "/answers",
        "messages": f"/messages/packs/{pack_id}/sellers/{DEMO_SELLER_ID}?tag=post_sale",
        "action_guide": f"/messages/action_guide/packs/{pack_id}/option?tag=post_sale",
    }[target]
    async with http.post(path, json=body, headers=bearer(seller_token)) as resp:
        text = await resp.read()
        assert resp.status < 500, (path, body, text[:300])
        assert resp.content_type == "application/json"
