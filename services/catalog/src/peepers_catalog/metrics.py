"""The catalog service's Prometheus metrics (module-level: one registry per process)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge

APPLIED: Final = Counter(
    "peepers_catalog_items_applied_total",
    "Item versions applied to the cache, by outcome (created, updated, unchanged, stale)",
    ["outcome"],
)
EVENTS: Final = Counter(
    "peepers_catalog_events_published_total", "Domain events published, by type", ["type"]
)
ITEMS_GONE: Final = Counter(
    "peepers_catalog_items_gone_total", "Items marked gone because ML no longer has them"
)
CAS_CONFLICTS: Final = Counter(
    "peepers_catalog_cas_conflicts_total",
    "Cache writes that lost a compare-and-set to a concurrent writer and were recomputed",
)
SYNC_ITEMS: Final = Counter(
    "peepers_catalog_sync_items_total", "Items a full sync has processed, by seller", ["seller"]
)
SYNC_TOTAL: Final = Gauge(
    "peepers_catalog_sync_items_expected",
    "Items the running full sync found, by seller",
    ["seller"],
)
SYNC_RUNNING: Final = Gauge(
    "peepers_catalog_sync_running", "1 while a full sync of the seller runs", ["seller"]
)
