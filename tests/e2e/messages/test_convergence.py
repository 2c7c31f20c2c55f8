"""End to end: sandbox activity on questions, conversations and claims converges in Redis,
each real change announced once; a lost mirror is rebuilt with tickets intact; a worker
killed mid-stream loses and doubles nothing."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from peepers_common.events import QuestionReceived, QuestionSnapshotted, TicketOpened
from peepers_common.namespaces import connect_redis
from peepers_common.settings import KafkaSettings, RedisSettings
from tests.e2e.messages.harness import MESSAGES_MIX, deployment, duplicate_announcements
from tests.integration.auth.harness import SELLER
from tests.integration.ingest.support import free_port
from tests.integration.messages.worker import ready_worker
from tests.support import private_redis, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

FAST = {
    "MESSAGES_SESSION_TIMEOUT_S": "6",
    "MESSAGES_HEARTBEAT_INTERVAL_S": "1",
    "MESSAGES_REBUILD__CHECK_EVERY_S": "1",
    # A flush loses the limiter's budget: the worker then waits out a full counted window
    # (docs/ml-client.md), 6.25 s on these limits, not 62 s.
    "MESSAGES_ML__APP_LIMIT": '{"amount": 500, "per_s": 5}',
    "MESSAGES_ML__FAMILY_LIMITS": json.dumps(
        {family: {"amount": 500, "per_s": 5} for family in ("messages", "messages_write")}
    ),
}


async def test_sandbox_activity_converges_and_each_change_is_announced_once(
    kafka: KafkaSettings, messages_redis: aioredis.Redis, tmp_path: Path
) -> None:
    async with deployment(kafka, messages_redis, tmp_path) as d, ready_worker(d.run):
        await d.connect()
        await d.activity(rate=20, changes=200)
        await d.wait_converged()
        events = await d.events()
    assert duplicate_announcements(events) == []
    received = {e.question_id for e in events if isinstance(e, QuestionReceived)}
    questions = set(d.market.questions_by_seller[SELLER])
    assert received <= questions
    claims = set(d.market.claims_by_seller[SELLER])
    opened = {e.claim_id for e in events if isinstance(e, TicketOpened)}
    assert opened == claims


async def test_tickets_survive_a_redis_flush_with_their_notes_and_assignees(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    async with private_redis(tmp_path, users=("messages",)) as url:
        redis = connect_redis(RedisSettings(url=url, username="messages"))
        try:
            await _flush_and_rebuild(kafka, redis, url, tmp_path)
        finally:
            await redis.aclose()


async def _flush_and_rebuild(
    kafka: KafkaSettings, redis: aioredis.Redis, url: str, tmp_path: Path
) -> None:
    env = {**FAST, "MESSAGES_REDIS__URL": url}
    async with deployment(kafka, redis, tmp_path, extra_env=env) as d, ready_worker(d.run):
        await d.connect()
        admin = d.auth.sandbox.admin
        order = await admin.event("new_order", seller_id=SELLER)
        await admin.event("payment", order_id=order["id"])
        claim = await admin.event("claim", order_id=order["id"])
        question = await admin.event("question", seller_id=SELLER)
        await d.wait_converged()
        claim_id = int(claim["id"])
        # Support works the ticket through the API (as people do).
        url_of = f"/tickets/{claim_id}"
        await d.run.post(f"{url_of}/assignee", {"assignee": "ana"})
        await d.run.post(f"{url_of}/notes", {"author": "ana", "text": "Liguei ao comprador"})
        await redis.flushall()  # our own Redis: everything the service kept there is gone

        async def rebuilt() -> bool:
            kept = await d.tickets.get(claim_id)
            mirrored = await d.mirror.question(int(question["id"]))
            return kept is not None and mirrored is not None

        await wait_until(rebuilt, timeout_s=40, every_s=0.25)
        kept = await d.tickets.get(claim_id)
        assert kept is not None
        assert kept.assignee == "ana"
        assert [n.text for n in kept.notes] == ["Liguei ao comprador"]
        await d.wait_converged()
        events = await d.events()
    snapshots = [e.question_id for e in events if isinstance(e, QuestionSnapshotted)]
    assert int(question["id"]) in snapshots
    # Announced as received once, before the flush (a republish keeps its id).
    received = {e.event_id for e in events if isinstance(e, QuestionReceived)}
    assert len(received) == len({e.question_id for e in events if isinstance(e, QuestionReceived)})


async def test_a_worker_killed_mid_stream_loses_and_doubles_nothing(
    kafka: KafkaSettings, messages_redis: aioredis.Redis, tmp_path: Path
) -> None:
    async with deployment(kafka, messages_redis, tmp_path, extra_env=FAST) as d:
        async with ready_worker(d.run) as first:
            await d.connect()
            await d.auth.sandbox.admin.start_activity(20, MESSAGES_MIX)

            async def some_announced() -> bool:
                return len(await d.events()) >= 20

            await wait_until(some_announced, timeout_s=30, every_s=0.2)
            first.kill()  # SIGKILL: no rebalance, no commit, no flush
            first.wait()
        await d.activity(rate=20, changes=150)  # ML keeps changing while no worker runs
        async with ready_worker(replace(d.run, port=free_port())):
            await d.wait_converged(timeout_s=90)
            events = await d.events()
    assert duplicate_announcements(events) == []
