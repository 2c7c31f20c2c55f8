"""The web process's own Prometheus metrics (beside the shared HTTP ones)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge

OPEN_PAGES: Final = Gauge("peepers_web_open_pages", "Pages with a live stream open now")
LIVE_EVENTS: Final = Counter(
    "peepers_web_live_events_total",
    "Domain events sent to open pages, by part (orders, questions, ...); one per page",
    ["part"],
)
RELOADS: Final = Counter(
    "peepers_web_live_reloads_total",
    "Pages told to reload: their Last-Event-ID was no longer kept, or they fell behind",
)
UNAVAILABLE: Final = Counter(
    "peepers_web_unavailable_parts_total",
    "Parts of pages shown as 'service not available', by service",
    ["service"],
)
