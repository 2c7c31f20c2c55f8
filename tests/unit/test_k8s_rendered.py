"""deploy/k8s as Kubernetes gets it: each kustomization rendered by kustomize,
every built-in object validated against Kubernetes' own OpenAPI schemas
(kubernetes-validate, which ships them: nothing is downloaded), strictly (no unknown
fields), for the oldest and the newest Kubernetes we support. The custom resources (KEDA,
Prometheus Operator) have no schema there: tests/unit/test_k8s.py and the checks below
cover them.

Rendered by `kubectl kustomize`, or by the kustomize CLI where kubectl's own is too old
(scripts/install-kubectl, run by scripts/test, installs what is missing); without either
these tests fail rather than skip.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from peepers_devstack.prometheus import prometheus_rule

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
# What `kubectl apply -k` is run on (README.md): the rest are their resources.
ENTRY_POINTS = ("", "jobs", "monitoring")
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
CUSTOM_KINDS = {
    "keda.sh/v1alpha1": {"ScaledObject"},
    "monitoring.coreos.com/v1": {"ServiceMonitor", "PrometheusRule"},
}


def _kustomize() -> list[str]:
    # scripts/install-kubectl installs the kustomize CLI only when kubectl's is too old.
    if (kustomize := shutil.which("kustomize")) is not None:
        return [kustomize, "build"]
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "kubectl is missing: run scripts/install-kubectl"
    return [kubectl, "kustomize"]


@cache
def rendered(entry: str) -> list[dict[str, Any]]:
    result = subprocess.run(  # noqa: S603 - kustomize on our own manifests
        [*_kustomize(), str(K8S / entry)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]


def _custom(doc: dict[str, Any]) -> bool:
    return doc["kind"] in CUSTOM_KINDS.get(doc["apiVersion"], set())


def test_every_kustomization_is_an_entry_point_or_a_resource_of_one() -> None:
    listed = {K8S / entry for entry in ENTRY_POINTS}
    for kustomization in K8S.rglob("kustomization.yaml"):
        for resource in yaml.safe_load(kustomization.read_text())["resources"]:
            listed.add((kustomization.parent / resource).resolve())
    assert {path.parent for path in K8S.rglob("kustomization.yaml")} <= listed


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda e: e or "all")
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_object_matches_the_kubernetes_schema(entry: str, version: str) -> None:
    docs = rendered(entry)
    assert docs
    for doc in docs:
        if _custom(doc):
            continue
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {exc.message} at {list(exc.path)}")
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{where}: {doc['apiVersion']} is not an API of Kubernetes {version}")


def test_the_only_custom_resources_are_kedas_and_the_prometheus_operators() -> None:
    kinds = {(d["apiVersion"], d["kind"]) for entry in ENTRY_POINTS for d in rendered(entry)}
    custom = {kind for kind in kinds if kind[0] in CUSTOM_KINDS}
    assert custom == {(api, kind) for api, names in CUSTOM_KINDS.items() for kind in names}


def test_everything_lands_in_the_peepers_namespace() -> None:
    for entry in ENTRY_POINTS:
        for doc in rendered(entry):
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == "peepers", doc["metadata"]["name"]


def test_the_prometheusrule_is_the_rule_files() -> None:
    """Generated from the rule files; when this fails, regenerate it:
    `uv run peepers-prometheusrule > deploy/k8s/monitoring/prometheusrule.yaml`.
    """
    (rule,) = (d for d in rendered("monitoring") if d["kind"] == "PrometheusRule")
    assert rule["spec"] == prometheus_rule()["spec"]


def test_the_servicemonitor_scrapes_each_workload_through_exactly_one_service() -> None:
    (monitor,) = (d for d in rendered("monitoring") if d["kind"] == "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["endpoints"]
    selected = [
        doc
        for doc in rendered("")
        if doc["kind"] == "Service"
        and selector.items() <= doc["metadata"].get("labels", {}).items()
    ]
    workloads = [d for d in rendered("") if d["kind"] in ("Deployment", "StatefulSet")]
    assert workloads
    # Each workload's cluster Service has the workload's name.
    assert sorted(s["metadata"]["name"] for s in selected) == sorted(
        w["metadata"]["name"] for w in workloads
    )
    for service in selected:
        assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
        # The job label the alert rules expect: peepers-<service>.
        assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]].startswith("peepers-")
    assert endpoint["path"] == "/metrics"
