"""Webhook-driven ML calls go before backfill calls in this process.

Every replica shares ML's budget through the outbound limiter
(`peepers_common.ml.OutboundLimiter`); within one worker, a backfill call waits while any
webhook-driven call is in flight, so a seller's live orders are not queued behind their
history. Across replicas the limiter is first come, first served: a backfill runs on one
replica (the one holding the seller's ``peepers.sellers.v1`` partition) and takes at
most one slot at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TypeVar

from peepers_common.ml.models import (
    MlOrder,
    MlOrderPage,
    MlPack,
    MlPayment,
    MlShipment,
    MlShipmentStep,
    MlUser,
)
from peepers_orders.ports import OrderSource

T = TypeVar("T")


class UrgentFirst:
    """A gate: urgent calls pass at once; background calls wait until none is in flight."""

    def __init__(self) -> None:
        self._urgent = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @asynccontextmanager
    async def urgent(self) -> AsyncIterator[None]:
        self._urgent += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._urgent -= 1
            if self._urgent == 0:
                self._idle.set()

    async def run(self, call: Callable[[], Awaitable[T]], *, urgent: bool) -> T:
        if urgent:
            async with self.urgent():
                return await call()
        await self._idle.wait()
        return await call()


class PrioritizedSource:
    """An `OrderSource` whose calls go through the gate, as urgent or background."""

    def __init__(self, inner: OrderSource, gate: UrgentFirst, *, urgent: bool) -> None:
        self._inner = inner
        self._gate = gate
        self._urgent = urgent

    async def get_order(self, order_id: int, *, seller_id: int) -> MlOrder:
        return await self._gate.run(
            lambda: self._inner.get_order(order_id, seller_id=seller_id), urgent=self._urgent
        )

    async def get_shipment(self, shipment_id: int, *, seller_id: int) -> MlShipment:
        return await self._gate.run(
            lambda: self._inner.get_shipment(shipment_id, seller_id=seller_id),
            urgent=self._urgent,
        )

    async def get_shipment_history(
        self, shipment_id: int, *, seller_id: int
    ) -> list[MlShipmentStep]:
        return await self._gate.run(
            lambda: self._inner.get_shipment_history(shipment_id, seller_id=seller_id),
            urgent=self._urgent,
        )

    async def get_pack(self, pack_id: int, *, seller_id: int) -> MlPack:
        return await self._gate.run(
            lambda: self._inner.get_pack(pack_id, seller_id=seller_id), urgent=self._urgent
        )

    async def get_payment(self, payment_id: int, *, seller_id: int) -> MlPayment:
        return await self._gate.run(
            lambda: self._inner.get_payment(payment_id, seller_id=seller_id), urgent=self._urgent
        )

    async def get_me(self, *, seller_id: int) -> MlUser:
        return await self._gate.run(
            lambda: self._inner.get_me(seller_id=seller_id), urgent=self._urgent
        )

    async def search_orders(
        self,
        *,
        seller_id: int,
        offset: int = 0,
        limit: int = 50,
        sort: str = "date_desc",
        created_from: datetime | None = None,
        statuses: Sequence[str] = (),
    ) -> MlOrderPage:
        return await self._gate.run(
            lambda: self._inner.search_orders(
                seller_id=seller_id,
                offset=offset,
                limit=limit,
                sort=sort,
                created_from=created_from,
                statuses=statuses,
            ),
            urgent=self._urgent,
        )
