"""Kafka goes away mid-stream and comes back: ML still gets 200s in time, nothing is lost,
nothing is doubled, and each resource's notifications keep their order.

The shared stack's broker serves other engineers, so this test stops and restarts a
private broker of its own (the same Kafka build, see broker.py) that the ingest under test
publishes to.
"""

import asyncio
import time
from collections import defaultdict
from pathlib import Path

from peepers_common.settings import KafkaSettings
from peepers_common.topics import notification_topic
from tests.integration.ingest.broker import PrivateBroker
from tests.integration.ingest.conftest import make_topics
from tests.integration.ingest.support import JSON, URL, read_all, running_ingest, value
from tests.support import wait_until
from tests.unit.ingest.fakes import encoded, notification_body


async def test_a_broker_outage_is_bridged_by_the_spool_without_loss_or_reordering(
    private_broker: PrivateBroker, tmp_path: Path
) -> None:
    kafka = KafkaSettings(bootstrap_servers=private_broker.bootstrap, request_timeout_ms=5000)
    prefix = await make_topics(kafka)
    sent: dict[bytes, list[str]] = defaultdict(list)
    outcomes: dict[str, int] = defaultdict(int)

    async with running_ingest(kafka, tmp_path, prefix, publish_budget_ms=150) as client:

        async def deliver(n: int) -> None:
            body = notification_body(n, resource=f"/items/MLB{n % 4}")
            started = time.perf_counter()
            response = await client.post(URL, data=encoded(body), headers=JSON)
            elapsed = time.perf_counter() - started
            assert response.status == 200
            assert elapsed < 0.5, f"notification {n} took {elapsed:.3f} s"
            outcomes[(await response.json())["outcome"]] += 1
            sent[f"123456789:/items/MLB{n % 4}".encode()].append(body["_id"])

        for n in range(20):
            await deliver(n)
        assert outcomes == {"published": 20}

        await asyncio.to_thread(private_broker.stop)
        for n in range(20, 60):
            await deliver(n)
        assert outcomes["spooled"] >= 35  # the first few may still have been in flight
        ready = await (await client.get("/readyz")).json()
        assert ready["spool"]["writable"]
        assert ready["spool"]["depth"] > 0
        assert not ready["kafka"]["publishing_directly"]

        await asyncio.to_thread(private_broker.start)
        for n in range(60, 70):
            await deliver(n)

        async def drained() -> bool:
            state = await (await client.get("/readyz")).json()
            return bool(state["spool"]["depth"] == 0 and state["kafka"]["publishing_directly"])

        await wait_until(drained, timeout_s=40, every_s=0.2)
        metrics = await (await client.get("/metrics")).text()
        assert "peepers_ingest_spool_drained_total" in metrics

    records = await read_all(kafka, [prefix + notification_topic("items")])
    by_key: dict[bytes, list[str]] = defaultdict(list)
    for record in records:
        assert record.key is not None
        by_key[record.key].append(value(record)["_id"])
    assert sum(len(ids) for ids in by_key.values()) == 70
    assert by_key == sent
