"""Every Kafka topic Peepers uses: name, partitions and config, in one place.

Topic names live only here. Adapters take a topic as a parameter, so tests can pass
their own uuid-named topic instead of these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from peepers_common.errors import UnknownTopicError

_DAY_MS: Final = 24 * 60 * 60 * 1000

# ML topics Peepers consumes (FACTS.md 1.4). post_purchase carries claims.
ML_TOPICS: Final = (
    "orders_v2",
    "items",
    "items_prices",
    "questions",
    "messages",
    "shipments",
    "payments",
    "post_purchase",
)

NOTIFICATIONS_PREFIX: Final = "ml.notifications."
NOTIFICATIONS_UNROUTED: Final = "ml.notifications.unrouted"
PEEPERS_ORDERS: Final = "peepers.orders.v1"
PEEPERS_CATALOG: Final = "peepers.catalog.v1"
PEEPERS_MESSAGES: Final = "peepers.messages.v1"
PEEPERS_SELLERS: Final = "peepers.sellers.v1"
# Peepers-owned state (peepers_common.changelog): peepers.<service>.<what>.changelog,
# compacted, internal to its service.
AUTH_SELLERS_CHANGELOG: Final = "peepers.auth.sellers.changelog"
ORDERS_EMAILS_CHANGELOG: Final = "peepers.orders.emails.changelog"
# Which sellers' items the catalog keeps, per cache namespace: what a rebuild resyncs.
CATALOG_SELLERS_CHANGELOG: Final = "peepers.catalog.sellers.changelog"
MESSAGES_TICKETS_CHANGELOG: Final = "peepers.messages.tickets.changelog"
# Answers and messages a seller submitted, by idempotency key.
MESSAGES_SUBMISSIONS_CHANGELOG: Final = "peepers.messages.submissions.changelog"
# Which packs of a seller hold a conversation: what a lost mirror's rebuild reads again.
MESSAGES_CONVERSATIONS_CHANGELOG: Final = "peepers.messages.conversations.changelog"
DLQ_SUFFIX: Final = ".dlq"
RETRY_SUFFIX: Final = ".retry"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    description: str
    config: Mapping[str, str] = field(default_factory=dict)


def notification_topic(ml_topic: str) -> str:
    """The Kafka topic for an ML notification topic; unknown ML topics go to unrouted."""
    if ml_topic in ML_TOPICS:
        return NOTIFICATIONS_PREFIX + ml_topic
    return NOTIFICATIONS_UNROUTED


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of a consumed topic."""
    return topic + DLQ_SUFFIX


def retry_topic(topic: str) -> str:
    """Where consumers park records of ``topic`` that failed for a transient reason."""
    return topic + RETRY_SUFFIX


# Partition counts bound how many consumer replicas can share a topic's work (the k8s
# autoscalers never go above them). Six leaves room to scale on a busy seller base;
# raising them later is safe for new keys but moves existing keys to other partitions.
_NOTIFICATION_PARTITIONS: Final = 6
_DOMAIN_PARTITIONS: Final = 6
_RETENTION_NOTIFICATIONS: Final = {"cleanup.policy": "delete", "retention.ms": str(7 * _DAY_MS)}
# Domain topics are other teams' public API: keep a month so a consumer can rebuild.
_RETENTION_DOMAIN: Final = {"cleanup.policy": "delete", "retention.ms": str(30 * _DAY_MS)}
_RETENTION_DLQ: Final = {"cleanup.policy": "delete", "retention.ms": str(30 * _DAY_MS)}
# A changelog keeps each key's latest record for ever (it is the system of record);
# a tombstone stays a day, so a restore that is running sees the delete. Never add
# partitions to one: its keys would move, and views ordered by offset would misread them.
_CHANGELOG_PARTITIONS: Final = 3
_CHANGELOG_CONFIG: Final = {
    "cleanup.policy": "compact",
    "delete.retention.ms": str(_DAY_MS),
    "min.compaction.lag.ms": "0",
}


def _failure_topics(consumed: str) -> list[TopicSpec]:
    """A consumed topic's retry path and dead-letter queue (see peepers_common.consuming).

    One partition each: failures are rare, and the retry agent holds each parked record
    until it is due, so ordering by due time matters more than parallelism.
    """
    return [
        TopicSpec(
            retry_topic(consumed),
            1,
            f"records of {consumed} parked after a transient failure",
            _RETENTION_DLQ,
        ),
        TopicSpec(dlq_topic(consumed), 1, f"records of {consumed} that failed", _RETENTION_DLQ),
    ]


def _registry() -> dict[str, TopicSpec]:
    specs: list[TopicSpec] = []
    for ml_topic in ML_TOPICS:
        name = notification_topic(ml_topic)
        specs.append(
            TopicSpec(
                name,
                _NOTIFICATION_PARTITIONS,
                f"ML '{ml_topic}' notifications as received, keyed <user_id>:<resource>",
                _RETENTION_NOTIFICATIONS,
            )
        )
        specs += _failure_topics(name)
    specs.append(
        TopicSpec(
            NOTIFICATIONS_UNROUTED,
            1,
            "ML notifications of topics Peepers does not know yet (accepted, kept for replay)",
            _RETENTION_NOTIFICATIONS,
        )
    )
    for name, what in (
        (PEEPERS_ORDERS, "order domain events"),
        (PEEPERS_CATALOG, "catalog (item) domain events"),
        (PEEPERS_MESSAGES, "questions, messages and claims domain events"),
        (PEEPERS_SELLERS, "seller connection lifecycle events"),
    ):
        specs.append(TopicSpec(name, _DOMAIN_PARTITIONS, what, _RETENTION_DOMAIN))
    # The orders service (analytics, the mailer) and the messages service (order
    # timelines) consume the orders' topic: they park there too.
    specs += _failure_topics(PEEPERS_SELLERS) + _failure_topics(PEEPERS_ORDERS)
    for name, what in (
        (AUTH_SELLERS_CHANGELOG, "auth's seller authorizations (sealed tokens)"),
        (ORDERS_EMAILS_CHANGELOG, "the orders service's ledger of emails sent"),
        (CATALOG_SELLERS_CHANGELOG, "the sellers whose items the catalog keeps"),
        (MESSAGES_TICKETS_CHANGELOG, "the messages service's support tickets"),
        (MESSAGES_SUBMISSIONS_CHANGELOG, "answers and messages sellers submitted"),
        (MESSAGES_CONVERSATIONS_CHANGELOG, "the packs holding a conversation, per seller"),
    ):
        specs.append(
            TopicSpec(name, _CHANGELOG_PARTITIONS, f"changelog of {what}", _CHANGELOG_CONFIG)
        )
    return {spec.name: spec for spec in specs}


TOPICS: Final[Mapping[str, TopicSpec]] = _registry()


def topic_spec(name: str) -> TopicSpec:
    try:
        return TOPICS[name]
    except KeyError:
        msg = f"unknown topic {name!r}: add it to peepers_common.topics"
        raise UnknownTopicError(msg) from None
