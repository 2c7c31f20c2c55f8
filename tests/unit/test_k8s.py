"""deploy/k8s cannot be applied here (no cluster), so check that it agrees with the code:
env var names the Settings read, secrets only by reference, probes on each service's
port, images and commands the Dockerfile and entry points provide, and a consumer
autoscaler that never goes past the partitions of the topics it watches."""

import importlib.util
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from peepers_auth.settings import Settings as AuthSettings
from peepers_auth.web.settings import WebSettings
from peepers_catalog.__main__ import cli as catalog_cli
from peepers_catalog.app import ITEM_TOPICS
from peepers_catalog.settings import Settings as CatalogSettings
from peepers_common.settings import StackSettings
from peepers_common.topics import PEEPERS_ORDERS, PEEPERS_SELLERS, TOPICS
from peepers_ingest.settings import Settings as IngestSettings
from peepers_messages.__main__ import cli as messages_cli
from peepers_messages.app import CONSUMED as MESSAGES_CONSUMED
from peepers_messages.settings import Settings as MessagesSettings
from peepers_orders.app import NOTIFICATION_TOPICS
from peepers_orders.settings import Settings as OrdersSettings
from tests.support import holds_secret, settings_field

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")


@dataclass(frozen=True)
class Svc:
    settings: type[BaseSettings]
    module: str
    # Arguments after `python -m <module>` that pick the long-running command.
    args: tuple[str, ...] = ()
    # The image, when the service runs from another service's package (web: auth's).
    image: str | None = None
    # Whether it calls ML itself (web does not: it reads the other services only).
    calls_ml: bool = True


SERVICES = {
    "ingest": Svc(IngestSettings, "peepers_ingest"),
    "auth": Svc(AuthSettings, "peepers_auth"),
    "catalog": Svc(CatalogSettings, "peepers_catalog", ("worker",)),
    "orders": Svc(OrdersSettings, "peepers_orders", ("worker",)),
    "messages": Svc(MessagesSettings, "peepers_messages", ("worker",)),
    "web": Svc(WebSettings, "peepers_auth", ("web",), image="peepers-auth", calls_ml=False),
}
# Workloads that are not services, and the settings their env vars belong to.
OTHER_WORKLOADS: dict[str, type[BaseSettings]] = {
    "peepers-topics": StackSettings,
    # The orders mailer: the orders image and settings, a process of its own.
    "peepers-orders-mailer": OrdersSettings,
    # The catalog's syncs (CATALOG_ROLE=sync): the catalog image and settings.
    "peepers-catalog-sync": CatalogSettings,
}


def _docs(path: Path) -> Iterator[dict[str, Any]]:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc is not None:
            assert isinstance(doc, dict), f"{path}: a document is not a mapping"
            yield doc


MANIFESTS: list[tuple[Path, dict[str, Any]]] = [
    (path, doc)
    for path in sorted(K8S.rglob("*.yaml"))
    if path.name != "kustomization.yaml"
    for doc in _docs(path)
]


def _all(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in MANIFESTS if doc["kind"] == kind]


def _one(kind: str, name: str) -> dict[str, Any]:
    (found,) = (doc for doc in _all(kind) if doc["metadata"]["name"] == name)
    return found


def _workload(service: str) -> dict[str, Any]:
    (found,) = (
        doc
        for _, doc in MANIFESTS
        if doc["kind"] in WORKLOAD_KINDS and doc["metadata"]["name"] == f"peepers-{service}"
    )
    return found


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def _config(service: str) -> dict[str, str]:
    data = _one("ConfigMap", f"peepers-{service}-config")["data"]
    assert isinstance(data, dict)
    assert all(isinstance(value, str) for value in data.values()), "ConfigMap values are strings"
    return {str(key): str(value) for key, value in data.items()}


def _http_port(service: str) -> int:
    port = SERVICES[service].settings().http_port  # type: ignore[attr-defined]
    assert isinstance(port, int)
    return port


def _named_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = (p["containerPort"] for p in container["ports"] if p["name"] == port)
    assert isinstance(number, int)
    return number


class TestManifests:
    def test_every_manifest_parses_and_names_itself(self) -> None:
        assert MANIFESTS
        for path, doc in MANIFESTS:
            assert {"apiVersion", "kind", "metadata"} <= set(doc), path
            assert doc["metadata"].get("name"), path

    def test_every_kustomization_resource_exists_and_every_manifest_is_listed(self) -> None:
        listed: set[Path] = set()
        for kustomization in K8S.rglob("kustomization.yaml"):
            for resource in yaml.safe_load(kustomization.read_text())["resources"]:
                target = (kustomization.parent / resource).resolve()
                assert target.exists(), f"{kustomization}: {resource} does not exist"
                listed.add(target)
        unlisted = {
            path.resolve()
            for path, _ in MANIFESTS
            if path.resolve() not in listed and path.name != "secrets.example.yaml"
        }
        assert not unlisted, f"manifests no kustomization applies: {sorted(unlisted)}"

    @pytest.mark.parametrize("service", SERVICES)
    def test_every_service_has_its_workload_service_budget_policy_and_config(
        self, service: str
    ) -> None:
        name = f"peepers-{service}"
        assert _workload(service)
        for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
            assert _one(kind, name), f"{service} has no {kind}"
        assert _config(service)

    @pytest.mark.parametrize("service", SERVICES)
    def test_services_and_budgets_select_the_workloads_pods(self, service: str) -> None:
        pod_labels = _workload(service)["spec"]["template"]["metadata"]["labels"]
        selectors = [
            doc["spec"]["selector"]
            for doc in _all("Service")
            if doc["metadata"]["name"].startswith(f"peepers-{service}")
            and doc["metadata"]["name"] not in OTHER_WORKLOADS
        ]
        selectors.append(_one("PodDisruptionBudget", f"peepers-{service}")["spec"]["selector"])
        selectors.append(_workload(service)["spec"]["selector"])
        for selector in selectors:
            labels = selector.get("matchLabels", selector)
            assert labels.items() <= pod_labels.items(), selector


class TestSettingsEnv:
    @pytest.mark.parametrize("service", SERVICES)
    def test_config_map_keys_are_names_the_settings_read(self, service: str) -> None:
        settings = SERVICES[service].settings
        for name in _config(service):
            field = settings_field(settings, name)
            assert field is not None, f"{service}: {name} is not a Settings field"
            assert not holds_secret(field), f"{service}: {name} is secret: use the Secret"

    @pytest.mark.parametrize(
        "workload",
        [f"peepers-{service}" for service in SERVICES] + list(OTHER_WORKLOADS),
    )
    def test_container_env_names_are_names_the_settings_read(self, workload: str) -> None:
        settings = OTHER_WORKLOADS.get(workload) or SERVICES[workload.split("-")[1]].settings
        (doc,) = (
            d
            for _, d in MANIFESTS
            if d["kind"] in WORKLOAD_KINDS and d["metadata"]["name"] == workload
        )
        for var in _container(doc).get("env", []):
            field = settings_field(settings, var["name"])
            assert field is not None, f"{workload}: {var['name']} is not a Settings field"
            if holds_secret(field):
                assert "value" not in var, f"{workload}: {var['name']} is inline"
                assert "secretKeyRef" in var["valueFrom"], f"{var['name']}: not from a Secret"

    @pytest.mark.parametrize("service", SERVICES)
    def test_config_comes_from_the_services_config_map(self, service: str) -> None:
        container = _container(_workload(service))
        refs = [source["configMapRef"]["name"] for source in container["envFrom"]]
        assert refs == [f"peepers-{service}-config"]
        assert not any("secretRef" in source for source in container["envFrom"])


class TestSecrets:
    def test_nothing_applied_holds_a_secret(self) -> None:
        applied = [
            path
            for path, doc in MANIFESTS
            if doc["kind"] == "Secret" and K8S / "base" in path.parents
        ]
        assert not applied, "Secrets are created by the operator, never applied from git"

    def test_example_secrets_hold_only_placeholders(self) -> None:
        secrets = _all("Secret")
        assert secrets
        for secret in secrets:
            assert "data" not in secret, "base64 data hides what is in it: use stringData"
            for key, value in secret["stringData"].items():
                # Every secret value, or every secret inside a JSON value, is a placeholder.
                assert "<CHANGE-ME" in value, f"{key} looks real"
                unquoted = re.sub(r"<CHANGE-ME[^>]*>", "", value)
                assert not re.search(r"[A-Za-z0-9_\-+/=]{12,}", unquoted), f"{key} looks real"

    @pytest.mark.parametrize("service", SERVICES)
    def test_every_referenced_secret_key_is_in_the_example(self, service: str) -> None:
        example = {
            secret["metadata"]["name"]: set(secret["stringData"]) for secret in _all("Secret")
        }
        for var in _container(_workload(service)).get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None:
                assert ref["name"] == f"peepers-{service}-secrets"
                assert ref["key"] == var["name"]
                if not ref.get("optional", False):
                    assert ref["key"] in example[ref["name"]], f"{ref['key']} not in the example"

    @pytest.mark.parametrize("service", SERVICES)
    def test_secret_fields_the_service_is_given_come_from_its_secret(self, service: str) -> None:
        settings = SERVICES[service].settings
        container = _container(_workload(service))
        given = {var["name"]: var for var in container.get("env", [])} | dict.fromkeys(
            _config(service)
        )
        for name, var in given.items():
            field = settings_field(settings, name)
            if field is not None and holds_secret(field):
                assert var is not None, f"{name} is in the ConfigMap"
                assert "secretKeyRef" in var["valueFrom"], name


class TestProbesAndPorts:
    @pytest.mark.parametrize("service", SERVICES)
    def test_probes_hit_healthz_and_readyz_on_the_settings_port(self, service: str) -> None:
        port = _http_port(service)
        container = _container(_workload(service))
        live, ready = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
        assert live["path"] == "/healthz"
        assert ready["path"] == "/readyz"
        assert _named_port(container, live["port"]) == port
        assert _named_port(container, ready["port"]) == port
        prefix = SERVICES[service].settings.model_config.get("env_prefix", "")
        assert _config(service)[f"{prefix}HTTP_PORT"] == str(port)

    @pytest.mark.parametrize("service", SERVICES)
    def test_cluster_service_exposes_the_settings_port(self, service: str) -> None:
        (port,) = _one("Service", f"peepers-{service}")["spec"]["ports"]
        container = _container(_workload(service))
        assert port["port"] == _http_port(service)
        assert _named_port(container, port["targetPort"]) == _http_port(service)


class TestImagesAndCommands:
    @pytest.mark.parametrize("service", SERVICES)
    def test_command_is_the_entry_point_of_the_services_package(self, service: str) -> None:
        svc = SERVICES[service]
        container = _container(_workload(service))
        assert container["command"] == ["python", "-m", svc.module, *svc.args]
        assert importlib.util.find_spec(f"{svc.module}.__main__") is not None

    def test_catalog_runs_its_worker_command(self) -> None:
        commands = {
            c.name or (c.callback.__name__ if c.callback else None)
            for c in catalog_cli.registered_commands
        }
        assert set(SERVICES["catalog"].args) <= commands

    @pytest.mark.parametrize("service", SERVICES)
    def test_image_is_the_dockerfile_build_of_the_services_package(self, service: str) -> None:
        # docker build -f deploy/docker/Dockerfile --build-arg PACKAGE=peepers-<service>
        image = SERVICES[service].image or f"peepers-{service}"
        assert _container(_workload(service))["image"] == image
        package = ROOT / "services" / image.removeprefix("peepers-") / "pyproject.toml"
        assert f'name = "{image}"' in package.read_text()
        images = yaml.safe_load((K8S / "kustomization.yaml").read_text())["images"]
        assert image in {found["name"] for found in images}

    def test_dockerfile_puts_the_venv_first_and_runs_as_the_manifests_user(self) -> None:
        dockerfile = DOCKERFILE.read_text()
        assert re.search(r"ENV PATH=/app/\.venv/bin:\$PATH", dockerfile), "python is the venv's"
        user = re.search(r"^USER (\d+):(\d+)$", dockerfile, re.MULTILINE)
        assert user is not None
        for _, doc in MANIFESTS:
            if doc["kind"] in WORKLOAD_KINDS:
                context = doc["spec"]["template"]["spec"]["securityContext"]
                assert (context["runAsUser"], context["runAsGroup"]) == (
                    int(user[1]),
                    int(user[2]),
                ), doc["metadata"]["name"]

    @pytest.mark.parametrize("service", SERVICES)
    def test_read_only_root_leaves_the_paths_the_service_writes_mounted(self, service: str) -> None:
        container = _container(_workload(service))
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
        assert "/tmp" in mounts  # noqa: S108 - an emptyDir, the pod's own
        workdir = re.findall(r"^WORKDIR (\S+)$", DOCKERFILE.read_text(), re.MULTILINE)[-1]
        settings = SERVICES[service].settings()
        if service == "ingest":
            assert str(settings.spool_dir) in mounts  # type: ignore[attr-defined]
            assert _config(service)["INGEST_SPOOL_DIR"] in mounts
        if service in ("catalog", "orders", "messages"):
            # Faust makes <app id>-data in its working directory.
            app_id = _config(service)[f"{service.upper()}_APP_ID"]
            assert f"{workdir}/{app_id}-data" in mounts


def _lag_query(query: str) -> tuple[str, str]:
    """(group, topic) of a trigger's query: the group's largest lag report on one topic."""
    found = re.fullmatch(
        r'max\(peepers_consumer_lag_records\{group="([^"]+)",topic="([^"]+)"\}\)', query
    )
    assert found is not None, query
    return found[1], found[2]


class TestCatalogAutoscaling:
    @pytest.fixture
    def scaled(self) -> dict[str, Any]:
        return _one("ScaledObject", "peepers-catalog")

    def test_it_scales_the_catalog_workload(self, scaled) -> None:
        assert scaled["spec"]["scaleTargetRef"]["name"] == _workload("catalog")["metadata"]["name"]
        assert "replicas" not in _workload("catalog")["spec"], "the HPA owns replicas"

    def test_it_watches_the_catalog_consumer_group_on_every_topic_it_consumes(self, scaled) -> None:
        """On the lag gauges the worker exports: the numbers the alerts and dashboards show."""
        triggers = scaled["spec"]["triggers"]
        assert {t["type"] for t in triggers} == {"prometheus"}
        group = _config("catalog")["CATALOG_APP_ID"]
        assert group == CatalogSettings().app_id
        watched = [_lag_query(t["metadata"]["query"]) for t in triggers]
        assert {g for g, _ in watched} == {group}
        # The items workload's topics: the seller events are the sync workload's.
        assert {topic for _, topic in watched} == set(ITEM_TOPICS)
        for trigger in triggers:
            assert int(trigger["metadata"]["threshold"]) >= 1
            assert trigger["metadata"]["serverAddress"].startswith("http")

    def test_replicas_never_exceed_the_partitions_of_any_watched_topic(self, scaled) -> None:
        spec = scaled["spec"]
        for trigger in spec["triggers"]:
            _, topic = _lag_query(trigger["metadata"]["query"])
            assert spec["maxReplicaCount"] <= TOPICS[topic].partitions, topic
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]

    def test_budget_leaves_a_replica_of_the_minimum(self, scaled) -> None:
        budget = _one("PodDisruptionBudget", "peepers-catalog")["spec"]
        assert budget["maxUnavailable"] < scaled["spec"]["minReplicaCount"]


class TestCatalogSync:
    """The catalog's syncs in a workload of their own, as docs/catalog.md recommends."""

    def _env(self, workload: dict[str, Any]) -> dict[str, str]:
        return {v["name"]: v["value"] for v in _container(workload)["env"] if "value" in v}

    def test_the_items_workload_takes_the_webhooks_and_one_sync_replica_the_syncs(self) -> None:
        sync = _one("Deployment", "peepers-catalog-sync")
        assert self._env(_workload("catalog"))["CATALOG_ROLE"] == "items"
        assert self._env(sync)["CATALOG_ROLE"] == "sync"
        assert sync["spec"]["replicas"] == 1
        assert _container(sync)["command"] == _container(_workload("catalog"))["command"]

    def test_it_has_a_smaller_cpu_share_and_mounts_its_roles_faust_directory(self) -> None:
        sync = _container(_one("Deployment", "peepers-catalog-sync"))
        items = _container(_workload("catalog"))
        assert "cpu" in sync["resources"]["limits"]
        millicores = [int(c["resources"]["requests"]["cpu"].rstrip("m")) for c in (sync, items)]
        assert millicores[0] < millicores[1]
        workdir = re.findall(r"^WORKDIR (\S+)$", DOCKERFILE.read_text(), re.MULTILINE)[-1]
        mounts = {mount["mountPath"] for mount in sync["volumeMounts"]}
        assert f"{workdir}/{_config('catalog')['CATALOG_APP_ID']}-sync-data" in mounts

    def test_its_pods_get_the_catalogs_network_policy(self) -> None:
        selector = _one("NetworkPolicy", "peepers-catalog")["spec"]["podSelector"]
        (expression,) = selector["matchExpressions"]
        assert set(expression["values"]) == {"peepers-catalog", "peepers-catalog-sync"}


class TestOrdersAutoscaling:
    def test_it_watches_the_worker_and_mailer_groups_on_what_each_consumes(self) -> None:
        scaled = _one("ScaledObject", "peepers-orders")
        assert scaled["spec"]["scaleTargetRef"]["name"] == _workload("orders")["metadata"]["name"]
        config = _config("orders")
        assert config["ORDERS_APP_ID"] == OrdersSettings().app_id
        assert config["ORDERS_MAIL__APP_ID"] == OrdersSettings().mail.app_id
        watched: dict[str, set[str]] = {}
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["type"] == "prometheus"
            group, topic = _lag_query(trigger["metadata"]["query"])
            watched.setdefault(group, set()).add(topic)
            assert scaled["spec"]["maxReplicaCount"] <= TOPICS[topic].partitions
        assert watched == {
            config["ORDERS_APP_ID"]: {*NOTIFICATION_TOPICS, PEEPERS_SELLERS},
            config["ORDERS_MAIL__APP_ID"]: {PEEPERS_ORDERS},
        }


class TestMessagesAutoscaling:
    @pytest.fixture
    def scaled(self) -> dict[str, Any]:
        return _one("ScaledObject", "peepers-messages")

    def test_it_watches_the_messages_group_on_every_topic_it_consumes(self, scaled) -> None:
        assert scaled["spec"]["scaleTargetRef"]["name"] == _workload("messages")["metadata"]["name"]
        group = _config("messages")["MESSAGES_APP_ID"]
        assert group == MessagesSettings().app_id
        watched = [_lag_query(t["metadata"]["query"]) for t in scaled["spec"]["triggers"]]
        assert {g for g, _ in watched} == {group}
        assert {topic for _, topic in watched} == set(MESSAGES_CONSUMED)
        for _, topic in watched:
            assert scaled["spec"]["maxReplicaCount"] <= TOPICS[topic].partitions, topic

    def test_the_messages_worker_command_exists(self) -> None:
        commands = {
            c.name or (c.callback.__name__ if c.callback else None)
            for c in messages_cli.registered_commands
        }
        assert "worker" in commands


class TestNetworkPolicies:
    def test_namespace_denies_by_default_and_allows_dns(self) -> None:
        deny = _one("NetworkPolicy", "default-deny")["spec"]
        assert deny["podSelector"] == {}
        assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
        assert "ingress" not in deny
        assert "egress" not in deny
        dns = _one("NetworkPolicy", "allow-dns")["spec"]["egress"][0]["ports"]
        assert {p["port"] for p in dns} == {53}

    def _ingress(self, service: str) -> list[dict[str, Any]]:
        rules = _one("NetworkPolicy", f"peepers-{service}")["spec"]["ingress"]
        for rule in rules:
            assert [p["port"] for p in rule["ports"]] == [_http_port(service)]
        return [peer for rule in rules for peer in rule["from"]]

    def test_ingest_is_reachable_from_outside_on_its_port(self) -> None:
        assert {"ipBlock": {"cidr": "0.0.0.0/0"}} in self._ingress("ingest")

    def test_auth_admits_only_the_token_brokers_clients(self) -> None:
        pods = [peer["podSelector"] for peer in self._ingress("auth") if "podSelector" in peer]
        (only,) = pods
        (expression,) = only["matchExpressions"]
        clients = {
            "peepers-catalog",
            "peepers-catalog-sync",
            "peepers-orders",
            "peepers-messages",
            "peepers-ingest",
        }
        assert set(expression["values"]) == clients
        assert not any("ipBlock" in peer for peer in self._ingress("auth"))

    def test_auth_ingress_routes_no_internal_path(self) -> None:
        ingress = _one("Ingress", "peepers-auth")["spec"]
        paths = [p["path"] for rule in ingress["rules"] for p in rule["http"]["paths"]]
        assert paths
        assert all(path.startswith("/auth/") for path in paths)

    def test_catalog_read_api_is_open_to_the_namespace(self) -> None:
        assert {"podSelector": {}} in self._ingress("catalog")

    @pytest.mark.parametrize("service", SERVICES)
    def test_egress_reaches_kafka_redis_and_ml(self, service: str) -> None:
        egress = _one("NetworkPolicy", f"peepers-{service}")["spec"]["egress"]
        ports = {p["port"] for rule in egress for p in rule["ports"]}
        assert {9092, 6379} <= ports
        assert (443 in ports) == SERVICES[service].calls_ml
