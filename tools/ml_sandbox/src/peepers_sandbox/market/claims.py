"""Claims (mediations) opened on orders."""

from __future__ import annotations

from peepers_sandbox.clock import iso_brt
from peepers_sandbox.errors import SandboxError, bad_request
from peepers_sandbox.market.core import Json
from peepers_sandbox.market.orders import Orders


class Claims(Orders):
    # ------------------------------------------------------------------ claims
    def new_claim(self, *, order_id: int | None = None) -> Json:
        if order_id is None:
            seller_id = self.rng.choice(self.sellers)
            candidates = [
                o
                for o in self.orders_by_seller[seller_id][-200:]
                if self.orders[o]["status"] == "paid"
            ]
            if not candidates:
                msg = "No paid order to claim"
                raise bad_request(msg)
            order_id = self.rng.choice(candidates)
        order = self.order(order_id)
        stamp = iso_brt(self._stamp())
        claim_id = self._next_claim
        self._next_claim += self.rng.randint(1, 97)
        seller_id, buyer_id = order["seller"]["id"], order["buyer"]["id"]
        reason = self.rng.choice(["PNR3430", "PDD9549", "PDD9939"])
        claim: Json = {
            "id": claim_id,
            "resource_id": order_id,
            "status": "opened",
            "type": "mediations",
            "stage": "claim",
            "parent_id": None,
            "resource": "order",
            "reason_id": reason,
            "fulfilled": True,
            "quantity_type": "total",
            "claimed_quantity": order["order_items"][0]["quantity"],
            "claim_version": 2.0,
            "players": [
                {
                    "role": "complainant",
                    "type": "buyer",
                    "user_id": buyer_id,
                    "available_actions": [],
                },
                {
                    "role": "respondent",
                    "type": "seller",
                    "user_id": seller_id,
                    "available_actions": [
                        {
                            "action": "send_message_to_complainant",
                            "mandatory": False,
                            "due_date": None,
                        },
                        {"action": "refund", "mandatory": False, "due_date": None},
                    ],
                },
            ],
            "resolution": None,
            "site_id": self.site_id,
            "date_created": stamp,
            "last_updated": stamp,
            "related_entities": [],
        }
        self.claims[claim_id] = claim
        self.claims_by_seller[seller_id].append(claim_id)
        order["mediations"] = [*order["mediations"], {"id": claim_id}]
        self._touch_order(order)
        self._emit("post_purchase", seller_id, f"/post-purchase/v1/claims/{claim_id}", ["claims"])
        return claim

    def claim(self, claim_id: int) -> Json:
        claim = self.claims.get(claim_id)
        if claim is None:
            raise SandboxError(404, "business_logic_error", "Resource not found")
        return claim
