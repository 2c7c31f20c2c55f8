"""The orchestrator's plan: what each child is told must be what its Settings read."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from peepers_auth.settings import Settings as AuthSettings
from peepers_auth.web.settings import WebSettings
from peepers_catalog.settings import Settings as CatalogSettings
from peepers_common.ml import OutboundLimiter
from peepers_common.ml.leases import MemoryLeaseBudget
from peepers_devstack.__main__ import parse_options
from peepers_devstack.metrics import Scrape, percentiles
from peepers_devstack.plan import SYNC_NICE, Plan, Ports, Secrets, run_id_offset
from peepers_devstack.state import swap_scope
from peepers_ingest.settings import Settings as IngestSettings
from peepers_messages.settings import Settings as MessagesSettings
from peepers_orders.settings import Settings as OrdersSettings
from peepers_sandbox.__main__ import build_config
from peepers_sandbox.config import DEMO_APP_ID
from tests.support import settings_field

SETTINGS: dict[str, type[BaseSettings]] = {
    "auth": AuthSettings,
    "ingest": IngestSettings,
    "catalog": CatalogSettings,
    "orders": OrdersSettings,
    "messages": MessagesSettings,
}


def _plan(tmp_path: Path, isolation: str | None = None) -> Plan:
    plan = Plan(
        ports=Ports.from_base(18080),
        secrets=Secrets.load_or_create(tmp_path / "secrets.json"),
        spool_dir=tmp_path / "spool",
        items=300,
        ml_requests_per_minute=600,
    )
    return plan if isolation is None else replace(plan, isolation=isolation)


@pytest.mark.parametrize("service", SETTINGS)
def test_every_variable_a_child_gets_is_a_field_its_settings_read(
    tmp_path: Path, service: str
) -> None:
    spec = next(s for s in _plan(tmp_path, "run-x").children() if s.name == service)
    for name in spec.env:
        assert settings_field(SETTINGS[service], name) is not None, name


@pytest.mark.parametrize("service", SETTINGS)
def test_every_childs_settings_accept_its_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, service: str
) -> None:
    plan = _plan(tmp_path, "run-x")
    spec = next(s for s in plan.children() if s.name == service)
    for name, value in spec.env.items():
        monkeypatch.setenv(name, value)
    port = SETTINGS[service]().model_dump()["http_port"]
    assert port == getattr(plan.ports, service)


def test_every_worker_runs_and_the_mail_sink_comes_before_the_orders_worker(
    tmp_path: Path,
) -> None:
    names = [spec.name for spec in _plan(tmp_path).services()]
    assert names == [
        "sandbox",
        "auth",
        "ingest",
        "catalog",
        "catalog-sync",
        "mail",
        "orders",
        "mailer",
        "messages",
    ]


def test_the_catalogs_syncs_run_in_a_process_of_their_own_at_a_lower_priority(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _plan(tmp_path, "run-x")
    items, sync = plan.catalog(), plan.catalog_sync()
    assert items.env["CATALOG_ROLE"] == "items"
    assert sync.argv == ["nice", "-n", str(SYNC_NICE), *items.argv]
    for name, value in sync.env.items():
        assert settings_field(CatalogSettings, name) is not None, name
        monkeypatch.setenv(name, value)
    settings = CatalogSettings()
    assert (settings.role, settings.http_port) == ("sync", plan.ports.catalog_sync)
    assert settings.app_id == plan.catalog_group
    assert f"{settings.app_id}-sync" == plan.catalog_sync_group
    assert plan.ports.catalog_sync not in (plan.ports.catalog, plan.ports.mailer)


def test_the_web_app_starts_right_after_auth_and_a_login_lands_on_it(tmp_path: Path) -> None:
    plan = replace(_plan(tmp_path), web_app=True)
    names = [spec.name for spec in plan.services()]
    assert names[:3] == ["sandbox", "auth", "web"]
    assert plan.landing_url == f"{plan.web_url}/app/"
    assert replace(plan, web_app=False).landing_url == f"{plan.auth_url}/auth/dashboard"


def test_the_orders_mailer_has_a_group_of_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _plan(tmp_path, "run-x")
    for name, value in plan.orders().env.items():
        monkeypatch.setenv(name, value)
    settings = OrdersSettings()
    assert (settings.app_id, settings.redis_scope) == ("peepers-orders-run-x", "run-x")
    assert settings.mail.app_id == plan.mailer_group == "peepers-orders-run-x-mailer"
    assert settings.smtp.port == plan.ports.smtp


def test_the_mailer_is_its_own_process_with_the_orders_settings_and_its_own_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _plan(tmp_path, "run-x")
    spec = plan.mailer()
    assert spec.argv[-2:] == ["peepers_orders", "mailer"]
    for name, value in spec.env.items():
        monkeypatch.setenv(name, value)
    settings = OrdersSettings()
    assert settings.mail.app_id == plan.mailer_group
    assert settings.http_port == plan.ports.mailer != plan.ports.orders


def test_the_messages_workers_variables_are_what_its_settings_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _plan(tmp_path, "run-x")
    spec = plan.messages()
    for name, value in spec.env.items():
        assert settings_field(MessagesSettings, name) is not None, name
        monkeypatch.setenv(name, value)
    settings = MessagesSettings()
    assert settings.http_port == plan.ports.messages
    assert (settings.app_id, settings.redis_scope) == ("peepers-messages-run-x", "run-x")


def test_the_sandbox_registers_auths_callback_and_posts_to_ingests_webhook(
    tmp_path: Path,
) -> None:
    plan = _plan(tmp_path)
    config = build_config(plan.sandbox().argv[3:])
    app = config.apps[0]
    assert app.app_id == DEMO_APP_ID
    assert app.redirect_uris == [plan.redirect_uri]
    assert app.callback_url == f"{plan.ingest_url}/webhooks/mercadolibre"
    assert config.api.auto_approve is True
    assert config.marketplace.sellers == 1
    assert config.marketplace.items_per_seller == 300
    auth = dict(plan.auth().env)
    assert auth["AUTH_OAUTH__REDIRECT_URI"] == plan.redirect_uri


def test_each_runs_marketplace_gets_ids_no_earlier_run_used(tmp_path: Path) -> None:
    # Peepers' ledgers outlive a run in Kafka, keyed by ML's ids: one seed would give the
    # next run's orders the last run's ids (and find their mail sent already).
    plan = _plan(tmp_path)
    config = build_config(plan.sandbox().argv[3:])
    assert config.marketplace.id_offset == plan.id_offset
    assert run_id_offset(1_000.0) == 1_000_000_000
    assert run_id_offset(1_001.9) - run_id_offset(1_000.0) == 1_000_000
    assert run_id_offset(1_000_000.0) == 0  # wraps after ~11.6 days


def test_the_brokers_credentials_match_on_both_sides(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    credentials = json.loads(plan.auth().env["AUTH_SERVICE_CREDENTIALS"])
    catalog, ingest, messages = plan.catalog().env, plan.ingest().env, plan.messages().env
    assert (
        credentials[catalog["CATALOG_TOKEN_BROKER__SERVICE"]]
        == catalog["CATALOG_TOKEN_BROKER__SECRET"]
    )
    assert (
        credentials[messages["MESSAGES_TOKEN_BROKER__SERVICE"]]
        == messages["MESSAGES_TOKEN_BROKER__SECRET"]
    )
    assert (
        credentials[ingest["INGEST_TOKEN_BROKER__SERVICE"]] == ingest["INGEST_TOKEN_BROKER__SECRET"]
    )


def test_every_service_that_reaches_ml_shares_one_outbound_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same limit under the same scope: the sandbox counts them all as one app."""
    plan = _plan(tmp_path, "run-x")
    budgets = {}
    for spec in plan.children():
        if spec.name not in SETTINGS:
            continue
        with monkeypatch.context() as env:
            for name, value in spec.env.items():
                env.setenv(name, value)
            settings = SETTINGS[spec.name]()
        ml = settings.ml  # type: ignore[attr-defined]
        # As the services' limiters resolve it, their own Redis scope the fallback.
        own = getattr(settings, "redis_scope", None)
        limiter = OutboundLimiter(None, ml, scope=own, budget=MemoryLeaseBudget())  # type: ignore[arg-type]
        budgets[spec.name] = (ml.app_id, ml.app_limit.model_dump_json(), limiter.scope)
    assert set(budgets) == set(SETTINGS)
    assert len(set(budgets.values())) == 1, budgets
    assert next(iter(budgets.values()))[2] == "run-x"


def test_every_run_has_its_own_consumer_group_and_redis_scope(tmp_path: Path) -> None:
    named = _plan(tmp_path, "run-1").catalog().env
    assert named["CATALOG_APP_ID"] == "peepers-catalog-run-1"
    assert named["CATALOG_REDIS_SCOPE"] == "run-1"
    first, second = _plan(tmp_path).catalog().env, _plan(tmp_path).catalog().env
    assert first["CATALOG_REDIS_SCOPE"] != second["CATALOG_REDIS_SCOPE"]
    assert first["CATALOG_APP_ID"] == f"peepers-catalog-{first['CATALOG_REDIS_SCOPE']}"


def test_a_run_records_its_scope_and_hands_back_the_previous_one(tmp_path: Path) -> None:
    assert swap_scope(tmp_path / "run", "run-1") is None
    assert swap_scope(tmp_path / "run", "run-2") == "run-1"
    assert swap_scope(tmp_path / "run", "run-2") is None  # the same run: nothing to drop


def test_secrets_are_generated_once_and_kept_private(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "devstack.json"
    first = Secrets.load_or_create(path)
    assert Secrets.load_or_create(path) == first
    assert path.stat().st_mode & 0o077 == 0


def test_default_ports_stay_clear_of_the_services_own_defaults() -> None:
    ports = Ports.from_base(parse_options([]).port_base)
    defaults = {8080, 8081, 8082, 8083, 8084, 8090, 9092, 9093, 6379}
    assert not {ports.sandbox, ports.auth, ports.ingest, ports.catalog} & defaults


def test_metrics_are_summed_over_matching_labels() -> None:
    scrape = Scrape.parse(
        "# TYPE peepers_catalog_items_applied_total counter\n"
        'peepers_catalog_items_applied_total{outcome="created"} 3.0\n'
        'peepers_catalog_items_applied_total{outcome="stale"} 0.0\n'
        'peepers_catalog_items_applied_total{outcome="updated"} 2.0\n'
    )
    assert scrape.total("peepers_catalog_items_applied_total") == 5
    assert scrape.total("peepers_catalog_items_applied_total", outcome="updated") == 2
    assert scrape.by("peepers_catalog_items_applied_total", "outcome") == {
        "created": 3,
        "updated": 2,
    }


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values, [50.0, 99.0, 100.0]) == {50.0: 50.0, 99.0: 99.0, 100.0: 100.0}
    assert percentiles([], [50.0]) == {}


def test_the_web_app_gets_sessions_and_read_apis_but_no_secret_of_auth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = replace(_plan(tmp_path), web_app=True)
    web = next(s for s in plan.children() if s.name == "web")
    assert web.argv[-2:] == ["peepers_auth", "web"]
    for name, value in web.env.items():
        assert settings_field(WebSettings, name) is not None, name
        monkeypatch.setenv(name, value)
    settings = WebSettings()
    assert settings.http_port == plan.ports.web
    assert not any("TOKEN" in name or "ML__" in name for name in web.env)
    # both read APIs know the web app's credential
    for env in (plan.catalog().env, plan.orders().env):
        readers = next(json.loads(v) for k, v in env.items() if k.endswith("SERVICE_CREDENTIALS"))
        assert readers[settings.service_name] == settings.service_secret.get_secret_value()
    # and a login lands on its overview
    assert plan.auth().env["AUTH_DASHBOARD_URL"] == f"{plan.web_url}/app/"
    assert plan.dashboard_url == f"{plan.auth_url}/auth/login?site=MLB"


def test_without_the_web_app_a_login_lands_on_auths_dashboard(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    assert "web" not in {s.name for s in plan.children()}
    assert "AUTH_DASHBOARD_URL" not in plan.auth().env
