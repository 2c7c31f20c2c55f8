"""The ledger of emails sent: a compacted Kafka changelog, with a Redis view.

The changelog (``peepers.orders.emails.changelog``, `peepers_common.changelog`) is the
system of record: a mail is durably in the ledger once its record is acknowledged by
every in-sync replica. The view (``orders:mail:{order_id}:{transition}`` → the ``Message-ID``)
answers lookups; it is restored from the changelog at start and whenever its marker is
found missing (a Redis flush), and a lookup that finds nothing asks the changelog to
verify the view first, so a lost view never reads as "not sent".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, cast
from uuid import uuid4

import redis.asyncio as aioredis

from peepers_common.changelog import Changelog, ChangelogEntry
from peepers_common.errors import CacheUnavailable
from peepers_common.lease import RedisLease
from peepers_common.namespaces import Namespace, redis_errors


class RedisMailView:
    """`ChangelogView` of the ledger: one key per mail sent, never removed."""

    def __init__(self, redis: aioredis.Redis, namespace: Namespace) -> None:
        self._redis = redis
        self._ns = namespace

    def key(self, ledger_key: str) -> str:
        return self._ns.key("mail", ledger_key)

    async def apply(self, entries: Sequence[ChangelogEntry]) -> None:
        with redis_errors("restoring the mail ledger"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for entry in entries:
                    key = self.key(entry.key.decode())
                    if entry.value is None:
                        pipe.delete(key)  # type: ignore[unused-awaitable]
                    else:
                        pipe.set(key, entry.value)  # type: ignore[unused-awaitable]
                await pipe.execute()

    async def set(self, ledger_key: str, value: bytes) -> None:
        with redis_errors("writing the mail ledger"):
            await self._redis.set(self.key(ledger_key), value)

    async def get(self, ledger_key: str) -> bytes | None:
        with redis_errors("reading the mail ledger"):
            return cast("bytes | None", await self._redis.get(self.key(ledger_key)))


_PENDING: Final = b"pending:"


class RedisMailClaims:
    """`MailClaims` in Redis: one key per mail being sent.

    ``orders:mail:{key}:sending`` names the process sending the mail, for ``ttl_s`` (longer
    than a send takes), so a process that died mid-send lets it go.
    """

    def __init__(self, redis: aioredis.Redis, namespace: Namespace, ttl_s: float) -> None:
        self._redis = redis
        self._ns = namespace
        self._ttl_s = ttl_s
        self.owner = f"mailer-{uuid4().hex}"

    async def take(self, key: str) -> bool:
        lease = RedisLease(self._redis, self._ns.key("mail", key, "sending"), owner=self.owner)
        return await lease.take(self._ttl_s)


class ChangelogMailLedger:
    """`MailLedger`: the view first, then the changelog (acks=all), then the view again.

    The view is written first because it is the fastest write after the SMTP server's
    250: the window in which a crash forgets a send is one Redis round trip, not a Kafka
    acknowledgement. That first value is marked pending; once the changelog holds the
    record the mark goes. A lookup that finds a pending mark (a crash between the two)
    writes the changelog record then, so the system of record catches up before anyone
    relies on it.

    If Redis fails right after the 250 (the first write), the changelog is written anyway,
    and the process keeps the mail until the view takes it (its next lookup of that mail,
    the record's retry): a Redis outage at that moment no longer sends the mail twice (the
    proof met one: Redis restarted 1 s after a send).
    """

    def __init__(self, changelog: Changelog, view: RedisMailView) -> None:
        self._changelog = changelog
        self._view = view
        # Mails in the changelog whose view write failed: Message-ID by ledger key.
        self._unviewed: dict[str, bytes] = {}

    async def sent(self, key: str) -> bool:
        unviewed = self._unviewed.get(key)
        if unviewed is not None:
            await self._view.set(key, unviewed)
            del self._unviewed[key]
            return True
        await self._changelog.available()
        value = await self._view.get(key)
        if value is None and await self._changelog.verify():  # the view was lost: restored
            value = await self._view.get(key)
        if value is None:
            return False
        if value.startswith(_PENDING):
            await self._durable(key, value.removeprefix(_PENDING))
        return True

    async def record(self, key: str, message_id: str) -> None:
        value = message_id.encode()
        try:
            await self._view.set(key, _PENDING + value)
        except CacheUnavailable:
            await self._changelog.write(key, value)
            self._unviewed[key] = value
            raise
        await self._durable(key, value)

    async def _durable(self, key: str, message_id: bytes) -> None:
        await self._changelog.write(key, message_id)
        await self._view.set(key, message_id)
