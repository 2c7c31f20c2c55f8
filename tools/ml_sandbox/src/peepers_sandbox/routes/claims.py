"""Claims (post-purchase)."""

from __future__ import annotations

from aiohttp import web

from peepers_sandbox.errors import (
    SandboxError,
    json_response,
)
from peepers_sandbox.routes.common import (
    int_param,
    path_int,
    state_of,
    token_of,
)


def _claims_forbidden() -> SandboxError:
    return SandboxError(403, "forbidden_error", "The caller is not a player of this claim")


async def claims_get(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    token = token_of(request)
    claim = st.market.claim(path_int(request, "claim_id"))
    if token.user_id not in [p["user_id"] for p in claim["players"]]:
        raise _claims_forbidden()
    return json_response(claim)


async def claims_search(request: web.Request) -> web.StreamResponse:
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
    claims = [
        c
        for c in st.market.claims.values()
        if token.user_id in [p["user_id"] for p in c["players"]]
    ]
    if role := query.get("players.role"):
        claims = [
            c
            for c in claims
            if any(p["role"] == role and p["user_id"] == token.user_id for p in c["players"])
        ]
    for key in ("status", "stage", "type", "resource_id", "id"):
        if value := query.get(key):
            claims = [c for c in claims if str(c[key]) == value]
    limit = int_param(request, "limit", 30, maximum=100)
    offset = int_param(request, "offset", 0)
    if offset + limit >= 10000:
        return json_response(
            {"error": "invalid_params", "message": "offset + limit must be < 10000"}, status=400
        )
    return json_response(
        {
            "paging": {"total": len(claims), "offset": offset, "limit": limit},
            "data": claims[offset : offset + limit],
        }
    )


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/post-purchase/v1/claims/search", claims_search, name="claims:search")
    r.add_get("/post-purchase/v1/claims/{claim_id}", claims_get, name="claims:get")
