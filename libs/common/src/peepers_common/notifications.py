"""ML's notification body, and how it travels on ``ml.notifications.<topic>``.

ML's webhook body is a thin pointer (FACTS.md 1.3). Its real variations are all accepted:
``_id`` or ``id`` (or neither, as in the orders_v2 sample), ``user_id`` as an integer or a
numeric string, ``resource`` with or without a leading slash, optional ``actions``, and
fields ML adds later (kept, never dropped). Garbage is refused with a
`pydantic.ValidationError` that says what is wrong.

A Kafka record carries:

- key: ``<user_id>:<resource path>`` (`record_key`), so every change of one resource lands
  on one partition, in order;
- value: the JSON object exactly as ML sent it plus ``received_at`` (`encode_value`,
  decoded by `decode_value`);
- headers: CloudEvents binary mode (``ce_id`` = the notification id, ``ce_type``,
  ``ce_source``, ``ce_time``, ``ce_specversion``, ``ce_subject``, ``content-type``) and
  W3C ``traceparent`` (`cloudevent_headers`, read back by `parse_cloudevent_headers`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Final

import orjson
from pydantic import (
    AliasChoices,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

if TYPE_CHECKING:
    from peepers_common.consuming import InboundRecord

CE_SPECVERSION: Final = "1.0"
CE_TYPE_PREFIX: Final = "com.mercadolibre.notification."
CE_SOURCE_PREFIX: Final = "https://api.mercadolibre.com/applications/"
CONTENT_TYPE: Final = "application/json"
_MAX_ID: Final = 2**63 - 1


def _positive_id(value: object) -> object:
    # ML sends user_id as 123 or "123"; bools and floats are not ids, whatever lax
    # coercion would make of them.
    if isinstance(value, bool | float):
        msg = "must be an integer or a string of digits"
        raise ValueError(msg)
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()) or len(value) > 19:
            msg = "must be an integer or a string of digits"
            raise ValueError(msg)
        return int(value)
    return value


MlId = Annotated[int, BeforeValidator(_positive_id), Field(ge=1, le=_MAX_ID)]
# ObjectIds, UUIDs and whatever id shape ML uses next; safe as a Kafka header and Redis key.
NotificationId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
]
# ML topics include dashes and underscores (stock-location, orders_v2).
MlTopic = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
]
Action = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
]
# Visible ASCII only: a resource is a path on api.mercadolibre.com, nothing else.
Resource = Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=r"^[!-~]+$")]


class Notification(BaseModel):
    """One ML notification as ML sends it, plus ``received_at`` once Peepers has it."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    id: NotificationId | None = Field(default=None, validation_alias=AliasChoices("_id", "id"))
    resource: Resource
    user_id: MlId
    topic: MlTopic
    application_id: MlId
    attempts: int | None = Field(default=None, ge=0, le=10_000)
    sent: AwareDatetime | None = None
    received: AwareDatetime | None = None
    actions: list[Action] | None = Field(default=None, max_length=32)
    # Set by ingest when it accepts the notification (never taken from ML's body).
    received_at: AwareDatetime | None = None

    @field_validator("resource")
    @classmethod
    def _a_path_not_a_url(cls, value: str) -> str:
        # Consumers GET api.mercadolibre.com{resource}: a scheme, a network path or a
        # backslash could point them at another host.
        if "://" in value or value.startswith("//") or "\\" in value:
            msg = "resource must be a path on the ML API"
            raise ValueError(msg)
        return value

    @property
    def resource_path(self) -> str:
        """The resource with exactly one leading slash (ML sends both forms)."""
        return "/" + self.resource.lstrip("/")

    @property
    def notification_id(self) -> str:
        """ML's ``_id``/``id``, or a stable id derived from the body when ML sent none.

        The derived id ignores ``attempts`` and ``sent`` (they change on every retry) when
        ``received`` pins the change down; without ``received`` it includes them, so two
        different changes can never share an id (a retry may then pass as new: duplicates
        are allowed, losses are not).
        """
        if self.id is not None:
            return self.id
        parts: list[str] = [
            self.topic,
            str(self.user_id),
            self.resource_path,
            str(self.application_id),
            ",".join(self.actions or ()),
        ]
        if self.received is not None:
            parts.append(self.received.isoformat())
        else:
            parts += [self.sent.isoformat() if self.sent else "", str(self.attempts)]
        digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()
        return f"sha256-{digest[:40]}"


def record_key(notification: Notification) -> bytes:
    """``<user_id>:<resource path>``: one resource, one partition, in order."""
    return f"{notification.user_id}:{notification.resource_path}".encode()


def encode_value(body: Mapping[str, Any], received_at: datetime) -> bytes:
    """ML's JSON object as sent, plus ``received_at`` (ours overrides any sent by ML)."""
    # orjson: compact UTF-8, no NaN; several times cheaper than json on ingest's hot path.
    return orjson.dumps({**body, "received_at": _rfc3339(received_at)})


def decode_value(value: bytes) -> Notification:
    """A record value back into a `Notification` (raises `pydantic.ValidationError`)."""
    return Notification.model_validate_json(value)


def changed_resource(record: InboundRecord) -> tuple[int, str]:
    """What a notification record asks its consumer to read: the seller and resource path.

    The identity by which a batch coalesces notifications
    (`peepers_common.consuming.process_batch`); raises ``ValidationError`` if malformed.
    """
    notification = decode_value(record.value or b"")
    return notification.user_id, notification.resource_path


@dataclass(frozen=True)
class CloudEventAttributes:
    id: str
    type: str
    source: str
    time: datetime | None
    specversion: str
    subject: str | None = None
    traceparent: str | None = None

    @property
    def ml_topic(self) -> str | None:
        return (
            self.type.removeprefix(CE_TYPE_PREFIX) if self.type.startswith(CE_TYPE_PREFIX) else None
        )


def cloudevent_headers(
    notification: Notification, *, received_at: datetime, traceparent: str | None = None
) -> list[tuple[str, bytes]]:
    """CloudEvents binary-mode Kafka headers (and ``traceparent``) for one notification.

    ``ce_time`` is when ML says the change was received (``received``), else when ingest
    received it.
    """
    time = notification.received or received_at
    headers = [
        ("ce_specversion", CE_SPECVERSION.encode()),
        ("ce_id", notification.notification_id.encode()),
        ("ce_type", (CE_TYPE_PREFIX + notification.topic).encode()),
        ("ce_source", f"{CE_SOURCE_PREFIX}{notification.application_id}".encode()),
        ("ce_time", _rfc3339(time).encode()),
        ("ce_subject", notification.resource_path.encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]
    if traceparent is not None:
        headers.append(("traceparent", traceparent.encode()))
    return headers


def parse_cloudevent_headers(headers: Iterable[tuple[str, bytes]]) -> CloudEventAttributes:
    """Read the CloudEvents attributes back from a record's headers.

    Raises:
        ValueError: a required attribute is missing or not UTF-8, or the time is malformed.
    """
    found: dict[str, str] = {}
    for name, raw in headers:
        try:
            found[name.lower()] = raw.decode()
        except UnicodeDecodeError:
            msg = f"header {name!r} is not UTF-8"
            raise ValueError(msg) from None
    missing = [h for h in ("ce_id", "ce_type", "ce_source", "ce_specversion") if h not in found]
    if missing:
        msg = f"not a CloudEvents record: missing {', '.join(missing)}"
        raise ValueError(msg)
    time = found.get("ce_time")
    return CloudEventAttributes(
        id=found["ce_id"],
        type=found["ce_type"],
        source=found["ce_source"],
        time=datetime.fromisoformat(time) if time else None,
        specversion=found["ce_specversion"],
        subject=found.get("ce_subject"),
        traceparent=found.get("traceparent"),
    )


def _rfc3339(moment: datetime) -> str:
    """UTC, to the millisecond, with ``Z``.

    Twice on every webhook: formatted by hand, a third of the CPU of ``isoformat`` and
    ``replace``.
    """
    if moment.utcoffset():
        moment = moment.astimezone(UTC)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031 - the fastest here
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond // 1000,
    )
