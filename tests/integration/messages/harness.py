"""The messages handlers wired to the real Redis, Kafka changelogs and an in-process sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis.asyncio as aioredis

from peepers_common.changelog import Changelog, ChangelogView
from peepers_common.changelog import RedisViewMarker as Marker
from peepers_common.errors import InfrastructureError
from peepers_common.events import MESSAGES_EVENT, DomainEvent, MessagesEvent
from peepers_common.kafka import Published, end_offsets
from peepers_common.ml import HttpMlApi
from peepers_common.namespaces import Namespace, connect_redis
from peepers_common.notifications import Notification
from peepers_common.settings import KafkaSettings
from peepers_common.testing import InMemoryEventPublisher
from peepers_common.topic_admin import ensure_topics
from peepers_common.topics import (
    MESSAGES_CONVERSATIONS_CHANGELOG,
    MESSAGES_SUBMISSIONS_CHANGELOG,
    MESSAGES_TICKETS_CHANGELOG,
    TOPICS,
    TopicSpec,
)
from peepers_messages import commands
from peepers_messages.adapters import (
    RedisConversations,
    RedisMirror,
    RedisSubmissions,
    RedisTickets,
)
from peepers_messages.backfill import RedisBackfillCheckpoints
from peepers_messages.handlers import Messages, Outcome, on_claim, on_message, on_question
from peepers_messages.ports import MessagesSource
from peepers_messages.settings import Settings
from peepers_sandbox.app import Sandbox
from peepers_sandbox.config import DEMO_APP_ID
from tests.support import ml_client, unique, wait_until

EVENTS_TOPIC = "events"
E = TypeVar("E", bound=DomainEvent)


@dataclass
class Stack:
    sandbox: Sandbox
    seller: int
    deps: Messages
    subs: commands.Submissions
    publisher: InMemoryEventPublisher
    redis: aioredis.Redis
    namespace: Namespace
    ml: HttpMlApi

    def events(self, kind: str | None = None) -> list[MessagesEvent]:
        found = [MESSAGES_EVENT.validate_json(r.value) for r in self.publisher.records]
        return [e for e in found if kind is None or e.type == kind]

    def events_of(self, cls: type[E]) -> list[E]:
        return [e for e in self.events() if isinstance(e, cls)]

    async def answer(self, question_id: int, text: str, key: str) -> dict[str, Any]:
        return await commands.answer(self.seller, question_id, text, key, self.deps, self.subs)

    async def send(self, pack_id: int, text: str, key: str) -> dict[str, Any]:
        return await commands.send(self.seller, pack_id, text, key, self.deps, self.subs)

    async def counter(self, family: str) -> int:
        for counter in await self.sandbox.admin.rate_limit_counters():
            if counter["family"] == family:
                return int(counter["total"])
        return 0


async def changelog_topics(kafka: KafkaSettings) -> tuple[str, str, str]:
    prefix = f"{unique('test')}."
    names = (
        MESSAGES_TICKETS_CHANGELOG,
        MESSAGES_SUBMISSIONS_CHANGELOG,
        MESSAGES_CONVERSATIONS_CHANGELOG,
    )
    await ensure_topics(
        kafka,
        [
            TopicSpec(prefix + n, TOPICS[n].partitions, TOPICS[n].description, TOPICS[n].config)
            for n in names
        ],
    )
    created = [prefix + n for n in names]

    async def described() -> bool:
        # A new topic reaches every broker's metadata a little after it is created.
        try:
            await end_offsets(kafka, created)
        except InfrastructureError:
            return False
        return True

    await wait_until(described, timeout_s=15)
    return created[0], created[1], created[2]


async def open_changelog(
    stack: AsyncExitStack, kafka: KafkaSettings, topic: str, view: ChangelogView, marker: Marker
) -> Changelog:
    """A changelog of the service's own state, checking its view's marker often."""
    return await stack.enter_async_context(
        Changelog(kafka, topic, view=view, marker=marker, check_every_s=0.5)
    )


@asynccontextmanager
async def messages_stack(
    sandbox: Sandbox,
    kafka: KafkaSettings,
    *,
    redis: aioredis.Redis | None = None,
    scope: str | None = None,
    topics: tuple[str, str, str] | None = None,
) -> AsyncIterator[Stack]:
    """The handlers for the sandbox's first seller, as one worker replica wires them."""
    seller = sandbox.state.market.sellers[0]
    settings = Settings()
    async with AsyncExitStack() as stack:
        if redis is None:
            redis = connect_redis(settings.redis)
            stack.push_async_callback(redis.aclose)
        namespace = Namespace("messages", scope=scope or unique("msg"))
        ticket_topic, submission_topic, conversation_topic = topics or await changelog_topics(kafka)
        tickets = RedisTickets(redis, namespace)
        submissions = RedisSubmissions(redis, namespace)
        conversations = RedisConversations(redis, namespace)
        ticket_log, submission_log, conversation_log = [
            await open_changelog(stack, kafka, topic, view, Marker(redis, namespace, name))
            for topic, view, name in (
                (ticket_topic, tickets, "tickets"),
                (submission_topic, submissions, "submissions"),
                (conversation_topic, conversations, "conversations"),
            )
        ]

        async def restored() -> bool:
            return ticket_log.ready and submission_log.ready and conversation_log.ready

        # As /readyz would: a test stopping mid-restore would cut its Kafka clients off.
        await wait_until(restored, timeout_s=20)
        ml, _tokens = await stack.enter_async_context(ml_client(sandbox, [seller]))
        publisher = InMemoryEventPublisher()
        deps = Messages(
            ml=ml,
            mirror=RedisMirror(redis, namespace),
            tickets=tickets,
            ticket_log=ticket_log,
            conversations=conversations,
            conversation_log=conversation_log,
            publisher=publisher,
            events_topic=EVENTS_TOPIC,
        )
        subs = commands.Submissions(
            view=submissions, log=submission_log, wait_s=5.0, message_max_chars=350
        )
        yield Stack(sandbox, seller, deps, subs, publisher, redis, namespace, ml)


def notification(
    topic: str, resource: str, seller: int, actions: list[str] | None = None
) -> Notification:
    body: dict[str, Any] = {
        "_id": unique("n"),
        "resource": resource,
        "user_id": seller,
        "topic": topic,
        "application_id": DEMO_APP_ID,
        "attempts": 1,
        "received_at": datetime.now(UTC).isoformat(),
    }
    if actions is not None:
        body["actions"] = actions
    return Notification.model_validate(body)


async def new_question(messages: Stack, text: str = "Tem na cor azul?") -> int:
    created = await messages.sandbox.admin.event("question", seller_id=messages.seller, text=text)
    question_id = int(created["id"])
    outcome = await on_question(
        notification("questions", f"/questions/{question_id}", messages.seller), messages.deps
    )
    assert outcome is Outcome.CREATED
    return question_id


def an_order(messages: Stack) -> dict[str, Any]:
    """A paid order of the seller, its conversation open and empty, without a claim."""
    market = messages.sandbox.state.market
    for order_id in market.orders_by_seller[messages.seller]:
        order = market.orders[order_id]
        pack_id = order["pack_id"]
        quiet = not order["mediations"] and not market.messages_by_pack[pack_id]
        if (
            order["status"] == "paid"
            and quiet
            and market.conversation_status(pack_id)["status"] == "active"
        ):
            return dict(order)
    msg = "the sandbox has no paid order with an open, empty conversation and no claim"
    raise AssertionError(msg)


async def buyer_message(messages: Stack, pack_id: int, text: str = "Quando chega?") -> str:
    message = await messages.sandbox.admin.event("message", pack_id=pack_id, text=text)
    outcome = await on_message(
        notification("messages", message["id"], messages.seller, ["created"]), messages.deps
    )
    assert outcome is Outcome.CREATED
    return str(message["id"])


async def claim_changed(messages: Stack, claim_id: int, action: str = "claims") -> Outcome:
    resource = f"/post-purchase/v1/claims/{claim_id}"
    return await on_claim(
        notification("post_purchase", resource, messages.seller, [action]), messages.deps
    )


class NoChangelog:
    """Tickets' changelog as the handlers see it, kept in memory (Kafka is not the subject)."""

    def __init__(self) -> None:
        self.records: list[tuple[str | bytes, bytes | None]] = []

    async def write(self, key: str | bytes, value: bytes | None) -> Published:
        self.records.append((key, value))
        return Published("tickets", 0, len(self.records) - 1)

    async def verify(self) -> bool:
        return False


def wired(ml: MessagesSource, redis: aioredis.Redis) -> tuple[Messages, RedisBackfillCheckpoints]:
    """The handlers over ``ml`` and the real Redis (a scope of their own), without Kafka."""
    namespace = Namespace("messages", scope=unique("bf"))
    deps = Messages(
        ml=ml,
        mirror=RedisMirror(redis, namespace),
        tickets=RedisTickets(redis, namespace),
        ticket_log=NoChangelog(),
        conversations=RedisConversations(redis, namespace),
        conversation_log=NoChangelog(),
        publisher=InMemoryEventPublisher(),
        events_topic="events",
    )
    return deps, RedisBackfillCheckpoints(redis, namespace)
