"""The auth service's own Prometheus metrics (module level: registered once per process)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

from peepers_common.metrics import LATENCY_BUCKETS_S

LOGINS: Final = Counter("peepers_auth_logins_total", "Seller logins, by outcome", ["outcome"])
SELLER_EVENTS: Final = Counter(
    "peepers_auth_seller_events_total", "Seller lifecycle events published, by type", ["type"]
)
REFRESHES: Final = Counter(
    "peepers_auth_token_refreshes_total",
    "Refresh attempts against ML, by outcome (refreshed, invalid_grant, superseded, ...)",
    ["outcome"],
)
REFRESH_WAITS: Final = Counter(
    "peepers_auth_refresh_waits_total",
    "Times a caller waited for another replica's refresh instead of refreshing itself",
)
REFRESH_LATENCY: Final = Histogram(
    "peepers_auth_refresh_duration_seconds",
    "Time ML's token endpoint took to answer a refresh",
    buckets=LATENCY_BUCKETS_S,
)
SELLERS_REAUTH_REQUIRED: Final = Gauge(
    "peepers_auth_sellers_reauth_required",
    "Sellers whose authorization ML refused, who must log in again (counted from the view)",
)
