"""The convergence checks' rules, on a sandbox marketplace's own orders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from peepers_proof.checks import order_differences
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
