"""Post-sale messages."""

from __future__ import annotations

from aiohttp import web

from peepers_sandbox.errors import (
    bad_request,
    forbidden,
    json_response,
    not_found,
)
from peepers_sandbox.oauth import AccessToken
from peepers_sandbox.routes.common import (
    int_param,
    path_int,
    require_tag,
    state_of,
    token_of,
)
from peepers_sandbox.state import SandboxState


def _pack_for(
    st: SandboxState, token: AccessToken, pack_id: int, seller_id: int
) -> tuple[int, int]:
    pack_seller, pack_buyer = st.market.pack_parties(pack_id)
    if seller_id != pack_seller:
        msg = f"Pack {pack_id} not found for seller {seller_id}"
        raise not_found(msg)
    if token.user_id not in (pack_seller, pack_buyer):
        msg = "The caller is not a party of this conversation"
        raise forbidden(msg)
    return pack_seller, pack_buyer


async def messages_pack(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    require_tag(request)
    token = token_of(request)
    pack_id, seller_id = path_int(request, "pack_id"), path_int(request, "seller_id")
    _pack_for(st, token, pack_id, seller_id)
    ids = st.market.messages_by_pack[pack_id]
    limit = int_param(request, "limit", 10, maximum=100)
    offset = int_param(request, "offset", 0)
    page = ids[offset : offset + limit]
    if request.query.get("mark_as_read", "true") != "false":
        for message_id in page:
            st.market.mark_read(message_id, token.user_id)
    return json_response(
        {
            "paging": {"limit": limit, "offset": offset, "total": len(ids)},
            "conversation_status": {
                "path": f"/packs/{pack_id}/seller/{seller_id}",
                "status": "active",
                "substatus": None,
                "status_date": None,
                "status_update_allowed": False,
                "claim_id": None,
                "shipping_id": None,
            },
            "messages": [st.market.messages[m] for m in page],
        }
    )


async def messages_post(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    require_tag(request)
    token = token_of(request)
    pack_id, seller_id = path_int(request, "pack_id"), path_int(request, "seller_id")
    pack_seller, _ = _pack_for(st, token, pack_id, seller_id)
    try:
        payload = await request.json()
    except ValueError:
        msg = "Body must be JSON"
        raise bad_request(msg, "invalid_body") from None
    text = payload.get("text") if isinstance(payload, dict) else None
    if not isinstance(text, str) or not text:
        msg = "text is required"
        raise bad_request(msg, "invalid_body")
    if len(text) > st.config.api.message_text_max_len:
        msg = f"text exceeds {st.config.api.message_text_max_len} characters"
        raise bad_request(msg, "invalid_body")
    sender = str(payload.get("from", {}).get("user_id", ""))
    if sender != str(token.user_id):
        msg = "from.user_id must be the caller"
        raise forbidden(msg)
    role = "seller" if token.user_id == pack_seller else "buyer"
    message = st.market.new_message(pack_id=pack_id, text=text, from_role=role)
    return json_response(message, status=201)


async def messages_get(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    require_tag(request)
    token = token_of(request)
    message_id = request.match_info["message_id"]
    message = st.market.messages.get(message_id)
    if message is None:
        msg = f"The message with id: {message_id} could not be retrieved from storage"
        raise not_found(msg)
    seller_id, buyer_id = st.market.pack_parties(st.market.message_pack[message_id])
    if token.user_id not in (seller_id, buyer_id):
        msg = "The caller is not a party of this conversation"
        raise forbidden(msg)
    if st.config.api.message_by_id_shape == "bare":
        return json_response(message)
    return json_response({"paging": None, "conversation_status": None, "messages": [message]})


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/messages/packs/{pack_id}/sellers/{seller_id}", messages_pack, name="messages:pack")
    r.add_post(
        "/messages/packs/{pack_id}/sellers/{seller_id}", messages_post, name="messages_write:post"
    )
    r.add_get("/messages/{message_id}", messages_get, name="messages:get")
