"""kill -9 right after ML got its 200s: after a restart, every acked notification is in
Kafka. Runs the real entry point, ``python -m peepers_ingest``, as a subprocess."""

from __future__ import annotations

import asyncio
import signal
from collections import defaultdict
from pathlib import Path

import aiohttp

from peepers_common.settings import KafkaSettings
from peepers_common.topics import notification_topic
from tests.integration.ingest.support import (
    JSON,
    URL,
    free_port,
    ingest_process,
    read_all,
    value,
)
from tests.support import unique, wait_until
from tests.unit.ingest.fakes import encoded, notification_body


async def ready(session: aiohttp.ClientSession, base: str) -> bool:
    try:
        async with session.get(f"{base}/readyz") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def test_notifications_acked_before_a_kill_9_are_all_in_kafka_after_restart(
    kafka: KafkaSettings, tmp_path: Path, topic_prefix: str
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    spool_dir = tmp_path / "spool"
    log = tmp_path / "ingest.log"
    dead_kafka = f"127.0.0.1:{free_port()}"  # nothing listens: every ack comes from the spool
    sent: dict[bytes, list[str]] = defaultdict(list)
    run = unique("kill9")

    async with aiohttp.ClientSession() as session:

        async def deliver(n: int) -> str:
            # Unique ids: the subprocess keeps its dedup marks in the unscoped namespace.
            body = notification_body(n, _id=f"{run}-{n}", resource=f"/items/MLB{n % 5}")
            async with session.post(f"{base}{URL}", data=encoded(body), headers=JSON) as response:
                assert response.status == 200, await response.text()
                sent[f"123456789:/items/MLB{n % 5}".encode()].append(body["_id"])
                outcome: str = (await response.json())["outcome"]
                return outcome

        # 1. Kafka unreachable: acked from the spool, then SIGKILL right after the last ack.
        with ingest_process(port, spool_dir, dead_kafka, topic_prefix, log) as process:
            await wait_until(lambda: ready(session, base), timeout_s=20, every_s=0.1)
            outcomes = [await deliver(n) for n in range(40)]
            process.send_signal(signal.SIGKILL)
            process.wait()
        assert set(outcomes) == {"spooled"}, log.read_text()[-3000:]

        # 2. Restart with Kafka: the spool drains at startup. More acks, then SIGKILL again.
        with ingest_process(port, spool_dir, kafka.bootstrap_servers, topic_prefix, log) as process:
            await wait_until(lambda: ready(session, base), timeout_s=20, every_s=0.1)
            outcomes = await asyncio.gather(*(deliver(n) for n in range(40, 80)))
            process.send_signal(signal.SIGKILL)
            process.wait()

        # 3. A last start drains whatever the second kill left in the spool.
        with ingest_process(port, spool_dir, kafka.bootstrap_servers, topic_prefix, log):
            await wait_until(lambda: ready(session, base), timeout_s=20, every_s=0.1)

            async def spool_empty() -> bool:
                async with session.get(f"{base}/readyz") as response:
                    return bool((await response.json())["spool"]["depth"] == 0)

            await wait_until(spool_empty, timeout_s=20, every_s=0.1)

    records = await read_all(kafka, [topic_prefix + notification_topic("items")])
    by_key: dict[bytes, list[str]] = defaultdict(list)
    for record in records:
        assert record.key is not None
        by_key[record.key].append(value(record)["_id"])
    # Nothing acked is lost. A kill -9 between Kafka's ack of a record and the spool's
    # removal of it (or of a timed-out direct publish that Kafka took after all) means
    # that record goes out again after the restart, with the same ce_id: at-least-once,
    # and consumers deduplicate on the id. So compare ids, first occurrences in order.
    unique_by_key = {key: list(dict.fromkeys(ids)) for key, ids in by_key.items()}
    assert sum(len(ids) for ids in unique_by_key.values()) == 80, log.read_text()[-3000:]
    for key, ids in sent.items():
        assert sorted(unique_by_key[key]) == sorted(ids)
    # The first 40 went through the spool one process ago: their order per key holds.
    for key, ids in sent.items():
        first = [i for i in ids if int(i.rsplit("-", 1)[1]) < 40]
        assert unique_by_key[key][: len(first)] == first
