"""Live updates: each page gets its own seller's events, and resumes with Last-Event-ID."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka import ConsumerRecord, TopicPartition

from peepers_auth.web.adapters.live_feed import _follow
from peepers_auth.web.live import RELOAD, LiveEvent, LiveHub, parse_event, seller_status
from peepers_auth.web.security import hub_key
from tests.unit.web.fakes import OTHER, SELLER

Client = TestClient[web.Request, web.Application]


def _raw(seller: int, kind: str, **fields: object) -> bytes:
    return json.dumps({"seller_id": seller, "type": kind, "event_id": "e", **fields}).encode()


def _event(offset: int, seller: int = SELLER, kind: str = "order.created") -> LiveEvent:
    event = parse_event("peepers.orders.v1", 0, offset, _raw(seller, kind, order_id=offset))
    assert event is not None
    return event


class TestParsing:
    def test_events_are_read_by_type_and_seller_whatever_else_they_carry(self) -> None:
        event = parse_event("t", 2, 7, _raw(SELLER, "question.answered", question_id=5))
        assert event is not None
        assert (event.id, event.part, event.ref) == ("t/2/7", "questions", "5")

    def test_garbage_and_unknown_families_are_skipped(self) -> None:
        assert parse_event("t", 0, 1, b"not json") is None
        assert parse_event("t", 0, 1, b"[]") is None
        assert parse_event("t", 0, 1, _raw(SELLER, "weather.changed")) is None
        assert parse_event("t", 0, 1, json.dumps({"type": "order.paid"}).encode()) is None

    def test_the_sellers_topic_gives_the_connection_status(self) -> None:
        raw = _raw(
            SELLER,
            "seller.reauth_required",
            occurred_at="2026-12-07T10:00:00+00:00",
            reason="invalid_grant",
        )
        found = seller_status(raw)
        assert found is not None
        assert found[0] == SELLER
        assert found[1].status == "reauth_required"
        assert seller_status(b"{}") is None


class TestHub:
    async def test_a_page_gets_only_its_sellers_events(self) -> None:
        hub = LiveHub(10, 600)
        async with hub.follow(SELLER, None) as (missed, queue):
            assert missed == []
            hub.publish(_event(1, OTHER))
            hub.publish(_event(2))
            got = await asyncio.wait_for(queue.get(), 1)
            assert got.id == "peepers.orders.v1/0/2"
            assert queue.empty()
        assert hub.open_pages() == 0

    def test_last_event_id_resumes_after_what_the_page_saw(self) -> None:
        hub = LiveHub(10, 600)
        for offset in range(1, 5):
            hub.publish(_event(offset))
        missed = hub.missed(SELLER, "peepers.orders.v1/0/2")
        assert [e.id for e in missed] == ["peepers.orders.v1/0/3", "peepers.orders.v1/0/4"]

    def test_an_id_no_longer_kept_asks_the_page_to_reload(self) -> None:
        hub = LiveHub(10, 600)
        for offset in range(1, 30):
            hub.publish(_event(offset))
        [reload] = hub.missed(SELLER, "peepers.orders.v1/0/1")
        assert reload.type == RELOAD

    def test_events_older_than_the_window_are_forgotten_and_so_are_idle_sellers(self) -> None:
        now = [1000.0]
        hub = LiveHub(10, 60, clock=lambda: now[0])
        hub.publish(_event(1))
        hub.publish(_event(2, OTHER))
        now[0] += 30
        hub.publish(_event(3))
        assert [e.id for e in hub.missed(SELLER, "peepers.orders.v1/0/1")] == [
            "peepers.orders.v1/0/3"
        ]
        now[0] += 45  # event 1 (and OTHER's only one) are 75 s old now
        [reload] = hub.missed(SELLER, "peepers.orders.v1/0/1")
        assert reload.type == RELOAD
        hub.sweep()
        assert hub.sellers_kept() == 1  # OTHER had nothing left and no page

    async def test_a_page_too_far_behind_is_told_to_reload_instead_of_growing(self) -> None:
        hub = LiveHub(10, 600, page_queue=2)
        async with hub.follow(SELLER, None) as (_, queue):
            for offset in range(1, 5):
                hub.publish(_event(offset))
            kinds = [queue.get_nowait().type for _ in range(queue.qsize())]
        assert kinds[-1] == RELOAD


class TestStream:
    async def test_the_stream_sends_missed_events_then_live_ones(self, client: Client) -> None:
        hub = client.app[hub_key]
        hub.publish(_event(1))
        hub.publish(_event(2))
        async with client.get(
            "/app/live", headers={"Last-Event-ID": "peepers.orders.v1/0/1"}
        ) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            first = await asyncio.wait_for(response.content.readuntil(b"\r\n\r\n"), 2)
            assert b"id: peepers.orders.v1/0/2" in first
            assert b"event: orders" in first
            hub.publish(_event(3, OTHER))
            hub.publish(_event(4))
            second = await asyncio.wait_for(response.content.readuntil(b"\r\n\r\n"), 2)
            assert b"id: peepers.orders.v1/0/4" in second

    async def test_the_stream_needs_a_session(self, client: Client) -> None:
        client.session.cookie_jar.clear()
        response = await client.get("/app/live")
        assert response.status == 401


class _ScriptedConsumer:
    """Stands in for AIOKafkaConsumer in `_follow`: each getmany returns the next batch of a
    script (an empty one is a fetch that came back before any data), then blocks."""

    def __init__(self, batches: list[dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]]):
        self._batches = batches
        self._positions: dict[TopicPartition, int] = {}

    async def getmany(self, **_: object) -> dict[TopicPartition, list[Any]]:
        if not self._batches:
            await asyncio.Event().wait()
        batch = self._batches.pop(0)
        for tp, records in batch.items():
            self._positions[tp] = records[-1].offset + 1
        return batch

    async def position(self, tp: TopicPartition) -> int:
        return self._positions.get(tp, 0)


def _record(tp: TopicPartition, offset: int, seller: int) -> ConsumerRecord[bytes, bytes]:
    body = {"seller_id": seller, "type": "order.created", "order_id": offset}
    return ConsumerRecord(
        tp.topic, tp.partition, offset, 0, 0, None, json.dumps(body).encode(), None, 0, 0, []
    )


async def test_a_replica_is_ready_once_it_read_up_to_the_ends_it_started_with() -> None:
    a, b = TopicPartition("orders", 0), TopicPartition("orders", 1)
    consumer = _ScriptedConsumer(
        [{}, {a: [_record(a, 0, 1), _record(a, 1, 1)]}, {b: [_record(b, 0, 2)]}]
    )
    hub, ready = LiveHub(keep=10, keep_s=60), asyncio.Event()
    follow = asyncio.create_task(_follow(cast(Any, consumer), hub, "sellers", {a: 2, b: 1}, ready))
    try:
        await asyncio.wait_for(ready.wait(), 1)
        # Nothing it had to read is missing once it says it is ready.
        assert hub.missed(1, "orders/0/1") == []
        assert hub.missed(2, "orders/1/0") == []
    finally:
        follow.cancel()
