"""Checking a `SearchQuery` and the opaque cursor that pages through its results (pure).

A cursor names the last item of a page by its sort value and id, so the next page starts
right after it even when items were added or removed in between: paging through every
page yields each matching item exactly once.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, cast, get_args

from peepers_catalog.ports import SearchQuery, SortKey
from peepers_common.errors import InvalidQuery

MAX_LIMIT: Final = 200
SORT_KEYS: Final[tuple[str, ...]] = get_args(SortKey)
# Longer filter values are no status or category ML has; refuse them early.
_MAX_FILTER_CHARS: Final = 64
_MAX_Q_CHARS: Final = 200


@dataclass(frozen=True)
class Cursor:
    """Where the previous page ended: its last item's sort score (as Redis wrote it) and id."""

    sort: str
    score: str
    item_id: str


def encode_cursor(cursor: Cursor) -> str:
    raw = json.dumps([cursor.sort, cursor.score, cursor.item_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(token: str, sort: str) -> Cursor:
    """The cursor in ``token``, which must have been made for the same ``sort``."""
    msg = "cursor is not one this API returned"
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        fields = json.loads(raw)
    except (binascii.Error, ValueError):
        raise InvalidQuery(msg) from None
    if not (
        isinstance(fields, list) and len(fields) == 3 and all(isinstance(f, str) for f in fields)
    ):
        raise InvalidQuery(msg)
    cursor = Cursor(*fields)
    try:
        finite = math.isfinite(float(cursor.score))
    except ValueError:
        finite = False
    if not finite or not cursor.item_id:
        raise InvalidQuery(msg)
    if cursor.sort != sort:
        msg = f"cursor was made for sort={cursor.sort!r}, not {sort!r}"
        raise InvalidQuery(msg)
    return cursor


def validate(query: SearchQuery) -> Cursor | None:
    """Refuse what cannot be answered; the decoded cursor, if any."""
    if query.sort not in SORT_KEYS:
        msg = f"sort must be one of {', '.join(SORT_KEYS)} (got {query.sort!r})"
        raise InvalidQuery(msg)
    if not 1 <= query.limit <= MAX_LIMIT:
        msg = f"limit must be between 1 and {MAX_LIMIT} (got {query.limit})"
        raise InvalidQuery(msg)
    if query.q is not None and len(query.q) > _MAX_Q_CHARS:
        msg = f"q is longer than {_MAX_Q_CHARS} characters"
        raise InvalidQuery(msg)
    for name, value in (("status", query.status), ("category", query.category)):
        if value is not None and not (0 < len(value) <= _MAX_FILTER_CHARS and value.isprintable()):
            msg = f"{name} must be 1 to {_MAX_FILTER_CHARS} printable characters"
            raise InvalidQuery(msg)
    for name, price in (("price_min", query.price_min), ("price_max", query.price_max)):
        if price is not None and not (price.is_finite() and price >= 0):
            msg = f"{name} must be a non-negative number (got {price})"
            raise InvalidQuery(msg)
    if (
        query.price_min is not None
        and query.price_max is not None
        and query.price_min > query.price_max
    ):
        msg = "price_min is above price_max"
        raise InvalidQuery(msg)
    return None if query.cursor is None else decode_cursor(query.cursor, query.sort)


def from_params(seller_id: str, params: Mapping[str, str]) -> SearchQuery:
    """The query an HTTP request asks for (strings in), checked as `validate` does."""
    if not seller_id.isdigit():
        msg = f"{seller_id!r} is not a seller id"
        raise InvalidQuery(msg)
    sort = params.get("sort", "-updated")
    if sort not in SORT_KEYS:
        msg = f"sort must be one of {', '.join(SORT_KEYS)} (got {sort!r})"
        raise InvalidQuery(msg)
    raw_limit = params.get("limit", "50")
    if not raw_limit.isdigit():
        msg = f"limit must be a whole number (got {raw_limit!r})"
        raise InvalidQuery(msg)
    query = SearchQuery(
        seller_id=int(seller_id),
        q=params.get("q") or None,
        status=params.get("status") or None,
        category=params.get("category") or None,
        price_min=_price("price_min", params.get("price_min")),
        price_max=_price("price_max", params.get("price_max")),
        sort=cast("SortKey", sort),
        limit=int(raw_limit),
        cursor=params.get("cursor") or None,
    )
    validate(query)
    return query


def _price(name: str, raw: str | None) -> Decimal | None:
    if not raw:
        return None
    try:
        return Decimal(raw)
    except ArithmeticError:
        msg = f"{name} must be a number (got {raw!r})"
        raise InvalidQuery(msg) from None
