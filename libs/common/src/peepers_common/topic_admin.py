"""`peepers-topics`: create or update every registry topic on a cluster.

Safe to run any number of times: missing topics are created, partition counts below the
registry's are raised (never lowered: Kafka cannot), and configs that differ are set.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from peepers_common.errors import InfrastructureError
from peepers_common.settings import KafkaSettings, StackSettings
from peepers_common.topics import TOPICS, TopicSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnsureReport:
    created: list[str]
    grown: list[str]
    reconfigured: list[str]
    unchanged: list[str]
    # Topics with more partitions than the registry asks for: Kafka can't shrink them.
    wider_than_registry: list[str]


def _desired_config(spec: TopicSpec, replication_factor: int) -> dict[str, str]:
    config = dict(spec.config)
    # With a single replica, min.insync.replicas must be 1; otherwise one broker may be
    # down without blocking acks=all producers.
    config["min.insync.replicas"] = str(min(2, replication_factor))
    return config


@asynccontextmanager
async def _admin(settings: KafkaSettings, refused: str) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client; Kafka's errors become `InfrastructureError` ("refused ...")."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.client_id}-topic-admin",
        request_timeout_ms=settings.request_timeout_ms,
    )
    try:
        await admin.start()
        yield admin
    except KafkaError as exc:
        msg = f"Kafka at {settings.bootstrap_servers} refused {refused}: {exc!r}"
        raise InfrastructureError(msg) from exc
    finally:
        await admin.close()


async def ensure_topics(
    settings: KafkaSettings, specs: Iterable[TopicSpec] | None = None
) -> EnsureReport:
    """Bring the cluster's topics in line with `specs` (the whole registry by default)."""
    wanted = list(TOPICS.values() if specs is None else specs)
    report = EnsureReport([], [], [], [], [])
    async with _admin(settings, "the topic update") as admin:
        existing = set(await admin.list_topics())
        missing = [spec for spec in wanted if spec.name not in existing]
        if missing:
            _check(
                await admin.create_topics(
                    [
                        NewTopic(
                            spec.name,
                            spec.partitions,
                            settings.replication_factor,
                            topic_configs=_desired_config(spec, settings.replication_factor),
                        )
                        for spec in missing
                    ]
                )
            )
            report.created.extend(spec.name for spec in missing)
        present = [spec for spec in wanted if spec.name in existing]
        if present:
            await _update(admin, present, settings.replication_factor, report)
    return report


async def delete_topics_containing(settings: KafkaSettings, marker: str) -> list[str]:
    """Delete every topic whose name contains ``marker``; return their names.

    For scratch topics (tests, benchmarks) named with a run's unique token: thousands of
    them left behind made the local broker several times slower per record.
    """
    async with _admin(settings, "to delete topics") as admin:
        doomed = sorted(name for name in await admin.list_topics() if marker in name)
        for start in range(0, len(doomed), 100):
            await admin.delete_topics(doomed[start : start + 100])
    return doomed


async def _update(
    admin: AIOKafkaAdminClient,
    present: list[TopicSpec],
    replication_factor: int,
    report: EnsureReport,
) -> None:
    described = {
        t["topic"]: len(t["partitions"])
        for t in await admin.describe_topics([spec.name for spec in present])
    }
    grow = {
        spec.name: NewPartitions(spec.partitions)
        for spec in present
        if described[spec.name] < spec.partitions
    }
    if grow:
        _check(await admin.create_partitions(grow))
        report.grown.extend(grow)
    report.wider_than_registry.extend(
        spec.name for spec in present if described[spec.name] > spec.partitions
    )
    current = await _current_configs(admin, [spec.name for spec in present])
    changed = []
    for spec in present:
        desired = _desired_config(spec, replication_factor)
        if any(current[spec.name].get(k) != v for k, v in desired.items()):
            changed.append(ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=desired))
    if changed:
        _check(await admin.alter_configs(changed))
        report.reconfigured.extend(resource.name for resource in changed)
    touched = set(report.grown) | set(report.reconfigured)
    report.unchanged.extend(spec.name for spec in present if spec.name not in touched)


async def _current_configs(
    admin: AIOKafkaAdminClient, names: list[str]
) -> dict[str, Mapping[str, str]]:
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    )
    configs: dict[str, Mapping[str, str]] = {}
    for response in responses:
        for resource in response.resources:
            _code, _message, _type, name, entries = resource
            configs[name] = {entry[0]: entry[1] for entry in entries}
    return configs


def _check(response: Any) -> None:
    """Raise on the first per-topic error in an admin response.

    CreateTopics and CreatePartitions answer `topic_errors` of (topic, code, message);
    AlterConfigs answers `resources` of (code, message, type, name).
    """
    errors = [
        (name, code, message) for name, code, message, *_ in getattr(response, "topic_errors", [])
    ]
    errors += [
        (name, code, message) for code, message, _type, name in getattr(response, "resources", [])
    ]
    for name, code, message in errors:
        if code:
            msg = f"Kafka refused {name}: error {code} {message}"
            raise InfrastructureError(msg)


app = typer.Typer(add_completion=False, help=__doc__, pretty_exceptions_enable=False)


@app.command()
def ensure(
    replication_factor: Annotated[
        int | None, typer.Option(help="override PEEPERS_KAFKA__REPLICATION_FACTOR")
    ] = None,
) -> None:
    """Create or update every registry topic (safe to run twice)."""
    settings = StackSettings().kafka
    if replication_factor is not None:
        settings = settings.model_copy(update={"replication_factor": replication_factor})
    try:
        report = asyncio.run(ensure_topics(settings))
    except InfrastructureError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for label, names in (
        ("created", report.created),
        ("grown", report.grown),
        ("reconfigured", report.reconfigured),
    ):
        typer.echo(f"{label:>13}: {len(names)}" + (f"  ({', '.join(names)})" if names else ""))
    typer.echo(f"{'unchanged':>13}: {len(report.unchanged)}")
    for name in report.wider_than_registry:
        typer.echo(f"warning: {name} has more partitions than the registry asks; left as is")


@app.command("list")
def list_topics() -> None:
    """Print the registry: name, partitions, description."""
    for spec in TOPICS.values():
        typer.echo(f"{spec.name:<40} {spec.partitions:>3}  {spec.description}")


def main() -> None:
    app()
