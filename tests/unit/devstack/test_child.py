"""`peepers_devstack.child.bound`: a command that dies with the process that started it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from peepers_devstack.child import bound

# Starts `sleep 600`, bound or not as its argument says, prints the sleep's pid, waits.
_PARENT = (
    "import subprocess, sys, time\n"
    "from peepers_devstack.child import bound\n"
    "argv = ['sleep', '600']\n"
    "child = subprocess.Popen(\n"
    "    bound(argv) if sys.argv[1] == 'bound' else argv, stdout=subprocess.DEVNULL\n"
    ")\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(600)\n"
)


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie may wait long for a reaper here)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def _orphan_after_sigkill(mode: str) -> int:
    """Start the parent, SIGKILL it, and return its sleep's pid."""
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _PARENT, mode, stdout=asyncio.subprocess.PIPE
    )
    assert parent.stdout is not None
    pid = int(await asyncio.wait_for(parent.stdout.readline(), timeout=20))
    assert _running(pid)
    parent.kill()  # no handler runs, no cleanup: as a pytest killed outright
    await parent.wait()
    return pid


@pytest.mark.timeout(60)
async def test_a_bound_command_dies_with_its_killed_parent() -> None:
    pid = await _orphan_after_sigkill("bound")
    for _ in range(100):
        if not _running(pid):
            return
        await asyncio.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    pytest.fail(f"the bound sleep (pid {pid}) outlived its SIGKILLed parent by 5 s")


@pytest.mark.timeout(60)
async def test_an_unbound_command_outlives_its_killed_parent() -> None:
    """The case `bound` exists for: without it, the orphan runs on."""
    pid = await _orphan_after_sigkill("plain")
    await asyncio.sleep(1)
    try:
        assert _running(pid)
    finally:
        os.kill(pid, signal.SIGKILL)


def test_bound_names_the_caller_as_parent_unless_told() -> None:
    assert bound(["redis-server", "--port", "1"]) == [
        sys.executable,
        "-m",
        "peepers_devstack.child",
        str(os.getpid()),
        "redis-server",
        "--port",
        "1",
    ]
    assert bound(["x"], parent=42)[3] == "42"
