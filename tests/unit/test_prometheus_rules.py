"""deploy/prometheus: the rules parse (`promtool check rules`), their unit tests pass
(`promtool test rules`), every alert has a firing and a silent case there, and every alert
links a section of docs/runbooks.md that exists.

promtool comes from Debian's prometheus package (scripts/install-prometheus, run by
scripts/test); without it these tests fail rather than skip, so `make test` cannot pass
without having checked the rules.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.test.yml"))
RUNBOOKS = ROOT / "docs" / "runbooks.md"
SEVERITIES = {"page", "ticket"}


def promtool() -> str:
    found = shutil.which("promtool")
    assert found is not None, "promtool is missing: run scripts/install-prometheus"
    return found


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - promtool with our own files
        [promtool(), *map(str, args)], capture_output=True, text=True, check=False, timeout=60
    )


def _load(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict), path
    return loaded


def rules() -> Iterator[dict[str, Any]]:
    for path in RULE_FILES:
        for group in _load(path)["groups"]:
            yield from group["rules"]


ALERTS = {rule["alert"]: rule for rule in rules() if "alert" in rule}


def runbook_anchors() -> set[str]:
    """GitHub's anchors for the headings of docs/runbooks.md (our headings are plain words)."""
    headings = re.findall(r"^#{2,4} (.+)$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    return {
        re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")
        for heading in headings
    }


def test_there_are_rules_and_tests() -> None:
    assert RULE_FILES
    assert TEST_FILES
    assert len(ALERTS) >= 20


def test_promtool_check_rules_accepts_every_rule_file() -> None:
    result = run_promtool("check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config_accepts_docker_composes_prometheus() -> None:
    result = run_promtool("check", "config", PROMETHEUS / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules_passes() -> None:
    result = run_promtool("test", "rules", *TEST_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_file_has_its_test_file() -> None:
    tested = {
        (path.parent / rule_file).resolve()
        for path in TEST_FILES
        for rule_file in _load(path)["rule_files"]
    }
    assert tested == {path.resolve() for path in RULE_FILES}


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in TEST_FILES:
        for case in _load(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    assert set(ALERTS) - firing == set(), "alerts no test fires"
    assert set(ALERTS) - silent == set(), "alerts no test shows silent"
    assert firing | silent <= set(ALERTS), "tests of alerts that do not exist"


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_every_alert_has_a_severity_a_summary_and_a_runbook_section(name: str) -> None:
    alert = ALERTS[name]
    assert alert["labels"]["severity"] in SEVERITIES
    assert alert["annotations"]["summary"]
    assert alert["annotations"]["runbook_url"] == f"docs/runbooks.md#{name.lower()}"
    assert name.lower() in runbook_anchors(), f"docs/runbooks.md has no section {name}"


def test_every_runbook_alert_section_is_an_alert() -> None:
    """A section for an alert that was renamed or removed misleads whoever lands on it."""
    sections = re.findall(r"^### (Peepers\w+)$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    assert set(sections) == set(ALERTS)
