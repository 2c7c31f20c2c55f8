"""How ``make run`` reports each child's stop: clean, overstayed, or killed (real processes)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from peepers_devstack.errors import ChildFailed
from peepers_devstack.plan import ChildSpec
from peepers_devstack.processes import Supervisor

# Each child prints "up" once its SIGTERM handler is set, then waits.
_ON_SIGTERM = {
    "clean": "lambda *_: sys.exit(0)",
    "killed": "signal.SIG_DFL",  # no handler: SIGTERM ends it (as the mail sink)
    "jvm": "lambda *_: sys.exit(143)",  # as a JVM exits on SIGTERM (the proof's Kafka)
    "overstayed": "lambda *_: sys.exit(70)",  # what a service whose stop hangs exits with
    "deaf": "signal.SIG_IGN",  # only SIGKILL ends it
}


def _spec(name: str) -> ChildSpec:
    code = (
        "import signal, sys, time\n"
        f"signal.signal(signal.SIGTERM, {_ON_SIGTERM[name]})\n"
        "print('up', flush=True)\n"
        "while True: time.sleep(0.05)\n"
    )
    return ChildSpec(name, [sys.executable, "-c", code], {})


@pytest.mark.timeout(60)
async def test_each_stop_is_reported_with_how_it_ended(tmp_path: Path) -> None:
    supervisor = Supervisor(
        log_dir=tmp_path / "logs",
        work_dir=tmp_path / "run",
        base_env={},
        stop_timeout_s=1.0,
    )
    for name in _ON_SIGTERM:
        child = await supervisor.start(_spec(name))

        async def up(log: Path = child.log) -> bool:
            return "up" in await asyncio.to_thread(log.read_text)

        await supervisor.wait_ready(child, up, timeout_s=20)
    reports: list[str] = []

    await supervisor.stop_all(reports.append)

    deaf, overstayed, jvm, killed, clean = reports
    for plain in (clean, killed, jvm):  # ended by the SIGTERM itself: a stop as any other
        assert re.fullmatch(r"stopped (clean|killed|jvm) \(pid \d+\) in [\d.]+ s", plain), plain
    assert overstayed.startswith("stopped overstayed (pid ")
    assert overstayed.endswith(f" with exit code 70, see {tmp_path / 'logs' / 'overstayed.log'}")
    assert deaf.startswith("killed deaf (pid ")
    assert deaf.endswith("still running 1 s after SIGTERM")
    assert not (tmp_path / "run" / "children.pids").exists()


@pytest.mark.timeout(60)
async def test_waiting_for_one_child_is_not_failed_by_another_dying(tmp_path: Path) -> None:
    supervisor = Supervisor(log_dir=tmp_path / "logs", work_dir=tmp_path / "run", base_env={})
    other = await supervisor.start(_spec("clean"))
    coming = await supervisor.start(_spec("clean"))
    polls: list[int] = []

    async def ready() -> bool:
        if not polls:
            os.kill(other.pid, signal.SIGKILL)  # killed while the other comes up
            await other.process.wait()
        polls.append(1)
        return "up" in await asyncio.to_thread(coming.log.read_text)

    await supervisor.wait_ready(coming, ready, timeout_s=20)

    assert other.process.returncode == -signal.SIGKILL
    assert supervisor.exited() == [other]  # the caller's to start again
    os.kill(coming.pid, signal.SIGKILL)
    await coming.process.wait()
    with pytest.raises(ChildFailed, match="exited with code -9"):
        await supervisor.wait_ready(coming, ready, timeout_s=20)
    await supervisor.stop_all(lambda _line: None)
