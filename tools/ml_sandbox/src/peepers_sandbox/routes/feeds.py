"""Missed notifications (``/missed_feeds``)."""

from __future__ import annotations

from aiohttp import web

from peepers_sandbox.errors import (
    bad_request,
    forbidden,
    json_response,
)
from peepers_sandbox.routes.common import (
    int_param,
    state_of,
    token_of,
)


async def missed_feeds(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    token = token_of(request)
    app_id = int_param(request, "app_id")
    if app_id != token.app_id:
        msg = "The token does not belong to this application"
        raise forbidden(msg)
    topic = request.query.get("topic")
    if topic == "items":
        site_id = request.query.get("site_id")
        if not site_id:
            msg = "site_id is required for topic items"
            raise bad_request(msg)
    limit = int_param(request, "limit", 10, maximum=1000)
    offset = int_param(request, "offset", 0)
    feeds = st.notifier.missed_feeds(app_id, topic, offset, limit)
    return json_response({"messages": feeds["messages"]})


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/missed_feeds", missed_feeds, name="missed_feeds:get")
