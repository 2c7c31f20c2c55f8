"""The mirror of ML's questions, conversations and claims in Redis, with its indexes.

A mirror may be lost at any time (ARCHITECTURE.md): everything here is rebuilt from ML.
Keys (under ``messages:`` or ``messages:<scope>:``):

* ``question:{id}`` (hash: ``data`` JSON, ``version``), ``seller:{s}:questions`` and
  ``item:{i}:questions`` (zsets by creation), ``seller:{s}:inbox`` (unanswered, by age),
  ``seller:{s}:qterm:{word}`` (sets: the folded words of the question text);
* ``pack:{p}`` (hash: the conversation), ``pack:{p}:messages`` (hash id → JSON),
  ``seller:{s}:packs`` (zset by last message);
* ``claim:{id}`` (hash: ``data``, ``version``), ``seller:{s}:claims`` (zset);
* ``timeline:order:{o}`` (zset of entry ids by time) and ``timeline:order:{o}:entries``;
  ``order:{o}:pack`` (the pack an order belongs to);
* ``outbox:{kind}:{id}``: the encoded events of the last write, until published;
* ``sellers``: every seller seen (for metrics).

Writes are compare-and-set on the entity's ``version`` (ML's ``last_updated``), and carry
the write's events into the outbox in the same transaction: questions in one script
(``put_questions.lua``, a backfill's page of them at once, read by ``read_questions.lua``),
the rest with WATCH/MULTI.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from importlib import resources
from typing import Final, NamedTuple, cast

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from peepers_common.errors import CacheUnavailable
from peepers_common.events import ClaimSnapshot, QuestionSnapshot
from peepers_common.namespaces import Namespace, redis_errors
from peepers_common.text import terms
from peepers_messages.adapters.redis_views import DELETE_IF_EQUAL
from peepers_messages.domain import UNANSWERED
from peepers_messages.ports import ConversationView, MessageView, TimelineEntry

_PUT_QUESTIONS: Final = resources.files(__package__).joinpath("put_questions.lua").read_text()
_READ_QUESTIONS: Final = resources.files(__package__).joinpath("read_questions.lua").read_text()


def _ts(value: datetime) -> float:
    return value.timestamp()


def _ids(raw: object) -> list[str]:
    """Members of a zset or set reply (bytes, as the client decodes nothing) as strings."""
    return [m.decode() if isinstance(m, bytes) else str(m) for m in cast(Iterable[object], raw)]


class QuestionState(NamedTuple):
    """A question as the mirror holds it: its unsent events and its cached version."""

    pending: bytes | None
    cached: QuestionSnapshot | None


class QuestionWrite(NamedTuple):
    question: QuestionSnapshot
    previous: QuestionSnapshot | None
    pending: bytes | None


def _question_write(write: QuestionWrite) -> dict[str, object]:
    """A write as ``put_questions.lua`` takes it."""
    question, previous = write.question, write.previous
    old_terms = set(terms(previous.text)) if previous is not None else set()
    return {
        "id": str(question.id),
        "seller": str(question.seller_id),
        "item": question.item_id,
        "created": repr(_ts(question.date_created)),
        "version": question.last_updated.isoformat(),
        "expected": previous.last_updated.isoformat() if previous is not None else "",
        "data": question.model_dump_json(),
        "unanswered": question.status == UNANSWERED,
        "terms": sorted(set(terms(question.text)) - old_terms),
        "pending": write.pending.decode() if write.pending is not None else "",
    }


class RedisMirror:
    def __init__(self, redis: aioredis.Redis, namespace: Namespace) -> None:
        self._redis = redis
        self._ns = namespace
        self._delete_if_equal = redis.register_script(DELETE_IF_EQUAL)
        self._put_questions = redis.register_script(_PUT_QUESTIONS)
        self._read_questions = redis.register_script(_READ_QUESTIONS)

    def _k(self, *parts: str | int) -> str:
        return self._ns.key(*parts)

    # ---------------------------------------------------------------- outbox

    async def pending(self, entity: str) -> bytes | None:
        with redis_errors("reading an outbox"):
            raw = await self._redis.get(self._k("outbox", entity))
        return raw if isinstance(raw, bytes) else None

    async def clear_pending(self, entity: str, pending: bytes) -> None:
        """Forget published events, if they are still the ones in the outbox."""
        await self.clear_many([(entity, pending)])

    async def clear_many(self, published: Sequence[tuple[str, bytes]]) -> None:
        """`clear_pending` for many entities, in one round trip.

        An outbox a newer write filled meanwhile keeps its events.
        """
        if not published:
            return
        with redis_errors("clearing outboxes"):
            await self._delete_if_equal(
                keys=[self._k("outbox", entity) for entity, _ in published],
                args=[pending for _, pending in published],
            )

    def _outbox(self, pipe: Pipeline, entity: str, pending: bytes | None) -> None:
        if pending is not None:
            pipe.set(self._k("outbox", entity), pending)

    async def _cas(self, key: str, expected: str | None, write: Callable[[Pipeline], None]) -> bool:
        """Queue ``write`` atomically while ``key``'s version is ``expected``; else False."""
        with redis_errors(f"writing {key}"):
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    current = await pipe.hget(key, "version")
                    if (current.decode() if isinstance(current, bytes) else current) != expected:
                        return False
                    pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
                    write(pipe)
                    await pipe.execute()
                except WatchError:
                    return False
        return True

    # ---------------------------------------------------------------- questions

    async def question(self, question_id: int) -> QuestionSnapshot | None:
        with redis_errors("reading a question"):
            raw = await self._redis.hget(self._k("question", question_id), "data")
        return None if raw is None else QuestionSnapshot.model_validate_json(raw)

    async def put_question(
        self,
        question: QuestionSnapshot,
        *,
        previous: QuestionSnapshot | None,
        pending: bytes | None,
    ) -> bool:
        """Write ``question`` over ``previous`` (None: nothing cached), with its indexes."""
        return await self.put_questions([QuestionWrite(question, previous, pending)])

    async def question_states(self, ids: Sequence[int]) -> list[QuestionState]:
        """Each question's unsent events and cached version, in one round trip."""
        if not ids:
            return []
        with redis_errors("reading questions"):
            raws = await self._read_questions(args=[self._ns.prefix, *map(str, ids)])
        return [
            QuestionState(
                pending if isinstance(pending, bytes) else None,
                None if raw is None else QuestionSnapshot.model_validate_json(raw),
            )
            for pending, raw in zip(raws[::2], raws[1::2], strict=True)
        ]

    async def put_questions(self, writes: Sequence[QuestionWrite]) -> bool:
        """Write questions at once (``put_questions.lua``), each over its ``previous``.

        False, and nothing written, if any of them is no longer at its ``previous``.
        """
        if not writes:
            return True
        page = [_question_write(write) for write in writes]
        with redis_errors("writing questions"):
            written = await self._put_questions(args=[self._ns.prefix, json.dumps(page)])
        return bool(written)

    async def _questions(self, ids: Sequence[str]) -> list[QuestionSnapshot]:
        if not ids:
            return []
        with redis_errors("reading questions"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for qid in ids:
                    pipe.hget(self._k("question", qid), "data")
                raws = await pipe.execute()
        return [QuestionSnapshot.model_validate_json(raw) for raw in raws if raw is not None]

    async def inbox(
        self, seller_id: int, *, offset: int, limit: int
    ) -> tuple[list[QuestionSnapshot], int]:
        """Unanswered questions, oldest first, and how many there are."""
        key = self._k("seller", seller_id, "inbox")
        with redis_errors("reading the inbox"):
            ids = _ids(await self._redis.zrange(key, offset, offset + limit - 1))
            total = await self._redis.zcard(key)
        return await self._questions(ids), int(total)

    async def search_questions(
        self,
        seller_id: int,
        *,
        q: str | None,
        status: str | None,
        item_id: str | None,
        limit: int,
    ) -> list[QuestionSnapshot]:
        """The seller's questions, newest first, filtered by words, status and item."""
        words = terms(q or "")
        with redis_errors("searching questions"):
            if words:
                keys = [self._k("seller", seller_id, "qterm", w) for w in words]
                members = _ids(await self._redis.sinter(keys))
                ids = sorted(members, key=int, reverse=True)
            elif item_id is not None:
                ids = _ids(
                    await self._redis.zrevrange(self._k("item", item_id, "questions"), 0, -1)
                )
            else:
                ids = _ids(
                    await self._redis.zrevrange(self._k("seller", seller_id, "questions"), 0, -1)
                )
        found = [
            question
            for question in await self._questions(ids)
            if question.seller_id == seller_id
            and (status is None or question.status == status)
            and (item_id is None or question.item_id == item_id)
        ]
        return found[:limit]

    async def question_counts(self, seller_id: int, breached_before: datetime) -> tuple[int, int]:
        """Unanswered questions, and those asked before ``breached_before``."""
        key = self._k("seller", seller_id, "inbox")
        with redis_errors("counting questions"):
            total = await self._redis.zcard(key)
            breached = await self._redis.zcount(key, "-inf", f"({_ts(breached_before)}")
        return int(total), int(breached)

    async def sellers(self) -> list[int]:
        with redis_errors("listing sellers"):
            members = _ids(await self._redis.smembers(self._k("sellers")))
        return sorted(int(m) for m in members)

    # ---------------------------------------------------------------- conversations

    async def conversation(self, pack_id: int) -> ConversationView | None:
        with redis_errors("reading a conversation"):
            head = await self._redis.hget(self._k("pack", pack_id), "data")
            raws = await self._redis.hvals(self._k("pack", pack_id, "messages"))
        if head is None:
            return None
        messages = sorted(
            (MessageView.model_validate_json(raw) for raw in raws),
            key=lambda m: (m.created_at.timestamp() if m.created_at else 0.0, m.id),
        )
        return ConversationView.model_validate_json(head).model_copy(
            update={"messages": tuple(messages)}
        )

    async def put_conversation(
        self,
        conversation: ConversationView,
        message: MessageView | None,
        *,
        pending: bytes | None,
    ) -> bool:
        """Write the conversation's head and ``message``; False if ``message`` was unchanged."""
        head_key = self._k("pack", conversation.pack_id)
        messages_key = self._k("pack", conversation.pack_id, "messages")
        head = conversation.model_copy(update={"messages": ()}).model_dump_json()
        with redis_errors("writing a conversation"):
            async with self._redis.pipeline(transaction=True) as pipe:
                for _ in range(5):
                    try:
                        await pipe.watch(messages_key)
                        changed = False
                        if message is not None:
                            old = await pipe.hget(messages_key, message.id)
                            changed = old is None or MessageView.model_validate_json(old) != message
                        pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
                        pipe.hset(head_key, "data", head)
                        pipe.sadd(self._k("sellers"), str(conversation.seller_id))
                        if message is not None and changed:
                            pipe.hset(messages_key, message.id, message.model_dump_json())
                            stamp = message.created_at.timestamp() if message.created_at else 0.0
                            pipe.zadd(
                                self._k("seller", conversation.seller_id, "packs"),
                                {str(conversation.pack_id): stamp},
                                gt=True,
                            )
                            self._outbox(pipe, f"pack:{conversation.pack_id}", pending)
                        await pipe.execute()
                        return changed
                    except WatchError:
                        continue
        msg = f"pack {conversation.pack_id}: the conversation kept changing under writes"
        raise CacheUnavailable(msg)

    async def conversations(self, seller_id: int, *, limit: int) -> list[ConversationView]:
        with redis_errors("listing conversations"):
            ids = _ids(
                await self._redis.zrevrange(self._k("seller", seller_id, "packs"), 0, limit - 1)
            )
        found = [await self.conversation(int(pack)) for pack in ids]
        return [c for c in found if c is not None]

    # ---------------------------------------------------------------- claims

    async def claim(self, claim_id: int) -> ClaimSnapshot | None:
        with redis_errors("reading a claim"):
            raw = await self._redis.hget(self._k("claim", claim_id), "data")
        return None if raw is None else ClaimSnapshot.model_validate_json(raw)

    async def put_claim(
        self, claim: ClaimSnapshot, *, previous: ClaimSnapshot | None, pending: bytes | None
    ) -> bool:
        key = self._k("claim", claim.id)

        def write(pipe: Pipeline) -> None:
            pipe.hset(
                key, mapping={"data": claim.model_dump_json(), "version": _claim_version(claim)}
            )
            opened = _ts(claim.date_created or claim.last_updated)
            pipe.zadd(self._k("seller", claim.seller_id, "claims"), {str(claim.id): opened})
            pipe.sadd(self._k("sellers"), str(claim.seller_id))
            self._outbox(pipe, f"claim:{claim.id}", pending)

        expected = _claim_version(previous) if previous is not None else None
        return await self._cas(key, expected, write)

    async def claims(self, seller_id: int) -> list[ClaimSnapshot]:
        with redis_errors("listing claims"):
            ids = _ids(await self._redis.zrevrange(self._k("seller", seller_id, "claims"), 0, -1))
        found = [await self.claim(int(i)) for i in ids]
        return [c for c in found if c is not None]

    # ---------------------------------------------------------------- order timelines

    async def link_order(self, order_id: int, seller_id: int, pack_id: int | None) -> None:
        """Remember whose the order is, and its pack (from the orders' events)."""
        with redis_errors("linking an order"):
            await self._redis.set(self._k("order", order_id, "seller"), str(seller_id))
            if pack_id is not None:
                await self._redis.set(self._k("order", order_id, "pack"), str(pack_id))

    async def order_seller(self, order_id: int) -> int | None:
        with redis_errors("reading an order's seller"):
            raw = await self._redis.get(self._k("order", order_id, "seller"))
        return int(raw) if raw else None

    async def pack_of(self, order_id: int) -> int:
        """The order's pack; ML uses the order id where an order has no pack."""
        with redis_errors("reading an order's pack"):
            raw = await self._redis.get(self._k("order", order_id, "pack"))
        return int(raw) if raw else order_id

    async def add_timeline(self, owner: str, entries: Iterable[TimelineEntry]) -> None:
        """Add entries to ``owner``'s timeline (``order:{id}`` or ``pack:{id}``), idempotently."""
        entries = list(entries)
        if not entries:
            return
        with redis_errors("writing a timeline"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zadd(self._k("timeline", owner), {e.id: _ts(e.at) for e in entries})
                pipe.hset(
                    self._k("timeline", owner, "entries"),
                    mapping={e.id: e.model_dump_json() for e in entries},
                )
                await pipe.execute()

    async def timeline(self, owner: str) -> list[TimelineEntry]:
        with redis_errors("reading a timeline"):
            ids = _ids(await self._redis.zrange(self._k("timeline", owner), 0, -1))
            raws = (
                await self._redis.hmget(self._k("timeline", owner, "entries"), ids) if ids else []
            )
        return [TimelineEntry.model_validate_json(raw) for raw in raws if raw is not None]


def _claim_version(claim: ClaimSnapshot) -> str:
    # The detail (due date, who acts) changes without ML moving last_updated.
    return json.dumps(
        [
            claim.last_updated.isoformat(),
            claim.due_date.isoformat() if claim.due_date else None,
            claim.action_responsible,
        ],
        separators=(",", ":"),
    )
