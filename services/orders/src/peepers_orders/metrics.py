"""The orders service's Prometheus metrics (module-level: one registry per process)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge

UNKNOWN_VALUES: Final = Counter(
    "peepers_orders_unknown_values_total",
    "ML values outside the known enums, kept raw on the order (field, value)",
    ["field", "value"],
)
APPLIED: Final = Counter(
    "peepers_orders_applied_total",
    "Order fetches applied to the cache, by outcome (created, updated, unchanged, ...)",
    ["outcome"],
)
TRANSITIONS: Final = Counter(
    "peepers_orders_transitions_total", "Lifecycle transitions recorded, by state", ["state"]
)
EVENTS: Final = Counter(
    "peepers_orders_events_published_total", "Domain events published, by type", ["type"]
)
CAS_CONFLICTS: Final = Counter(
    "peepers_orders_cas_conflicts_total",
    "Cache writes that lost a compare-and-set to a concurrent writer and were recomputed",
)
EMAILS: Final = Counter(
    "peepers_orders_emails_total",
    "Emails by outcome (sent; failed: the SMTP server did not take it, retried; duplicate: "
    "the ledger had it; skipped: not mailed; no_address)",
    ["outcome"],
)
EMAILS_OLDEST_PENDING: Final = Gauge(
    "peepers_orders_emails_oldest_pending_age_seconds",
    "How long the oldest mail this worker failed to send has been waiting (0: none)",
)
ANALYTICS: Final = Counter(
    "peepers_orders_analytics_applied_total",
    "Transitions counted into sales analytics, by outcome (counted, duplicate)",
    ["outcome"],
)
BACKFILL_ORDERS: Final = Counter(
    "peepers_orders_backfill_orders_total", "Orders a backfill has applied, by seller", ["seller"]
)
BACKFILL_TOTAL: Final = Gauge(
    "peepers_orders_backfill_orders_expected",
    "Orders the running backfill found, by seller",
    ["seller"],
)
BACKFILL_RUNNING: Final = Gauge(
    "peepers_orders_backfill_running", "1 while a backfill of the seller runs", ["seller"]
)
