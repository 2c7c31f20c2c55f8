"""What the alert rules and the Grafana dashboards query: their PromQL, the metric names in
it, and the names that work in progress has yet to export.

Shared by the unit tests (every name is defined in the code) and the e2e test (every name
is exported by a running service).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import yaml

ROOT: Final = Path(__file__).resolve().parents[1]
RULES_DIR: Final = ROOT / "deploy" / "prometheus" / "rules"
DASHBOARDS_DIR: Final = ROOT / "deploy" / "grafana" / "dashboards"
# Prometheus's own series, always there.
PROMETHEUS_OWN: Final = frozenset({"up", "ALERTS"})
# Grafana's interval variables, replaced so that Prometheus can parse an expression.
GRAFANA_VARIABLES: Final = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}

# Names the rules and dashboards use that no service exports yet: the issues that add
# them name them so (orders, messages, state). A name leaves this list when its code lands.
EXPECTED_LATER: Final[frozenset[str]] = frozenset()
# `{__name__=~...}` selectors of the state rules: one family per service, registered
# under the service's name by peepers_common.rebuild and peepers_common.audit.
NAME_PATTERNS: Final = frozenset(
    {
        "peepers_.+_rebuild_running",
        "peepers_.+_rebuild_finished_total",
        "peepers_.+_drift_total",
    }
)
# Per-service families that peepers_common registers from an f-string (the code scan
# cannot see them), by the services that use them.
PER_SERVICE: Final = frozenset(
    {
        "peepers_catalog_rebuild_running",
        "peepers_catalog_rebuild_finished_total",
        "peepers_catalog_drift_total",
        "peepers_orders_rebuild_running",
        "peepers_orders_rebuild_finished_total",
        "peepers_orders_drift_total",
    }
)

_NAME = re.compile(r"(?<![\w:\"])(peepers_[a-z0-9_]+|up|ALERTS)\b(?!\s*\()")
_NAME_REGEX = re.compile(r'__name__=~"([^"]+)"')
_HISTOGRAM_SUFFIXES: Final = ("_bucket", "_count", "_sum")


def _yaml(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict), path
    return loaded


def rules() -> Iterator[dict[str, Any]]:
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in _yaml(path)["groups"]:
            yield from group["rules"]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def dashboards() -> dict[Path, dict[str, Any]]:
    return {path: json.loads(path.read_text()) for path in sorted(DASHBOARDS_DIR.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs() -> list[str]:
    """Every panel query, with Grafana's variables replaced by what Prometheus parses."""
    exprs = []
    for dashboard in dashboards().values():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                exprs.append(expr)
    return exprs


def rule_exprs() -> list[str]:
    return [str(rule["expr"]) for rule in rules()]


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects (not functions, label values or recorded names).

    Our metric names all begin with ``peepers_`` (plus Prometheus's own ``up`` and
    ``ALERTS``); recorded names have colons, label values are quoted.
    """
    return set(_NAME.findall(_NAME_REGEX.sub("", expr)))


def name_patterns(expr: str) -> set[str]:
    return set(_NAME_REGEX.findall(expr))


def defined(name: str, families: set[str]) -> bool:
    """``name`` is a family in ``families``, or a series of a histogram family in it."""
    if name in families:
        return True
    return any(
        name.endswith(suffix) and name.removesuffix(suffix) in families
        for suffix in _HISTOGRAM_SUFFIXES
    )


_DECLARED = re.compile(r"\b(?:Counter|Gauge|Histogram|Summary)\(\s*\"(peepers_[a-z0-9_]+)\"")


def declared_in_code() -> set[str]:
    """The metric families the services and libraries declare (prometheus_client)."""
    sources = [*ROOT.glob("libs/*/src/**/*.py"), *ROOT.glob("services/*/src/**/*.py")]
    return {name for path in sources for name in _DECLARED.findall(path.read_text())}


def queried() -> tuple[set[str], set[str]]:
    """Metric names and ``__name__`` patterns the rules and dashboards query."""
    exprs = [*rule_exprs(), *dashboard_exprs()]
    names = set().union(*map(metric_names, exprs))
    patterns = set().union(*map(name_patterns, exprs))
    return names, patterns
