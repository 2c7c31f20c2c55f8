"""Property-based bad input: whatever arrives, ingest never answers 5xx, never crashes, and
publishes exactly the notifications it acked as published."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peepers_common.notifications import Notification
from peepers_ingest.app import create_app
from tests.unit.ingest.fakes import (
    FakeDedup,
    FakePublisher,
    FakeSpool,
    loopback_settings,
    notification_body,
)

ML_ADDRESS = "54.88.218.97"


@dataclass
class Running:
    port: int
    publisher: FakePublisher
    spool: FakeSpool


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One ingest over fakes on its own loop in a thread, so sync hypothesis tests can hit it.

    Loopback is a trusted proxy and only ML_ADDRESS is allowed: a request passes the
    allowlist only through an X-Forwarded-For the proxy vouches for.
    """
    publisher, spool = FakePublisher(), FakeSpool()
    settings_ = loopback_settings(
        Path(tmp_path_factory.mktemp("spool")),
        allowed_cidrs=[ip_network(f"{ML_ADDRESS}/32")],
        trusted_proxies=[ip_network("127.0.0.0/8")],
    )
    app = create_app(settings_, publisher=publisher, spool=spool, dedup=FakeDedup())
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    started = threading.Event()
    port: list[int] = []

    async def serve() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port.append(runner.addresses[0][1])
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop).result(timeout=10)
    assert started.wait(10)
    try:
        yield Running(port[0], publisher, spool)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/webhooks/mercadolibre", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
# Near misses: a real notification with some fields replaced, dropped or added.
near_misses = st.builds(
    lambda n, replaced, dropped: {
        k: v for k, v in {**notification_body(n), **replaced}.items() if k not in dropped
    },
    st.integers(min_value=0, max_value=10**6),
    st.dictionaries(
        st.sampled_from(
            [
                "_id",
                "id",
                "resource",
                "user_id",
                "topic",
                "application_id",
                "attempts",
                "sent",
                "actions",
                "extra",
            ]
        ),
        json_values,
        max_size=3,
    ),
    st.sets(st.sampled_from(["_id", "resource", "user_id", "topic", "application_id"]), max_size=2),
)
bodies = (
    st.binary(max_size=3000)
    | json_values.map(lambda v: json.dumps(v).encode())
    | near_misses.map(lambda v: json.dumps(v).encode())
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
forwarded = st.one_of(
    st.none(),
    st.just(ML_ADDRESS),
    header_text,
    st.lists(
        st.sampled_from([ML_ADDRESS, "203.0.113.9", "10.0.0.1", "::1", "garbage"]),
        min_size=1,
        max_size=4,
    ).map(", ".join),
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/x-www-form-urlencoded",
        "",
    ]
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies, content_type=content_types, xff=forwarded)
def test_no_input_gets_a_5xx_and_only_acked_notifications_are_published(
    running: Running, body: bytes, content_type: str, xff: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    if xff is not None:
        headers["X-Forwarded-For"] = xff
    before = len(running.publisher.acked)
    status, answer = post(running.port, body, headers)
    published = len(running.publisher.acked) - before
    assert status < 500, answer
    reply: dict[str, Any] = json.loads(answer)
    if status != 200:
        assert published == 0
        assert "error" in reply
        return
    # Only a real ML source, through the trusted proxy, with a valid body gets a 200.
    assert xff is not None
    assert xff.rsplit(",", 1)[-1].strip() == ML_ADDRESS
    assert Notification.model_validate_json(body).notification_id == reply["id"]
    assert published == (1 if reply["outcome"] == "published" else 0)
    assert running.spool.depth == 0


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(min_value=0, max_value=10**9),
    attempts=st.lists(st.integers(1, 8), min_size=1, max_size=4),
)
def test_any_valid_notification_is_published_exactly_once_across_redeliveries(
    running: Running, n: int, attempts: list[int]
) -> None:
    body = notification_body(n, _id=f"prop-{n}")
    for attempt in attempts:
        status, _ = post(
            running.port,
            json.dumps({**body, "attempts": attempt}).encode(),
            {"Content-Type": "application/json", "X-Forwarded-For": ML_ADDRESS},
        )
        assert status == 200
    assert [r.ce_id for r in running.publisher.acked].count(f"prop-{n}") == 1
