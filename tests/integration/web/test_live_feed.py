"""Domain events on real Kafka reach the open pages of their seller, and survive a restart."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import aiohttp
import pytest

from peepers_common.kafka import AIOKafkaEventPublisher
from peepers_common.settings import KafkaSettings
from tests.integration.auth.harness import SELLER, auth_stack, login
from tests.integration.web.harness import web_process
from tests.support import create_topic

pytestmark = pytest.mark.integration


def _event(seller: int, kind: str, **fields: object) -> bytes:
    body = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": datetime.now(UTC).isoformat(),
        "seller_id": seller,
        "type": kind,
        **fields,
    }
    return json.dumps(body).encode()


async def _next_event(response: aiohttp.ClientResponse) -> dict[str, str]:
    """The next SSE event's fields (comments, i.e. pings, skipped)."""
    while True:
        block = await asyncio.wait_for(response.content.readuntil(b"\r\n\r\n"), 10)
        fields = {}
        for line in block.decode().splitlines():
            name, sep, value = line.partition(": ")
            if sep and name:
                fields[name] = value
        if "event" in fields:
            return fields


@asynccontextmanager
async def step(name: str, within_s: float = 20) -> AsyncIterator[None]:
    """Fail naming the step that hung (CI once hit the 60 s test timeout, no step named)."""
    try:
        async with asyncio.timeout(within_s):
            yield
    except TimeoutError:
        msg = f"{name}: not done within {within_s:.0f} s"
        raise AssertionError(msg) from None


async def test_an_event_reaches_its_sellers_page_and_a_restarted_replica_resumes_it(
    kafka: KafkaSettings,
) -> None:
    async with step("creating the topic"):
        orders_topic = await create_topic(kafka)
    async with (
        step("the auth stack's start or stop, or the publisher's", 55),
        auth_stack(kafka) as stack,
        stack.browser() as browser,
    ):
        async with step("logging in"):
            await login(stack, browser)
        async with AIOKafkaEventPublisher(kafka) as publisher:
            async with (
                step("the first replica"),
                web_process(stack, live_topics=[orders_topic]) as pages,
                browser.get(f"{pages.url}/app/live") as stream,
            ):
                assert stream.status == 200
                await publisher.publish(
                    orders_topic, key=b"2", value=_event(SELLER + 1, "order.created", order_id=2)
                )
                await publisher.publish(
                    orders_topic, key=b"1", value=_event(SELLER, "order.created", order_id=1)
                )
                first = await _next_event(stream)
                assert first["event"] == "orders"
                assert json.loads(first["data"])["ref"] == "1"
            # The page was away while another order came; a new replica resumes it.
            async with step("publishing while no replica runs"):
                await publisher.publish(
                    orders_topic, key=b"3", value=_event(SELLER, "order.paid", order_id=3)
                )
            async with (
                step("the restarted replica"),
                web_process(stack, live_topics=[orders_topic]) as restarted,
            ):
                headers = {"Last-Event-ID": first["id"]}
                async with browser.get(f"{restarted.url}/app/live", headers=headers) as stream:
                    missed = await _next_event(stream)
                    assert json.loads(missed["data"])["ref"] == "3"
                # An id it cannot know asks the page to reload instead of losing updates.
                headers = {"Last-Event-ID": f"{orders_topic}/0/999999"}
                async with browser.get(f"{restarted.url}/app/live", headers=headers) as stream:
                    assert (await _next_event(stream))["event"] == "reload"
