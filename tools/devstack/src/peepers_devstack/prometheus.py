"""A real Prometheus for ``make run``: its configuration, and the alerts it reports.

Debian's ``prometheus`` (scripts/install-prometheus) runs as one more child
(`Plan.prometheus`), last started and first stopped. It scrapes every child that serves
``/metrics`` — each service that gets a ``<NAME>_HTTP_PORT`` — every few seconds, and
loads the alert and recording rules of ``deploy/prometheus/rules``, the same files a
production Prometheus loads. Without the binary the run goes on without it and says so.

``peepers-prometheusrule`` prints the same rule files as a Prometheus Operator
``PrometheusRule``: deploy/k8s/monitoring/prometheusrule.yaml is its output
(tests/unit/test_k8s.py fails when the two differ).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import yaml

from peepers_devstack.plan import LOOPBACK, ChildSpec, Plan

BINARY: Final = "prometheus"
RULES_DIR: Final = Path(__file__).resolve().parents[4] / "deploy" / "prometheus" / "rules"
# Faster than production (15 s): the summary shows an alert within seconds.
INTERVAL: Final = "5s"


def installed() -> Path | None:
    found = shutil.which(BINARY)
    return Path(found) if found is not None else None


def scrape_targets(children: list[ChildSpec]) -> dict[str, str]:
    """``job -> host:port`` for every child that has an HTTP port (its ``/metrics``).

    That port is the one ``*_HTTP_PORT`` variable of its environment (``AUTH_WEB_HTTP_PORT``
    for the web app).
    """
    targets: dict[str, str] = {}
    for child in children:
        port = next((v for k, v in child.env.items() if k.endswith("_HTTP_PORT")), None)
        if port is not None:
            targets[f"peepers-{child.name}"] = f"{LOOPBACK}:{port}"
    return targets


def config(children: list[ChildSpec], rules_dir: Path = RULES_DIR) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
        "rule_files": [str(rules_dir / "*.yml")],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in scrape_targets(children).items()
        ],
    }


def prometheus_rule(rules_dir: Path = RULES_DIR) -> dict[str, Any]:
    """Every group of every rule file, in file order, as one ``PrometheusRule``."""
    groups = []
    for path in sorted(rules_dir.glob("*.yml")):
        groups += yaml.safe_load(path.read_text())["groups"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "peepers",
            "labels": {"app.kubernetes.io/name": "peepers", "role": "alert-rules"},
        },
        "spec": {"groups": groups},
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the rules' expressions) as literal blocks, as written."""


def _text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _text)


def main() -> None:
    """``peepers-prometheusrule > deploy/k8s/monitoring/prometheusrule.yaml``."""
    header = (
        "# Generated from deploy/prometheus/rules by `uv run peepers-prometheusrule`:\n"
        "# edit the rule files, then regenerate this one.\n"
    )
    body = yaml.dump(prometheus_rule(), Dumper=_Dumper, sort_keys=False, width=100)
    print(header + body, end="")


def write_config(plan: Plan) -> Path:
    """The configuration for the plan's services, where `Plan.prometheus` points.

    The previous run's samples are dropped with it: its services are gone, and an alert
    over a window (dead letters in the last 15 minutes, say) would fire on their series.
    """
    path = plan.prometheus_config
    shutil.rmtree(path.parent / "data", ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    # JSON is YAML: no YAML library needed to write it.
    path.write_text(json.dumps(config(plan.services()), indent=2))
    return path


@dataclass(frozen=True)
class Alerts:
    firing: list[str]
    pending: int


async def alerts(session: aiohttp.ClientSession, url: str) -> Alerts | None:
    """What ``/api/v1/alerts`` says now (``None``: Prometheus did not answer)."""
    try:
        async with session.get(f"{url}/api/v1/alerts") as response:
            if response.status != 200:
                return None
            body = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    listed = body.get("data", {}).get("alerts", [])
    firing = sorted({a["labels"]["alertname"] for a in listed if a.get("state") == "firing"})
    return Alerts(firing, sum(1 for a in listed if a.get("state") == "pending"))
