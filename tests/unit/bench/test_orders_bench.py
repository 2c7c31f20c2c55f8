"""The pure parts of the orders bench (no stack, nothing timed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import pytest

from bench.orders import (
    MAIL_ORDER_BASE,
    ChangePlan,
    breakdown,
    is_copy_mail,
    latencies_ms,
    limit_bound_s,
    mail_copy,
    webhook,
)
from peepers_common.events import ORDERS_EVENT, OrderCreated, OrderSummary
from peepers_devstack.metrics import Sample, Scrape
from peepers_orders.mail import message_id


def test_the_bound_paces_the_requests_at_the_limit_over_the_limiters_window() -> None:
    # 300 a minute is counted over 62 s (1 s margin, 1 s lease ttl): 600 requests, 124 s.
    assert limit_bound_s(600, 300, 60) == pytest.approx(124.0)
    # 1,000 per 10 s: 11.5 s windows (the ttl is a twentieth of the window).
    assert limit_bound_s(5000, 1000, 10) == pytest.approx(57.5)


def test_every_other_change_pays_the_oldest_order_once_it_has_settled() -> None:
    plan = ChangePlan(settle_s=0.5)
    assert plan.next(0, now=0.0) is None  # even: a new order
    plan.created(11, now=0.0)
    assert plan.next(1, now=0.2) is None  # too fresh: a new order instead
    plan.created(12, now=0.2)
    assert plan.next(2, now=0.6) is None
    plan.created(13, now=0.6)
    assert plan.next(3, now=0.6) == 11
    assert plan.next(5, now=0.8) == 12
    assert plan.next(7, now=0.9) is None  # 13 made 0.3 s ago
    assert plan.next(9, now=1.2) == 13
    assert plan.next(11, now=5.0) is None  # nothing left unpaid


def test_latencies_count_what_was_done_and_never_go_below_zero() -> None:
    sent = {(1, "order.created"): 10.0, (1, "order.paid"): 11.0, (2, "order.created"): 12.0}
    done = {(1, "order.created"): 10.05, (1, "order.paid"): 10.9}  # paid seen by 1st fetch
    assert latencies_ms(sent, done) == [pytest.approx(50.0), 0.0]


def _event() -> OrderCreated:
    now = datetime.now(UTC)
    summary = OrderSummary(
        order_id=2000001,
        state="created",
        ml_status="confirmed",
        buyer_id=7,
        total_amount=Decimal("10.50"),
        date_created=now,
    )
    return OrderCreated(
        event_id=uuid4(),
        occurred_at=now,
        seller_id=5,
        order_id=2000001,
        order=summary,
        revealed_by="notification:x",
    )


def test_a_mail_copy_is_a_valid_event_of_another_order_with_its_own_stable_id() -> None:
    template = json.loads(_event().model_dump_json())
    copy = ORDERS_EVENT.validate_json(mail_copy(template, MAIL_ORDER_BASE + 3))
    assert copy.type == "order.created"
    assert copy.order_id == copy.order.order_id == MAIL_ORDER_BASE + 3
    assert copy.seller_id == 5
    assert str(copy.event_id) != template["event_id"]
    assert mail_copy(template, MAIL_ORDER_BASE + 3) == mail_copy(template, MAIL_ORDER_BASE + 3)


def test_only_the_copies_mails_are_counted() -> None:
    sender = "Peepers <vendas@peepers.local>"
    assert is_copy_mail(message_id(MAIL_ORDER_BASE, "created", sender), 10)
    assert is_copy_mail(message_id(MAIL_ORDER_BASE + 9, "created", sender), 10)
    assert not is_copy_mail(message_id(MAIL_ORDER_BASE + 10, "created", sender), 10)
    assert not is_copy_mail(message_id(2000003508419013, "paid", sender), 10)
    assert not is_copy_mail("<bench-raw-1@peepers.local>", 10)


def test_the_webhook_names_the_order_on_orders_v2() -> None:
    body = json.loads(webhook("run", 4, 5, 2000001))
    assert body["_id"] == "run-4"
    assert body["resource"] == "/orders/2000001"
    assert body["topic"] == "orders_v2"
    assert body["user_id"] == 5


def test_the_breakdown_is_per_notification_record_between_two_scrapes() -> None:
    def scrape(records: float, took_s: float, calls: float, cpu_s: float) -> Scrape:
        topic = {"consumer": "orders", "topic": "t.orders_v2"}
        return Scrape(
            [
                Sample("peepers_consumer_processing_seconds_count", topic, records),
                Sample("peepers_consumer_processing_seconds_sum", topic, took_s),
                Sample("peepers_ml_request_duration_seconds_count", {"family": "orders"}, calls),
                Sample("peepers_ml_request_duration_seconds_sum", {}, calls * 0.02),
                Sample("peepers_ml_limiter_wait_seconds_total", {}, 0.0),
                Sample("process_cpu_seconds_total", {}, cpu_s),
            ]
        )

    figures = breakdown(scrape(10, 1.0, 10, 5.0), scrape(110, 11.0, 160, 6.0), ["t.orders_v2"])
    assert figures["records"] == 100
    assert figures["take_to_ack_ms"] == pytest.approx(100.0)
    assert figures["ml_calls_per_record"] == pytest.approx(1.5)
    assert figures["ml_call_ms"] == pytest.approx(20.0)
    assert figures["ml_calls_per_record_by_family"] == {"orders": 1.5}
    assert figures["cpu_ms_per_record"] == pytest.approx(10.0)
