"""The convergence checks' rules, on a sandbox marketplace's own orders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from peepers_proof.checks import limits_kept, order_differences
from peepers_sandbox.clock import Clock
from peepers_sandbox.config import DEMO_SELLER_ID, MarketplaceConfig
from peepers_sandbox.marketplace import Marketplace
from peepers_sandbox.snapshot import seller_state


def test_an_uncached_order_counts_only_within_the_backfill_window() -> None:
    market = Marketplace(MarketplaceConfig(sellers=1, orders_per_seller=10), Clock())
    new = market.new_order(seller_id=DEMO_SELLER_ID)  # a sale now; the seeded history is months old
    orders = seller_state(market, DEMO_SELLER_ID)["orders"]
    # Nothing cached: every order is missing when the backfill reaches back over all.
    assert len(order_differences(orders, {})) == len(orders) == 11
    since = datetime.now(UTC) - timedelta(days=30)
    assert order_differences(orders, {}, since) == [f"order {new['id']}: not cached"]


def test_refused_requests_are_shown_with_the_minutes_they_came_in() -> None:
    counters = [
        {"app_id": 1, "family": "orders", "total": 90, "limited": 0, "limited_minutes": {}},
        {
            "app_id": 1,
            "family": "items",
            "total": 900,
            "limited": 5,
            "limited_minutes": {"1796640180": 3, "1796640060": 2},
        },
    ]
    check = limits_kept(counters)
    assert check.checked == 990
    assert check.problems == [
        "items (app 1): 5 requests over the limit, in the minutes 10:41 UTC (2), 10:43 UTC (3)"
    ]
