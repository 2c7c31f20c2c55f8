"""The silent-change admin event: a change ML makes without notifying (FACTS.md §1.1, §11).

Drift audits compare the stored state with the API; these tests pin the event's
interface, which other helpers drive.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from peepers_sandbox import DEMO_SELLER_ID, Sandbox
from tests.sandbox.support import SmallSandbox, bearer


async def silent(sb: Sandbox, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        url = f"{sb.url}/_admin/events/silent_change"
        async with session.post(url, json=body) as resp:
            return resp.status, await resp.json()


async def get(sb: Sandbox, path: str) -> dict[str, Any]:
    token = (await sb.admin.mint_token(DEMO_SELLER_ID))["access_token"]
    async with (
        aiohttp.ClientSession(sb.url) as session,
        session.get(path, headers=bearer(token)) as resp,
    ):
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


class TestSilentChange:
    async def test_an_item_changes_price_stock_and_stamp_without_a_notification(
        self, small_sandbox: SmallSandbox
    ):
        sb = await small_sandbox()
        item_id = sb.state.market.items_by_seller[DEMO_SELLER_ID][0]
        before = await get(sb, f"/items/{item_id}")
        changes = sb.state.notifier.changes
        status, body = await silent(sb, {"item_id": item_id})
        assert status == 201
        assert body["kind"] == "silent_change"
        result = body["result"]
        assert result["resource"] == f"/items/{item_id}"
        after = await get(sb, f"/items/{item_id}")
        assert set(result["changed"]) == {"price", "available_quantity", "last_updated"}
        for field, (old, new) in result["changed"].items():
            assert old == before[field] != new == after[field]
        assert sb.state.notifier.changes == changes

    async def test_an_order_changes_tags_and_stamp_without_a_notification(
        self, small_sandbox: SmallSandbox
    ):
        sb = await small_sandbox()
        order_id = sb.state.market.orders_by_seller[DEMO_SELLER_ID][0]
        before = await get(sb, f"/orders/{order_id}")
        changes = sb.state.notifier.changes
        status, body = await silent(sb, {"order_id": order_id})
        assert status == 201
        after = await get(sb, f"/orders/{order_id}")
        changed = body["result"]["changed"]
        assert body["result"]["resource"] == f"/orders/{order_id}"
        assert changed["tags"] == [before["tags"], after["tags"]]
        assert changed["last_updated"] == [before["last_updated"], after["last_updated"]]
        assert after["status"] == before["status"]
        assert sb.state.notifier.changes == changes

    async def test_an_unanswered_question_goes_under_review_and_back(
        self, small_sandbox: SmallSandbox
    ):
        sb = await small_sandbox()
        market = sb.state.market
        question_id = next(
            q
            for q in market.questions_by_seller[DEMO_SELLER_ID]
            if market.questions[q]["status"] == "UNANSWERED"
        )
        changes = sb.state.notifier.changes
        status, body = await silent(sb, {"question_id": question_id})
        assert status == 201
        assert body["result"]["changed"]["status"] == ["UNANSWERED", "UNDER_REVIEW"]
        assert (await get(sb, f"/questions/{question_id}"))["hold"] is True
        _, body = await silent(sb, {"question_id": str(question_id)})
        assert body["result"]["changed"]["status"] == ["UNDER_REVIEW", "UNANSWERED"]
        assert sb.state.notifier.changes == changes

    @pytest.mark.parametrize(
        ("body", "error"),
        [
            ({"item_id": "MLB1"}, "not_found"),
            ({"order_id": 1}, "order_not_found"),
            ({"question_id": 1}, "not_found"),
        ],
    )
    async def test_an_unknown_id_is_a_404_with_an_ml_body(
        self, small_sandbox: SmallSandbox, body: dict[str, Any], error: str
    ):
        sb = await small_sandbox()
        status, answer = await silent(sb, body)
        assert status == 404
        assert answer["error"] == error
        assert answer["status"] == 404
        assert answer["cause"] == []

    @pytest.mark.parametrize(
        "body",
        [{}, {"item_id": "MLB1", "order_id": 1}, {"order_id": "abc"}, {"price": 3}],
    )
    async def test_anything_but_exactly_one_valid_id_is_a_400(
        self, small_sandbox: SmallSandbox, body: dict[str, Any]
    ):
        sb = await small_sandbox()
        changes = sb.state.notifier.changes
        status, answer = await silent(sb, body)
        assert status == 400
        assert answer["error"] == "bad_request"
        assert sb.state.notifier.changes == changes
