"""The devstack's Prometheus: a child only when installed, last to start, scraping every
service the plan starts, with the repository's rules; and the summary's alerts line."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from peepers_devstack.display import plain
from peepers_devstack.plan import Plan, Ports, Secrets
from peepers_devstack.prometheus import RULES_DIR, Alerts, config, scrape_targets, write_config
from peepers_devstack.watch import Summary


def _plan(tmp_path: Path, *, binary: Path | None) -> Plan:
    return Plan(
        ports=Ports.from_base(18080),
        secrets=Secrets.load_or_create(tmp_path / "secrets.json"),
        spool_dir=tmp_path / "spool",
        items=300,
        ml_requests_per_minute=600,
        prometheus_binary=binary,
        prometheus_dir=tmp_path / "prometheus",
    )


def test_without_the_binary_the_plan_has_no_prometheus(tmp_path: Path) -> None:
    plan = _plan(tmp_path, binary=None)
    assert [c.name for c in plan.children()] == [c.name for c in plan.services()]
    assert "prometheus" not in [c.name for c in plan.children()]


def test_prometheus_starts_last_so_it_stops_first(tmp_path: Path) -> None:
    plan = _plan(tmp_path, binary=Path("/usr/bin/prometheus"))
    children = plan.children()
    assert children[-1].name == "prometheus"
    assert children[:-1] == plan.services()
    argv = children[-1].argv
    assert argv[0] == "/usr/bin/prometheus"
    assert f"--web.listen-address=127.0.0.1:{plan.ports.prometheus}" in argv
    # A leftover of a killed run is stopped by the next one only if it looks like ours.
    assert any("peepers_" in arg for arg in argv)


def test_every_service_with_an_http_port_is_scraped_and_the_sandbox_is_not(
    tmp_path: Path,
) -> None:
    plan = _plan(tmp_path, binary=Path("/usr/bin/prometheus"))
    assert scrape_targets(plan.services()) == {
        "peepers-auth": f"127.0.0.1:{plan.ports.auth}",
        "peepers-ingest": f"127.0.0.1:{plan.ports.ingest}",
        "peepers-catalog": f"127.0.0.1:{plan.ports.catalog}",
        "peepers-catalog-sync": f"127.0.0.1:{plan.ports.catalog_sync}",
        "peepers-orders": f"127.0.0.1:{plan.ports.orders}",
        "peepers-mailer": f"127.0.0.1:{plan.ports.mailer}",
        "peepers-messages": f"127.0.0.1:{plan.ports.messages}",
    }


def test_the_web_app_is_scraped_on_its_own_port(tmp_path: Path) -> None:
    plan = replace(_plan(tmp_path, binary=Path("/usr/bin/prometheus")), web_app=True)
    assert scrape_targets(plan.services())["peepers-web"] == f"127.0.0.1:{plan.ports.web}"


def test_the_config_loads_the_repositorys_rules_and_is_written_where_the_child_reads_it(
    tmp_path: Path,
) -> None:
    plan = _plan(tmp_path, binary=Path("/usr/bin/prometheus"))
    written = write_config(plan)
    assert f"--config.file={written}" in plan.prometheus().argv
    loaded = json.loads(written.read_text())
    assert loaded == config(plan.services())
    assert loaded["rule_files"] == [str(RULES_DIR / "*.yml")]
    assert sorted(RULES_DIR.glob("*.yml"))
    jobs = [job["job_name"] for job in loaded["scrape_configs"]]
    assert jobs == [
        "peepers-auth",
        "peepers-ingest",
        "peepers-catalog",
        "peepers-catalog-sync",
        "peepers-orders",
        "peepers-mailer",
        "peepers-messages",
    ]


def test_the_prometheus_port_stays_clear_of_the_others_and_of_prometheus_default() -> None:
    ports = Ports.from_base(18080)
    others = {
        ports.sandbox, ports.auth, ports.ingest, ports.catalog, ports.orders, ports.smtp,
        ports.messages, ports.web, ports.mailer, ports.catalog_sync,
    }  # fmt: skip
    assert ports.prometheus not in others | {9090}


def test_the_plain_summary_names_the_alerts_firing() -> None:
    firing = Summary(uptime_s=1, alerts=Alerts(["PeepersIngestSpoolNotDraining"], pending=2))
    quiet = Summary(uptime_s=1, alerts=Alerts([], pending=0))
    assert "alerts_firing=PeepersIngestSpoolNotDraining" in plain(firing).split()
    assert "alerts_firing=none" in plain(quiet).split()
    assert "alerts_firing" not in plain(Summary(uptime_s=1))
