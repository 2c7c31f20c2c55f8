"""Redis views of the messages service's own state, restored from its changelogs.

Tickets (``peepers.messages.tickets.changelog``, keyed by claim id) and submissions
(``peepers.messages.submissions.changelog``: answers and messages sellers sent, keyed by
what they answer) are Peepers-owned: the changelog is their system of record and these
views are rebuilt from it after a loss (`peepers_common.changelog`). Every record carries
a ``version``; `apply_versioned.lua` never lets an older one replace a newer one, so a
restore running beside live writes is harmless.

Keys: ``ticket:{claim}`` (hash: ``data``, ``version``), ``seller:{s}:tickets`` (zset by
opening time), ``ticket:{claim}:announced`` (the last version whose events went out: a
mirror, republished with the same event ids when lost); ``submission:{id}`` (hash).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Final, cast

import redis.asyncio as aioredis
from pydantic import AwareDatetime, BaseModel, ConfigDict
from redis.exceptions import WatchError

from peepers_common.changelog import ChangelogEntry
from peepers_common.errors import ResourceBusy
from peepers_common.events import TicketSnapshot
from peepers_common.namespaces import Namespace, redis_errors

_APPLY: Final = resources.files(__package__).joinpath("apply_versioned.lua").read_text()
DELETE_IF_EQUAL: Final = resources.files(__package__).joinpath("delete_if_equal.lua").read_text()
_LOCK_TTL_MS: Final = 15_000
_LOCK_WAIT_S: Final = 10.0


class TicketRecord(BaseModel):
    """A ticket's changelog record: the ticket, and the event its last change makes."""

    model_config = ConfigDict(frozen=True)

    ticket: TicketSnapshot
    event: str  # ticket.opened | ticket.updated | ticket.closed
    changed: tuple[str, ...] = ()


class Submission(BaseModel):
    """An answer or message a seller submitted, by idempotency key."""

    model_config = ConfigDict(frozen=True)

    id: str  # answer:{question_id} | message:{pack_id}:{key}
    seller_id: int
    key: str
    body_sha256: str
    state: str  # pending | sent | failed
    submitted_at: AwareDatetime
    result: dict[str, object] | None = None
    error: str | None = None
    version: int = 1


class RedisTickets:
    def __init__(self, redis: aioredis.Redis, namespace: Namespace) -> None:
        self._redis = redis
        self._ns = namespace
        self._apply = redis.register_script(_APPLY)
        self._release = redis.register_script(DELETE_IF_EQUAL)

    async def apply(self, entries: Sequence[ChangelogEntry]) -> None:
        for entry in entries:
            if entry.value is None:
                continue  # tickets are never deleted
            await self.put(TicketRecord.model_validate_json(entry.value))

    async def put(self, record: TicketRecord) -> bool:
        ticket = record.ticket
        with redis_errors("writing a ticket"):
            done = await self._apply(
                keys=[
                    self._ns.key("ticket", ticket.claim_id),
                    self._ns.key("seller", ticket.seller_id, "tickets"),
                ],
                args=[
                    ticket.version,
                    record.model_dump_json(),
                    str(ticket.claim_id),
                    ticket.opened_at.timestamp(),
                ],
            )
        return bool(done)

    async def record(self, claim_id: int) -> TicketRecord | None:
        with redis_errors("reading a ticket"):
            raw = await self._redis.hget(self._ns.key("ticket", claim_id), "data")
        return None if raw is None else TicketRecord.model_validate_json(raw)

    async def get(self, claim_id: int) -> TicketSnapshot | None:
        record = await self.record(claim_id)
        return None if record is None else record.ticket

    @asynccontextmanager
    async def lock(self, claim_id: int) -> AsyncIterator[None]:
        """Hold the ticket while it is read, changed and written (replicas and the worker)."""
        key, token = self._ns.key("ticket", claim_id, "lock"), uuid.uuid4().hex
        deadline = time.monotonic() + _LOCK_WAIT_S
        with redis_errors("locking a ticket"):
            while not await self._redis.set(key, token, nx=True, px=_LOCK_TTL_MS):
                if time.monotonic() > deadline:
                    msg = f"ticket {claim_id} is being changed by someone else; try again"
                    raise ResourceBusy(msg)
                await asyncio.sleep(0.02)
        try:
            yield
        finally:
            with redis_errors("unlocking a ticket"):
                await self._release(keys=[key], args=[token])

    async def of_seller(self, seller_id: int) -> list[TicketSnapshot]:
        """The seller's tickets, newest first."""
        key = self._ns.key("seller", seller_id, "tickets")
        with redis_errors("listing tickets"):
            ids = cast(list[bytes], await self._redis.zrevrange(key, 0, -1))
            if not ids:
                return []
            async with self._redis.pipeline(transaction=False) as pipe:
                for claim_id in ids:
                    pipe.hget(self._ns.key("ticket", claim_id.decode()), "data")
                raws = await pipe.execute()
        return [TicketRecord.model_validate_json(raw).ticket for raw in raws if raw is not None]

    async def announced(self, claim_id: int) -> int:
        with redis_errors("reading a ticket's announced version"):
            raw = await self._redis.get(self._ns.key("ticket", claim_id, "announced"))
        return int(raw) if raw else 0

    async def mark_announced(self, claim_id: int, version: int) -> None:
        key = self._ns.key("ticket", claim_id, "announced")
        with redis_errors("marking a ticket announced"):
            current = await self._redis.get(key)
            if current is None or int(current) < version:
                await self._redis.set(key, version)


class RedisSubmissions:
    def __init__(self, redis: aioredis.Redis, namespace: Namespace) -> None:
        self._redis = redis
        self._ns = namespace
        self._apply = redis.register_script(_APPLY)

    def _key(self, submission_id: str) -> str:
        return self._ns.key("submission", submission_id)

    async def apply(self, entries: Sequence[ChangelogEntry]) -> None:
        for entry in entries:
            if entry.value is not None:
                await self.put(Submission.model_validate_json(entry.value))

    async def put(self, submission: Submission) -> bool:
        key = self._key(submission.id)
        with redis_errors("writing a submission"):
            done = await self._apply(
                keys=[key, key], args=[submission.version, submission.model_dump_json(), "", 0]
            )
        return bool(done)

    async def claim(self, submission: Submission) -> Submission | None:
        """Hold ``submission.id`` for this submission; None if held, else the holder.

        The view is the lock replicas share: the first submitter wins, the others find
        its record (and wait for its outcome, or are refused a different body).
        """
        key = self._key(submission.id)
        with redis_errors("claiming a submission"):
            created = await self._redis.hsetnx(key, "data", submission.model_dump_json())
            if created:
                await self._redis.hsetnx(key, "version", submission.version)
                return None
        return await self.get(submission.id)

    async def get(self, submission_id: str) -> Submission | None:
        with redis_errors("reading a submission"):
            raw = await self._redis.hget(self._key(submission_id), "data")
        return None if raw is None else Submission.model_validate_json(raw)

    async def replace(self, old: Submission, new: Submission) -> bool:
        """Put ``new`` in place of ``old`` (a failed submission tried again); False if raced."""
        key = self._key(submission_id := old.id)
        with redis_errors(f"replacing submission {submission_id}"):
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    if await pipe.hget(key, "data") != old.model_dump_json().encode():
                        return False
                    pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
                    pipe.hset(key, mapping={"data": new.model_dump_json(), "version": new.version})
                    await pipe.execute()
                except WatchError:
                    return False
        return True

    async def release(self, submission: Submission) -> None:
        """Forget a claim that never reached the changelog (its write failed)."""
        with redis_errors("releasing a submission"):
            current = await self._redis.hget(self._key(submission.id), "data")
            if current == submission.model_dump_json().encode():
                await self._redis.delete(self._key(submission.id))


class ConversationRecord(BaseModel):
    """A record of the conversations index: a pack holding a conversation, or a scan.

    ``pack_id`` None says every conversation of the seller was indexed by a scan of all
    their orders: from then on the index alone says which packs a rebuild reads again.
    """

    model_config = ConfigDict(frozen=True)

    seller_id: int
    pack_id: int | None = None

    @property
    def key(self) -> str:
        return f"scanned:{self.seller_id}" if self.pack_id is None else f"pack:{self.pack_id}"


class RedisConversations:
    """The conversations index's view: ``conversations:{s}:packs`` (set), ``:scanned``."""

    def __init__(self, redis: aioredis.Redis, namespace: Namespace) -> None:
        self._redis = redis
        self._ns = namespace

    async def apply(self, entries: Sequence[ChangelogEntry]) -> None:
        records = [ConversationRecord.model_validate_json(e.value) for e in entries if e.value]
        if records:
            await self.put(records)

    async def put(self, records: Sequence[ConversationRecord]) -> None:
        """Add ``records`` (sets only grow: applying one again or out of order is harmless)."""
        with redis_errors("writing the conversations index"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for record in records:
                    if record.pack_id is None:
                        pipe.set(self._ns.key("conversations", record.seller_id, "scanned"), 1)
                    else:
                        key = self._ns.key("conversations", record.seller_id, "packs")
                        pipe.sadd(key, record.pack_id)
                await pipe.execute()

    async def holds(self, seller_id: int, pack_id: int) -> bool:
        key = self._ns.key("conversations", seller_id, "packs")
        with redis_errors("reading the conversations index"):
            return bool(await self._redis.sismember(key, str(pack_id)))

    async def scanned(self, seller_id: int) -> bool:
        with redis_errors("reading the conversations index"):
            return bool(
                await self._redis.exists(self._ns.key("conversations", seller_id, "scanned"))
            )

    async def packs(self, seller_id: int) -> list[int]:
        """The seller's indexed packs, in id order."""
        key = self._ns.key("conversations", seller_id, "packs")
        with redis_errors("reading the conversations index"):
            members = cast(set[bytes], await self._redis.smembers(key))
        return sorted(int(m) for m in members)
