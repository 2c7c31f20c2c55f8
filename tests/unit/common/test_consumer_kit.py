"""The consumer kit stays behind the ``faust`` extra, and its pieces behave."""

import subprocess
import sys
from typing import Any, cast

from peepers_common.consumer import (
    ConsumerKit,
    ConsumerRuntime,
    ConsumerSettings,
    RetrySettings,
    inbound_record,
)
from peepers_common.consuming import InboundRecord, RetryPolicy


def test_ingest_and_auth_run_without_importing_faust() -> None:
    code = (
        "import sys, peepers_ingest.__main__, peepers_auth.__main__, peepers_common.ml;"
        "print(sorted(m for m in ('faust', 'mode') if m in sys.modules))"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_retry_settings_become_the_processors_policy() -> None:
    policy = RetrySettings(in_place_attempts=2, park_delays_s=[1.0, 5.0]).policy()
    assert policy == RetryPolicy(in_place_attempts=2, park_delays_s=(1.0, 5.0))


def test_a_service_names_its_group_and_reads_the_rest_from_its_prefix(monkeypatch) -> None:
    class Settings(ConsumerSettings, env_prefix="DEMO_", env_nested_delimiter="__"):
        app_id: str = "peepers-demo"

    monkeypatch.setenv("DEMO_TOPIC_PREFIX", "t1.")
    monkeypatch.setenv("DEMO_RETRY__PARK_DELAYS_S", "[2.0]")
    settings = Settings()
    assert (settings.app_id, settings.topic_prefix) == ("peepers-demo", "t1.")
    assert settings.retry.park_delays_s == [2.0]


class _Message:
    topic = "ml.notifications.orders_v2"
    partition = 3
    offset = 41
    key = b"7:/orders/1"
    value = b"{}"
    headers = (("ce_id", b"abc"),)


class _Event:
    message = _Message()


def test_a_faust_event_becomes_an_inbound_record() -> None:
    record = inbound_record(_Event())  # type: ignore[arg-type]  # duck-typed faust event
    assert (record.topic, record.partition, record.offset) == ("ml.notifications.orders_v2", 3, 41)
    assert (record.key, record.value, dict(record.headers)) == (
        b"7:/orders/1",
        b"{}",
        {"ce_id": b"abc"},
    )


async def _done(_record: InboundRecord) -> str:
    return "done"


def test_the_kit_watches_its_groups_lag_on_its_agents_topics_but_not_the_retry_topics() -> None:
    class Settings(ConsumerSettings):
        app_id: str = "peepers-demo"
        topic_prefix: str = "t1."
        lag_interval_s: float = 5.0

    kit = ConsumerKit(Settings(), consumer="demo")
    kit.serve(ConsumerRuntime(loop=kit.app.loop, beacon=kit.app.beacon))
    kit.batch_agent("demo.notifications", ["ml.notifications.orders_v2"], _done)
    kit.record_agent("demo.sellers", ["peepers.sellers.v1"], _done)
    kit.retry_agent("demo.retries", ["ml.notifications.orders_v2"], lambda _topic: _done)
    monitor = kit.lag_monitor()
    assert monitor.group == "peepers-demo"
    assert monitor.topics == ["t1.ml.notifications.orders_v2", "t1.peepers.sellers.v1"]


async def test_the_workers_kafka_consumer_waits_for_a_fetch_as_set_not_faust_s_1500_ms() -> None:
    class Settings(ConsumerSettings):
        app_id: str = "peepers-demo"
        fetch_wait_ms: int = 40

    kit = ConsumerKit(Settings(), consumer="demo")
    # The Kafka consumer the worker's agents read through, as its thread builds it.
    thread = cast("Any", kit.app.consumer)._thread
    consumer = thread._create_worker_consumer(kit.app.transport)
    try:
        assert consumer._fetch_max_wait_ms == 40
    finally:
        await consumer.stop()
        thread.thread_loop.close()  # never started: its own loop is closed here
