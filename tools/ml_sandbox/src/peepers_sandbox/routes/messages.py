"""Post-sale messages."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from peepers_sandbox.errors import (
    bad_request,
    forbidden,
    json_response,
    not_found,
)
from peepers_sandbox.market.messages import SELLER_REASONS
from peepers_sandbox.oauth import AccessToken
from peepers_sandbox.routes.common import (
    int_param,
    path_int,
    require_tag,
    state_of,
    token_key,
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
            "conversation_status": st.market.conversation_status(pack_id),
            "messages": [st.market.messages[m] for m in page],
        }
    )


async def _message_body(request: web.Request, max_len: int) -> dict[str, Any]:
    try:
        payload = await request.json()
    except ValueError:
        msg = "Body must be JSON"
        raise bad_request(msg, "invalid_body") from None
    if not isinstance(payload, dict):
        msg = "Body must be a JSON object"
        raise bad_request(msg, "invalid_body")
    text = payload.get("text")
    if not isinstance(text, str) or not text:
        msg = "text is required"
        raise bad_request(msg, "invalid_body")
    if len(text) > max_len:
        msg = f"text exceeds {max_len} characters"
        raise bad_request(msg, "invalid_body")
    return payload


def _user_id_of(payload: dict[str, Any], key: str) -> str | None:
    party = payload.get(key)
    if party is None:
        return None
    return str(party.get("user_id", "")) if isinstance(party, dict) else ""


async def messages_post(request: web.Request) -> web.StreamResponse:
    """FACTS.md §5.2: ``from`` must be the caller and ``to`` the other party.

    A blocked conversation answers 403 ``blocked_conversation``; a seller's first message
    needs the action guide (403 ``seller_cannot_initiate``).
    """
    st = state_of(request)
    require_tag(request)
    token = token_of(request)
    pack_id, seller_id = path_int(request, "pack_id"), path_int(request, "seller_id")
    pack_seller, pack_buyer = _pack_for(st, token, pack_id, seller_id)
    payload = await _message_body(request, st.config.api.message_text_max_len)
    if _user_id_of(payload, "from") != str(token.user_id):
        msg = "from.user_id must be the caller"
        raise forbidden(msg)
    counterpart = pack_buyer if token.user_id == pack_seller else pack_seller
    to = _user_id_of(payload, "to")
    if to is not None and to != str(counterpart):
        msg = f"to.user_id must be the other party of the conversation ({counterpart})"
        raise bad_request(msg, "invalid_to_user")
    role = "seller" if token.user_id == pack_seller else "buyer"
    message = st.market.new_message(pack_id=pack_id, text=payload["text"], from_role=role)
    return json_response(message, status=201)


async def action_guide_post(request: web.Request) -> web.StreamResponse:
    """A seller starts a conversation with a reason: ``{"option_id", "text"}``."""
    st = state_of(request)
    require_tag(request)
    token = token_of(request)
    pack_id = path_int(request, "pack_id")
    pack_seller, _ = st.market.pack_parties(pack_id)
    if token.user_id != pack_seller:
        msg = "Only the seller of the pack can use the action guide"
        raise forbidden(msg)
    payload = await _message_body(request, st.config.api.message_text_max_len)
    option = payload.get("option_id")
    if option not in SELLER_REASONS:
        msg = f"option_id must be one of {', '.join(SELLER_REASONS)}"
        raise bad_request(msg, "invalid_option")
    message = st.market.new_message(
        pack_id=pack_id, text=payload["text"], from_role="seller", reason=str(option)
    )
    return json_response(message, status=201)


async def unread_get(request: web.Request) -> web.StreamResponse:
    """FACTS.md §5.2: unread conversations per role; no token is a 400 here."""
    st = state_of(request)
    require_tag(request)
    token = request.get(token_key)
    if token is None:
        msg = "authorization value not present"
        raise bad_request(msg, "invalid_token")
    role = request.query.get("role", "seller")
    if role not in ("seller", "buyer"):
        msg = "role must be seller or buyer"
        raise bad_request(msg, "invalid_role")
    return json_response(
        {"user_id": token.user_id, "results": st.market.unread_for(token.user_id, role)}
    )


async def unread_pack(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    require_tag(request)
    token = token_of(request)
    pack_id, seller_id = path_int(request, "pack_id"), path_int(request, "seller_id")
    _pack_for(st, token, pack_id, seller_id)
    count = st.market.unread.get(token.user_id, {}).get(pack_id, 0)
    return json_response({"resource": f"/packs/{pack_id}/sellers/{seller_id}", "count": count})


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
    r.add_post(
        "/messages/action_guide/packs/{pack_id}/option",
        action_guide_post,
        name="messages_write:action_guide",
    )
    r.add_get("/messages/unread", unread_get, name="messages:unread")
    r.add_get(
        "/messages/unread/packs/{pack_id}/sellers/{seller_id}",
        unread_pack,
        name="messages:unread_pack",
    )
    r.add_get("/messages/{message_id}", messages_get, name="messages:get")
