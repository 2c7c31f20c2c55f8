"""Questions, conversations and claims beyond the happy path (FACTS.md §5, §11)."""

from __future__ import annotations

from typing import Any

import pytest

from peepers_sandbox import DEMO_SELLER_ID
from tests.sandbox.lifecycle import Driver, driving
from tests.sandbox.support import SmallSandbox, bearer

THIRTY_ONE_DAYS_S = 31 * 86_400
CLAIMS = "/post-purchase/v1/claims"


@pytest.fixture
async def d(small_sandbox: SmallSandbox):
    async with driving(small_sandbox) as driver:
        yield driver


async def paid_order(d: Driver, **params: Any) -> dict[str, Any]:
    order = await d.event("new_order", seller_id=DEMO_SELLER_ID, **params)
    return await d.event("payment", order_id=order["id"])


def conversation(order: dict[str, Any]) -> str:
    return f"/messages/packs/{order['pack_id']}/sellers/{DEMO_SELLER_ID}"


async def post(
    d: Driver, path: str, body: dict[str, Any], *, user_id: int = DEMO_SELLER_ID
) -> tuple[int, dict[str, Any]]:
    headers = bearer(await d.token(user_id))
    async with d.http.post(path, params={"tag": "post_sale"}, json=body, headers=headers) as resp:
        return resp.status, await resp.json()


def seller_says(order: dict[str, Any], text: str = "Olá!") -> dict[str, Any]:
    return {
        "from": {"user_id": str(DEMO_SELLER_ID)},
        "to": {"user_id": str(order["buyer"]["id"])},
        "text": text,
    }


class TestQuestionModeration:
    """FACTS.md §5.1: UNDER_REVIEW (hold), BANNED, DELETED, CLOSED_UNANSWERED, banned answers."""

    async def test_review_holds_the_question_then_release_lets_the_seller_answer(self, d: Driver):
        question = await d.event("question", seller_id=DEMO_SELLER_ID)
        held = await d.event(
            "question_moderation", question_id=question["id"], status="UNDER_REVIEW"
        )
        assert (held["status"], held["hold"]) == ("UNDER_REVIEW", True)
        await d.event("question_moderation", question_id=question["id"], status="UNANSWERED")
        await d.event("answer", question_id=question["id"], text="Sim!", seller_id=DEMO_SELLER_ID)
        banned = await d.event("answer_ban", question_id=question["id"])
        assert banned["answer"] == {**banned["answer"], "status": "BANNED", "text": ""}
        assert d.topics(f"/questions/{question['id']}").count("questions") == 5

    async def test_a_banned_question_cannot_be_answered(self, d: Driver):
        question = await d.event("question", seller_id=DEMO_SELLER_ID)
        await d.event("question_moderation", question_id=question["id"], status="BANNED")
        body = await d.refused(
            "answer", question_id=question["id"], text="x", seller_id=DEMO_SELLER_ID
        )
        assert body["error"] == "invalid_question"

    async def test_the_asker_deletes_a_question_over_rest(self, d: Driver):
        question = await d.event("question", seller_id=DEMO_SELLER_ID)
        headers = bearer(await d.token(question["buyer_id"]))
        async with d.http.delete(f"/questions/{question['id']}", headers=headers) as resp:
            assert (resp.status, await resp.json()) == (200, ["Question deleted."])
        body = await d.get(f"/questions/{question['id']}")
        assert (body["status"], body["deleted_from_listing"]) == ("DELETED", True)

    async def test_closing_an_item_closes_its_unanswered_questions(self, d: Driver):
        question = await d.event("question", seller_id=DEMO_SELLER_ID)
        await d.event("close", item_id=question["item_id"])
        body = await d.get(f"/questions/{question['id']}")
        assert body["status"] == "CLOSED_UNANSWERED"

    async def test_search_is_capped_at_offset_1000(self, d: Driver):
        params = {"seller_id": str(DEMO_SELLER_ID), "offset": "1000", "limit": "10"}
        body = await d.get("/questions/search", params=params, status=400)
        assert (body["error"], body["status"]) == ("invalid_offset", 400)


class TestConversations:
    """FACTS.md §5.2 and §11: blocked substatuses, who may write, unread counts."""

    async def test_thirty_days_after_delivery_the_conversation_blocks_by_time(self, d: Driver):
        order = await paid_order(d)
        await d.event("message", order_id=order["id"])
        for kind in ("shipment", "delivery"):
            await d.event(kind, order_id=order["id"])
        params = {"tag": "post_sale", "mark_as_read": "false"}
        status = (await d.get(conversation(order), params=params))["conversation_status"]
        assert status["status"] == "active"
        await d.sb.admin.advance_clock(THIRTY_ONE_DAYS_S)
        status = (await d.get(conversation(order), params=params))["conversation_status"]
        assert (status["status"], status["substatus"]) == ("blocked", "blocked_by_time")
        code, body = await post(d, conversation(order), seller_says(order))
        assert (code, body["error"]) == (403, "blocked_conversation")

    async def test_a_dispute_blocks_by_mediation_with_the_claim_id(self, d: Driver):
        order = await paid_order(d)
        claim = await d.event("claim", order_id=order["id"])
        params = {"tag": "post_sale"}
        status = (await d.get(conversation(order), params=params))["conversation_status"]
        assert (status["status"], status["claim_id"]) == ("active", claim["id"])
        await d.event("claim_dispute", claim_id=claim["id"])
        status = (await d.get(conversation(order), params=params))["conversation_status"]
        assert (status["substatus"], status["claim_id"]) == ("blocked_by_mediation", claim["id"])

    async def test_the_buyer_blocks_and_full_blocks_until_delivery(self, d: Driver):
        order = await paid_order(d)
        await d.event("conversation_block", order_id=order["id"])
        status = (await d.get(conversation(order), params={"tag": "post_sale"}))[
            "conversation_status"
        ]
        assert status["substatus"] == "blocked_by_buyer"
        full = await paid_order(d, logistic_type="fulfillment")
        status = (await d.get(conversation(full), params={"tag": "post_sale"}))[
            "conversation_status"
        ]
        assert (status["substatus"], status["shipping_id"]) == (
            "blocked_by_fulfillment",
            full["shipping"]["id"],
        )
        await d.refused("message", order_id=full["id"])

    async def test_a_seller_needs_a_reason_to_start_and_the_right_recipient(self, d: Driver):
        order = await paid_order(d)
        code, body = await post(d, conversation(order), seller_says(order))
        assert (code, body["error"]) == (403, "seller_cannot_initiate")
        guide = f"/messages/action_guide/packs/{order['pack_id']}/option"
        code, body = await post(d, guide, {"option_id": "NOPE", "text": "Oi"})
        assert (code, body["error"]) == (400, "invalid_option")
        code, body = await post(d, guide, {"option_id": "SEND_INVOICE_LINK", "text": "Sua NF"})
        assert code == 201
        assert body["message_resources"][1] == {"id": str(DEMO_SELLER_ID), "name": "seller"}
        wrong = seller_says(order) | {"to": {"user_id": "1"}}
        code, body = await post(d, conversation(order), wrong)
        assert (code, body["error"]) == (400, "invalid_to_user")
        code, _ = await post(d, conversation(order), seller_says(order))
        assert code == 201

    async def test_unread_counts_follow_messages_and_reading(self, d: Driver):
        order = await paid_order(d)
        for _ in range(2):
            await d.event("message", order_id=order["id"], attachments=1)
        resource = f"/packs/{order['pack_id']}/sellers/{DEMO_SELLER_ID}"
        unread = await d.get("/messages/unread", params={"role": "seller", "tag": "post_sale"})
        assert {"resource": resource, "count": 2} in unread["results"]
        one = await d.get(f"/messages/unread{resource}", params={"tag": "post_sale"})
        assert one["count"] == 2
        thread = await d.get(conversation(order), params={"tag": "post_sale"})
        assert thread["messages"][0]["message_attachments"][0]["type"] == "application/pdf"
        unread = await d.get("/messages/unread", params={"role": "seller", "tag": "post_sale"})
        assert resource not in [r["resource"] for r in unread["results"]]
        async with d.http.get("/messages/unread", params={"tag": "post_sale"}) as resp:
            assert resp.status == 400

    async def test_moderated_messages_carry_their_moderation_and_are_never_unread(self, d: Driver):
        order = await paid_order(d)
        rejected = await d.event("message", order_id=order["id"], moderation="rejected")
        assert rejected["status"] == "rejected"
        assert rejected["message_moderation"]["status"] == "rejected"
        await d.event("message", order_id=order["id"])
        resource = f"/packs/{order['pack_id']}/sellers/{DEMO_SELLER_ID}"
        # Reading the rejected message alone leaves the clean one unread.
        await d.get(conversation(order), params={"tag": "post_sale", "limit": "1"})
        one = await d.get(f"/messages/unread{resource}", params={"tag": "post_sale"})
        assert one["count"] == 1


class TestClaims:
    """FACTS.md §5.3, §11: stages, resolution, mediator, types, claims_actions."""

    async def test_a_claim_escalates_to_dispute_and_closes_with_a_resolution(self, d: Driver):
        order = await paid_order(d)
        claim = await d.event("claim", order_id=order["id"])
        resource = f"{CLAIMS}/{claim['id']}"
        await d.event("claim_action", claim_id=claim["id"], action="send_message_to_complainant")
        await d.event("claim_action", claim_id=claim["id"], action="open_dispute")
        disputed = await d.get(resource)
        assert disputed["stage"] == "dispute"
        assert "mediator" in [p["role"] for p in disputed["players"]]
        detail = await d.get(f"{resource}/detail")
        assert detail["action_responsible"] == "mediator"
        closed = await d.event("claim_close", claim_id=claim["id"], benefited="respondent")
        assert closed["status"] == "closed"
        assert closed["resolution"]["closed_by"] == "mediator"
        assert closed["resolution"]["benefited"] == ["respondent"]
        messages = await d.get(f"{resource}/messages")
        assert messages[0]["receiver_role"] == "complainant"
        actions = [a for topic, res, a in d.changes if res == resource]
        assert actions.count(["claims_actions"]) == 2
        assert ["claims"] in actions

    async def test_a_refund_closes_the_claim_for_the_buyer_and_recontact_reopens(self, d: Driver):
        order = await paid_order(d)
        for kind in ("shipment", "delivery"):
            await d.event(kind, order_id=order["id"])
        claim = await d.event("claim", order_id=order["id"], type="returns")
        closed = await d.event("claim_action", claim_id=claim["id"], action="refund")
        assert closed["resolution"]["reason"] == "payment_refunded"
        assert (await d.get(f"/orders/{order['id']}"))["status"] == "cancelled"
        reopened = await d.event("claim_recontact", claim_id=claim["id"])
        assert (reopened["status"], reopened["stage"]) == ("opened", "recontact")
        stale = await d.event("claim_stale", claim_id=claim["id"])
        assert stale["stage"] == "stale"

    async def test_cancel_sale_claims_have_no_mediation_stage(self, d: Driver):
        order = await paid_order(d)
        claim = await d.event("claim", order_id=order["id"], type="cancel_sale")
        assert (claim["type"], claim["stage"]) == ("cancel_sale", "none")
        await d.refused("claim_dispute", claim_id=claim["id"])

    async def test_search_sorts_ranges_and_refuses_in_the_claims_shape(self, d: Driver):
        for _ in range(3):
            await d.event("claim", order_id=(await paid_order(d))["id"])
        base = {"players.user_id": str(DEMO_SELLER_ID), "limit": "100"}
        desc = await d.get(f"{CLAIMS}/search", params=base | {"sort": "date_created:desc"})
        stamps = [c["date_created"] for c in desc["data"]]
        assert stamps == sorted(stamps, reverse=True)
        newest = stamps[0]
        after = await d.get(
            f"{CLAIMS}/search", params=base | {"range": f"date_created:after:{newest}"}
        )
        assert [c["date_created"] for c in after["data"]] == [newest]
        body = await d.get(f"{CLAIMS}/search", params=base | {"limit": "101"}, status=400)
        assert body["error"] == "invalid_params"
        assert "status" not in body
        body = await d.get(f"{CLAIMS}/search", params=base | {"sort": "bogus"}, status=400)
        assert body["error"] == "invalid_params"
