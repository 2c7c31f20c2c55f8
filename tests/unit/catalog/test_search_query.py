from __future__ import annotations

from decimal import Decimal

import pytest

from peepers_catalog.ports import SearchQuery
from peepers_catalog.search_query import Cursor, decode_cursor, encode_cursor, from_params, validate
from peepers_common.errors import InvalidQuery


def test_a_cursor_decodes_to_what_was_encoded() -> None:
    cursor = Cursor("-price", "19.899999999999999", "MLB1")
    assert decode_cursor(encode_cursor(cursor), "-price") == cursor


@pytest.mark.parametrize(
    "token",
    [
        "",
        "%%%",
        encode_cursor(Cursor("price", "nan", "MLB1")),
        encode_cursor(Cursor("price", "1", "")),
    ],
)
def test_a_cursor_this_api_did_not_make_is_refused(token: str) -> None:
    with pytest.raises(InvalidQuery, match="cursor"):
        decode_cursor(token, "price")


def test_a_cursor_is_only_good_for_its_own_sort() -> None:
    with pytest.raises(InvalidQuery, match="sort"):
        decode_cursor(encode_cursor(Cursor("price", "1", "MLB1")), "sold")


@pytest.mark.parametrize(
    ("query", "mentions"),
    [
        (SearchQuery(1, limit=0), "limit"),
        (SearchQuery(1, limit=201), "limit"),
        (SearchQuery(1, price_min=Decimal(-1)), "price_min"),
        (SearchQuery(1, price_max=Decimal("NaN")), "price_max"),
        (SearchQuery(1, price_min=Decimal(2), price_max=Decimal(1)), "price_min"),
        (SearchQuery(1, status="\x00"), "status"),
        (SearchQuery(1, q="x" * 201), "q"),
    ],
)
def test_queries_that_cannot_be_answered_are_refused(query: SearchQuery, mentions: str) -> None:
    with pytest.raises(InvalidQuery, match=mentions):
        validate(query)


def test_http_params_become_a_checked_query() -> None:
    query = from_params("42", {"q": "café", "price_max": "9.90", "sort": "price", "limit": "10"})
    assert query == SearchQuery(42, q="café", price_max=Decimal("9.90"), sort="price", limit=10)


def test_empty_params_mean_no_filter() -> None:
    assert from_params("42", {"q": "", "status": ""}) == SearchQuery(42)
