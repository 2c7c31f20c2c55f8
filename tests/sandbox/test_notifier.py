from __future__ import annotations

from datetime import datetime

import aiohttp

from peepers_sandbox import DEMO_APP_ID, DEMO_SELLER_ID, NotifierConfig, Sandbox
from peepers_sandbox.testing import NotificationSink
from tests.sandbox.support import SmallSandbox, bearer

# Squeezes ML's one hour of retries into about a tenth of a second.
FAST = NotifierConfig(time_compression=36_000)


async def with_sink(small_sandbox: SmallSandbox, sink: NotificationSink, **notifier) -> Sandbox:
    config = FAST.model_copy(update=notifier)
    sb: Sandbox = await small_sandbox(callback_url=sink.url, notifier=config)
    return sb


def item_of(sb: Sandbox) -> str:
    return sb.state.market.items_by_seller[DEMO_SELLER_ID][0]


class TestNotificationBodies:
    async def test_a_price_change_posts_items_and_items_prices_notifications(
        self, small_sandbox, sink
    ):
        sb = await with_sink(small_sandbox, sink)
        item_id = item_of(sb)
        await sb.admin.event("price_change", item_id=item_id, price=123.4)
        await sink.wait_for(lambda got: {n["topic"] for n in got} >= {"items", "items_prices"})
        note = sink.for_resource(f"/items/{item_id}")[0]
        assert set(note) == {
            "_id",
            "resource",
            "user_id",
            "topic",
            "application_id",
            "attempts",
            "sent",
            "received",
        }
        assert note["user_id"] == DEMO_SELLER_ID
        assert note["application_id"] == DEMO_APP_ID
        assert note["attempts"] == 1
        sent = datetime.fromisoformat(note["sent"].replace("Z", "+00:00"))
        received = datetime.fromisoformat(note["received"].replace("Z", "+00:00"))
        assert sent >= received
        prices = next(n for n in sink.received if n["topic"] == "items_prices")
        assert prices["resource"] == f"/items/{item_id}/prices"

    async def test_the_resource_of_an_item_notification_serves_the_change(
        self, small_sandbox, sink
    ):
        sb = await with_sink(small_sandbox, sink)
        item_id = item_of(sb)
        before = sb.state.market.items[item_id]["last_updated"]
        await sb.admin.event("pause", item_id=item_id)
        await sink.wait_for(lambda got: bool(got))
        token = (await sb.admin.mint_token(DEMO_SELLER_ID))["access_token"]
        async with (
            aiohttp.ClientSession(sb.url) as http,
            http.get(sink.received[0]["resource"], headers=bearer(token)) as resp,
        ):
            item = await resp.json()
        assert item["status"] == "paused"
        assert item["last_updated"] > before

    async def test_ml_quirks_string_user_id_bare_message_resource_and_actions(
        self, small_sandbox, sink
    ):
        sb = await with_sink(small_sandbox, sink)
        question = await sb.admin.event("question", seller_id=DEMO_SELLER_ID)
        order = await sb.admin.event("new_order", seller_id=DEMO_SELLER_ID)
        message = await sb.admin.event("message", order_id=order["id"])
        await sink.wait_for(lambda got: {n["topic"] for n in got} >= {"questions", "messages"})
        q_note = next(n for n in sink.received if n["topic"] == "questions")
        m_note = next(n for n in sink.received if n["topic"] == "messages")
        assert q_note["user_id"] == str(DEMO_SELLER_ID)
        assert q_note["resource"] == f"/questions/{question['id']}"
        assert m_note["resource"] == message["id"]
        assert m_note["actions"] == ["created"]

    async def test_quirks_can_be_switched_off(self, small_sandbox, sink):
        sb = await with_sink(small_sandbox, sink)
        await sb.admin.patch_notifier(
            quirks={"string_user_id_topics": [], "messages_resource_bare_id": False}
        )
        order = await sb.admin.event("new_order", seller_id=DEMO_SELLER_ID)
        message = await sb.admin.event("message", order_id=order["id"])
        await sink.wait_for(lambda got: any(n["topic"] == "messages" for n in got))
        note = next(n for n in sink.received if n["topic"] == "messages")
        assert note["user_id"] == DEMO_SELLER_ID
        assert note["resource"] == f"/messages/{message['id']}"

    async def test_a_new_paid_order_notifies_orders_payments_and_shipments(
        self, small_sandbox, sink
    ):
        sb = await with_sink(small_sandbox, sink)
        order = await sb.admin.event("new_order", seller_id=DEMO_SELLER_ID)
        await sb.admin.event("payment", order_id=order["id"])
        claim = await sb.admin.event("claim", order_id=order["id"])
        await sb.admin.wait_notifier_idle()
        topics = [n["topic"] for n in sink.received]
        assert {"orders_v2", "payments", "shipments", "post_purchase"} <= set(topics)
        claim_note = next(n for n in sink.received if n["topic"] == "post_purchase")
        assert claim_note["resource"] == f"/post-purchase/v1/claims/{claim['id']}"
        assert claim_note["actions"] == ["claims"]


class TestRetries:
    async def test_failed_answers_are_retried_with_attempts_incremented(self, small_sandbox, sink):
        sb = await with_sink(small_sandbox, sink)
        sink.behaviour = lambda body: (500, 0.0) if body["attempts"] < 3 else (200, 0.0)
        item_id = item_of(sb)
        await sb.admin.event("item_edit", item_id=item_id)
        await sb.admin.wait_notifier_idle()
        attempts = [n["attempts"] for n in sink.for_resource(f"/items/{item_id}")]
        assert attempts == [1, 2, 3]
        assert len({n["_id"] for n in sink.for_resource(f"/items/{item_id}")}) == 1
        summary = await sb.admin.notifier_summary()
        assert (summary["delivered"], summary["missed"], summary["failed_attempts"]) == (1, 0, 2)

    async def test_an_answer_slower_than_the_deadline_counts_as_failed(self, small_sandbox, sink):
        sb = await with_sink(small_sandbox, sink, deadline_ms=100)
        sink.behaviour = lambda body: (200, 0.3) if body["attempts"] == 1 else (200, 0.0)
        await sb.admin.event("item_edit", item_id=item_of(sb))
        await sb.admin.wait_notifier_idle()
        log = await sb.admin.notifier_attempts()
        assert [(a["attempt"], a["status"], a["ok"]) for a in log] == [
            (1, 200, False),
            (2, 200, True),
        ]
        assert log[0]["latency_ms"] >= 300

    async def test_still_failing_after_eight_attempts_lands_in_missed_feeds(
        self, small_sandbox, sink
    ):
        sb = await with_sink(small_sandbox, sink)
        sink.behaviour = lambda body: (503, 0.0)
        item_id = item_of(sb)
        await sb.admin.event("item_edit", item_id=item_id)
        await sb.admin.wait_notifier_idle()
        assert [n["attempts"] for n in sink.received] == [1, 2, 3, 4, 5, 6, 7, 8]
        token = (await sb.admin.mint_token(DEMO_SELLER_ID))["access_token"]
        async with aiohttp.ClientSession(sb.url, headers=bearer(token)) as http:
            params = {"app_id": str(DEMO_APP_ID), "topic": "items", "site_id": "MLB"}
            async with http.get("/missed_feeds", params=params) as resp:
                feeds = (await resp.json())["messages"]
            async with http.get("/missed_feeds", params={**params, "site_id": ""}) as resp:
                assert resp.status == 400
        assert len(feeds) == 1
        missed = feeds[0]
        assert missed["resource"] == f"/items/{item_id}"
        assert missed["attempts"] == 8
        assert missed["response"]["http_code"] == 503
        assert missed["request"]["url"] == sink.url
        assert '"attempts":8' in missed["request"]["data"]

    async def test_missed_feeds_default_to_ten_and_belong_to_the_tokens_app(
        self, small_sandbox, sink
    ):
        sb = await with_sink(small_sandbox, sink, retry_gaps_s=[])
        sink.behaviour = lambda body: (500, 0.0)
        for _ in range(12):
            await sb.admin.event("item_edit", item_id=item_of(sb))
        await sb.admin.wait_notifier_idle()
        token = (await sb.admin.mint_token(DEMO_SELLER_ID))["access_token"]
        async with aiohttp.ClientSession(sb.url, headers=bearer(token)) as http:
            async with http.get("/missed_feeds", params={"app_id": str(DEMO_APP_ID)}) as resp:
                assert len((await resp.json())["messages"]) == 10
            async with http.get("/missed_feeds", params={"app_id": "1"}) as resp:
                assert resp.status == 403

    async def test_missed_feeds_are_kept_two_days(self, small_sandbox, sink):
        sb = await with_sink(small_sandbox, sink, retry_gaps_s=[], time_compression=1.0)
        sink.behaviour = lambda body: (500, 0.0)
        await sb.admin.event("item_edit", item_id=item_of(sb))
        await sb.admin.wait_notifier_idle()
        await sb.admin.advance_clock(2 * 24 * 3600 + 1)
        token = (await sb.admin.mint_token(DEMO_SELLER_ID))["access_token"]
        async with (
            aiohttp.ClientSession(sb.url, headers=bearer(token)) as http,
            http.get("/missed_feeds", params={"app_id": str(DEMO_APP_ID)}) as resp,
        ):
            assert (await resp.json())["messages"] == []


class TestActivity:
    async def test_activity_at_a_rate_delivers_every_notification(self, small_sandbox, sink):
        sb = await with_sink(small_sandbox, sink)
        await sb.admin.start_activity(400)
        await sink.wait_for(lambda got: len(got) >= 100, within_s=10)
        snapshot = await sb.admin.stop_activity()
        summary = await sb.admin.wait_notifier_idle()
        assert sum(snapshot["done"].values()) > 0
        assert snapshot["errors"] == 0
        assert summary["missed"] == 0
        assert summary["delivered"] == summary["notifications"] == len(sink.received)
        assert len({n["_id"] for n in sink.received}) == len(sink.received)
        log = await sb.admin.notifier_attempts(limit="100000")
        assert len(log) == len(sink.received)
        assert all(a["ok"] for a in log)
