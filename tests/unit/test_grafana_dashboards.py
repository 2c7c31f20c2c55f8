"""deploy/grafana: every dashboard has its stable uid, a datasource variable that every
query uses, and PromQL that Prometheus parses (promtool); the provisioning files load them.
With the rules: every metric they query is one the code declares, or one the work in
progress will (tests/observability.py names those)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability import (
    DASHBOARDS_DIR,
    EXPECTED_LATER,
    NAME_PATTERNS,
    PER_SERVICE,
    PROMETHEUS_OWN,
    ROOT,
    dashboard_exprs,
    dashboards,
    declared_in_code,
    defined,
    panels,
    queried,
)
from tests.unit.test_prometheus_rules import promtool

GRAFANA = ROOT / "deploy" / "grafana"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# The overview and one per service.
EXPECTED = {"overview", "ingest", "auth", "catalog", "orders", "messages"}


def _yaml(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_there_is_an_overview_and_a_dashboard_per_service() -> None:
    assert {path.stem for path in dashboards()} == EXPECTED


@pytest.mark.parametrize("path", sorted(DASHBOARDS_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_a_dashboard_has_a_stable_uid_and_a_datasource_variable_every_query_uses(
    path: Path,
) -> None:
    dashboard = json.loads(path.read_text())
    # Links between dashboards and bookmarks use the uid: it never changes.
    assert dashboard["uid"] == f"peepers-{path.stem}"
    assert dashboard["title"].startswith("Peepers / ")
    assert "peepers" in dashboard["tags"]
    (variable,) = (v for v in dashboard["templating"]["list"] if v["name"] == "datasource")
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    queries = 0
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            queries += 1
    assert queries


def test_panel_ids_are_unique_within_a_dashboard() -> None:
    for path, dashboard in dashboards().items():
        ids = [panel["id"] for panel in panels(dashboard)]
        assert len(ids) == len(set(ids)), path


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule's expression."""
    exprs = dashboard_exprs()
    rules = [{"record": f"dashboard:query{n}", "expr": expr} for n, expr in enumerate(exprs)]
    rule_file = tmp_path / "dashboards.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(  # noqa: S603 - promtool with our own file
        [promtool(), "check", "rules", str(rule_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_queried_is_declared_in_the_code_or_expected_later() -> None:
    names, patterns = queried()
    declared = declared_in_code()
    unknown = {
        name
        for name in names - PROMETHEUS_OWN - EXPECTED_LATER - PER_SERVICE
        if not defined(name, declared)
    }
    assert unknown == set()
    assert patterns <= NAME_PATTERNS


def test_nothing_expected_later_is_declared_already() -> None:
    """A name that landed leaves EXPECTED_LATER, so the e2e check covers it."""
    assert EXPECTED_LATER & declared_in_code() == set()


def test_provisioning_loads_the_dashboards_folder_and_a_prometheus_datasource() -> None:
    (provider,) = _yaml(GRAFANA / "provisioning" / "dashboards" / "peepers.yaml")["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"]
    (source,) = _yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yaml")["datasources"]
    assert source["type"] == "prometheus"
