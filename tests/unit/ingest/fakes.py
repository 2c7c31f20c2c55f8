"""Fakes for ingest's ports, and builders of notifications and apps over them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from peepers_common.errors import PublishError
from peepers_common.kafka import Headers, Published
from peepers_ingest.errors import SpoolUnavailable
from peepers_ingest.ports import OutboundRecord, SpooledRecord
from peepers_ingest.settings import Settings

APP_ID = 2069392825111111


@dataclass
class SentRecord:
    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    @property
    def ce_id(self) -> str:
        return dict(self.headers)["ce_id"].decode()


class FakePublisher:
    """Acks at once, or never (``stall``, or ``stall_keys`` for some keys), or fails
    (``fail``; ``broken_keys`` with an unexpected error); records what it acked."""

    def __init__(self) -> None:
        self.acked: list[SentRecord] = []
        self.fail = False
        self.stall = False
        self.stall_keys: set[bytes] = set()
        self.broken_keys: set[bytes] = set()
        self._released = asyncio.Event()
        self.attempts = 0

    def release(self) -> None:
        """Let stalled sends complete (Kafka came back)."""
        self.stall = False
        self.stall_keys.clear()
        self._released.set()

    async def publish(
        self, topic: str, *, key: bytes, value: bytes, headers: Headers = ()
    ) -> Published:
        self.attempts += 1
        if self.fail:
            msg = "fake Kafka is down"
            raise PublishError(msg)
        if key in self.broken_keys:
            msg = "a bug in the publisher"
            raise RuntimeError(msg)
        if self.stall or key in self.stall_keys:
            await self._released.wait()
        self.acked.append(SentRecord(topic, key, value, tuple(headers)))
        return Published(topic, 0, len(self.acked) - 1)


class FakeSpool:
    def __init__(self) -> None:
        self.records: list[SpooledRecord] = []
        self.broken = False
        self._seq = 0

    @property
    def depth(self) -> int:
        return len(self.records)

    @property
    def oldest_spooled_at(self) -> float | None:
        return self.records[0].spooled_at if self.records else None

    @property
    def writable(self) -> bool:
        return not self.broken

    def holds_key(self, key: bytes) -> bool:
        return any(r.record.key == key for r in self.records)

    async def append(self, record: OutboundRecord) -> None:
        if self.broken:
            msg = "fake disk is full"
            raise SpoolUnavailable(msg)
        self._seq += 1
        self.records.append(SpooledRecord(self._seq, float(self._seq), record))

    async def head(self, limit: int) -> Sequence[SpooledRecord]:
        return list(self.records[:limit])

    async def remove(self, records: Sequence[SpooledRecord]) -> None:
        gone = {r.seq for r in records}
        self.records = [r for r in self.records if r.seq not in gone]


@dataclass
class FakeDedup:
    marked: set[str] = field(default_factory=set)

    checks: list[list[str]] = field(default_factory=list)
    marks: list[list[str]] = field(default_factory=list)
    lose_marks: bool = False  # Redis timed out: the marks never land

    async def seen(self, notification_ids: Sequence[str]) -> list[bool]:
        self.checks.append(list(notification_ids))
        return [notification_id in self.marked for notification_id in notification_ids]

    async def mark(self, notification_ids: Sequence[str]) -> None:
        self.marks.append(list(notification_ids))
        if not self.lose_marks:
            self.marked.update(notification_ids)


def notification_body(n: int = 1, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "_id": f"f9f08571-1f65-4c46-9e0a-{n:012d}",
        "resource": f"/items/MLB{n}",
        "user_id": 123456789,
        "topic": "items",
        "application_id": APP_ID,
        "attempts": 1,
        "sent": "2025-01-21T13:44:33.006Z",
        "received": "2025-01-21T13:44:32.984Z",
    }
    body.update(overrides)
    return body


def encoded(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def loopback_settings(spool_dir: Path, **overrides: Any) -> Settings:
    """Settings for an ingest that accepts loopback, with no rate limit unless asked."""
    values: dict[str, Any] = {
        "allowed_cidrs": [ip_network("127.0.0.0/8"), ip_network("::1/128")],
        "application_id": APP_ID,
        "spool_dir": spool_dir,
        "rate_limit_enabled": False,
        "kafka_connect_wait_s": 0,
        "shutdown_timeout_s": 2,
    }
    values.update(overrides)
    return Settings(**values)
