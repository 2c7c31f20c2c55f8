"""Ingest's own Prometheus metrics (module-level: building an app twice registers nothing twice).

The HTTP-level metrics every service has come from `peepers_common.metrics`.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

from peepers_common.metrics import LATENCY_BUCKETS_S

__all__ = [
    "ACK_LATENCY",
    "DEDUP_ERRORS",
    "DRAINED",
    "NOTIFICATIONS",
    "RECONCILED",
    "RECONCILE_LAST_SUCCESS",
    "RECONCILE_ROUNDS",
    "REJECTED",
    "SPOOL_DEPTH",
    "SPOOL_OLDEST_AGE",
]

ACK_LATENCY: Final = Histogram(
    "peepers_ingest_ack_duration_seconds",
    "Time from receiving a webhook to answering it, by outcome",
    ["outcome"],
    buckets=LATENCY_BUCKETS_S,
)
NOTIFICATIONS: Final = Counter(
    "peepers_ingest_notifications_total",
    "Accepted notifications by outcome: published (Kafka acked), spooled, duplicate",
    ["outcome"],
)
REJECTED: Final = Counter(
    "peepers_ingest_rejected_total",
    "Webhook requests refused, by reason",
    ["reason"],
)
DRAINED: Final = Counter(
    "peepers_ingest_spool_drained_total",
    "Spooled records that reached Kafka",
)
DEDUP_ERRORS: Final = Counter(
    "peepers_ingest_dedup_errors_total",
    "Dedup checks or marks that Redis did not answer",
)
RECONCILED: Final = Counter(
    "peepers_ingest_reconciled_total",
    "missed_feeds entries handled by the reconciler, by outcome",
    ["outcome"],
)
RECONCILE_ROUNDS: Final = Counter(
    "peepers_ingest_reconcile_rounds_total",
    "missed_feeds rounds, by result: ok, or failed (ML or the token source failed)",
    ["result"],
)
RECONCILE_LAST_SUCCESS: Final = Gauge(
    "peepers_ingest_reconcile_last_success_timestamp_seconds",
    "Unix time the last missed_feeds round read every page (0: none yet)",
)
SPOOL_DEPTH: Final = Gauge(
    "peepers_ingest_spool_depth",
    "Records in the durable spool waiting for Kafka",
)
SPOOL_OLDEST_AGE: Final = Gauge(
    "peepers_ingest_spool_oldest_age_seconds",
    "Age of the oldest record in the durable spool (0 when empty)",
)
