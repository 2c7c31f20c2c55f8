"""The small seams ingest's handlers work through (adapters/ holds the real ones)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from peepers_common.kafka import EventPublisher, Headers

__all__ = [
    "Deduplicator",
    "EventPublisher",
    "MissedFeedsSource",
    "OutboundRecord",
    "Spool",
    "SpooledRecord",
]


class OutboundRecord(NamedTuple):
    """A Kafka record ready to publish, with the notification id it carries.

    A named tuple: one is built on every webhook, at half the CPU of a frozen dataclass.
    """

    notification_id: str
    topic: str
    key: bytes
    value: bytes
    headers: Headers


@dataclass(frozen=True)
class SpooledRecord:
    seq: int
    spooled_at: float
    record: OutboundRecord


class Spool(Protocol):
    """A durable, ordered queue of records Kafka has not acknowledged yet."""

    @property
    def depth(self) -> int:
        """Records waiting."""
        ...

    @property
    def oldest_spooled_at(self) -> float | None:
        """Unix time of the oldest waiting record, None when empty."""
        ...

    @property
    def writable(self) -> bool:
        """False after a write failed, until one succeeds again."""
        ...

    def holds_key(self, key: bytes) -> bool:
        """True when a record with this key waits (later ones must queue behind it)."""
        ...

    async def append(self, record: OutboundRecord) -> None:
        """Store a record durably (on disk, fsync'd) before returning.

        Raises:
            SpoolUnavailable: it could not be stored.
        """
        ...

    async def head(self, limit: int) -> Sequence[SpooledRecord]:
        """The oldest waiting records, oldest first."""
        ...

    async def remove(self, records: Sequence[SpooledRecord]) -> None:
        """Forget records Kafka acknowledged."""
        ...


class Deduplicator(Protocol):
    """Remembers accepted notification ids for a while (24 h by default).

    Both calls take a batch: ingest checks and marks the notifications of one event-loop
    turn together.
    """

    async def seen(self, notification_ids: Sequence[str]) -> list[bool]:
        """Per id, True when it was accepted before (False when unsure: duplicates over loss)."""
        ...

    async def mark(self, notification_ids: Sequence[str]) -> None:
        """Remember the ids; call only once their notifications are in Kafka or the spool."""
        ...


class MissedFeedsSource(Protocol):
    """What ML failed to deliver (GET /missed_feeds), one raw entry each, as ML sent it."""

    def missed_notifications(self) -> AsyncIterator[dict[str, Any]]:
        """Every entry ML holds now, page after page.

        Raises:
            PeepersError: ML or the token source failed (what came before stays valid).
        """
        ...
