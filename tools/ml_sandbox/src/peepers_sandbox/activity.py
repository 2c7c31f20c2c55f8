"""Scripted activity: marketplace changes at a chosen rate and mix, for benchmarks.

Each change is one of the admin events, applied to a random object in a fitting state
(a payment to an unpaid order, a delivery to a shipped one). The sequence of choices is
seeded; only its timing depends on the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import Any

from peepers_sandbox.errors import SandboxError
from peepers_sandbox.marketplace import Marketplace

DEFAULT_MIX: dict[str, float] = {
    "new_order": 3.0,
    "payment": 3.0,
    "shipment": 2.0,
    "delivery": 2.0,
    "cancellation": 0.5,
    "item_edit": 1.0,
    "price_change": 2.0,
    "stock_change": 2.0,
    "pause": 0.3,
    "reactivate": 0.3,
    "close": 0.05,
    "question": 2.0,
    "message": 2.0,
    "claim": 0.3,
}
_TICK_S = 0.01


class Activity:
    def __init__(self, market: Marketplace, seed: int) -> None:
        self.market = market
        # A simulation, not cryptography: reproducibility is the point.
        self.rng = random.Random(seed ^ 0x5EED)  # noqa: S311
        self.rate = 0.0
        self.mix = dict(DEFAULT_MIX)
        self.done: dict[str, int] = dict.fromkeys(DEFAULT_MIX, 0)
        self.skipped = 0
        self._task: asyncio.Task[None] | None = None
        self._actions: dict[str, Callable[[], Any]] = {
            "new_order": lambda: market.new_order(),
            "payment": lambda: market.pay_order(self._order_in("confirmed")),
            "shipment": lambda: market.ship(self._order_in("paid", "ready_to_ship")),
            "delivery": lambda: market.deliver(self._order_in("paid", "shipped")),
            "cancellation": lambda: market.cancel_order(self._order_in("confirmed")),
            "item_edit": lambda: market.edit_item(self._item()),
            "price_change": lambda: market.change_price(self._item()),
            "stock_change": lambda: market.change_stock(self._item()),
            "pause": lambda: market.set_item_status(self._item("active"), "paused"),
            "reactivate": lambda: market.set_item_status(self._item("paused"), "active"),
            "close": lambda: market.set_item_status(self._item("active"), "closed"),
            "question": lambda: market.new_question(),
            "message": lambda: market.new_message(),
            "claim": lambda: market.new_claim(),
        }

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def _order_in(self, status: str, shipment_status: str | None = None) -> int:
        market = self.market
        orders = market.orders_by_seller[self.rng.choice(market.sellers)]
        # Recent orders are the ones still moving; a bounded look-back keeps a tick cheap.
        for _ in range(8):
            if not orders:
                break
            order = market.orders[orders[-1 - self.rng.randrange(min(len(orders), 300))]]
            if order["status"] != status:
                continue
            if (
                shipment_status
                and market.shipments[order["shipping"]["id"]]["status"] != shipment_status
            ):
                continue
            return int(order["id"])
        raise SandboxError(409, "no_candidate", f"no order in state {status}/{shipment_status}")

    def _item(self, status: str | None = None) -> str:
        market = self.market
        items = market.items_by_seller[self.rng.choice(market.sellers)]
        for _ in range(8):
            item_id = self.rng.choice(items)
            if status is None or market.items[item_id]["status"] == status:
                return item_id
        raise SandboxError(409, "no_candidate", f"no item in state {status}")

    def step(self) -> str:
        kinds = list(self.mix)
        kind = self.rng.choices(kinds, weights=[self.mix[k] for k in kinds])[0]
        try:
            self._actions[kind]()
        except SandboxError:
            # No object in a fitting state: a new order keeps the pipeline fed instead.
            self.skipped += 1
            kind = "new_order"
            self.market.new_order()
        self.done[kind] = self.done.get(kind, 0) + 1
        return kind

    def start(self, rate: float, mix: dict[str, float] | None = None) -> None:
        unknown = set(mix or {}) - set(self._actions)
        if unknown:
            msg = f"unknown activity kinds: {sorted(unknown)}"
            raise SandboxError(400, "bad_request", msg)
        if mix:
            self.mix = {k: v for k, v in mix.items() if v > 0}
        self.rate = rate
        if not self.running and rate > 0:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self.rate = 0.0
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        credit = 0.0
        last = loop.time()
        while True:
            await asyncio.sleep(_TICK_S)
            now = loop.time()
            credit = min(credit + (now - last) * self.rate, self.rate)  # no burst after a stall
            last = now
            while credit >= 1.0:
                credit -= 1.0
                self.step()

    def snapshot(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "rate": self.rate,
            "mix": self.mix,
            "done": self.done,
            "skipped": self.skipped,
        }
