"""What every Faust worker's harness does the same: its topics, its process, its probe.

The catalog's, the orders' and the messages' ``worker.py`` build on these (their own
settings, ids and reads stay theirs).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from peepers_common.kafka import AIOKafkaEventPublisher
from peepers_common.notifications import Notification, cloudevent_headers, encode_value
from peepers_common.settings import KafkaSettings
from peepers_common.topic_admin import ensure_topics
from peepers_common.topics import TOPICS, TopicSpec, dlq_topic, retry_topic
from peepers_devstack.child import bound
from peepers_sandbox.config import DEMO_APP_ID
from tests.integration.auth.harness import SELLER
from tests.support import unique


async def worker_topics(
    kafka: KafkaSettings, prefix: str, consumed: Sequence[str], produced: Sequence[str]
) -> None:
    """Registry-shaped topics behind ``prefix``: the consumed ones with their retry and
    dead-letter topics, and the produced ones."""
    names = [*produced, *consumed]
    names += [retry_topic(n) for n in consumed] + [dlq_topic(n) for n in consumed]
    await ensure_topics(
        kafka,
        [
            TopicSpec(prefix + n, TOPICS[n].partitions, TOPICS[n].description, TOPICS[n].config)
            for n in names
        ],
    )


async def answers_ready(url: str) -> bool:
    """Whether the worker's ``/readyz`` at ``url`` answers 200."""
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{url}/readyz") as response,
        ):
            return response.status == 200
    except aiohttp.ClientError:
        return False


@contextmanager
def worker_process(
    package: str, env: dict[str, str], log: Path, command: str = "worker"
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m <package> <command>``, its output in ``log``; stopped on exit.

    Bound to this process's life (`peepers_devstack.child`): a pytest killed outright
    takes its workers with it.
    """
    with log.open("ab") as out:
        process = subprocess.Popen(  # noqa: S603 - our own worker, by package name
            bound([sys.executable, "-m", package, command]),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=log.parent,  # Faust makes a data folder in its working directory
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def notify(
    kafka: KafkaSettings,
    prefix: str,
    topic: str,
    resource: str,
    *,
    actions: list[str] | None = None,
    value: bytes | None = None,
) -> None:
    """Put an ML-shaped notification straight on a worker's notification topic.

    ``actions`` as ML sends them for some topics; ``value`` replaces the record's value
    (a malformed record), its key and headers still the notification's.
    """
    body: dict[str, object] = {
        "_id": unique("n"),
        "resource": resource,
        "user_id": SELLER,
        "topic": topic,
        "application_id": DEMO_APP_ID,
        "attempts": 1,
    }
    if actions is not None:
        body["actions"] = actions
    now = datetime.now(UTC)
    async with AIOKafkaEventPublisher(kafka) as publisher:
        await publisher.publish(
            f"{prefix}ml.notifications.{topic}",
            key=f"{SELLER}:{resource}".encode(),
            value=value if value is not None else encode_value(body, now),
            headers=cloudevent_headers(Notification.model_validate(body), received_at=now),
        )
