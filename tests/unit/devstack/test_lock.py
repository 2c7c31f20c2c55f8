"""One `make run` per stack: a second run is refused, naming the first; the lock goes
with the run that held it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from peepers_devstack.errors import PreflightFailed
from peepers_devstack.lock import RunLock


def test_a_second_run_is_refused_with_who_holds_the_stack(tmp_path: Path) -> None:
    first = RunLock(tmp_path / "run.lock")
    first.acquire(tmp_path / "run-a")
    with pytest.raises(PreflightFailed, match=rf"pid {os.getpid()}, work dir {tmp_path}/run-a"):
        RunLock(tmp_path / "run.lock").acquire(tmp_path / "run-b")
    # and the refused one did not spoil what the holder wrote
    with pytest.raises(PreflightFailed, match="run-a"):
        RunLock(tmp_path / "run.lock").acquire(tmp_path / "run-c")
    first.release()


def test_once_released_the_next_run_gets_the_stack(tmp_path: Path) -> None:
    first = RunLock(tmp_path / "run.lock")
    first.acquire(tmp_path / "run-a")
    first.release()
    first.release()  # idempotent
    second = RunLock(tmp_path / "run.lock")
    second.acquire(tmp_path / "run-b")
    assert "run-b" in (tmp_path / "run.lock").read_text()
    second.release()
