"""Questions and answers."""

from __future__ import annotations

from aiohttp import web

from peepers_sandbox.errors import (
    bad_request,
    forbidden,
    json_response,
)
from peepers_sandbox.market.questions import QUESTION_STATUSES
from peepers_sandbox.routes.common import (
    int_param,
    path_int,
    state_of,
    token_of,
)


async def questions_get(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    token_of(request)
    return json_response(st.market.question(path_int(request, "question_id")))


async def questions_search(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    token = token_of(request)
    query = request.query
    market = st.market
    if seller := query.get("seller_id"):
        if seller != str(token.user_id):
            msg = "The caller is not the seller"
            raise forbidden(msg)
        questions = [market.questions[q] for q in market.questions_by_seller.get(token.user_id, [])]
    elif item_id := query.get("item"):
        questions = [market.questions[q] for q in market.questions_by_item.get(item_id, [])]
    elif from_id := query.get("from"):
        buyer = int(from_id) if from_id.isascii() and from_id.isdigit() else -1
        questions = [market.questions[q] for q in market.questions_by_buyer.get(buyer, [])]
    else:
        msg = "Search needs seller_id, item or from"
        raise bad_request(msg, "invalid_params")
    if status := query.get("status"):
        questions = [q for q in questions if q["status"] == status.upper()]
    fields = [f for f in query.get("sort_fields", "date_created").split(",") if f]
    mapping = {
        "item_id": "item_id",
        "seller_id": "seller_id",
        "from_id": "buyer_id",
        "date_created": "date_created",
    }
    if any(f not in mapping for f in fields):
        msg = f"Invalid sort_fields: {fields}"
        raise bad_request(msg)
    descending = query.get("sort_types", "ASC").upper() == "DESC"
    questions.sort(key=lambda q: tuple(q[mapping[f]] for f in fields), reverse=descending)
    limit = int_param(request, "limit", 50, maximum=100)
    offset = int_param(request, "offset", 0)
    cap = st.config.api.questions_search_max_offset
    if offset + limit > cap:
        # FACTS.md §5.1: "Scan for >1000"; the sandbox refuses like the items search.
        msg = f"Offset and limit exceed {cap} results"
        raise bad_request(msg, "invalid_offset")
    return json_response(
        {
            "total": len(questions),
            "limit": limit,
            "questions": questions[offset : offset + limit],
            "filters": {
                "limit": limit,
                "offset": offset,
                "api_version": query.get("api_version", "4"),
                "is_admin": False,
                "sorts": [],
                "caller": token.user_id,
                "seller": str(token.user_id),
            },
            "available_filters": [
                {
                    "id": "status",
                    "name": "Status",
                    "type": "text",
                    "values": list(QUESTION_STATUSES),
                }
            ],
            "available_sorts": ["item_id", "from_id", "date_created", "seller_id"],
        }
    )


async def answers_post(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    token = token_of(request)
    try:
        payload = await request.json()
    except ValueError:
        msg = "Body must be JSON"
        raise bad_request(msg, "invalid_post_body") from None
    if (
        not isinstance(payload, dict)
        or set(payload) - {"question_id", "text"}
        or "question_id" not in payload
    ):
        msg = "Valid attributes: [question_id, text]"
        raise bad_request(msg, "invalid_post_body")
    try:
        question_id = int(payload["question_id"])
    except (TypeError, ValueError, OverflowError):
        msg = "Invalid question_id"
        raise bad_request(msg, "invalid_question") from None
    text = payload.get("text")
    if not isinstance(text, str):
        msg = "text is required"
        raise bad_request(msg, "invalid_post_body")
    return json_response(st.market.answer_question(question_id, text, token.user_id))


async def questions_delete(request: web.Request) -> web.StreamResponse:
    """FACTS.md §5.1: ``DELETE /questions/{id}`` answers ``["Question deleted."]``."""
    st = state_of(request)
    st.market.delete_question(path_int(request, "question_id"), token_of(request).user_id)
    return json_response(["Question deleted."])


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/questions/search", questions_search, name="questions:search")
    r.add_get("/questions/{question_id}", questions_get, name="questions:get")
    r.add_delete("/questions/{question_id}", questions_delete, name="questions_write:delete")
    r.add_post("/answers", answers_post, name="answers:post")
