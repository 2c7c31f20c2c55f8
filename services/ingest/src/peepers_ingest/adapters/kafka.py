"""A Kafka publisher that ingest can start while Kafka is down.

`AIOKafkaEventPublisher` refuses to start without a broker; ingest must still answer ML
(into the spool) and connect once Kafka is back. This adapter keeps trying in the
background and raises `PublishError` at once until it is connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from peepers_common.errors import PublishError
from peepers_common.kafka import AIOKafkaEventPublisher, Headers, Published
from peepers_common.lifecycle import AsyncResource
from peepers_common.settings import KafkaSettings

__all__ = ["ReconnectingPublisher"]

log = logging.getLogger(__name__)


class ReconnectingPublisher(AsyncResource):
    """`EventPublisher` that connects in the background, retrying with backoff."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        linger_ms: int = 2,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 5.0,
    ) -> None:
        self._settings = settings
        self._linger_ms = linger_ms
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._publisher: AIOKafkaEventPublisher | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closed = False

    @property
    def connected(self) -> bool:
        return self._publisher is not None and not self._closed

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def start(self) -> None:
        self._connect_task = asyncio.create_task(self._connect_forever(), name="kafka-connect")

    async def _connect_forever(self) -> None:
        delay = self._retry_initial_s
        while True:
            candidate = AIOKafkaEventPublisher(self._settings, linger_ms=self._linger_ms)
            try:
                await candidate.start()
            except PublishError as exc:
                log.warning("Kafka not reachable yet, retrying in %.1f s: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
                continue
            self._publisher = candidate
            self._connected.set()
            log.info("connected to Kafka at %s", self._settings.bootstrap_servers)
            return

    async def publish(
        self, topic: str, *, key: bytes, value: bytes, headers: Headers = ()
    ) -> Published:
        return await self.send(topic, key=key, value=value, headers=headers)

    def send(
        self, topic: str, *, key: bytes, value: bytes, headers: Headers = ()
    ) -> asyncio.Future[Published]:
        if self._publisher is None:
            failed: asyncio.Future[Published] = asyncio.get_running_loop().create_future()
            msg = f"not connected to Kafka at {self._settings.bootstrap_servers} yet"
            failed.set_exception(PublishError(msg))
            return failed
        return self._publisher.send(topic, key=key, value=value, headers=headers)

    async def aclose(self) -> None:
        """Stop connecting; flush and stop the producer. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._connect_task is not None:
            self._connect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connect_task
        if self._publisher is not None:
            await self._publisher.aclose()
