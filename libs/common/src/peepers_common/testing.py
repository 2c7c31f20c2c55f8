"""Fakes of the shared ports, importable by every service's tests (fakes behave; no mocks)."""

from __future__ import annotations

from dataclasses import dataclass

from peepers_common.kafka import Headers, Published

__all__ = ["InMemoryEventPublisher", "PublishedRecord"]


@dataclass
class PublishedRecord:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]

    def header(self, name: str) -> bytes | None:
        return dict(self.headers).get(name)


class InMemoryEventPublisher:
    """`EventPublisher` that keeps what it acked.

    Publishes raise each of ``failures`` once, in order, then ``failure`` while it is set.
    """

    def __init__(self) -> None:
        self.records: list[PublishedRecord] = []
        self.failures: list[Exception] = []
        self.failure: Exception | None = None
        self.attempts = 0

    async def publish(
        self, topic: str, *, key: bytes, value: bytes, headers: Headers = ()
    ) -> Published:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        if self.failure is not None:
            raise self.failure
        self.records.append(PublishedRecord(topic, key, value, list(headers)))
        return Published(topic, 0, len(self.records) - 1)

    def on(self, topic: str) -> list[PublishedRecord]:
        return [record for record in self.records if record.topic == topic]
