"""End to end: the whole-stack proof harness (`python -m peepers_proof`), as CI runs it.

A short run (3 sellers, 2 processes each of catalog, orders and messages, a few faults
one at a time and two at once) must pass every check: a change that breaks convergence, loses a
notification or doubles an event or a mail fails here. Whatever way the run ends, every
process it started must be gone afterwards.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[3]
STARTED = re.compile(r"\] (\S+) ready in [\d.]+ s \(pid (\d+)\)")
SMALL = ["--sellers", "3", "--items", "60", "--huge-items", "600", "--orders", "12"]
# The faults every service survives today. Kept out until their failures are fixed (the
# full run in docs/benchmarks.md shows them): redis-flushall and kill:orders-* (orders
# missing after the orders rebuild, their shipments dead-lettered as ShipmentNotLinked),
# smtp-stop (a mail the sink kept but never acknowledged is sent again, same Message-ID).
FAULTS = (
    "kill:catalog-1,kill:catalog-sync,kill:messages-2,kill:ingest,kill:auth,token-expiry,"
    "ml-5xx,ml-429"
)
# A shipment going shipped -> not_verified left the orders cache at "shipped" when the
# webhooks showed it, "paid" when a rebuild recomputed it. peepers_orders.lifecycle now
# counts not_verified as shipped on both paths; the activity stays out of this CI variant
# until a proof run with it has confirmed that (issue 18's note).
WITHOUT = "not_verified"
# Checks reported, not failed (comma-separated words of their names): none. The seeded
# packs' conversations are mirrored by the messages backfill and every message webhook.
KNOWN = ""


@pytest.fixture
def work_dir() -> Iterator[Path]:
    """In the checkout, not under pytest's shared temporary root: a concurrent pytest
    session prunes old numbered directories there, this run's included."""
    path = ROOT / ".cache" / "proof-tests" / uuid4().hex[:8]
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def _run(
    args: list[str], *, interrupt_after: str | None = None
) -> tuple[int, str, dict[str, int]]:
    """The harness's exit status, its output, and the pid of every child it started."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "peepers_proof", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    pids: dict[str, int] = {}
    try:
        async for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            lines.append(line)
            if (found := STARTED.search(line)) is not None:
                pids[f"{found[1]}@{found[2]}"] = int(found[2])
                if interrupt_after == found[1]:
                    process.send_signal(signal.SIGINT)
        return await process.wait(), "\n".join(lines), pids
    finally:
        if process.returncode is None:  # the test failed or timed out: stop the run too
            process.send_signal(signal.SIGINT)
            await asyncio.wait_for(process.wait(), 60)


async def test_a_short_run_under_faults_converges_and_loses_and_doubles_nothing(work_dir):
    results = work_dir / "results.json"
    args = [*SMALL, "--workers", "2", "--rate", "15", "--faults", FAULTS, "--without", WITHOUT,
            "--known-failing", KNOWN, "--fairness", "3",
            "--hold", "4", "--gap", "2", "--settle", "8", "--quiet", "150",
            "--work-dir", str(work_dir), "--json", str(results)]  # fmt: skip
    status, output, pids = await _run(args)
    assert status == 0, output[-6000:]
    assert "PASSED" in output
    checks = json.loads(results.read_text())["checks"]
    assert all(c["checked"] > 0 for c in checks), checks
    # Every fault ran, alone and in pairs, and a killed worker came back under a new pid.
    assert len(json.loads(results.read_text())["faults"]) > len(FAULTS.split(","))
    assert sum(name.startswith("catalog-1@") for name in pids) >= 2
    assert sum(name.startswith("catalog-sync@") for name in pids) >= 2
    # The fairness window: probes with no sync, then the huge seller's sync timed.
    figures = json.loads(results.read_text())["figures"]
    assert figures["webhook->cache ms without the sync (n, p50, p99)"][0] == 3
    assert "huge sync s, bound s at the budget left to it, ratio (target <= 1.2)" in figures
    left = [name for name, pid in pids.items() if _alive(pid)]
    assert not left, f"still running after the run: {left}"


async def test_an_interrupted_run_stops_every_process_it_started(work_dir):
    args = [*SMALL, "--workers", "1", "--work-dir", str(work_dir)]
    status, output, pids = await _run(args, interrupt_after="catalog-1")
    assert status == 130, output[-4000:]
    assert {"redis", "mail", "sandbox", "auth", "ingest", "catalog-1"} <= {
        name.split("@")[0] for name in pids
    }
    left = [name for name, pid in pids.items() if _alive(pid)]
    assert not left, f"still running after SIGINT: {left}"
    assert not (work_dir / "children.pids").exists()
