"""End to end: the orchestrator behind `make run`, as a process, against the local stack.

It must start every child, connect the sandbox's seller through auth's login (landing on
the seller web app's overview), print a dashboard link that logs a browser in, see the
catalog worker's full sync through, then show live numbers that move, with Prometheus
scraping every service (every target up) and the alerts in the summary; every metric the
alert rules and dashboards query must be one a running service exports (or one that work
in progress will, tests/observability.py). After SIGINT it must stop every child, newest
first, and exit 0 with nothing left running.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from peepers_sandbox.config import DEMO_SELLER_ID
from tests.observability import (
    EXPECTED_LATER,
    NAME_PATTERNS,
    PROMETHEUS_OWN,
    defined,
    queried,
)
from tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ITEMS = 300
CHILD = re.compile(r"run: ([\w-]+) ready on \S+ in [\d.]+ s \(pid (\d+), log (\S+)\)")
READY_AT = re.compile(r"run: ([\w-]+) ready on (\S+) in ")
# The children that serve /metrics.
SERVICES = ("auth", "web", "ingest", "catalog", "catalog-sync", "orders", "mailer", "messages")
# scripts/test installs it; a bare `make run` goes on without it.
CHILDREN = [
    "sandbox",
    "auth",
    "web",
    "ingest",
    "catalog",
    "catalog-sync",
    "mail",
    "orders",
    "mailer",
    "messages",
] + (["prometheus"] if shutil.which("prometheus") else [])


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _fields(line: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in line.split()[1:])


async def _every_target_up(prometheus: str) -> None:
    async def up() -> bool:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{prometheus}/api/v1/targets") as response,
        ):
            targets = (await response.json())["data"]["activeTargets"]
        return bool(targets) and all(t["health"] == "up" for t in targets)

    await wait_until(up, timeout_s=20, every_s=0.5)


async def _exported(urls: list[str]) -> set[str]:
    """Every metric family the services declare, from their /metrics (even without samples:
    a labelled counter that never counted still has its HELP and TYPE lines)."""
    families: set[str] = set()
    async with aiohttp.ClientSession() as session:
        for url in urls:
            async with session.get(f"{url}/metrics") as response:
                text = await response.text()
            for family in text_string_to_metric_families(text):
                families.add(family.name)
                if family.type == "counter":
                    families.add(f"{family.name}_total")
    return families


async def _logs_in(dashboard: str) -> str:
    """Follow the printed link as a new browser does: the overview, logged in."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with (
        aiohttp.ClientSession(cookie_jar=jar) as browser,
        browser.get(dashboard) as page,
    ):
        assert page.status == 200, page.url
        assert page.url.path == "/app/", page.url
        return await page.text()


def _moving(frame: dict[str, str]) -> bool:
    return (
        int(frame["acked"]) > 0
        and int(frame["ingest_published"]) > 0
        and frame["items_cached"] == str(ITEMS)
        and int(frame["events"]) > ITEMS  # the sync's item.created, then live changes
        and int(frame.get("search_hits", "0")) > 0
        and frame["p99_ms"] != "-"
        and "web_pages" in frame
        # The messages worker's histogram, read from its /metrics (answers seen so far).
        and frame["time_to_answer_median_s"] != "-"
    )


async def test_make_run_connects_syncs_shows_live_numbers_and_stops_every_child(
    tmp_path: Path,
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "peepers_devstack",
        "--port-base", "0",
        "--isolate",
        "--items", str(ITEMS),
        "--activity-rate", "40",
        "--exit-after", "240",
        "--log-dir", str(tmp_path / "logs"),
        "--work-dir", str(tmp_path / "run"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(230):
            while True:
                raw = await process.stdout.readline()
                assert raw, "the orchestrator ended early:\n" + "\n".join(lines)
                line = raw.decode().rstrip()
                lines.append(line)
                if line.startswith("summary ") and _moving(_fields(line)):
                    break
        prometheus = re.search(r"run: prometheus ready on (\S+) ", "\n".join(lines))
        if "prometheus" in CHILDREN:
            assert prometheus is not None, "\n".join(lines)
            await _every_target_up(prometheus[1])
            assert "alerts_firing" in _fields(line), line
        dashboard = re.search(r"run: dashboard \(.*\): (\S+)$", "\n".join(lines), re.M)
        assert dashboard is not None, "\n".join(lines)
        overview = await _logs_in(dashboard[1])
        assert f'id="seller-id">{DEMO_SELLER_ID}<' in overview
        services = [m[2] for m in map(READY_AT.search, lines) if m and m[1] in SERVICES]
        exported = await _exported(services)
        names, _patterns = queried()
        missing = {
            name for name in names - PROMETHEUS_OWN - EXPECTED_LATER if not defined(name, exported)
        }
        assert missing == set(), "queried by the rules or dashboards, exported by no service"
        # Each {__name__=~...} of the state rules matches a family a running service has.
        for pattern in NAME_PATTERNS:
            assert any(re.fullmatch(pattern, name) for name in exported), pattern
        os.killpg(process.pid, signal.SIGINT)
        async with asyncio.timeout(40):
            rest = await process.stdout.read()
            status = await process.wait()
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    lines += rest.decode().splitlines()
    output = "\n".join(lines)
    assert status == 0, output

    children = {m[1]: (int(m[2]), Path(m[3])) for m in map(CHILD.search, lines) if m}
    assert list(children) == CHILDREN, output
    assert f"seller {DEMO_SELLER_ID} connected through auth's PKCE login" in output
    assert (
        f"full sync of seller {DEMO_SELLER_ID} done by the catalog's sync process: {ITEMS}"
        in output
    )
    assert "SIGINT received" in output
    stops = [m[1] for m in re.finditer(r"run: stopped ([\w-]+) \(pid", output)]
    assert stops == CHILDREN[::-1], output
    for name, (pid, log) in children.items():
        assert not _alive(pid), f"{name} (pid {pid}) still runs"
        assert log.exists(), name
    assert not (tmp_path / "run" / "children.pids").exists()
