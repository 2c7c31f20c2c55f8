"""The proof harness's pure parts: what it starts, the fault schedule, the doubles check."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from peepers_common.topics import PEEPERS_SELLERS, TOPICS, dlq_topic
from peepers_devstack.plan import SYNC_NICE
from peepers_proof.broker import kafka_libs
from peepers_proof.checks import doubled
from peepers_proof.fairness import percentile
from peepers_proof.faults import Fault, all_faults, schedule, validate
from peepers_proof.plan import Options, ProofPlan, settings_prefix
from peepers_proof.runner import CPU, READY, Result, drain_figure, machine_cpu
from peepers_proof.scaleout import table
from peepers_proof.stack import registry_topics


@pytest.fixture
def plan(tmp_path: Path) -> ProofPlan:
    return ProofPlan(Options(sellers=4, workers=3), tmp_path)


class TestPlan:
    def test_every_service_uses_the_runs_own_redis_server(self, plan: ProofPlan):
        services = [c for c in plan.children() if c.name not in ("redis", "mail", "sandbox")]
        for child in services:
            urls = {v for k, v in child.env.items() if k.endswith("_REDIS__URL")}
            assert urls == {plan.redis_url}, child.name

    def test_consumers_read_the_runs_topics_in_groups_of_their_own(self, plan: ProofPlan):
        kinds = ("catalog", "orders", "messages")
        workers = [c for c in plan.children() if c.name.split("-")[0] in kinds]
        expected = [f"{k}-{i}" for k in kinds for i in (1, 2, 3)]
        assert [c.name for c in workers] == [*expected[:3], "catalog-sync", *expected[3:]]
        for child in workers:
            kind = child.name.split("-")[0].upper()
            assert child.env[f"{kind}_TOPIC_PREFIX"] == plan.prefix
            assert plan.run_id in child.env[f"{kind}_APP_ID"]
        ports = [c.env[f"{c.name.split('-')[0].upper()}_HTTP_PORT"] for c in workers]
        assert len(set(ports)) == len(ports)

    def test_the_catalogs_syncs_run_in_one_process_of_their_own_at_a_lower_priority(
        self, plan: ProofPlan
    ):
        catalog = [c for c in plan.children() if c.name.startswith("catalog-")]
        roles = {c.name: c.env["CATALOG_ROLE"] for c in catalog}
        assert roles == {"catalog-1": "items", "catalog-2": "items", "catalog-3": "items",
                         "catalog-sync": "sync"}  # fmt: skip
        items, sync = catalog[0], catalog[-1]
        assert sync.argv == ["nice", "-n", str(SYNC_NICE), *items.argv]
        # The run's settings, its own port: the rest as the item processes'.
        same = ("CATALOG_HTTP_PORT", "CATALOG_ROLE")
        assert {k: v for k, v in sync.env.items() if k not in same} == {
            k: v for k, v in items.env.items() if k not in same
        }
        assert "kill:catalog-sync" in all_faults([c.name for c in plan.children()])

    def test_the_orders_mailer_runs_beside_the_orders_workers_with_their_settings(
        self, plan: ProofPlan
    ):
        mailer = next(c for c in plan.children() if c.name == "mailer")
        orders = next(c for c in plan.children() if c.name == "orders-1")
        assert mailer.argv[-2:] == ["peepers_orders", "mailer"]
        assert {k: v for k, v in mailer.env.items() if k != "ORDERS_HTTP_PORT"} == {
            k: v for k, v in orders.env.items() if k != "ORDERS_HTTP_PORT"
        }
        assert mailer.env["ORDERS_HTTP_PORT"] != orders.env["ORDERS_HTTP_PORT"]

    def test_auth_and_ingest_write_behind_the_runs_prefix(self, plan: ProofPlan):
        auth = next(c for c in plan.children() if c.name == "auth")
        assert auth.argv[-2:] == ["--topic-prefix", plan.prefix]
        ingest = next(c for c in plan.children() if c.name == "ingest")
        assert ingest.env["INGEST_TOPIC_PREFIX"] == plan.prefix

    def test_the_redis_server_keeps_nothing_and_has_a_user_per_service(self, plan: ProofPlan):
        argv = plan.redis().argv
        assert argv[argv.index("--save") + 1] == ""
        assert argv[argv.index("--appendonly") + 1] == "no"
        users = [argv[i + 1] for i, a in enumerate(argv) if a == "--user"]
        assert users == ["ingest", "auth", "catalog", "orders", "messages"]

    def test_without_its_own_broker_the_run_starts_none_and_changes_no_kafka_setting(
        self, plan: ProofPlan
    ):
        assert plan.broker is None
        assert "kafka" not in [c.name for c in plan.children()]
        envs = [name for child in plan.children() for name in child.env]
        assert not [name for name in envs if name.endswith("_KAFKA__BOOTSTRAP_SERVERS")]

    def test_its_own_broker_starts_first_and_every_service_uses_it(self, tmp_path: Path):
        if kafka_libs() is None:
            pytest.skip("no Kafka jars in .cache/kafka (scripts/stack fetches them)")
        plan = ProofPlan(Options(sellers=2, workers=1, own_broker=True), tmp_path)
        broker = plan.broker
        assert broker is not None
        assert broker.directory == plan.run_dir / "kafka"
        children = plan.children()
        assert children[0].name == "kafka"
        assert children[0].argv == broker.command()
        for child in children:
            if child.name in ("kafka", "redis", "mail", "sandbox"):
                continue
            prefix = settings_prefix(child.name)
            assert child.env[f"{prefix}_KAFKA__BOOTSTRAP_SERVERS"] == broker.bootstrap, child.name
        assert "kill:kafka" in all_faults([c.name for c in children])

    def test_registry_topics_are_all_behind_the_prefix(self, plan: ProofPlan):
        names = {spec.name for spec in registry_topics(plan.prefix)}
        assert all(n.startswith(plan.prefix) for n in names)
        assert {plan.prefix + n for n in TOPICS} <= names
        assert plan.prefix + dlq_topic(PEEPERS_SELLERS) in names


class TestSchedule:
    def test_every_service_process_is_killed_but_not_the_ones_standing_in(self):
        names = ["redis", "mail", "sandbox", "auth", "ingest", "catalog-1", "orders-1"]
        kills = [f for f in all_faults(names) if f.startswith("kill:")]
        assert kills == ["kill:auth", "kill:ingest", "kill:catalog-1", "kill:orders-1"]

    def test_faults_come_alone_then_in_pairs_never_two_sandbox_settings(self):
        names = ["kill:ingest", "redis-flushall", "ml-5xx", "ml-slow", "smtp-stop"]
        steps = schedule(names, overlapping=True)
        assert steps[: len(names)] == [[Fault(n)] for n in names]
        pairs = steps[len(names) :]
        assert pairs
        for pair in pairs:
            assert len(pair) == 2
            assert pair[0] != pair[1]
            assert sum(f.name.startswith("ml-") for f in pair) <= 1

    def test_without_overlap_each_fault_comes_alone(self):
        assert schedule(["ml-5xx", "token-expiry"], overlapping=False) == [
            [Fault("ml-5xx")],
            [Fault("token-expiry")],
        ]

    def test_an_unknown_fault_is_named(self):
        assert validate(["kill:catalog-9", "ml-5xx", "kafka"], ["catalog-1"]) == [
            "kill:catalog-9",
            "kafka",
        ]


class TestDoubled:
    def test_a_republished_event_id_is_not_a_double(self):
        assert doubled([("order 1 paid", "a"), ("order 1 paid", "a")]) == []

    def test_one_change_under_two_event_ids_is(self):
        [problem] = doubled([("order 1 paid", "a"), ("order 1 paid", "b"), ("order 2 paid", "c")])
        assert problem.startswith("order 1 paid announced as 2 events")


class TestPercentile:
    def test_nearest_rank(self):
        values = [float(v) for v in range(1, 101)]
        assert percentile(values, 0.5) == 50.0
        assert percentile(values, 0.99) == 99.0
        assert percentile([7.0], 0.99) == 7.0


class TestScaleOutTable:
    def test_each_consumer_has_its_rate_per_count_and_the_ratio_to_one_process(self):
        def result(
            rates: dict[str, tuple[int, float | None]],
            after_ready: dict[str, tuple[int, float | None]],
            cpu: dict[str, int],
        ) -> Result:
            figures: dict[str, object] = {drain_figure(k): v for k, v in rates.items()}
            figures |= {drain_figure(k, READY): v for k, v in after_ready.items()}
            figures |= {drain_figure(k, CPU): v for k, v in cpu.items()}
            return Result(checks=[], faults=[], figures=figures)

        printed = table(
            {
                1: result(
                    {"catalog": (900, 30.0), "orders": (600, 20.0)},
                    {"catalog": (0, None), "orders": (500, 25.0)},
                    {"catalog": 97},
                ),
                4: result(
                    {"catalog": (900, 105.0), "orders": (600, None)},
                    {"catalog": (0, None), "orders": (450, 90.0)},
                    {"catalog": 99},
                ),
            }
        )
        rates, after_ready = printed.split(READY)
        assert "| catalog | 30.0 of 900, CPU 97% | 105.0 of 900 (3.50x), CPU 99% |" in rates
        assert "| orders | 20.0 of 600 | - of 600 |" in rates
        assert "| messages | - of 0 | - of 0 |" in rates
        assert "| catalog | - of 0 | - of 0 |" in after_ready
        assert "| orders | 25.0 of 500 | 90.0 of 450 (3.60x) |" in after_ready
        assert "1: PASSED, 4: PASSED" in printed


def test_machine_cpu_counts_busy_ticks_within_the_total() -> None:
    busy, total = machine_cpu()
    assert 0 < busy < total
    until = time.monotonic() + 0.1
    while time.monotonic() < until:  # a core busy for ten ticks at least
        pass
    later_busy, later_total = machine_cpu()
    assert later_busy > busy
    assert later_total > total
