"""`peepers-asyncapi`: the AsyncAPI 3 document of the public ``peepers.<domain>.v1`` topics.

The document is built from the pydantic models in `peepers_common.events`, so the models
stay the one source of truth; ``docs/events.asyncapi.yaml`` is its checked-in output, and
a unit test fails when the two differ. After changing an event model::

    uv run peepers-asyncapi generate            # rewrite docs/events.asyncapi.yaml
    uv run peepers-asyncapi generate --check    # what CI asks: is the file current?

``v1`` topics never change incompatibly. ``docs/events.v1-baseline.json`` records what v1
has promised so far (every event type, field, field schema and required field), and a
unit test compares the models against it. The baseline only moves on purpose::

    uv run peepers-asyncapi baseline            # record compatible additions; refuses breaks

A new topic (``peepers.orders.v1``, ``peepers.messages.v1``) is one more `DomainChannel`
in `CHANNELS` once its event union exists in `peepers_common.events`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args, get_origin

import typer
import yaml
from pydantic.json_schema import models_json_schema

from peepers_common.events import (
    CatalogEvent,
    DomainEvent,
    MessagesEvent,
    OrdersEvent,
    SellerEvent,
)
from peepers_common.topics import (
    PEEPERS_CATALOG,
    PEEPERS_MESSAGES,
    PEEPERS_ORDERS,
    PEEPERS_SELLERS,
    topic_spec,
)

ASYNCAPI_VERSION: Final = "3.0.0"
KAFKA_BINDING_VERSION: Final = "0.5.0"
DEFAULT_DOCUMENT: Final = Path("docs/events.asyncapi.yaml")
DEFAULT_BASELINE: Final = Path("docs/events.v1-baseline.json")
HEADERS_SCHEMA: Final = "DomainEventHeaders"

_SCHEMAS_REF: Final = "#/components/schemas/"
# Annotation keywords: they document a field without changing what a consumer reads.
_ANNOTATIONS: Final = frozenset({"title", "description", "default", "examples", "deprecated"})

Format = Literal["yaml", "json"]


@dataclass(frozen=True)
class DomainChannel:
    """One public topic: its events (the discriminated union consumers decode with)."""

    topic: str
    events: object  # Annotated[A | B | ..., Field(discriminator="type")]
    description: str
    key: str
    key_example: str
    key_pattern: str

    @property
    def domain(self) -> str:
        return self.topic.split(".")[1]

    @property
    def models(self) -> tuple[type[DomainEvent], ...]:
        return event_models(self.events)


CHANNELS: Final = (
    DomainChannel(
        topic=PEEPERS_SELLERS,
        events=SellerEvent,
        description=(
            "A seller's connection to Peepers: connected, reconnected, disconnected, or "
            "in need of logging in again. Published by the auth service."
        ),
        key="The seller's ML user id in decimal: every event of one seller is in order.",
        key_example="123456789",
        key_pattern=r"^[0-9]+$",
    ),
    DomainChannel(
        topic=PEEPERS_CATALOG,
        events=CatalogEvent,
        description=(
            "Changes of sellers' items as Peepers mirrors them (created, price, stock, "
            "status and other field changes), and snapshots of items re-read after the "
            "catalog lost its cache (upserts). Published by the catalog service."
        ),
        key=(
            "`<seller_id>:<item_id>`: every change of one item is on one partition, in "
            "the order Peepers saw ML's versions."
        ),
        key_example="123456789:MLB1234567890",
        key_pattern=r"^[0-9]+:[^:]+$",
    ),
    DomainChannel(
        topic=PEEPERS_ORDERS,
        events=OrdersEvent,
        description=(
            "Sellers' orders through their lifecycle (created, paid, shipped, delivered, "
            "cancelled, refunded, not delivered), one event per real transition, and "
            "snapshots of orders Peepers cannot prove it announced. Published by the "
            "orders service."
        ),
        key=(
            "`<seller_id>:<order_id>`: every event of one order is on one partition, in "
            "lifecycle order."
        ),
        key_example="123456789:2000003508897196",
        key_pattern=r"^[0-9]+:[0-9]+$",
    ),
    DomainChannel(
        topic=PEEPERS_MESSAGES,
        events=MessagesEvent,
        description=(
            "Sellers' questions, post-sale messages and claims as Peepers mirrors them, "
            "and the support tickets Peepers keeps for claims. Published by the messages "
            "service."
        ),
        key=(
            "`<seller_id>:<kind>:<id>` with kind `question`, `pack` or `claim`: every "
            "change of one question, conversation or claim (and its ticket) is on one "
            "partition, in order."
        ),
        key_example="123456789:claim:5256749420",
        key_pattern=r"^[0-9]+:(question|pack|claim):[0-9]+$",
    ),
)

_DESCRIPTION: Final = """\
The domain events Peepers publishes for other teams: one Kafka topic per domain, several
event types per topic, told apart by the payload's `type` (and the `ce_type` header).

- **Values** are UTF-8 JSON objects. Decimals (prices) are JSON strings such as `"12.50"`;
  times are ISO 8601 with an offset.
- **Delivery** is at least once. `event_id` is derived from what produced the event, so a
  redelivered or republished event carries the same id: deduplicate on it.
- **Order** holds per record key (see each message's Kafka key), not across keys.
- **Compatibility.** A `v1` topic only gains optional fields and new event types; an
  incompatible change would get a `v2` topic. Consumers must ignore fields and event types
  they do not know.
"""

_HEADERS: Final[dict[str, Any]] = {
    "type": "object",
    "description": (
        "Kafka record headers, UTF-8 strings (CloudEvents Kafka binding, binary mode)."
    ),
    "properties": {
        "ce_id": {
            "type": "string",
            "format": "uuid",
            "description": "The payload's event_id.",
        },
        "ce_type": {"type": "string", "description": "The payload's type, e.g. item.paused."},
        "ce_source": {"type": "string", "description": "The producing service."},
        "ce_specversion": {"type": "string", "const": "1.0"},
        "content-type": {"type": "string", "const": "application/json"},
        "traceparent": {
            "type": "string",
            "description": "W3C trace context of the work that produced the event.",
        },
    },
    "required": ["ce_id", "ce_type"],
}


def event_models(events: object) -> tuple[type[DomainEvent], ...]:
    """The event classes of a discriminated union such as `CatalogEvent`."""
    union = get_args(events)[0] if get_origin(events) is Annotated else events
    members = get_args(union) or (union,)
    models = tuple(m for m in members if isinstance(m, type) and issubclass(m, DomainEvent))
    if len(models) != len(members):
        msg = f"{events!r} is not a union of DomainEvent classes"
        raise TypeError(msg)
    return models


def _event_type(model: type[DomainEvent]) -> str:
    (name,) = get_args(model.model_fields["type"].annotation)
    return str(name)


def _schemas(models: Iterable[type[DomainEvent]]) -> dict[str, Any]:
    # One call for every model, so nested models (ItemSnapshot, FieldChange) are shared.
    # Serialization mode: the schemas describe the JSON producers write.
    _, top = models_json_schema(
        [(model, "serialization") for model in models],
        ref_template=_SCHEMAS_REF + "{model}",
    )
    schemas: dict[str, Any] = top.get("$defs", {})
    for model in models:
        schema = schemas[model.__name__]
        # `type` has a default in the models but is on every record: it is the discriminator.
        required = {*schema.get("required", ()), "type"}
        schema["required"] = [name for name in schema["properties"] if name in required]
    return schemas


def _channel_binding(channel: DomainChannel) -> dict[str, Any]:
    spec = topic_spec(channel.topic)
    config: dict[str, Any] = {}
    if "cleanup.policy" in spec.config:
        config["cleanup.policy"] = spec.config["cleanup.policy"].split(",")
    if "retention.ms" in spec.config:
        config["retention.ms"] = int(spec.config["retention.ms"])
    return {
        "partitions": spec.partitions,
        "topicConfiguration": config,
        "bindingVersion": KAFKA_BINDING_VERSION,
    }


def _message(channel: DomainChannel, model: type[DomainEvent]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": _event_type(model),
        "title": model.__name__,
    }
    if model.__doc__:
        message["summary"] = " ".join(model.__doc__.split())
    message |= {
        "contentType": "application/json",
        "headers": {"$ref": _SCHEMAS_REF + HEADERS_SCHEMA},
        "payload": {"$ref": _SCHEMAS_REF + model.__name__},
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "description": channel.key,
                    "pattern": channel.key_pattern,
                    "examples": [channel.key_example],
                },
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }
    return message


def build_document(channels: Iterable[DomainChannel] = CHANNELS) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of `channels`, as plain JSON-compatible data."""
    channels = tuple(channels)
    all_models = [model for channel in channels for model in channel.models]
    doc_channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for channel in channels:
        ids = [model.__name__ for model in channel.models]
        doc_channels[channel.domain] = {
            "address": channel.topic,
            "title": channel.topic,
            "description": channel.description,
            "messages": {i: {"$ref": f"#/components/messages/{i}"} for i in ids},
            "bindings": {"kafka": _channel_binding(channel)},
        }
        operations[f"send-{channel.domain}-events"] = {
            "action": "send",
            "title": f"Peepers publishes to {channel.topic}",
            "channel": {"$ref": f"#/channels/{channel.domain}"},
            "messages": [{"$ref": f"#/channels/{channel.domain}/messages/{i}"} for i in ids],
        }
        for model in channel.models:
            messages[model.__name__] = _message(channel, model)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Peepers domain events",
            "version": "1.0.0",
            "description": _DESCRIPTION,
        },
        "defaultContentType": "application/json",
        "channels": doc_channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": {HEADERS_SCHEMA: _HEADERS, **_schemas(all_models)},
        },
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so descriptions read as they were written."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def format_of(path: Path) -> Format:
    return "json" if path.suffix == ".json" else "yaml"


def render(document: Mapping[str, Any], fmt: Format) -> str:
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    header = "# Generated from peepers_common.events by `uv run peepers-asyncapi generate`.\n"
    body = yaml.dump(dict(document), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return header + body


# --- v1 compatibility -----------------------------------------------------------------


def _strip_annotations(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_annotations(v) for k, v in schema.items() if k not in _ANNOTATIONS}
    if isinstance(schema, list):
        return [_strip_annotations(item) for item in schema]
    return schema


def contract(document: Mapping[str, Any]) -> dict[str, Any]:
    """What the document promises consumers: event types per topic; fields per schema."""
    components = document["components"]
    channels = {
        channel["address"]: sorted(
            components["messages"][ref["$ref"].rsplit("/", 1)[1]]["name"]
            for ref in channel["messages"].values()
        )
        for channel in document["channels"].values()
    }
    schemas = {
        name: {
            "properties": {
                field: _strip_annotations(schema)
                for field, schema in sorted(definition.get("properties", {}).items())
            },
            "required": sorted(definition.get("required", ())),
        }
        for name, definition in sorted(components["schemas"].items())
    }
    return {"channels": channels, "schemas": schemas}


def incompatibilities(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """How `current` breaks what `baseline` promised (two `contract` results); [] if not.

    Compatible: new optional fields, new event types, new topics, new schemas. Breaking:
    a topic, event type, schema or field gone, a field's schema changed, a field newly
    required (events already on the topics lack it).
    """
    problems: list[str] = []
    for topic, types in baseline["channels"].items():
        now = current["channels"].get(topic)
        if now is None:
            problems.append(f"topic {topic} is gone")
            continue
        problems += [f"{topic}: event type {t} is gone" for t in types if t not in now]
    for name, old in baseline["schemas"].items():
        new = current["schemas"].get(name)
        if new is None:
            problems.append(f"schema {name} is gone")
            continue
        for field, old_schema in old["properties"].items():
            if field not in new["properties"]:
                problems.append(f"{name}.{field} was removed")
            elif new["properties"][field] != old_schema:
                problems.append(
                    f"{name}.{field} changed type: {json.dumps(old_schema, sort_keys=True)}"
                    f" -> {json.dumps(new['properties'][field], sort_keys=True)}"
                )
        problems += [
            f"{name}.{field} is newly required"
            for field in new["required"]
            if field not in old["required"]
        ]
    return problems


def render_contract(value: Mapping[str, Any]) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


# --- CLI ------------------------------------------------------------------------------

cli = typer.Typer(add_completion=False, help=__doc__, pretty_exceptions_enable=False)


def _diff_summary(old: str, new: str, path: Path, *, limit: int = 40) -> str:
    diff = list(
        difflib.unified_diff(
            old.splitlines(), new.splitlines(), f"{path} (on disk)", f"{path} (models)", lineterm=""
        )
    )
    added = sum(1 for line in diff if line.startswith("+") and not line.startswith("+++"))
    removed = sum(1 for line in diff if line.startswith("-") and not line.startswith("---"))
    shown = diff[:limit]
    if len(diff) > limit:
        shown.append(f"... {len(diff) - limit} more diff lines")
    return "\n".join([*shown, f"{path}: {added} line(s) to add, {removed} to remove"])


@cli.command()
def generate(
    path: Annotated[
        Path, typer.Argument(help="where to write; .json writes JSON, anything else YAML")
    ] = DEFAULT_DOCUMENT,
    check: Annotated[
        bool, typer.Option("--check", help="write nothing; exit 1 if the file is stale")
    ] = False,
) -> None:
    """Write the AsyncAPI document of the domain topics (or check the one on disk)."""
    text = render(build_document(), format_of(path))
    if check:
        old = path.read_text() if path.exists() else ""
        if old != text:
            typer.echo(_diff_summary(old, text, path), err=True)
            typer.echo(f"{path} is stale: run `uv run peepers-asyncapi generate {path}`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{path} is up to date")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    typer.echo(f"wrote {path}")


@cli.command()
def baseline(
    path: Annotated[Path, typer.Argument(help="the v1 baseline file")] = DEFAULT_BASELINE,
    allow_breaking: Annotated[
        bool,
        typer.Option(
            "--allow-breaking",
            help="record an incompatible change anyway (only before anyone consumes v1)",
        ),
    ] = False,
) -> None:
    """Record the current v1 contract; refuse changes that break the recorded one."""
    current = contract(build_document())
    if path.exists():
        problems = incompatibilities(json.loads(path.read_text()), current)
        if problems and not allow_breaking:
            for problem in problems:
                typer.echo(f"incompatible: {problem}", err=True)
            typer.echo(
                "v1 topics never change incompatibly: make the field optional, or publish "
                "a v2 topic; the baseline is unchanged",
                err=True,
            )
            raise typer.Exit(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_contract(current))
    typer.echo(f"wrote {path}")


def main() -> None:
    cli()
