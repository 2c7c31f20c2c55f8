"""The pure parts of bench/web_live.py (no stack, nothing timed)."""

from __future__ import annotations

import json

import pytest

from bench.web_live import FIRST_SELLER, event_body, latencies, parse, seller_of
from peepers_auth.web.live import parse_event


def test_pages_spread_evenly_over_the_sellers() -> None:
    owners = [seller_of(page, 10) for page in range(50)]
    assert {owners.count(s) for s in set(owners)} == {5}
    assert min(owners) == FIRST_SELLER


def test_a_bench_event_is_one_the_web_app_reads_as_an_order_update() -> None:
    event = parse_event("t", 0, 7, event_body(FIRST_SELLER, 42))
    assert event is not None
    assert (event.seller_id, event.part, event.ref) == (FIRST_SELLER, "orders", "42")
    assert json.loads(event_body(FIRST_SELLER, 1))["type"] == "order.created"


def test_latencies_pair_each_arrival_with_its_publish() -> None:
    found = latencies({1: 10.0, 2: 11.0}, [(1, 10.05), (2, 11.5), (3, 12.0)])
    assert found == pytest.approx([50.0, 500.0])
    assert parse([]).pages == 50
