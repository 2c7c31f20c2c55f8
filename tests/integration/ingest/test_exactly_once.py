import asyncio
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from peepers_common.notifications import parse_cloudevent_headers
from peepers_common.settings import KafkaSettings
from peepers_common.topics import notification_topic
from tests.integration.ingest.support import JSON, URL, ce_id, read_all, running_ingest, value
from tests.unit.ingest.fakes import encoded, notification_body


async def test_every_acked_notification_is_in_kafka_exactly_once_across_redeliveries(
    kafka: KafkaSettings, tmp_path: Path, topic_prefix: str
) -> None:
    bodies = (
        [
            notification_body(n, resource=f"/items/MLB{n % 20}", user_id=str(1000 + n % 3))
            for n in range(150)
        ]
        + [
            # orders_v2 without _id (FACTS.md sample), and a topic Peepers does not know.
            notification_body(n, _id=None, topic="orders_v2", resource=f"/orders/{n}")
            for n in range(150, 175)
        ]
        + [
            notification_body(n, topic="vis_leads", resource=f"vis/leads/{n}")
            for n in range(175, 200)
        ]
    )
    for body in bodies:
        if body["_id"] is None:
            del body["_id"]
    deliveries = [(body, attempt) for body in bodies for attempt in (1, 2, 3)]
    random.Random(5).shuffle(deliveries)

    async with running_ingest(kafka, tmp_path, topic_prefix) as client:
        semaphore = asyncio.Semaphore(30)

        async def deliver(body: dict[str, Any], attempt: int) -> tuple[int, dict[str, Any]]:
            async with semaphore:
                response = await client.post(
                    URL, data=encoded({**body, "attempts": attempt}), headers=JSON
                )
                return response.status, await response.json()

        answers = await asyncio.gather(*(deliver(b, a) for b, a in deliveries))

    assert {status for status, _ in answers} == {200}
    outcomes: dict[str, int] = defaultdict(int)
    for _, answer in answers:
        outcomes[answer["outcome"]] += 1
    # A first delivery is published, or spooled when Kafka's ack takes longer than the
    # budget (a busy machine); either way it must reach Kafka exactly once below.
    assert outcomes["duplicate"] == 400
    assert outcomes["published"] + outcomes["spooled"] == 200
    assert set(outcomes) <= {"published", "spooled", "duplicate"}

    topics = [topic_prefix + notification_topic(t) for t in ("items", "orders_v2", "unrouted")]
    records = await read_all(kafka, topics)
    ids = [ce_id(r) for r in records]
    assert len(ids) == len(set(ids)) == 200
    assert set(ids) == {answer["id"] for _, answer in answers}
    by_topic: dict[str, int] = defaultdict(int)
    for record in records:
        by_topic[record.topic] += 1
        attributes = parse_cloudevent_headers(record.headers)
        body = value(record)
        assert record.key == f"{int(body['user_id'])}:/{body['resource'].lstrip('/')}".encode()
        assert attributes.type.endswith("." + body["topic"])
        assert attributes.traceparent is not None
        assert "received_at" in body
    assert by_topic == {topics[0]: 150, topics[1]: 25, topics[2]: 25}


async def test_records_of_one_resource_keep_their_arrival_order(
    kafka: KafkaSettings, tmp_path: Path, topic_prefix: str
) -> None:
    async with running_ingest(kafka, tmp_path, topic_prefix) as client:
        for n in range(30):
            body = notification_body(n, resource=f"/items/MLB{n % 3}")
            assert (await client.post(URL, data=encoded(body), headers=JSON)).status == 200
    records = await read_all(kafka, [topic_prefix + notification_topic("items")])
    by_key = defaultdict(list)
    for record in records:
        by_key[record.key].append(value(record)["_id"])
    assert by_key == {
        f"123456789:/items/MLB{k}".encode(): [notification_body(n)["_id"] for n in range(k, 30, 3)]
        for k in range(3)
    }
