"""Users: the caller and public profiles."""

from __future__ import annotations

from aiohttp import web

from peepers_sandbox.errors import (
    json_response,
)
from peepers_sandbox.oauth import AccessToken
from peepers_sandbox.routes.common import (
    path_int,
    state_of,
    token_key,
    token_of,
)


async def users_me(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    return json_response(st.market.private_user(st.market.user(token_of(request).user_id)))


async def users_get(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    user = st.market.user(path_int(request, "user_id"))
    token: AccessToken | None = request.get(token_key)
    if token is not None and token.user_id == user["id"]:
        return json_response(st.market.private_user(user))
    return json_response(st.market.public_user(user))


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/users/me", users_me, name="users:me")
    r.add_get("/users/{user_id}", users_get, name="users:get")
