"""Publishing to Kafka: the `EventPublisher` port and its aiokafka adapter.

The adapter is an idempotent producer with ``acks=all``: a record is acknowledged only once
every in-sync replica has it, and retries never duplicate it within a producer session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from peepers_common.errors import PublishError
from peepers_common.lifecycle import AsyncResource
from peepers_common.settings import KafkaSettings

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True)
class Published:
    topic: str
    partition: int
    offset: int


class EventPublisher(Protocol):
    async def publish(
        self, topic: str, *, key: bytes, value: bytes, headers: Headers = ()
    ) -> Published:
        """Send one record and return once Kafka acknowledged it.

        Raises:
            PublishError: Kafka did not acknowledge it.
        """
        ...


class AIOKafkaEventPublisher(AsyncResource):
    """`EventPublisher` over aiokafka. Use as ``async with`` or call start()/aclose()."""

    def __init__(self, settings: KafkaSettings, *, linger_ms: int = 2) -> None:
        self._settings = settings
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            client_id=settings.client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=linger_ms,
            request_timeout_ms=settings.request_timeout_ms,
        )
        self._started = False
        self._closed = False

    async def start(self) -> None:
        try:
            await self._producer.start()
        except KafkaError as exc:
            await self._producer.stop()
            msg = f"cannot connect to Kafka at {self._settings.bootstrap_servers}: {exc!r}"
            raise PublishError(msg) from exc
        self._started = True

    async def publish(
        self, topic: str, *, key: bytes, value: bytes, headers: Headers = ()
    ) -> Published:
        if not self._started or self._closed:
            msg = "the Kafka publisher is not started (or already closed)"
            raise PublishError(msg)
        try:
            meta = await self._producer.send_and_wait(
                topic, value=value, key=key, headers=list(headers)
            )
        except KafkaError as exc:
            msg = f"Kafka did not acknowledge a record for {topic}: {exc!r}"
            raise PublishError(msg) from exc
        return Published(meta.topic, meta.partition, meta.offset)

    async def aclose(self) -> None:
        """Flush what is in flight, then stop. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._started:
            await self._producer.flush()
        await self._producer.stop()
