"""Scripted activity: marketplace changes at a chosen rate and mix, for benchmarks.

Each change is one of the admin events, applied to a random object in a fitting state
(a payment to an unpaid order, a delivery to a shipped one). The sequence of choices is
seeded; only its timing depends on the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

from peepers_sandbox.errors import SandboxError
from peepers_sandbox.market.messages import SELLER_REASONS
from peepers_sandbox.market.orders import LOGISTIC_TYPES, PAYABLE, SHIPPABLE
from peepers_sandbox.market.questions import ANSWERS, MODERATION
from peepers_sandbox.marketplace import Marketplace

_log = logging.getLogger(__name__)

DEFAULT_MIX: dict[str, float] = {
    "new_order": 3.0,
    "cart": 0.3,
    "payment_required": 0.3,
    "payment_in_process": 0.3,
    "partial_payment": 0.3,
    "payment": 3.0,
    "label": 1.0,
    "shipment": 2.0,
    "delivery": 2.0,
    "not_delivered": 0.2,
    "not_verified": 0.1,
    "cancellation": 0.5,
    "pending_cancel": 0.2,
    "invalid": 0.1,
    "partial_refund": 0.2,
    "refund": 0.1,
    "feedback": 0.3,
    "item_edit": 1.0,
    "price_change": 2.0,
    "stock_change": 2.0,
    "pause": 0.3,
    "reactivate": 0.3,
    "close": 0.05,
    "question": 2.0,
    "answer": 1.0,
    "question_moderation": 0.4,
    "answer_ban": 0.1,
    "message": 2.0,
    "seller_message": 0.3,
    "conversation_block": 0.1,
    "claim": 0.3,
    "claim_action": 0.3,
    "claim_dispute": 0.2,
    "claim_close": 0.2,
    "claim_recontact": 0.1,
    "claim_stale": 0.1,
}
_MESSAGE_STATUSES = ("confirmed", "paid", "partially_refunded", "cancelled")
_TICK_S = 0.01
_LOOK_BACK = 300  # recent objects are the ones still moving; a bounded look-back keeps a tick cheap
_TRIES = 12
_MODERATION_TARGETS = ("UNDER_REVIEW", "UNANSWERED", "BANNED", "DELETED", "DISABLED")
_CLAIM_TYPES = ("mediations", "mediations", "returns", "cancel_sale", "cancel_purchase")


class Activity:
    def __init__(self, market: Marketplace, seed: int) -> None:
        self.market = market
        # A simulation, not cryptography: reproducibility is the point.
        self.rng = random.Random(seed ^ 0x5EED)  # noqa: S311
        self.rate = 0.0
        self.mix = dict(DEFAULT_MIX)
        self.done: dict[str, int] = dict.fromkeys(DEFAULT_MIX, 0)
        self.skipped = 0
        self.errors = 0
        self._task: asyncio.Task[None] | None = None
        m = market
        self._actions: dict[str, Callable[[], Any]] = {
            "new_order": lambda: m.new_order(logistic_type=self._logistic()),
            "cart": lambda: m.new_cart(size=self.rng.randint(2, 3)),
            "payment_required": lambda: m.require_payment(self._order_in("confirmed")),
            "payment_in_process": lambda: m.start_payment(self._order_in("confirmed")),
            "partial_payment": self._partial_payment,
            "payment": lambda: m.pay_order(
                self._order_in(*PAYABLE), handling=self.rng.random() < 0.3
            ),
            "label": lambda: m.label_ready(self._order_in(*SHIPPABLE, shipment="handling")),
            "shipment": lambda: m.ship(self._order_in(*SHIPPABLE, shipment="ready_to_ship")),
            "delivery": lambda: m.deliver(self._order_in(*SHIPPABLE, shipment="shipped")),
            "not_delivered": lambda: m.fail_delivery(
                self._order_in(*SHIPPABLE, shipment="shipped")
            ),
            "not_verified": lambda: m.unverified_delivery(
                self._order_in(*SHIPPABLE, shipment="shipped")
            ),
            "cancellation": lambda: m.cancel_order(
                self._order_in("confirmed", "pending_cancel", "partially_paid")
            ),
            "pending_cancel": lambda: m.request_cancel(
                self._order_in("paid", shipment="ready_to_ship")
            ),
            "invalid": lambda: m.invalidate(self._order_in("confirmed", "payment_required")),
            "partial_refund": self._partial_refund,
            "refund": lambda: m.refund(self._order_in(*SHIPPABLE)),
            "feedback": lambda: m.give_feedback(
                self._order_in(*SHIPPABLE, shipment="delivered"),
                self.rng.choice(["buyer", "seller"]),
                self.rng.choice(["positive", "positive", "neutral", "negative"]),
            ),
            "item_edit": lambda: m.edit_item(self._item()),
            "price_change": lambda: m.change_price(self._item()),
            "stock_change": lambda: m.change_stock(self._item()),
            "pause": lambda: m.set_item_status(self._item("active"), "paused"),
            "reactivate": lambda: m.set_item_status(self._item("paused"), "active"),
            "close": lambda: m.set_item_status(self._item("active"), "closed"),
            "question": lambda: m.new_question(),
            "answer": self._answer,
            "question_moderation": self._moderate,
            "answer_ban": lambda: m.ban_answer(self._question_in("ANSWERED")),
            "message": lambda: m.new_message(
                order_id=self._order_in(*_MESSAGE_STATUSES),
                attachments=int(self.rng.random() < 0.1),
                moderation=self.rng.choices(
                    ["clean", "rejected", "pending", "non_moderated"], [90, 3, 3, 4]
                )[0],
            ),
            "seller_message": lambda: m.new_message(
                order_id=self._order_in(*_MESSAGE_STATUSES),
                from_role="seller",
                reason=self.rng.choice(SELLER_REASONS),
            ),
            "conversation_block": lambda: m.block_conversation(
                order_id=self._order_in(*_MESSAGE_STATUSES)
            ),
            "claim": lambda: m.new_claim(
                order_id=self._order_in(*SHIPPABLE), type=self.rng.choice(_CLAIM_TYPES)
            ),
            "claim_action": self._claim_action,
            "claim_dispute": lambda: m.escalate_claim(self._claim_in("opened", "claim")),
            "claim_close": lambda: m.close_claim(
                self._claim_in("opened", "claim", "dispute", "recontact", "stale", "none"),
                self.rng.choice(["complainant", "respondent"]),
            ),
            "claim_recontact": lambda: m.recontact_claim(self._claim_in("closed")),
            "claim_stale": lambda: m.stale_claim(self._claim_in("opened", "claim", "recontact")),
        }

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def _logistic(self) -> str:
        return self.rng.choices(LOGISTIC_TYPES, [85, 10, 5])[0]

    def _recent(self, ids: Sequence[Any]) -> Any:
        return ids[-1 - self.rng.randrange(min(len(ids), _LOOK_BACK))]

    def _seller(self) -> int:
        return int(self.rng.choice(self.market.sellers))

    def _pick(self, ids: Sequence[int], accept: Callable[[int], bool], what: str) -> int:
        """A recent id that ``accept`` takes, in a few tries; 409 when none is found."""
        for _ in range(_TRIES):
            if not ids:
                break
            candidate = int(self._recent(ids))
            if accept(candidate):
                return candidate
        raise SandboxError(409, "no_candidate", f"no {what}")

    def _order_in(self, *statuses: str, shipment: str | None = None) -> int:
        market = self.market

        def accept(order_id: int) -> bool:
            order = market.orders[order_id]
            return order["status"] in statuses and (
                shipment is None or market.shipments[order["shipping"]["id"]]["status"] == shipment
            )

        seller = self._seller()
        return self._pick(market.orders_by_seller[seller], accept, f"order {statuses}/{shipment}")

    def _question_in(self, status: str) -> int:
        questions = self.market.questions
        return self._pick(
            self.market.questions_by_seller[self._seller()],
            lambda q: questions[q]["status"] == status,
            f"question {status}",
        )

    def _claim_in(self, status: str, *stages: str) -> int:
        claims = self.market.claims

        def accept(claim_id: int) -> bool:
            claim = claims[claim_id]
            return bool(claim["status"] == status and (not stages or claim["stage"] in stages))

        return self._pick(
            self.market.claims_by_seller[self._seller()], accept, f"claim {status} {stages}"
        )

    def _item(self, status: str | None = None) -> str:
        market = self.market
        items = market.items_by_seller[self._seller()]
        for _ in range(8):
            item_id = self.rng.choice(items)
            if status is None or market.items[item_id]["status"] == status:
                return item_id
        raise SandboxError(409, "no_candidate", f"no item in state {status}")

    def _partial_payment(self) -> Any:
        order = self.market.orders[self._order_in("confirmed")]
        return self.market.pay_order(order["id"], round(order["total_amount"] / 2, 2))

    def _partial_refund(self) -> Any:
        order = self.market.orders[self._order_in(*SHIPPABLE)]
        return self.market.refund(order["id"], round(order["paid_amount"] / 4, 2) or None)

    def _answer(self) -> Any:
        question_id = self._question_in("UNANSWERED")
        seller_id = self.market.questions[question_id]["seller_id"]
        return self.market.answer_question(question_id, self.rng.choice(ANSWERS), seller_id)

    def _moderate(self) -> Any:
        target = self.rng.choice(_MODERATION_TARGETS)
        source = self.rng.choice(MODERATION[target])
        return self.market.moderate_question(self._question_in(source), target)

    def _claim_action(self) -> Any:
        claim = self.market.claims[self._claim_in("opened")]
        actions = [a["action"] for a in claim["players"][1]["available_actions"]]
        # Refunds close claims; the other actions are the common ones.
        action = self.rng.choice([a for a in actions if a != "refund"] or actions)
        return self.market.claim_action(claim["id"], action)

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
                try:
                    self.step()
                except Exception:
                    # A sandbox bug must not stop the activity silently: log it and count it.
                    self.errors += 1
                    _log.exception("activity step failed")

    def snapshot(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "rate": self.rate,
            "mix": self.mix,
            "done": self.done,
            "skipped": self.skipped,
            "errors": self.errors,
        }
