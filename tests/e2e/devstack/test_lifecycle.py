"""End to end: `make run`'s orchestrator leaves no child behind, and agrees with itself.

- killed with SIGKILL, its children die with it (PR_SET_PDEATHSIG, no cleanup code runs);
- run as ``make run | tee run.log`` and interrupted with Ctrl-C (the terminal signals the
  whole foreground group, ``tee`` too), it still stops every child;
- a second run converges as the first did: a fresh catalog, every item ``created`` again;
- a worker killed with SIGKILL under a live run is started again, and the run goes on.
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import shlex
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from peepers_devstack.lock import RunLock
from peepers_devstack.settings import inherited_environment
from peepers_sandbox.config import DEMO_SELLER_ID
from tests.e2e.devstack.test_make_run import _alive
from tests.support import wait_until

# Eight children, each started after the previous one is ready: on a loaded machine each
# takes up to ~30 s.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]

ITEMS = 100
NAMES = [
    "sandbox", "auth", "web", "ingest", "catalog", "catalog-sync", "mail", "orders", "mailer",
    "messages",
]  # fmt: skip
# The orchestrator's line for each child it started: its name and pid.
CHILD = re.compile(r"run: ([\w-]+) ready on \S+ in [\d.]+ s \(pid (\d+)")
# Printed once every child has started (the login came before the workers): the
# orchestrator then follows the catalog's sync.
STARTED = r"^sync: "


def devstack_argv(tmp_path: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "peepers_devstack",
        "--port-base", "0",
        "--items", str(ITEMS),
        "--activity-rate", "5",
        "--log-dir", str(tmp_path / "logs"),
        "--work-dir", str(tmp_path / "run"),
        *extra,
    ]  # fmt: skip


@asynccontextmanager
async def launched(argv: list[str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """The command in a session of its own (its group gets the test's signals)."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def read_until(
    process: asyncio.subprocess.Process, lines: list[str], pattern: str, *, timeout_s: float
) -> None:
    """Collect output lines until one matches ``pattern``."""
    assert process.stdout is not None
    async with asyncio.timeout(timeout_s):
        while True:
            raw = await process.stdout.readline()
            assert raw, "the orchestrator ended early:\n" + "\n".join(lines)
            lines.append(raw.decode().rstrip())
            if re.search(pattern, lines[-1]):
                return


def children(lines: list[str]) -> dict[str, int]:
    """Every child the run started (Prometheus too, where it is installed)."""
    found = {m[1]: int(m[2]) for m in map(CHILD.search, lines) if m}
    assert list(found)[: len(NAMES)] == NAMES, "\n".join(lines)
    return found


async def none_left(pids: dict[str, int], *, timeout_s: float) -> None:
    async def gone() -> bool:
        return not any(_alive(pid) for pid in pids.values())

    try:
        await wait_until(gone, timeout_s=timeout_s, every_s=0.1)
    except AssertionError:
        left = {name: pid for name, pid in pids.items() if _alive(pid)}
        for pid in left.values():
            os.kill(pid, signal.SIGKILL)
        msg = f"children outlived the orchestrator: {left}"
        raise AssertionError(msg) from None


def parent_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^PPid:\s+(\d+)", status, re.MULTILINE)
    assert found is not None, status
    return int(found[1])


async def test_a_sigkilled_orchestrator_leaves_no_child_running(tmp_path: Path) -> None:
    lines: list[str] = []
    async with launched(devstack_argv(tmp_path)) as process:
        await read_until(process, lines, STARTED, timeout_s=300)
        pids = children(lines)
        assert all(parent_of(pid) == process.pid for pid in pids.values())
        process.kill()  # SIGKILL: no handler, no cleanup, no shutdown of its own
        await process.wait()
        await none_left(pids, timeout_s=30)


async def test_ctrl_c_under_tee_stops_every_child_in_order(tmp_path: Path) -> None:
    status = tmp_path / "status"
    run = shlex.join(devstack_argv(tmp_path))
    log = shlex.quote(str(tmp_path / "run.log"))
    # The subshell only records the orchestrator's exit status: it ignores the SIGINT
    # itself (the orchestrator installs its own handler); tee does not, as in a terminal.
    command = f"(trap '' INT; {run}; echo $? > {shlex.quote(str(status))}) | tee {log}"
    lines: list[str] = []
    async with launched(["sh", "-c", command]) as shell:
        await read_until(shell, lines, STARTED, timeout_s=300)
        pids = children(lines)
        orchestrator = parent_of(pids["sandbox"])
        os.killpg(shell.pid, signal.SIGINT)  # what a Ctrl-C at the terminal does
        await none_left({**pids, "orchestrator": orchestrator}, timeout_s=60)
    # Its own shutdown ran to the end (stopping each child, newest first), output or not.
    assert status.read_text().strip() == "0"


async def test_a_second_run_converges_as_the_first_did(tmp_path: Path) -> None:
    synced = (
        rf"full sync of seller {DEMO_SELLER_ID} done by the catalog's sync process: {ITEMS} items"
    )
    outputs: list[list[str]] = []
    for _ in range(2):
        lines: list[str] = []
        async with launched(devstack_argv(tmp_path, "--exit-after", "1")) as process:
            await read_until(process, lines, synced, timeout_s=200)
            assert process.stdout is not None
            async with asyncio.timeout(60):
                lines += (await process.stdout.read()).decode().splitlines()
                assert await process.wait() == 0, "\n".join(lines)
        outputs.append(lines)
    first, second = ("\n".join(lines) for lines in outputs)
    for output in (first, second):
        # A catalog of this run's own: every item new to it. (The old fault: a second run
        # found the first run's newer versions and counted every item stale.) Some items
        # may come first from the notifications ingest reconciles at start: stale to the
        # sync, which then read the version they brought.
        counts = re.search(synced + r" within [\d.]+ s of its start \((\{.*\})\)", output)
        assert counts is not None, output
        outcomes = ast.literal_eval(counts[1])
        assert outcomes.get("created", 0) > 0, outcomes
        assert set(outcomes) <= {"created", "stale"}, outcomes
    scope = re.search(r"Redis scope and consumer groups (run-\w+)", first)
    assert scope is not None
    dropped = re.search(
        rf"dropped the previous run's state \({scope[1]}: "
        r"catalog (\d+), orders (\d+), messages (\d+) keys; (\d+) worker data directories\)",
        second,
    )
    assert dropped is not None, second
    assert int(dropped[1]) > ITEMS  # items, their index, the sync's and rebuild's keys
    # The orders worker's backfill and the messages worker's own keys, of the first run.
    assert int(dropped[2]) > 0, dropped[0]
    assert int(dropped[3]) > 0, dropped[0]
    # The first run's catalog, orders and messages workers each left a Faust data dir.
    assert int(dropped[4]) >= 3, dropped[0]
    assert not list((tmp_path / "run").glob(f"*{scope[1]}*"))


async def test_a_worker_killed_under_a_live_run_is_started_again(tmp_path: Path) -> None:
    lines: list[str] = []
    async with launched(devstack_argv(tmp_path)) as process:
        await read_until(process, lines, r"^summary ", timeout_s=300)
        catalog = children(lines)["catalog"]
        os.kill(catalog, signal.SIGKILL)
        again = r"run: catalog ready again in [\d.]+ s \(pid (\d+)\)"
        await read_until(process, lines, again, timeout_s=120)
        output = "\n".join(lines)
        assert f"catalog (pid {catalog}) exited with code -9: starting it again" in output
        found = re.search(again, lines[-1])
        assert found is not None
        fresh = int(found[1])
        assert fresh != catalog
        assert _alive(fresh)
        # The run goes on: summary frames after the restart, then a clean stop.
        await read_until(process, lines, r"^summary ", timeout_s=60)
        os.killpg(process.pid, signal.SIGINT)
        assert process.stdout is not None
        async with asyncio.timeout(60):
            lines += (await process.stdout.read()).decode().splitlines()
            assert await process.wait() == 0, "\n".join(lines)
    assert not _alive(fresh)
    # The log goes on in one file: the first process's lines, then the second's.
    log = (tmp_path / "logs" / "catalog.log").read_text()
    assert log.count("[^_Worker]: Starting...") == 2, log[-2000:]


async def test_a_second_concurrent_run_is_refused_and_starts_nothing(tmp_path: Path) -> None:
    stack = tmp_path / "stack"
    holder = RunLock(stack / "run.lock")
    holder.acquire(tmp_path / "first")
    try:
        second = await asyncio.create_subprocess_exec(
            *devstack_argv(tmp_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**inherited_environment(), "PEEPERS_STACK_DIR": str(stack)},
        )
        async with asyncio.timeout(60):
            output = (await second.communicate())[0].decode()
    finally:
        holder.release()
    assert second.returncode == 1, output
    assert f"another make run (pid {os.getpid()}, work dir {tmp_path / 'first'}" in output
    assert " ready on " not in output
