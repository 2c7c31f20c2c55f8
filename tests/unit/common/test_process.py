"""A service's stop is bounded, and a stop that overstays says what it waits on."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import pytest

from peepers_common.process import OVERSTAYED_EXIT_CODE, awaits, pending_tasks

SCRIPT = Path(__file__).with_name("signalled_loop.py")


async def _inner(event: asyncio.Event) -> None:
    await event.wait()


async def _outer(event: asyncio.Event) -> None:
    await _inner(event)


async def test_a_suspended_task_is_named_with_its_await_chain_outermost_first() -> None:
    event = asyncio.Event()
    task = asyncio.create_task(_outer(event), name="consumer-loop")
    await asyncio.sleep(0)

    chain = awaits(task.get_coro())
    lines = pending_tasks(asyncio.get_running_loop())

    assert chain.index("_outer") < chain.index("_inner") < chain.index("wait")
    assert chain.endswith("wait > (a future)")
    assert chain.startswith("test_process.py:")
    assert any(line.startswith("consumer-loop at test_process.py:") for line in lines)
    event.set()
    await task
    assert awaits(task.get_coro()) == "(no frame)"


async def _run(stuck: bool, tmp_path: Path) -> tuple[int, str, float]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), str(int(stuck)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            assert await process.stdout.readline() == b"ready\n"
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            output = (await process.stdout.read()).decode()
            code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return code, output, time.monotonic() - started


@pytest.mark.timeout(60)
async def test_a_stop_that_hangs_ends_at_the_deadline_naming_what_it_waits_on(
    tmp_path: Path,
) -> None:
    code, output, took = await _run(True, tmp_path)

    assert code == OVERSTAYED_EXIT_CODE, output
    assert took >= 2.0
    assert "still stopping 2 s after SIGTERM" in output
    assert "drain at signalled_loop.py:" in output
    assert "drain_forever" in output
    assert "stopped" not in output.replace("still stopping", "")


@pytest.mark.timeout(60)
async def test_a_stop_that_finishes_exits_0_and_the_deadline_stays_quiet(
    tmp_path: Path,
) -> None:
    code, output, _ = await _run(False, tmp_path)

    assert code == 0, output
    assert output.splitlines() == ["stopping", "stopped"]
