"""The backfill on seller.connected: history as snapshots, resumable, no mail."""

from __future__ import annotations

from datetime import timedelta

import pytest

from peepers_common.errors import MlUnavailable
from peepers_common.ml.ratelimit import Lane, current_lane
from peepers_orders.backfill import BackfillOptions, backfill
from peepers_orders.errors import BackfillBusy
from peepers_orders.handlers import Orders
from peepers_orders.ports import BackfillState
from tests.unit.orders.fakes import SELLER, T0, Market, ml_order
from tests.unit.orders.test_handlers import store, types


def _history(market: Market, count: int) -> None:
    for n in range(count):
        order = market.add(
            ml_order(
                2000001 + n,
                date_created=T0 + timedelta(minutes=n),
                shipping={"id": 4000001 + n},
                pack_id=None,
            )
        )
        if n % 3 == 0:
            market.pay(order.id)
        if n % 5 == 4:
            market.cancel(order.id)


async def test_history_is_cached_and_announced_as_snapshots(
    market: Market, orders: Orders, sellers
) -> None:
    sellers.connections[SELLER] = T0 + timedelta(days=2)
    _history(market, 12)
    state = await backfill(
        SELLER, orders, sellers, options=BackfillOptions(page_size=5, run_id="r1")
    )
    assert (state.phase, state.offset, state.total) == ("done", 12, 12)
    assert state.counts == {"snapshot": 12}
    assert types(orders) == ["order.snapshot"] * 12
    assert store(orders).order(2000005).summary.state == "cancelled"  # cancelled ones too
    assert len([c for c in market.ml.calls if c[0] == "search_orders"]) == 3


async def test_an_interrupted_backfill_resumes_from_its_checkpoint(
    market: Market, orders: Orders, sellers
) -> None:
    sellers.connections[SELLER] = T0 + timedelta(days=2)
    _history(market, 12)
    options = BackfillOptions(page_size=5, run_id="r1")
    search = market.ml.search_orders
    failed: list[bool] = []

    async def second_page_fails_once(**kwargs):
        if kwargs["offset"] == 5 and not failed:
            failed.append(True)
            msg = "ML answered 503"
            raise MlUnavailable(msg)
        return await search(**kwargs)

    market.ml.search_orders = second_page_fails_once  # type: ignore[method-assign]
    with pytest.raises(MlUnavailable):
        await backfill(SELLER, orders, sellers, options=options)
    assert sellers.backfills[SELLER].offset == 5
    state = await backfill(SELLER, orders, sellers, options=options)
    assert (state.phase, state.offset) == ("done", 12)
    assert len(types(orders)) == 12


async def test_orders_confirmed_mid_backfill_pass_over_no_other_order(
    market: Market, orders: Orders, sellers
) -> None:
    # A seller's search sorts by date_closed (FACTS.md 4.3): a payment moves an order to
    # the newest end. Read oldest first, the order after it slid back across the page
    # boundary and was never cached. The orders paid meanwhile are their webhooks' job.
    sellers.connections[SELLER] = T0 + timedelta(days=2)
    _history(market, 12)
    unpaid = [o.id for o in market.ml.orders.values() if o.status == "confirmed"]
    search = market.ml.search_orders

    async def paid_after_the_first_page(**kwargs):
        page = await search(**kwargs)
        if kwargs["offset"] == 0:
            for order_id in unpaid:
                market.pay(order_id, at=T0 + timedelta(days=1))
        return page

    market.ml.search_orders = paid_after_the_first_page  # type: ignore[method-assign]
    await backfill(SELLER, orders, sellers, options=BackfillOptions(page_size=5, run_id="r1"))

    records = store(orders).records
    cached = {o for o in market.ml.orders if o in records and records[o].order is not None}
    assert len(unpaid) >= 4
    assert set(market.ml.orders) - set(unpaid) <= cached


async def test_a_redelivered_seller_event_does_not_run_its_backfill_again(
    market: Market, orders: Orders, sellers
) -> None:
    _history(market, 3)
    options = BackfillOptions(run_id="r1")
    await backfill(SELLER, orders, sellers, options=options)
    calls = len(market.ml.calls)
    await backfill(SELLER, orders, sellers, options=options)
    assert len(market.ml.calls) == calls


async def test_a_seller_connecting_during_a_rebuilds_backfill_is_backfilled_once(
    market: Market, orders: Orders, sellers
) -> None:
    sellers.connections[SELLER] = T0 + timedelta(days=2)
    _history(market, 12)
    search = market.ml.search_orders
    connected: list[BaseException] = []

    async def a_connection_arrives_mid_run(**kwargs):
        if kwargs["offset"] == 5 and not connected:
            with pytest.raises(BackfillBusy) as busy:  # retried later, parked
                await backfill(SELLER, orders, sellers, options=connection)
            connected.append(busy.value)
        return await search(**kwargs)

    market.ml.search_orders = a_connection_arrives_mid_run  # type: ignore[method-assign]
    connection = BackfillOptions(page_size=5, run_id="seller.connected", not_before=T0)
    await backfill(SELLER, orders, sellers, options=BackfillOptions(page_size=5, run_id="rb"))
    assert connected
    searches = len([c for c in market.ml.calls if c[0] == "search_orders"])
    # The connection's retry: the rebuild's run, done after it connected, covers it.
    state = await backfill(SELLER, orders, sellers, options=connection)
    assert (state.run_id, state.phase, state.offset) == ("rb", "done", 12)
    assert len([c for c in market.ml.calls if c[0] == "search_orders"]) == searches == 3
    assert types(orders) == ["order.snapshot"] * 12
    # A later connection is news: it backfills again.
    assert state.finished_at is not None
    later = BackfillOptions(
        page_size=5, run_id="again", not_before=state.finished_at + timedelta(seconds=1)
    )
    assert (await backfill(SELLER, orders, sellers, options=later)).run_id == "again"


async def test_its_ml_requests_wait_in_the_limiters_bulk_lane(
    market: Market, orders: Orders, sellers
) -> None:
    _history(market, 3)
    search = market.ml.search_orders
    lanes: list[Lane] = []

    async def noting_the_lane(**kwargs):
        lanes.append(current_lane())
        return await search(**kwargs)

    market.ml.search_orders = noting_the_lane  # type: ignore[method-assign]
    await backfill(SELLER, orders, sellers, options=BackfillOptions(page_size=5, run_id="r1"))
    assert lanes == [Lane.BULK]
    assert current_lane() is Lane.LIVE


async def test_an_oldest_first_checkpoint_starts_its_pages_over_newest_first(
    market: Market, orders: Orders, sellers
) -> None:
    sellers.connections[SELLER] = T0 + timedelta(days=2)
    _history(market, 12)
    old = BackfillState(
        seller_id=SELLER, run_id="r1", created_from=T0 - timedelta(days=30), offset=10
    )
    await sellers.save(old)
    state = await backfill(
        SELLER, orders, sellers, options=BackfillOptions(page_size=5, run_id="r1")
    )
    assert (state.phase, state.offset, state.newest_first) == ("done", 12, True)
    assert len(types(orders)) == 12  # every order, not the 2 past the old offset
