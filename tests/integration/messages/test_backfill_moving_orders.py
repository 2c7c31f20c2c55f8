"""The conversations backfill while orders are confirmed under it (real sandbox and Redis).

A seller's order search sorts by ``date_closed`` (FACTS.md 4.3), so an order confirmed
while the backfill pages through the search moves to the newest end. Read oldest first,
the order after it slid back across the page boundary and was never read: `make check`
found two packs not mirrored so (session 10).
"""

from __future__ import annotations

from typing import Any, cast

import redis.asyncio as aioredis

from peepers_common.ml import HttpMlApi
from peepers_common.ml.models import MlOrderPage
from peepers_messages.backfill import BackfillOptions, backfill
from peepers_messages.ports import MessagesSource
from peepers_sandbox.app import run_sandbox
from peepers_sandbox.config import MarketplaceConfig, NotifierConfig, SandboxConfig
from peepers_sandbox.market.orders import PAYABLE
from peepers_sandbox.marketplace import Marketplace
from tests.integration.messages.harness import wired
from tests.support import ml_client

PAGE = 3


class ConfirmingAfterFirstPage:
    """The ML client, with the seller's unconfirmed orders paid once a search page was read.

    The pages before and after the payments see the search in two orders: as a
    marketplace that takes payments while a backfill runs.
    """

    def __init__(self, ml: HttpMlApi, market: Marketplace, seller: int) -> None:
        self._ml = ml
        self._market = market
        self._seller = seller
        self.paid: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ml, name)

    async def search_orders(self, **kwargs: Any) -> MlOrderPage:
        page = await self._ml.search_orders(**kwargs)
        if not self.paid:
            orders = self._market.orders
            self.paid = [
                o for o in self._market.orders_by_seller[self._seller]
                if orders[o]["status"] in PAYABLE
            ]  # fmt: skip
            for order_id in self.paid:
                self._market.pay_order(order_id)
        return page


async def test_every_conversation_is_mirrored_though_orders_are_confirmed_mid_backfill(
    redis: aioredis.Redis,
) -> None:
    config = SandboxConfig(
        marketplace=MarketplaceConfig(
            sellers=1,
            items_per_seller=10,
            orders_per_seller=30,
            questions_per_seller=0,
            claims_per_seller=0,
            buyers=10,
        ),
        notifier=NotifierConfig(enabled=False),
    )
    async with run_sandbox(config) as sandbox:
        market = sandbox.state.market
        seller = market.sellers[0]
        # Every conversation that can take a message gets one: a pack passed over shows.
        for order_id in market.orders_by_seller[seller]:
            if market.conversation_status(market.orders[order_id]["pack_id"])["substatus"] is None:
                market.new_message(order_id=order_id)
        with_messages = {
            pack_id for pack_id, messages in market.messages_by_pack.items() if messages
        }
        # The cases this marketplace (seeded) holds, oldest first as ML sorts them: an
        # unconfirmed order on the first page, so that its payment slides the order
        # after that page back across the boundary, and that order has a conversation.
        # Newest first, the unconfirmed orders are unread when paid: they jump ahead.
        oldest_first = sorted(
            market.orders_by_seller[seller],
            key=lambda o: (market.orders[o]["date_closed"] or market.orders[o]["date_created"], o),
        )
        assert any(market.orders[o]["status"] in PAYABLE for o in oldest_first[:PAGE])
        assert market.orders[oldest_first[PAGE]]["pack_id"] in with_messages
        async with ml_client(sandbox, [seller]) as (ml, _):
            moving = ConfirmingAfterFirstPage(ml, market, seller)
            deps, checkpoints = wired(cast("MessagesSource", moving), redis)

            state = await backfill(
                seller, deps, checkpoints, BackfillOptions(run_id="r", page_size=PAGE)
            )

        assert {market.orders[o]["pack_id"] for o in moving.paid} & with_messages
        assert state.phase == "done"
        mirrored = {p for p in with_messages if await deps.mirror.conversation(p) is not None}
        assert sorted(with_messages - mirrored) == []
        assert len(with_messages) > 2 * PAGE
