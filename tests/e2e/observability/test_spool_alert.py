"""End to end: Kafka goes away, a real Prometheus sees ingest's spool alert fire, and sees
it resolve once Kafka is back.

The pieces are the real ones: `python -m peepers_ingest` publishing to a private broker
(the shared one serves other tests), Debian's prometheus scraping its /metrics and
evaluating PeepersIngestSpoolNotDraining from deploy/prometheus/rules/ingest.yml. Only the
rule's durations are shortened (2 minutes of age, held 2 minutes, would make this a
five-minute test); promtool's unit tests cover the production ones.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from peepers_common.settings import KafkaSettings
from tests.integration.ingest.broker import PrivateBroker, kafka_libs
from tests.integration.ingest.conftest import make_topics
from tests.integration.ingest.support import JSON, URL, free_port, ingest_process
from tests.observability import RULES_DIR
from tests.support import wait_until
from tests.unit.ingest.fakes import encoded, notification_body

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ALERT = "PeepersIngestSpoolNotDraining"
# Production: older than 120 s, for 2 minutes.
AGE_S = 3
HOLD = "3s"


def _shortened_rule(path: Path) -> Path:
    """deploy/prometheus/rules/ingest.yml's spool alert, its expression as it is."""
    groups = yaml.safe_load((RULES_DIR / "ingest.yml").read_text())["groups"]
    (rule,) = (r for g in groups for r in g["rules"] if r.get("alert") == ALERT)
    assert rule["expr"].endswith("> 120"), "the test shortens the production threshold"
    rule["expr"] = rule["expr"].removesuffix("> 120") + f"> {AGE_S}"
    rule["for"] = HOLD
    path.write_text(yaml.safe_dump({"groups": [{"name": "spool", "rules": [rule]}]}))
    return path


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    libs = kafka_libs()
    if libs is None:
        pytest.fail("Kafka jars are missing: run scripts/stack up first")
    directory = tmp_path / "kafka"
    directory.mkdir()
    private = PrivateBroker(directory, libs)
    private.format()
    private.start()
    try:
        yield private
    finally:
        private.close()


def _prometheus(tmp_path: Path, port: int, target: str) -> subprocess.Popen[bytes]:
    binary = shutil.which("prometheus")
    assert binary is not None, "prometheus is missing: run scripts/install-prometheus"
    rules = _shortened_rule(tmp_path / "rules.yml")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "scrape_configs": [
                    {"job_name": "peepers-ingest", "static_configs": [{"targets": [target]}]}
                ],
            }
        )
    )
    with (tmp_path / "prometheus.log").open("wb") as log:
        return subprocess.Popen(  # noqa: S603 - Debian's prometheus, our own config
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def _get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        return await response.json() if response.status == 200 else None


async def test_the_spool_alert_fires_while_kafka_is_away_and_resolves_after(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    prefix = await make_topics(KafkaSettings(bootstrap_servers=broker.bootstrap))
    ingest_port, prometheus_port = free_port(), free_port()
    ingest = f"http://127.0.0.1:{ingest_port}"
    prometheus = f"http://127.0.0.1:{prometheus_port}"
    extra = {"INGEST_PUBLISH_BUDGET_MS": "100"}
    with ingest_process(
        ingest_port, tmp_path / "spool", broker.bootstrap, prefix, tmp_path / "ingest.log",
        extra_env=extra,
    ):  # fmt: skip
        server = _prometheus(tmp_path, prometheus_port, f"127.0.0.1:{ingest_port}")
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

                async def ingest_ready() -> bool:
                    try:
                        return await _get(session, f"{ingest}/readyz") is not None
                    except aiohttp.ClientError:
                        return False

                async def target_up() -> bool:
                    try:
                        body = await _get(session, f"{prometheus}/api/v1/targets")
                    except aiohttp.ClientError:
                        return False
                    targets = body["data"]["activeTargets"] if body else []
                    return bool(targets) and targets[0]["health"] == "up"

                async def alert_state() -> str | None:
                    body = await _get(session, f"{prometheus}/api/v1/alerts")
                    states = [
                        a["state"]
                        for a in body["data"]["alerts"]
                        if a["labels"]["alertname"] == ALERT
                    ]
                    return states[0] if states else None

                async def firing() -> bool:
                    return await alert_state() == "firing"

                async def resolved() -> bool:
                    return await alert_state() is None

                await wait_until(ingest_ready, timeout_s=60, every_s=0.5)
                await wait_until(target_up, timeout_s=30, every_s=0.5)
                assert await alert_state() is None

                await asyncio.to_thread(broker.stop)
                for n in range(5):
                    body = encoded(notification_body(n))
                    async with session.post(f"{ingest}{URL}", data=body, headers=JSON) as answer:
                        assert answer.status == 200, await answer.text()
                await wait_until(firing, timeout_s=60, every_s=0.5)

                await asyncio.to_thread(broker.start)
                await wait_until(resolved, timeout_s=90, every_s=0.5)
        finally:
            server.terminate()
            server.wait(timeout=30)
