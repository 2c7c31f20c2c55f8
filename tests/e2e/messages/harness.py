"""The messages service end to end: the sandbox's notifier -> ingest -> Kafka -> the
messages worker (a real process) -> Redis and ``peepers.messages.v1``.

`Deployment.differences` compares what the mirror holds with what ML (the in-process
sandbox) serves: every question, conversation and claim of the seller.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from peepers_common.events import MessagesEvent
from peepers_common.namespaces import Namespace
from peepers_common.settings import KafkaSettings
from peepers_common.topics import PEEPERS_SELLERS
from peepers_messages.adapters import RedisMirror, RedisTickets
from peepers_sandbox.config import DEMO_APP_ID
from tests.integration.auth.harness import SELLER, AuthStack, auth_stack, login
from tests.integration.ingest.support import URL, running_ingest
from tests.integration.messages.worker import WorkerRun, messages_topics, worker_run
from tests.support import wait_until

# Activity that touches questions, conversations and claims (and the orders they need).
MESSAGES_MIX = {
    "new_order": 1.0,
    "payment": 1.0,
    "question": 2.0,
    "answer": 1.0,
    "question_moderation": 0.3,
    "message": 2.0,
    "seller_message": 0.3,
    "conversation_block": 0.1,
    "claim": 0.6,
    "claim_action": 0.2,
    "claim_dispute": 0.3,
    "claim_close": 0.3,
}
TOPICS = ["questions", "messages", "post_purchase"]
# Event types that announce something that happens once per entity.
_ONCE = frozenset(
    {"question.received", "question.answered", "message.received", "claim.opened", "ticket.opened"}
)


@dataclass
class Deployment:
    auth: AuthStack
    run: WorkerRun
    kafka: KafkaSettings
    redis: aioredis.Redis

    @property
    def market(self) -> Any:
        return self.auth.sandbox.state.market

    @property
    def namespace(self) -> Namespace:
        return Namespace("messages", scope=self.run.scope)

    @property
    def mirror(self) -> RedisMirror:
        return RedisMirror(self.redis, self.namespace)

    @property
    def tickets(self) -> RedisTickets:
        return RedisTickets(self.redis, self.namespace)

    async def connect(self) -> None:
        """Log the seller in (the backfill), then let ML notify ingest."""
        async with self.auth.browser() as browser:
            await login(self.auth, browser)
        await self.auth.sandbox.admin.patch_notifier(
            enabled=True, retry_gaps_s=[0.2, 0.5, 1.0, 2.0, 4.0]
        )

    async def activity(self, rate: float, changes: int) -> None:
        """Run ``changes`` changes of the mix at ``rate``, then let ML deliver them."""
        admin = self.auth.sandbox.admin
        done = self.auth.sandbox.state.activity.done
        target = sum(done.values()) + changes
        await admin.start_activity(rate, MESSAGES_MIX)

        async def made() -> bool:
            return sum(done.values()) >= target

        await wait_until(made, timeout_s=60, every_s=0.1)
        await admin.stop_activity()
        await admin.wait_notifier_idle(within_s=60)

    async def differences(self) -> list[str]:
        """What the mirror holds that differs from what ML serves (empty: converged)."""
        market, mirror, wrong = self.market, self.mirror, []
        for question_id in market.questions_by_seller[SELLER]:
            served = market.questions[question_id]
            cached = await mirror.question(question_id)
            if cached is None:
                if served["status"] == "UNANSWERED":
                    wrong.append(f"question {question_id}: unanswered at ML, not mirrored")
                continue
            answer = served["answer"]
            if (cached.status, cached.answer_text) != (
                served["status"],
                answer["text"] if answer else None,
            ):
                wrong.append(f"question {question_id}: {cached.status} vs {served['status']}")
        for pack_id, message_ids in market.messages_by_pack.items():
            if not message_ids or market.pack_parties(pack_id)[0] != SELLER:
                continue
            conversation = await mirror.conversation(pack_id)
            if conversation is None:
                wrong.append(f"pack {pack_id}: not mirrored")
                continue
            if {m.id for m in conversation.messages} != set(message_ids):
                wrong.append(f"pack {pack_id}: messages differ")
            unread = market.unread.get(SELLER, {}).get(pack_id, 0)
            if conversation.unread != unread:
                wrong.append(f"pack {pack_id}: unread {conversation.unread} vs {unread}")
        for claim_id in market.claims_by_seller[SELLER]:
            claim = market.claims[claim_id]
            mirrored = await mirror.claim(claim_id)
            ticket = await self.tickets.get(claim_id)
            if mirrored is None or ticket is None:
                wrong.append(f"claim {claim_id}: mirrored {mirrored is not None}, ticket {ticket}")
                continue
            if (mirrored.status, mirrored.stage) != (claim["status"], claim["stage"]):
                wrong.append(f"claim {claim_id}: {mirrored.status}/{mirrored.stage} vs ML")
            if (ticket.claim_status, ticket.claim_stage) != (claim["status"], claim["stage"]):
                wrong.append(f"ticket {claim_id}: does not follow its claim")
        return wrong

    async def wait_converged(self, timeout_s: float = 60) -> None:
        left: list[str] = []

        async def converged() -> bool:
            left[:] = await self.differences()
            return not left

        try:
            await wait_until(converged, timeout_s=timeout_s, every_s=0.5)
        except AssertionError:
            msg = f"{len(left)} differences from ML: {left[:8]}"
            raise AssertionError(msg) from None

    async def events(self) -> list[MessagesEvent]:
        return await self.run.events()


def duplicate_announcements(events: list[MessagesEvent]) -> list[str]:
    """Changes announced under two event ids (a same-id republish is allowed)."""
    distinct = {str(e.event_id): e for e in events}.values()
    keys: Counter[tuple[str, str]] = Counter()
    for event in distinct:
        entity = getattr(event, "question_id", None) or getattr(event, "message_id", None)
        entity = entity or getattr(event, "claim_id", None)
        if event.type in _ONCE:
            keys[(event.type, str(entity))] += 1
    return [f"{key}: {n} ids" for key, n in keys.items() if n > 1]


@asynccontextmanager
async def deployment(
    kafka: KafkaSettings,
    redis: aioredis.Redis,
    tmp_path: Path,
    *,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[Deployment]:
    """One seller, ML notifying a real ingest on the worker's topics (worker not started)."""
    prefix = await messages_topics(kafka)
    async with (
        auth_stack(kafka, topic=prefix + PEEPERS_SELLERS) as auth,
        running_ingest(kafka, tmp_path / "spool", prefix, application_id=DEMO_APP_ID) as ingest,
    ):
        await auth.sandbox.admin.patch_app(
            DEMO_APP_ID, callback_url=str(ingest.make_url(URL)), topics=TOPICS
        )
        run = worker_run(auth, prefix, kafka, tmp_path / "messages.log", extra_env=extra_env or {})
        yield Deployment(auth=auth, run=run, kafka=kafka, redis=redis)
