"""A worker's stop ends within its deadline, even when Faust's own stop hangs (real Kafka)."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import pytest

from peepers_common.process import OVERSTAYED_EXIT_CODE
from peepers_common.settings import KafkaSettings
from tests.support import unique

SCRIPT = Path(__file__).with_name("stuck_worker.py")
READY = b"[^_Worker]: Ready"


async def _started(
    kafka: KafkaSettings, tmp_path: Path, *, stuck: bool
) -> tuple[asyncio.subprocess.Process, list[bytes]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), unique("stuck"), kafka.bootstrap_servers, str(int(stuck)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[bytes] = []
    async with asyncio.timeout(60):
        while not any(READY in line for line in lines):
            line = await process.stdout.readline()
            assert line, b"".join(lines).decode(errors="replace")
            lines.append(line)
    return process, lines


async def _stopped(process: asyncio.subprocess.Process, lines: list[bytes]) -> float:
    """SIGTERM; the seconds until the process ended."""
    assert process.stdout is not None
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(30):
            lines.extend((await process.stdout.read()).splitlines(keepends=True))
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return time.monotonic() - started


@pytest.mark.timeout(120)
async def test_a_worker_whose_stop_hangs_ends_at_its_deadline_and_says_so(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    process, lines = await _started(kafka, tmp_path, stuck=True)
    took = await _stopped(process, lines)
    output = b"".join(lines).decode(errors="replace")
    assert "stuck in its stop" in output
    assert process.returncode == OVERSTAYED_EXIT_CODE, output
    assert "still stopping 3 s after SIGTERM" in output
    # The line names where the stop hangs: the stuck service's on_stop.
    assert "stuck_worker.py:" in output.split("waiting on:")[1]
    assert took >= 3.0


@pytest.mark.timeout(120)
async def test_a_worker_that_stops_cleanly_exits_0_before_its_deadline(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    process, lines = await _started(kafka, tmp_path, stuck=False)
    await _stopped(process, lines)
    output = b"".join(lines).decode(errors="replace")
    assert process.returncode == 0, output
    assert "still stopping" not in output
