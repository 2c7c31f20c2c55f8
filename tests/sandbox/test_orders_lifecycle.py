"""Orders, payments, refunds, packs and shipments beyond the happy path (FACTS.md §4, §6)."""

from __future__ import annotations

from typing import Any

import pytest

from peepers_sandbox import DEMO_SELLER_ID
from tests.sandbox.lifecycle import Driver, driving
from tests.sandbox.support import SmallSandbox


@pytest.fixture
async def d(small_sandbox: SmallSandbox):
    async with driving(small_sandbox) as driver:
        yield driver


async def new_order(d: Driver, **params: Any) -> dict[str, Any]:
    return await d.event("new_order", seller_id=DEMO_SELLER_ID, **params)


class TestPayments:
    """FACTS.md §4.2: every order status, each reached as ML reaches it."""

    async def test_a_part_payment_is_partially_paid_then_paid_with_two_payments(self, d: Driver):
        order = await new_order(d, quantity=2)
        half = round(order["total_amount"] / 2, 2)
        d.forget()
        await d.event("payment", order_id=order["id"], amount=half)
        body = await d.get(f"/orders/{order['id']}")
        assert (body["status"], body["paid_amount"]) == ("partially_paid", half)
        assert "paid" not in body["tags"]
        await d.event("payment", order_id=order["id"])
        body = await d.get(f"/orders/{order['id']}")
        assert body["status"] == "paid"
        assert body["paid_amount"] == order["total_amount"]
        assert [p["status"] for p in body["payments"]] == ["approved", "approved"]
        paid = [res for topic, res, _ in d.changes if topic == "payments"]
        assert paid == [f"/collections/{p['id']}" for p in body["payments"]]

    async def test_a_rejected_payment_requires_another_then_one_in_process_is_approved(
        self, d: Driver
    ):
        order = await new_order(d)
        required = await d.event("payment_required", order_id=order["id"])
        assert required["status"] == "payment_required"
        assert required["payments"][0]["status"] == "rejected"
        in_process = await d.event("payment_in_process", order_id=order["id"])
        assert in_process["status"] == "payment_in_process"
        assert in_process["payments"][-1]["status"] == "in_process"
        paid = await d.event("payment", order_id=order["id"])
        assert paid["status"] == "paid"
        assert len(paid["payments"]) == 2
        payment = await d.get(f"/collections/{paid['payments'][-1]['id']}")
        assert payment["collection"]["status"] == "approved"

    async def test_an_overpayment_is_refused_and_changes_nothing(self, d: Driver):
        order = await new_order(d)
        d.forget()
        body = await d.refused("payment", order_id=order["id"], amount=order["total_amount"] + 1)
        assert body["status"] == 400
        assert (await d.get(f"/orders/{order['id']}"))["status"] == "confirmed"
        assert d.changes == []

    async def test_an_unpaid_order_turns_invalid_and_its_shipment_is_cancelled(self, d: Driver):
        order = await new_order(d)
        invalid = await d.event("invalid", order_id=order["id"])
        assert invalid["status"] == "invalid"
        shipment = await d.get(f"/shipments/{order['shipping']['id']}")
        assert (shipment["status"], shipment["substatus"]) == ("cancelled", "fraudulent")
        await d.refused("payment", order_id=order["id"])


class TestRefundsAndCancellation:
    """FACTS.md §4.2: a part refund is partially_refunded; a full one cancels the order."""

    async def test_a_part_refund_keeps_the_payment_approved_and_notifies_payments(self, d: Driver):
        order = await new_order(d, quantity=3)
        await d.event("payment", order_id=order["id"])
        d.forget()
        refunded = await d.event("refund", order_id=order["id"], amount=1.5)
        assert refunded["status"] == "partially_refunded"
        payment = refunded["payments"][0]
        assert payment["status"] == "approved"
        assert payment["status_detail"] == "partially_refunded"
        assert payment["transaction_amount_refunded"] == 1.5
        assert d.topics(f"/collections/{payment['id']}") == ["payments"]
        assert d.topics(f"/orders/{order['id']}") == ["orders_v2"]

    async def test_a_full_refund_cancels_the_order_and_drops_the_paid_tag(self, d: Driver):
        order = await new_order(d)
        await d.event("payment", order_id=order["id"])
        d.forget()
        cancelled = await d.event("refund", order_id=order["id"])
        assert cancelled["status"] == "cancelled"
        assert "paid" not in cancelled["tags"]
        payment = cancelled["payments"][0]
        assert (payment["status"], payment["transaction_amount_refunded"]) == (
            "refunded",
            payment["transaction_amount"],
        )
        assert d.topics(f"/collections/{payment['id']}") == ["payments"]

    async def test_a_delivered_order_cannot_be_cancelled(self, d: Driver):
        order = await new_order(d)
        for kind in ("payment", "shipment", "delivery"):
            await d.event(kind, order_id=order["id"])
        body = await d.refused("cancellation", order_id=order["id"])
        assert body["error"] == "invalid_order_status"
        assert (await d.get(f"/orders/{order['id']}"))["status"] == "paid"

    async def test_pending_cancel_shows_on_the_pack_until_the_cancellation(self, d: Driver):
        order = await new_order(d)
        await d.event("payment", order_id=order["id"])
        pack_before = await d.get(f"/packs/{order['pack_id']}")
        pending = await d.event("pending_cancel", order_id=order["id"])
        assert pending["status"] == "pending_cancel"
        pack = await d.get(f"/packs/{order['pack_id']}")
        assert pack["status"] == "pending_cancel"
        assert pack["last_updated"] > pack_before["last_updated"]
        await d.event("cancellation", order_id=order["id"])
        assert (await d.get(f"/packs/{order['pack_id']}"))["status"] == "cancelled"


class TestPacks:
    """FACTS.md §4.4, §11: a pack's orders share one shipment and each has its payments."""

    async def test_a_cart_shares_one_shipment_that_waits_for_every_payment(self, d: Driver):
        pack = await d.event("cart", seller_id=DEMO_SELLER_ID, size=3)
        orders = [await d.get(f"/orders/{o['id']}") for o in pack["orders"]]
        assert len(orders) == 3
        assert {o["pack_id"] for o in orders} == {pack["id"]}
        assert {o["shipping"]["id"] for o in orders} == {pack["shipment"]["id"]}
        assert len({o["buyer"]["id"] for o in orders}) == 1
        shipment_path = f"/shipments/{pack['shipment']['id']}"
        for order in orders[:-1]:
            await d.event("payment", order_id=order["id"])
            assert (await d.get(shipment_path))["status"] == "pending"
        await d.event("payment", order_id=orders[-1]["id"])
        assert (await d.get(shipment_path))["status"] == "ready_to_ship"
        payments = {
            p["id"] for o in pack["orders"] for p in (await d.get(f"/orders/{o['id']}"))["payments"]
        }
        assert len(payments) == 3

    async def test_an_order_cannot_join_a_paid_pack(self, d: Driver):
        order = await new_order(d)
        await d.event("payment", order_id=order["id"])
        body = await d.refused("new_order", pack_id=order["pack_id"])
        assert body["error"] == "invalid_pack_status"


class TestShipments:
    """FACTS.md §6: handling, not_delivered, history, x-format-new, the order's shipments."""

    async def test_handling_then_label_then_not_delivered_with_its_history(self, d: Driver):
        order = await new_order(d)
        await d.event("payment", order_id=order["id"], handling=True)
        path = f"/shipments/{order['shipping']['id']}"
        assert (await d.get(path))["status"] == "handling"
        await d.event("label", order_id=order["id"])
        await d.event("shipment", order_id=order["id"])
        await d.event("not_delivered", order_id=order["id"])
        shipment = await d.get(path, headers={"x-format-new": "true"})
        assert (shipment["status"], shipment["substatus"]) == (
            "not_delivered",
            "returning_to_sender",
        )
        assert "order_id" not in shipment
        history = await d.get(f"{path}/history")
        assert [h["status"] for h in history] == [
            "pending",
            "handling",
            "ready_to_ship",
            "shipped",
            "not_delivered",
        ]
        body = await d.get(f"/orders/{order['id']}")
        assert "not_delivered" in body["tags"]
        hosted = await d.get(f"/orders/{order['id']}/shipments")
        assert hosted[0]["id"] == order["shipping"]["id"]
        assert hosted[0]["type"] == "forward"
        assert hosted[0]["status_history"]["date_not_delivered"] == history[-1]["date"]

    async def test_a_delivery_fulfils_the_order_without_a_delivered_tag(self, d: Driver):
        order = await new_order(d)
        for kind in ("payment", "shipment", "delivery"):
            await d.event(kind, order_id=order["id"])
        body = await d.get(f"/orders/{order['id']}")
        assert "delivered" not in body["tags"]
        assert body["fulfilled"] is True

    async def test_the_legacy_format_adds_order_id_or_is_refused_when_configured(self, d: Driver):
        order = await new_order(d)
        path = f"/shipments/{order['shipping']['id']}"
        assert (await d.get(path))["order_id"] == order["id"]
        await d.sb.admin.patch_api(shipments_legacy_format="error")
        body = await d.get(path, status=400)
        assert body["error"] == "invalid_format"
        assert (await d.get(path, headers={"x-format-new": "true"}))["id"] == order["shipping"][
            "id"
        ]

    async def test_another_sellers_shipment_history_is_forbidden(self, d: Driver):
        order = await new_order(d)
        await d.get(
            f"/shipments/{order['shipping']['id']}/history", user_id=DEMO_SELLER_ID + 1, status=403
        )


class TestOrdersSearch:
    """FACTS.md §4.3: the documented filters, and dates without a time (no 500)."""

    async def search(self, d: Driver, params: dict[str, str], status: int = 200) -> Any:
        query = {"seller": str(DEMO_SELLER_ID), "limit": "51", **params}
        return await d.get("/orders/search", status=status, params=query)

    async def test_a_date_without_a_time_is_read_in_site_time(self, d: Driver):
        body = await self.search(d, {"order.date_created.from": "2020-12-01"})
        assert body["paging"]["total"] > 0
        body = await self.search(d, {"order.date_created.from": "2999-12-01"})
        assert body["paging"]["total"] == 0

    async def test_a_malformed_date_is_an_ml_400(self, d: Driver):
        body = await self.search(d, {"order.date_closed.to": "yesterday"}, status=400)
        assert (body["error"], body["status"], body["cause"]) == ("invalid_date", 400, [])

    async def test_tags_and_tags_not(self, d: Driver):
        await new_order(d)
        paid = await self.search(d, {"tags": "paid"})
        assert paid["results"]
        assert all("paid" in o["tags"] for o in paid["results"])
        unpaid = await self.search(d, {"tags.not": "paid"})
        assert all("paid" not in o["tags"] for o in unpaid["results"])
        assert unpaid["paging"]["total"] > 0

    async def test_q_finds_the_buyers_nickname(self, d: Driver):
        order = await new_order(d)
        body = await self.search(d, {"q": order["buyer"]["nickname"].lower()})
        assert order["id"] in [o["id"] for o in body["results"]]
        assert {o["buyer"]["nickname"] for o in body["results"]} == {order["buyer"]["nickname"]}

    async def test_mediations_stage_and_feedback(self, d: Driver):
        order = await new_order(d)
        await d.event("payment", order_id=order["id"])
        await d.event("claim", order_id=order["id"])
        body = await self.search(d, {"mediations.stage": "claim"})
        assert order["id"] in [o["id"] for o in body["results"]]
        none = await self.search(d, {"mediations.stage": "dispute"})
        assert order["id"] not in [o["id"] for o in none["results"]]
        await d.event("feedback", order_id=order["id"], role="buyer", rating="negative")
        rated = await self.search(d, {"feedback.purchase.rating": "negative"})
        assert [o["id"] for o in rated["results"]] == [order["id"]]
        await self.search(d, {"feedback.status": "bogus"}, status=400)
