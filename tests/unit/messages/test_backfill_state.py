"""The backfill checkpoint's totals, as the shell's progress bar shows them."""

from __future__ import annotations

from peepers_messages.backfill import BackfillState


def test_the_conversations_total_counts_what_the_offset_counts() -> None:
    # A run from the index pages its packs; one through the orders pages the orders.
    state = BackfillState(seller_id=1, run_id="r", total_orders=900, total_packs=120)
    state.conversations_from = "index"
    assert state.conversations_total == 120
    state.conversations_from = "orders"
    assert state.conversations_total == 900
