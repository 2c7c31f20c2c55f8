from ipaddress import ip_network
from pathlib import Path

from peepers_common.settings import KafkaSettings
from peepers_common.topics import notification_topic
from tests.integration.ingest.support import JSON, URL, read_all, running_ingest
from tests.unit.ingest.fakes import encoded, notification_body

NASTIES: list[tuple[bytes, dict[str, str]]] = [
    (b"{" + b'"a":' * 1 + b'"' + b"x" * 20000 + b'"}', JSON),
    (b"\xc3\x28\xa0\xa1", JSON),
    (b"[" * 3000 + b"]" * 3000, JSON),
    (b'{"_id": 1, "resource": 2, "user_id": "x", "topic": null, "application_id": []}', JSON),
    (encoded(notification_body(user_id=-1)), JSON),
    (encoded(notification_body()), {"Content-Type": "text/plain"}),
    (encoded(notification_body(application_id=1)), JSON),
]


async def test_nasty_input_never_reaches_kafka_and_never_gets_a_5xx(
    kafka: KafkaSettings, tmp_path: Path, topic_prefix: str
) -> None:
    async with running_ingest(kafka, tmp_path, topic_prefix) as client:
        for body, headers in NASTIES:
            response = await client.post(URL, data=body, headers=headers)
            assert 400 <= response.status < 500
        # Spoofed X-Forwarded-For from an untrusted peer, with loopback not allowed.
        assert (await client.get("/healthz")).status == 200
    async with running_ingest(
        kafka, tmp_path, topic_prefix, allowed_cidrs=[ip_network("54.88.218.97/32")]
    ) as client:
        spoofed = {**JSON, "X-Forwarded-For": "54.88.218.97"}
        response = await client.post(URL, data=encoded(notification_body()), headers=spoofed)
        assert response.status == 403
        # One valid notification, so the topics are proven readable and hold only it.
    async with running_ingest(kafka, tmp_path, topic_prefix) as client:
        assert (
            await client.post(URL, data=encoded(notification_body(7)), headers=JSON)
        ).status == 200
    topics = [topic_prefix + notification_topic(t) for t in ("items", "orders_v2", "unrouted")]
    records = await read_all(kafka, topics)
    assert [r.key for r in records] == [b"123456789:/items/MLB7"]


async def test_a_source_over_its_rate_gets_429_with_retry_after(
    kafka: KafkaSettings, tmp_path: Path, topic_prefix: str
) -> None:
    async with running_ingest(
        kafka, tmp_path, topic_prefix, rate_limit_enabled=True, rate_limit_per_ip_per_s=5
    ) as client:
        statuses = []
        response = None
        for n in range(8):
            response = await client.post(URL, data=encoded(notification_body(n)), headers=JSON)
            statuses.append(response.status)
        assert statuses == [200] * 5 + [429] * 3
        assert response is not None
        assert response.headers["Retry-After"] == "1"
        assert (await response.json())["level"] == "user"
        metrics = await (await client.get("/metrics")).text()
        assert 'peepers_ingest_rejected_total{reason="rate_limited"}' in metrics
    records = await read_all(kafka, [topic_prefix + notification_topic("items")])
    assert len(records) == 5
