"""Claims (post-purchase), with the claims area's error bodies (FACTS.md §5.3)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from peepers_sandbox.errors import SandboxError, json_response
from peepers_sandbox.routes.common import (
    int_param,
    parse_dt,
    path_int,
    state_of,
    token_of,
)

_SORTABLE = ("date_created", "last_updated", "id")
_RANGEABLE = ("date_created", "last_updated")


def _claims_forbidden() -> SandboxError:
    return SandboxError(403, "forbidden_error", "The caller is not a player of this claim")


def _claim_for(request: web.Request) -> dict[str, Any]:
    st = state_of(request)
    token = token_of(request)
    claim = st.market.claim(path_int(request, "claim_id"))
    if token.user_id not in [p["user_id"] for p in claim["players"]]:
        raise _claims_forbidden()
    return claim


async def claims_get(request: web.Request) -> web.StreamResponse:
    return json_response(_claim_for(request))


async def claims_detail(request: web.Request) -> web.StreamResponse:
    return json_response(state_of(request).market.claim_detail(_claim_for(request)))


async def claims_messages(request: web.Request) -> web.StreamResponse:
    claim = _claim_for(request)
    return json_response(state_of(request).market.claim_messages[claim["id"]])


class _InvalidParams(Exception):
    """A search the claims area refuses with ``{"error": "invalid_params", "message"}``."""


def _sorted(claims: list[dict[str, Any]], sort: str | None) -> list[dict[str, Any]]:
    if not sort:
        return claims
    field, _, direction = sort.partition(":")
    if field not in _SORTABLE or direction not in ("asc", "desc"):
        msg = f"sort must be one of {', '.join(_SORTABLE)} with :asc or :desc"
        raise _InvalidParams(msg)
    key: Callable[[dict[str, Any]], Any] = (
        (lambda c: c["id"]) if field == "id" else (lambda c: parse_dt(c[field]))
    )
    return sorted(claims, key=key, reverse=direction == "desc")


def _in_range(claims: list[dict[str, Any]], spec: str | None) -> list[dict[str, Any]]:
    """``range=date_created:after:2024-01-01T00:00:00.000-03:00,before:…``."""
    if not spec:
        return claims
    field, _, bounds = spec.partition(":")
    if field not in _RANGEABLE or not bounds:
        msg = f"range must start with one of {', '.join(_RANGEABLE)}"
        raise _InvalidParams(msg)
    for bound in bounds.split(","):
        side, _, value = bound.partition(":")
        if side not in ("after", "before") or not value:
            msg = "range bounds are after:<date> and before:<date>"
            raise _InvalidParams(msg)
        try:
            limit = parse_dt(value)
        except SandboxError:
            msg = f"Invalid date in range: {value}"
            raise _InvalidParams(msg) from None
        if side == "after":
            claims = [c for c in claims if parse_dt(c[field]) >= limit]
        else:
            claims = [c for c in claims if parse_dt(c[field]) <= limit]
    return claims


async def claims_search(request: web.Request) -> web.StreamResponse:
    try:
        return await _search(request)
    except _InvalidParams as exc:
        return json_response({"error": "invalid_params", "message": str(exc)}, status=400)


async def _search(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    token = token_of(request)
    query = request.query
    player = query.get("players.user_id")
    if not player and not query.get("resource_id") and not query.get("id"):
        return json_response(
            {"error": "invalid_query", "message": "At least one filter is required"}, status=400
        )
    if player and player != str(token.user_id):
        raise _claims_forbidden()
    market = st.market
    ids = [
        *market.claims_by_seller.get(token.user_id, []),
        *market.claims_by_buyer.get(token.user_id, []),
    ]
    claims = [market.claims[c] for c in ids]
    if role := query.get("players.role"):
        claims = [
            c
            for c in claims
            if any(p["role"] == role and p["user_id"] == token.user_id for p in c["players"])
        ]
    for key in ("status", "stage", "type", "resource_id", "id", "reason_id"):
        if value := query.get(key):
            claims = [c for c in claims if str(c[key]) == value]
    try:
        limit = int_param(request, "limit", 30, maximum=100)
        offset = int_param(request, "offset", 0)
    except SandboxError as exc:
        raise _InvalidParams(exc.message) from None
    if offset + limit >= 10000:
        msg = "offset + limit must be < 10000"
        raise _InvalidParams(msg)
    claims = _sorted(_in_range(claims, query.get("range")), query.get("sort"))
    return json_response(
        {
            "paging": {"total": len(claims), "offset": offset, "limit": limit},
            "data": claims[offset : offset + limit],
        }
    )


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/post-purchase/v1/claims/search", claims_search, name="claims:search")
    r.add_get("/post-purchase/v1/claims/{claim_id}/detail", claims_detail, name="claims:detail")
    r.add_get(
        "/post-purchase/v1/claims/{claim_id}/messages", claims_messages, name="claims:messages"
    )
    r.add_get("/post-purchase/v1/claims/{claim_id}", claims_get, name="claims:get")
