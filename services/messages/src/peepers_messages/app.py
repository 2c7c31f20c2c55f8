"""The composition root of the messages worker: a Faust app, its agents and owned clients.

The ready gate, raw topics, record adapter, agents and consumer settings come from the
consumer kit (`peepers_common.consumer`). Topics (``settings.topic_prefix`` before each):

* ``ml.notifications.questions`` → `on_question`
* ``ml.notifications.messages`` → `on_message`
* ``ml.notifications.post_purchase`` → `on_claim` (and the claim's ticket)
* ``peepers.orders.v1`` → order timelines
* ``peepers.sellers.v1`` → a backfill on ``seller.connected`` / ``seller.reconnected``
* the ``.retry`` topics of all of them → the same handlers once a parked record is due

The worker also serves the API (`peepers_messages.api`) and owns three changelogs
(tickets, submissions, the conversations index), whose Redis views it restores whenever
they are found lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import faust

from peepers_common.changelog import Changelog, ChangelogView, RedisViewMarker
from peepers_common.consumer import ConsumerKit, ConsumerRuntime
from peepers_common.consuming import Handler, InboundRecord, RecordProcessor
from peepers_common.errors import PeepersError
from peepers_common.events import SELLER_EVENT, event_type_of
from peepers_common.kafka import AIOKafkaEventPublisher
from peepers_common.ml import HttpMlApi, OutboundLimiter, ml_session
from peepers_common.ml.broker_tokens import BrokerTokenProvider
from peepers_common.namespaces import Namespace, connect_redis, redis_errors
from peepers_common.notifications import changed_resource, decode_value
from peepers_common.read_api import serve
from peepers_common.rebuild import CacheGuard, Resync
from peepers_common.topics import (
    MESSAGES_CONVERSATIONS_CHANGELOG,
    MESSAGES_SUBMISSIONS_CHANGELOG,
    MESSAGES_TICKETS_CHANGELOG,
    PEEPERS_MESSAGES,
    PEEPERS_ORDERS,
    PEEPERS_SELLERS,
    notification_topic,
)
from peepers_messages import commands
from peepers_messages.adapters import (
    RedisConversations,
    RedisMirror,
    RedisSubmissions,
    RedisTickets,
)
from peepers_messages.api import create_api, seller_stats
from peepers_messages.backfill import (
    BackfillOptions,
    ClaimScope,
    RedisBackfillCheckpoints,
    backfill,
)
from peepers_messages.handlers import Messages, on_claim, on_message, on_order_event, on_question
from peepers_messages.rebuild import connected_sellers, rebuild_messages
from peepers_messages.settings import Settings

log = logging.getLogger(__name__)

CONSUMER: Final = "messages"
QUESTIONS: Final = notification_topic("questions")
MESSAGES: Final = notification_topic("messages")
CLAIMS: Final = notification_topic("post_purchase")
NOTIFICATION_TOPICS: Final = (QUESTIONS, MESSAGES, CLAIMS)
CONSUMED: Final = (*NOTIFICATION_TOPICS, PEEPERS_ORDERS, PEEPERS_SELLERS)
_BACKFILL_TRIGGERS: Final = frozenset({"seller.connected", "seller.reconnected"})
_STATS_EVERY_S: Final = 15.0


@dataclass(frozen=True)
class Wiring:
    deps: Messages
    subs: commands.Submissions
    checkpoints: RedisBackfillCheckpoints
    processor: RecordProcessor
    changelogs: tuple[Changelog, ...]
    ping: Callable[[], Awaitable[None]]
    # Watches for a lost mirror and rebuilds it (the worker's; None in a shell's backfill).
    guard: CacheGuard | None = None

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        """Ready once the owned views are restored; a mirror being rebuilt still serves.

        While a lost mirror is rebuilt the answer stays 200 with ``"cache": "rebuilding"``:
        tickets and answering work, the inbox fills back up as the backfill runs.
        """
        await self.ping()
        views = {
            log.topic: {"state": log.state.value, **log.progress.as_dict()}
            for log in self.changelogs
        }
        ready = all(log.ready for log in self.changelogs)
        cache = "steady" if self.guard is None else self.guard.status
        status = "ready" if ready else "restoring"
        return ready, {"status": status, "cache": cache, "changelogs": views}


@asynccontextmanager
async def open_wiring(settings: Settings, *, watch_cache: bool = False) -> AsyncIterator[Wiring]:
    """Every client the service uses, opened together and closed in reverse (LIFO).

    With ``watch_cache`` the wiring holds a `CacheGuard` (not started: the worker starts
    it) that rebuilds the mirror after a loss.
    """
    async with AsyncExitStack() as stack:
        redis = connect_redis(settings.redis)
        stack.push_async_callback(redis.aclose)
        session = ml_session(settings.ml)
        stack.push_async_callback(session.close)
        publisher = await stack.enter_async_context(AIOKafkaEventPublisher(settings.kafka))
        namespace = Namespace("messages", scope=settings.redis_scope)
        tickets = RedisTickets(redis, namespace)
        submissions = RedisSubmissions(redis, namespace)
        prefix = settings.topic_prefix

        async def changelog(topic: str, view: ChangelogView, name: str) -> Changelog:
            return await stack.enter_async_context(
                Changelog(
                    settings.kafka,
                    prefix + topic,
                    view=view,
                    marker=RedisViewMarker(redis, namespace, name),
                    check_every_s=settings.changelog_check_every_s,
                )
            )

        ticket_log = await changelog(MESSAGES_TICKETS_CHANGELOG, tickets, "tickets")
        submission_log = await changelog(MESSAGES_SUBMISSIONS_CHANGELOG, submissions, "submissions")
        conversations = RedisConversations(redis, namespace)
        conversation_log = await changelog(
            MESSAGES_CONVERSATIONS_CHANGELOG, conversations, "conversations"
        )
        ml = HttpMlApi(
            session,
            settings.ml,
            BrokerTokenProvider(session, settings.token_broker),
            OutboundLimiter(redis, settings.ml, scope=settings.redis_scope),
        )

        async def ping() -> None:
            with redis_errors("answering a ping"):
                await redis.ping()

        deps = Messages(
            ml=ml,
            mirror=RedisMirror(redis, namespace),
            tickets=tickets,
            ticket_log=ticket_log,
            conversations=conversations,
            conversation_log=conversation_log,
            publisher=publisher,
            events_topic=prefix + PEEPERS_MESSAGES,
        )
        checkpoints = RedisBackfillCheckpoints(redis, namespace)
        guard: CacheGuard | None = None
        if watch_cache:

            async def rebuild(epoch: str) -> Resync | None:
                sellers = await connected_sellers(settings.kafka, prefix + PEEPERS_SELLERS)
                return await rebuild_messages(
                    epoch,
                    deps,
                    (ticket_log, submission_log, conversation_log),
                    sellers,
                    checkpoints,
                    backfill_options(settings, run_id=epoch),
                )

            guard = CacheGuard(redis, namespace, rebuild, options=settings.rebuild)
            stack.push_async_callback(guard.aclose)
            deps = dataclasses.replace(deps, cache=guard)

        yield Wiring(
            deps=deps,
            subs=commands.Submissions(
                view=submissions,
                log=submission_log,
                wait_s=settings.submission_wait_s,
                message_max_chars=settings.message_max_chars,
            ),
            checkpoints=checkpoints,
            guard=guard,
            processor=RecordProcessor(
                consumer=CONSUMER, publisher=publisher, policy=settings.retry.policy()
            ),
            changelogs=(ticket_log, submission_log, conversation_log),
            ping=ping,
        )


def backfill_options(settings: Settings, **overrides: Any) -> BackfillOptions:
    return BackfillOptions(
        page_size=settings.backfill.page_size,
        item_concurrency=settings.backfill.item_concurrency,
        conversation_days=settings.backfill.conversation_days,
        **overrides,
    )


class Runtime(ConsumerRuntime):
    """The worker's clients and API, started before the agents take records."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self._wiring: Wiring | None = None

    async def open(self, stack: AsyncExitStack) -> RecordProcessor:
        settings = self.settings
        self._wiring = wiring = await stack.enter_async_context(
            open_wiring(settings, watch_cache=True)
        )
        if wiring.guard is not None:
            await wiring.guard.start()  # a lost mirror is noticed before records are taken
        api = create_api(settings, deps=wiring.deps, subs=wiring.subs, ready=wiring.ready)
        await serve(api, stack, settings.http_host, settings.http_port)
        stats = asyncio.create_task(self._refresh_stats(), name="messages-stats")
        stack.push_async_callback(_cancel, stats)
        log.info("messages worker ready; API on port %d", settings.http_port)
        return wiring.processor

    @property
    def wiring(self) -> Wiring:
        if self._wiring is None:
            msg = "the messages runtime is not started"
            raise RuntimeError(msg)
        return self._wiring

    async def _refresh_stats(self) -> None:
        """Keep the per-seller gauges (unanswered, breached, open, due soon) current."""
        while True:
            try:
                for seller_id in await self.wiring.deps.mirror.sellers():
                    await seller_stats(self.wiring.deps, self.settings, seller_id)
            except PeepersError as exc:
                log.warning("could not refresh the messages gauges: %s", exc)
            await asyncio.sleep(_STATS_EVERY_S)

    async def handle_question(self, record: InboundRecord) -> str:
        return (await on_question(decode_value(record.value), self.wiring.deps)).value

    async def handle_message(self, record: InboundRecord) -> str:
        return (await on_message(decode_value(record.value), self.wiring.deps)).value

    async def handle_claim(self, record: InboundRecord) -> str:
        return (await on_claim(decode_value(record.value), self.wiring.deps)).value

    async def handle_order(self, record: InboundRecord) -> str:
        return (await on_order_event(record.value, self.wiring.deps)).value

    async def handle_seller(self, record: InboundRecord) -> str:
        kind = event_type_of(record.value)
        if kind not in _BACKFILL_TRIGGERS:
            return "ignored"
        event = SELLER_EVENT.validate_json(record.value)
        # Back after a disconnection: claims may have closed meanwhile (backfill.py).
        claims: ClaimScope = "reconnected" if kind == "seller.reconnected" else "open"
        state = await backfill(
            event.seller_id,
            self.wiring.deps,
            self.wiring.checkpoints,
            backfill_options(self.settings, run_id=str(event.event_id), claims=claims),
        )
        log.info("backfill of seller %d: %s", event.seller_id, state.counts)
        return "backfilled"

    def handler_for(self, source_topic: str) -> Handler:
        handlers: dict[str, Handler] = {
            QUESTIONS: self.handle_question,
            MESSAGES: self.handle_message,
            CLAIMS: self.handle_claim,
            PEEPERS_ORDERS: self.handle_order,
            PEEPERS_SELLERS: self.handle_seller,
        }
        for topic, handler in handlers.items():
            if source_topic.endswith(topic):
                return handler
        msg = f"the messages worker does not consume {source_topic}"
        raise PeepersError(msg)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(settings: Settings) -> faust.App:
    kit = ConsumerKit(settings, consumer=CONSUMER)
    runtime = kit.serve(Runtime(settings, loop=kit.app.loop, beacon=kit.app.beacon))
    # ML's notifications, each read as it is now, are coalesced (a call of the messaging
    # quota saved each); Peepers' own order events each carry a transition: never.
    kit.batch_agent(
        "messages.questions", [QUESTIONS], runtime.handle_question, coalesce=changed_resource
    )
    kit.batch_agent(
        "messages.messages", [MESSAGES], runtime.handle_message, coalesce=changed_resource
    )
    kit.batch_agent("messages.claims", [CLAIMS], runtime.handle_claim, coalesce=changed_resource)
    kit.batch_agent("messages.orders", [PEEPERS_ORDERS], runtime.handle_order)
    kit.record_agent("messages.sellers", [PEEPERS_SELLERS], runtime.handle_seller)
    kit.retry_agent("messages.retries", CONSUMED, runtime.handler_for)
    return kit.app
