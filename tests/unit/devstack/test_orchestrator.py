"""The orchestrator hands its children absolute paths: they run with the work dir as their
cwd, so a relative `.stack/run/...` would resolve under it a second time (Prometheus once
failed to find its config that way under a plain `make run`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from peepers_devstack.orchestrator import Options, Orchestrator
from peepers_devstack.settings import Settings


def test_a_relative_stack_dir_gives_the_children_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    orchestrator = Orchestrator(
        Options(port_base=0), Settings(stack_dir=Path(".stack")), Console(quiet=True)
    )

    plan = orchestrator.plan
    assert orchestrator.work_dir == tmp_path / ".stack" / "run"
    assert orchestrator.log_dir == tmp_path / ".stack" / "logs"
    assert plan.spool_dir == tmp_path / ".stack" / "run" / "ingest-spool"
    assert plan.prometheus_config.is_absolute()
    assert plan.prometheus_config.is_relative_to(tmp_path / ".stack" / "run")
