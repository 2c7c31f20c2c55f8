"""The living marketplace: seeded data plus the changes that make it move.

Each ML resource family lives in its own module under ``peepers_sandbox.market``; this
class composes them and seeds the data (the same seed gives byte-identical data).
"""

from __future__ import annotations

from peepers_sandbox.clock import Clock
from peepers_sandbox.config import DEMO_SELLER_ID, MarketplaceConfig
from peepers_sandbox.errors import bad_request
from peepers_sandbox.market.claims import Claims
from peepers_sandbox.market.core import DAY_MS, FIRST_BUYER_ID, SEED_EPOCH_MS, Json, id_param
from peepers_sandbox.market.messages import Messages
from peepers_sandbox.market.questions import ANSWERS, Questions


class Marketplace(Claims, Messages, Questions):
    def __init__(self, cfg: MarketplaceConfig, clock: Clock) -> None:
        super().__init__(cfg, clock)
        self._seed()

    # ------------------------------------------------------------------ seeding
    def _seed(self) -> None:
        cfg = self.cfg
        self._now_ms = SEED_EPOCH_MS - 400 * DAY_MS
        for i in range(cfg.sellers):
            self._add_user(DEMO_SELLER_ID + i, seller=True, index=i)
        for j in range(cfg.buyers):
            self._add_user(FIRST_BUYER_ID + j, seller=False, index=j)
        for seller_id in self.sellers:
            for _ in range(cfg.items_per_seller):
                self.new_item(seller_id)
        self._now_ms = SEED_EPOCH_MS - 60 * DAY_MS
        for seller_id in self.sellers:
            if not self.items_by_seller[seller_id]:
                continue
            for _ in range(cfg.orders_per_seller):
                order = self.new_order(seller_id=seller_id)
                roll = self.rng.random()
                if roll < 0.8:
                    self.pay_order(order["id"])
                    if roll < 0.6:
                        self.ship(order["id"])
                    if roll < 0.45:
                        self.deliver(order["id"])
                elif roll < 0.9:
                    self.cancel_order(order["id"])
                if self.rng.random() < 0.4:
                    self.new_message(order_id=order["id"])
            for _ in range(cfg.questions_per_seller):
                question = self.new_question(seller_id=seller_id)
                if self.rng.random() < 0.6:
                    self.answer_question(question["id"], self.rng.choice(ANSWERS), seller_id)
            paid = [
                o for o in self.orders_by_seller[seller_id] if self.orders[o]["status"] == "paid"
            ]
            for order_id in paid[: cfg.claims_per_seller]:
                self.new_claim(order_id=order_id)
        self._now_ms = None

    # ------------------------------------------------------------------ silent changes
    def silent_change(
        self,
        *,
        item_id: str | None = None,
        order_id: int | None = None,
        question_id: int | None = None,
    ) -> Json:
        """Change one resource as ML would, but send no notification (drift audits).

        ML's docs say invisible internal changes do notify; the reverse (a change that
        never reaches the callback) is what a drift audit must catch, so this is the
        sandbox's way to make one. Returns ``{"resource", "changed": {field: [old, new]}}``.
        """
        given = [
            k
            for k, v in (("item_id", item_id), ("order_id", order_id), ("question_id", question_id))
            if v is not None
        ]
        if len(given) != 1:
            msg = "Give exactly one of item_id, order_id or question_id"
            raise bad_request(msg)
        if item_id is not None:
            return self._silent_item(self.item(str(item_id)))
        if order_id is not None:
            return self._silent_order(self.order(id_param("order_id", order_id)))
        return self._silent_question(self.question(id_param("question_id", question_id)))
