from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from peepers_sandbox import DEMO_SELLER_ID, Sandbox
from tests.sandbox.support import OTHER_SELLER_ID, bearer


def first_order(sandbox: Sandbox, status: str = "paid") -> dict[str, Any]:
    market = sandbox.state.market
    return next(
        market.orders[o]
        for o in market.orders_by_seller[DEMO_SELLER_ID]
        if market.orders[o]["status"] == status
    )


class TestOrders:
    async def test_seller_reads_own_order_and_another_seller_gets_403(
        self, sandbox, http, seller_token, other_token
    ):
        order = first_order(sandbox)
        async with http.get(f"/orders/{order['id']}", headers=bearer(seller_token)) as resp:
            body = await resp.json()
        assert body["id"] == order["id"]
        assert body["seller"]["id"] == DEMO_SELLER_ID
        assert body["payments"][0]["status"] == "approved"
        async with http.get(f"/orders/{order['id']}", headers=bearer(other_token)) as resp:
            assert resp.status == 403
            assert (await resp.json())["error"] == "not_owned_order"

    async def test_buyer_token_may_read_the_order(self, sandbox: Sandbox, http):
        order = first_order(sandbox)
        token = (await sandbox.admin.mint_token(order["buyer"]["id"]))["access_token"]
        async with http.get(f"/orders/{order['id']}", headers=bearer(token)) as resp:
            assert resp.status == 200

    async def test_search_pages_in_date_order_without_gaps(self, sandbox, http, seller_token):
        pages: list[dict[str, Any]] = []
        offset = 0
        while True:
            params = {"seller": str(DEMO_SELLER_ID), "sort": "date_desc", "limit": "10"}
            params["offset"] = str(offset)
            async with http.get("/orders/search", params=params, headers=bearer(seller_token)) as r:
                body = await r.json()
            pages.extend(body["results"])
            offset += 10
            if offset >= body["paging"]["total"]:
                break
        stamps = [datetime.fromisoformat(o["date_closed"] or o["date_created"]) for o in pages]
        assert stamps == sorted(stamps, reverse=True)
        assert len({o["id"] for o in pages}) == len(pages) == body["paging"]["total"]
        assert body["sort"] == {"id": "date_desc", "name": "Date descending"}

    async def test_search_hides_cancelled_orders_unless_asked_for(
        self, sandbox, http, seller_token
    ):
        base = {"seller": str(DEMO_SELLER_ID), "limit": "51"}
        async with http.get("/orders/search", params=base, headers=bearer(seller_token)) as r:
            default = await r.json()
        assert all(o["status"] != "cancelled" for o in default["results"])
        params = base | {"order.status": "cancelled"}
        async with http.get("/orders/search", params=params, headers=bearer(seller_token)) as r:
            cancelled = await r.json()
        assert cancelled["results"]
        assert all(o["status"] == "cancelled" for o in cancelled["results"])

    async def test_search_limit_is_capped(self, http, seller_token):
        params = {"seller": str(DEMO_SELLER_ID), "limit": "52"}
        async with http.get("/orders/search", params=params, headers=bearer(seller_token)) as r:
            assert r.status == 400

    async def test_search_for_another_seller_is_forbidden(self, http, other_token):
        params = {"seller": str(DEMO_SELLER_ID)}
        async with http.get("/orders/search", params=params, headers=bearer(other_token)) as r:
            assert r.status == 403

    async def test_shipment_is_readable_by_its_seller_only(
        self, sandbox, http, seller_token, other_token
    ):
        ship_id = first_order(sandbox)["shipping"]["id"]
        async with http.get(f"/shipments/{ship_id}", headers=bearer(seller_token)) as resp:
            body = await resp.json()
        assert body["id"] == ship_id
        assert body["logistic"] == {"mode": "me2", "type": "drop_off", "direction": "forward"}
        async with http.get(f"/shipments/{ship_id}", headers=bearer(other_token)) as resp:
            assert resp.status == 403


class TestQuestions:
    async def test_seller_answers_an_unanswered_question_once(self, sandbox: Sandbox, http):
        question = await sandbox.admin.event("question", seller_id=OTHER_SELLER_ID)
        token = (await sandbox.admin.mint_token(OTHER_SELLER_ID))["access_token"]
        answer = {"question_id": question["id"], "text": "Olá! Temos sim."}
        async with http.post("/answers", json=answer, headers=bearer(token)) as resp:
            assert resp.status == 200
            body = await resp.json()
        assert body["status"] == "ANSWERED"
        assert body["answer"]["text"] == "Olá! Temos sim."
        assert body["last_updated"] > question["last_updated"]
        async with http.post("/answers", json=answer, headers=bearer(token)) as resp:
            assert resp.status == 400

    async def test_another_seller_cannot_answer(self, sandbox: Sandbox, http, other_token):
        question = await sandbox.admin.event("question", seller_id=DEMO_SELLER_ID)
        answer = {"question_id": question["id"], "text": "Não é minha."}
        async with http.post("/answers", json=answer, headers=bearer(other_token)) as resp:
            assert resp.status == 403

    async def test_search_by_seller_filters_status(self, http, seller_token):
        params = {"seller_id": str(DEMO_SELLER_ID), "status": "UNANSWERED", "api_version": "4"}
        async with http.get("/questions/search", params=params, headers=bearer(seller_token)) as r:
            body = await r.json()
        assert body["total"] == len(body["questions"]) > 0
        assert {q["status"] for q in body["questions"]} == {"UNANSWERED"}
        assert body["questions"][0]["answer"] is None


class TestMessages:
    async def test_seller_answers_a_buyer_and_reads_it_back(self, sandbox, http, seller_token):
        order = await sandbox.admin.event("new_order", seller_id=DEMO_SELLER_ID)
        await sandbox.admin.event("message", order_id=order["id"])
        path = f"/messages/packs/{order['pack_id']}/sellers/{DEMO_SELLER_ID}?tag=post_sale"
        message = {
            "from": {"user_id": str(DEMO_SELLER_ID)},
            "to": {"user_id": order["buyer"]["id"]},
            "text": "Olá! Seu pedido já foi enviado.",
        }
        async with http.post(path, json=message, headers=bearer(seller_token)) as resp:
            assert resp.status == 201
            created = await resp.json()
        async with http.get(path, headers=bearer(seller_token)) as resp:
            thread = await resp.json()
        assert created["id"] in [m["id"] for m in thread["messages"]]
        by_id = f"/messages/{created['id']}?tag=post_sale"
        async with http.get(by_id, headers=bearer(seller_token)) as resp:
            assert (await resp.json())["messages"][0]["text"] == message["text"]

    async def test_text_over_350_characters_is_rejected(self, sandbox, http, seller_token):
        order = first_order(sandbox)
        path = f"/messages/packs/{order['pack_id']}/sellers/{DEMO_SELLER_ID}?tag=post_sale"
        message = {"from": {"user_id": str(DEMO_SELLER_ID)}, "text": "x" * 351}
        async with http.post(path, json=message, headers=bearer(seller_token)) as resp:
            assert resp.status == 400

    async def test_tag_post_sale_is_mandatory(self, sandbox, http, seller_token):
        order = first_order(sandbox)
        path = f"/messages/packs/{order['pack_id']}/sellers/{DEMO_SELLER_ID}"
        async with http.get(path, headers=bearer(seller_token)) as resp:
            assert resp.status == 400

    async def test_another_seller_cannot_read_the_conversation(self, sandbox, http, other_token):
        order = first_order(sandbox)
        path = f"/messages/packs/{order['pack_id']}/sellers/{DEMO_SELLER_ID}?tag=post_sale"
        async with http.get(path, headers=bearer(other_token)) as resp:
            assert resp.status == 403


class TestClaims:
    async def test_claim_is_readable_by_its_players_only(
        self, sandbox, http, seller_token, other_token
    ):
        claim_id = sandbox.state.market.claims_by_seller[DEMO_SELLER_ID][0]
        path = f"/post-purchase/v1/claims/{claim_id}"
        async with http.get(path, headers=bearer(seller_token)) as resp:
            body = await resp.json()
        assert body["id"] == claim_id
        assert {p["role"] for p in body["players"]} == {"complainant", "respondent"}
        async with http.get(path, headers=bearer(other_token)) as resp:
            assert resp.status == 403
            assert (await resp.json())["error"] == "forbidden_error"

    async def test_unknown_claim_uses_the_claims_404_body(self, http, seller_token):
        async with http.get("/post-purchase/v1/claims/1", headers=bearer(seller_token)) as resp:
            assert resp.status == 404
            assert (await resp.json())["error"] == "business_logic_error"

    @pytest.mark.parametrize("query", ["", "?status=opened"])
    async def test_search_without_a_real_filter_is_invalid_query(self, http, seller_token, query):
        path = f"/post-purchase/v1/claims/search{query}"
        async with http.get(path, headers=bearer(seller_token)) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"] == "invalid_query"
