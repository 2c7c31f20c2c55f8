"""docker-compose.yml cannot run here (no Docker engine), so check that it agrees with
the code: every service present, env var names that the Settings read, matching ports,
and the same Kafka version and Redis ACLs as scripts/stack."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from peepers_auth.settings import Settings as AuthSettings
from peepers_auth.web.settings import WebSettings
from peepers_catalog.settings import Settings as CatalogSettings
from peepers_ingest.settings import Settings as IngestSettings
from peepers_messages.settings import Settings as MessagesSettings
from peepers_orders.settings import Settings as OrdersSettings
from tests.support import settings_field

ROOT = Path(__file__).resolve().parents[2]
SERVICES: dict[str, type[BaseSettings]] = {
    "ingest": IngestSettings,
    "auth": AuthSettings,
    "orders": OrdersSettings,
    "catalog": CatalogSettings,
    "messages": MessagesSettings,
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


# The seller web app: a process of auth's package with settings of its own; the orders
# mailer: a process of the orders package with its settings.
PROCESSES: dict[str, type[BaseSettings]] = {
    **SERVICES,
    "web": WebSettings,
    "orders-mailer": OrdersSettings,
}


def test_every_service_and_dependency_is_in_compose(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) >= {*PROCESSES, "kafka", "redis", "sandbox", "topics"}


@pytest.mark.parametrize("service", PROCESSES)
def test_service_env_vars_are_names_its_settings_read(
    compose: dict[str, Any], service: str
) -> None:
    settings = PROCESSES[service]
    prefix = settings.model_config.get("env_prefix", "")
    env = compose["services"][service]["environment"]
    assert env, f"{service} has no environment"
    for name in env:
        assert name.startswith(prefix), f"{name} lacks the {prefix} prefix"
        field = settings_field(settings, name)
        assert field is not None, f"{service}: {name} is not a Settings field"


@pytest.mark.parametrize("service", PROCESSES)
def test_service_port_matches_its_settings(compose: dict[str, Any], service: str) -> None:
    settings = PROCESSES[service]
    port = settings().http_port  # type: ignore[attr-defined]
    spec = compose["services"][service]
    prefix = settings.model_config.get("env_prefix", "")
    assert spec["environment"][f"{prefix}HTTP_PORT"] == str(port)
    if service == "orders-mailer":  # probes and metrics only: not published on the host
        assert "ports" not in spec
    else:
        assert f"{port}:{port}" in spec["ports"]


def test_kafka_version_matches_the_local_stack(compose: dict[str, Any]) -> None:
    stack = (ROOT / "scripts" / "stack").read_text()
    version = re.search(r"KAFKA_VERSION=\$\{KAFKA_VERSION:-([0-9.]+)\}", stack)
    assert version is not None
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{version[1]}"


def test_redis_acl_users_match_the_local_stack(compose: dict[str, Any]) -> None:
    command = compose["services"]["redis"]["command"]
    every = [command[i + 1] for i, arg in enumerate(command) if arg == "--user"]
    users = [u for u in every if u.split()[0] != "auth-web"]
    assert sorted(u.split()[0] for u in users) == sorted(SERVICES)
    stack = (ROOT / "scripts" / "stack").read_text()
    setuser = re.search(r'ACL SETUSER "\$svc" reset on ">\$pw" \\\n\s*(.+?) >/dev/null', stack)
    assert setuser is not None
    stack_rules = setuser[1].replace('"', "").split()
    for user in users:
        name = user.split()[0]
        assert user.split()[3:] == [rule.replace("$svc", name) for rule in stack_rules]


def test_the_web_apps_redis_user_has_the_local_stacks_rules(compose: dict[str, Any]) -> None:
    command = compose["services"]["redis"]["command"]
    [user] = [
        command[i + 1]
        for i, a in enumerate(command)
        if a == "--user" and "auth-web" in command[i + 1]
    ]
    stack = (ROOT / "scripts" / "stack").read_text()
    rules = re.search(r'ACL SETUSER "\$WEB_USER" reset on ">\$pw" \\\n\s*(.+?) >/dev/null', stack)
    assert rules is not None
    assert user.split()[3:] == rules[1].replace('"', "").split()


def test_the_web_app_reads_every_api_with_a_credential_it_accepts(
    compose: dict[str, Any],
) -> None:
    web = compose["services"]["web"]["environment"]
    # "${AUTH_WEB_SERVICE_SECRET:-web-local}": the local default the read APIs list.
    secret = web["AUTH_WEB_SERVICE_SECRET"].removesuffix("}").partition(":-")[2]
    for service in ("orders", "catalog", "messages"):
        env = compose["services"][service]["environment"]
        accepted = json.loads(env[f"{service.upper()}_SERVICE_CREDENTIALS"])
        assert accepted[web["AUTH_WEB_SERVICE_NAME"]] == secret
        port = PROCESSES[service]().http_port  # type: ignore[attr-defined]
        assert web[f"AUTH_WEB_{service.upper()}__BASE_URL"] == f"http://{service}:{port}"
    auth = compose["services"]["auth"]["environment"]
    assert auth["AUTH_DASHBOARD_URL"] == f"{web['AUTH_WEB_PUBLIC_BASE_URL']}/app/"


def test_auths_callback_is_a_redirect_uri_the_sandbox_registers(compose: dict[str, Any]) -> None:
    command = compose["services"]["sandbox"]["command"]
    registered = [command[i + 1] for i, arg in enumerate(command) if arg == "--redirect-uri"]
    auth = compose["services"]["auth"]["environment"]
    assert auth["AUTH_OAUTH__REDIRECT_URI"] in registered
    port = AuthSettings().http_port
    assert auth["AUTH_OAUTH__REDIRECT_URI"].startswith(f"http://localhost:{port}/")


def test_the_catalog_runs_its_worker_with_broker_credentials_auth_accepts(
    compose: dict[str, Any],
) -> None:
    catalog = compose["services"]["catalog"]
    assert catalog["command"][-2:] == ["peepers_catalog", "worker"]
    env = catalog["environment"]
    accepted = json.loads(compose["services"]["auth"]["environment"]["AUTH_SERVICE_CREDENTIALS"])
    assert accepted[env["CATALOG_TOKEN_BROKER__SERVICE"]] == env["CATALOG_TOKEN_BROKER__SECRET"]
    assert env["CATALOG_TOKEN_BROKER__URL"] == f"http://auth:{AuthSettings().http_port}"
    assert env["CATALOG_ML__BASE_URL"] == "http://sandbox:8090"
    assert "auth" in catalog["depends_on"]


def test_prometheus_scrapes_every_service_on_its_port_with_the_repositorys_rules(
    compose: dict[str, Any],
) -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    scraped = {
        job["job_name"]: target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert scraped == {
        f"peepers-{service}": f"{service}:{settings().http_port}"  # type: ignore[attr-defined]
        for service, settings in PROCESSES.items()
    }
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/rules:/etc/prometheus/rules:ro" in mounts
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
