"""Claims opened on orders, from ``opened`` to ``closed`` (FACTS.md §5.3, §11).

A claim starts in stage ``claim`` (``none`` for the cancellation types), may escalate
to ``dispute`` (ML's mediator joins), go ``stale`` without answers, close with a
``resolution``, and be reopened by the buyer (``recontact``). Changes to the claim
notify ``post_purchase`` with ``actions: ["claims"]``; a player's action notifies
``["claims_actions"]``.
"""

from __future__ import annotations

from peepers_sandbox.clock import iso_brt
from peepers_sandbox.errors import SandboxError, bad_request
from peepers_sandbox.market.core import DAY_MS, Json
from peepers_sandbox.market.orders import SHIPPABLE, Orders

MEDIATOR_ID = 999_000_001  # ML's staff in a dispute (sandbox's id)
# type -> (first stage, reason ids)
CLAIM_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "mediations": ("claim", ("PNR3430", "PDD9549", "PDD9939")),
    "returns": ("claim", ("PDD9549", "PDD9939")),
    "cancel_sale": ("none", ("CS2003",)),
    "cancel_purchase": ("none", ("CS2001",)),
}
# Actions the respondent (the seller) may take, per stage.
_SELLER_ACTIONS: dict[str, tuple[str, ...]] = {
    "claim": ("send_message_to_complainant", "refund", "allow_return", "open_dispute"),
    "dispute": ("send_message_to_mediator", "send_attachments", "refund"),
    "recontact": ("send_message_to_complainant", "refund"),
    "stale": ("send_message_to_complainant", "refund"),
    "none": ("refund",),
}
_RESOLUTIONS = {"complainant": "payment_refunded", "respondent": "worked_out_with_seller"}
_DUE_MS = 3 * DAY_MS


def _actions(stage: str, stamp_ms: int) -> list[Json]:
    due = iso_brt(stamp_ms + _DUE_MS)
    return [
        {"action": a, "mandatory": a == "send_message_to_mediator", "due_date": due}
        for a in _SELLER_ACTIONS[stage]
    ]


class Claims(Orders):
    def new_claim(
        self, *, order_id: int | None = None, type: str = "mediations", reason_id: str | None = None
    ) -> Json:
        if type not in CLAIM_TYPES:
            msg = f"type must be one of {', '.join(CLAIM_TYPES)}"
            raise bad_request(msg)
        if order_id is None:
            order_id = self._claimable_order()
        order = self.order(order_id)
        if order["status"] not in SHIPPABLE:
            msg = f"Order {order_id} is {order['status']}; only a paid order can be claimed"
            raise bad_request(msg, "invalid_order_status")
        stage, reasons = CLAIM_TYPES[type]
        stamp_ms = self._stamp()
        stamp = iso_brt(stamp_ms)
        claim_id = self._next_claim
        self._next_claim += self.rng.randint(1, 97)
        seller_id, buyer_id = order["seller"]["id"], order["buyer"]["id"]
        claim: Json = {
            "id": claim_id,
            "resource_id": order_id,
            "status": "opened",
            "type": type,
            "stage": stage,
            "parent_id": None,
            "resource": "order",
            "reason_id": reason_id or self.rng.choice(reasons),
            "fulfilled": type != "cancel_purchase",
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
                    "available_actions": _actions(stage, stamp_ms),
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
        self.claims_by_buyer.setdefault(buyer_id, []).append(claim_id)
        self.claim_messages[claim_id] = []
        order["mediations"] = [*order["mediations"], {"id": claim_id}]
        self._touch_order(order)
        self._touch_claim(claim, None)
        return claim

    def _claimable_order(self) -> int:
        seller_id = self.rng.choice(self.sellers)
        candidates = [
            o
            for o in self.orders_by_seller[seller_id][-200:]
            if self.orders[o]["status"] in SHIPPABLE and not self.orders[o]["mediations"]
        ]
        if not candidates:
            msg = "No paid order to claim"
            raise bad_request(msg)
        return int(self.rng.choice(candidates))

    def claim(self, claim_id: int) -> Json:
        claim = self.claims.get(claim_id)
        if claim is None:
            raise SandboxError(404, "business_logic_error", "Resource not found")
        return claim

    def _touch_claim(self, claim: Json, stage: str | None, action: bool = False) -> None:
        """Stamp the claim, move it to ``stage`` (refreshing the seller's actions), notify."""
        stamp_ms = self._stamp()
        claim["last_updated"] = iso_brt(stamp_ms)
        if stage is not None:
            claim["stage"] = stage
        respondent = claim["players"][1]
        respondent["available_actions"] = (
            _actions(claim["stage"], stamp_ms) if claim["status"] == "opened" else []
        )
        seller_id = respondent["user_id"]
        resource = f"/post-purchase/v1/claims/{claim['id']}"
        self._emit("post_purchase", seller_id, resource, ["claims_actions" if action else "claims"])

    def _opened(self, claim_id: int, *stages: str) -> Json:
        claim = self.claim(claim_id)
        if claim["status"] != "opened" or (stages and claim["stage"] not in stages):
            msg = f"Claim {claim_id} is {claim['status']} in stage {claim['stage']}"
            raise bad_request(msg, "invalid_claim_status")
        return claim

    def escalate_claim(self, claim_id: int) -> Json:
        """The claim goes to ``dispute``: ML's mediator joins and the conversation blocks."""
        claim = self._opened(claim_id, "claim", "recontact", "stale")
        claim["players"].append(
            {
                "role": "mediator",
                "type": "internal",
                "user_id": MEDIATOR_ID,
                "available_actions": [],
            }
        )
        self._touch_claim(claim, "dispute")
        return claim

    def stale_claim(self, claim_id: int) -> Json:
        """Nobody answered for days: stage ``stale``."""
        claim = self._opened(claim_id, "claim", "recontact")
        self._touch_claim(claim, "stale")
        return claim

    def close_claim(
        self, claim_id: int, benefited: str = "complainant", reason: str | None = None
    ) -> Json:
        """Close with a ``resolution``; the mediator closes a dispute, else the respondent."""
        claim = self._opened(claim_id)
        if benefited not in _RESOLUTIONS:
            msg = "benefited must be complainant or respondent"
            raise bad_request(msg)
        claim["status"] = "closed"
        claim["resolution"] = {
            "reason": reason or _RESOLUTIONS[benefited],
            "date_created": iso_brt(self._stamp()),
            "benefited": [benefited],
            "closed_by": "mediator" if claim["stage"] == "dispute" else "respondent",
            "applied_coverage": False,
        }
        self._touch_claim(claim, None)
        self._touch_order(self.orders[claim["resource_id"]])
        return claim

    def recontact_claim(self, claim_id: int) -> Json:
        """The buyer comes back after a closed claim: opened again in stage ``recontact``."""
        claim = self.claim(claim_id)
        if claim["status"] != "closed" or claim["type"] not in ("mediations", "returns"):
            msg = f"Claim {claim_id} is {claim['status']}; only a closed claim is recontacted"
            raise bad_request(msg, "invalid_claim_status")
        claim["status"], claim["resolution"] = "opened", None
        self._touch_claim(claim, "recontact")
        self._touch_order(self.orders[claim["resource_id"]])
        return claim

    def claim_action(self, claim_id: int, action: str, text: str | None = None) -> Json:
        """The seller acts on an opened claim; each action notifies ``claims_actions``.

        ``refund`` refunds the order and closes the claim for the complainant;
        ``open_dispute`` escalates; a ``send_message_*`` adds a claim message.
        """
        claim = self._opened(claim_id)
        allowed = [a["action"] for a in claim["players"][1]["available_actions"]]
        if action not in allowed:
            msg = f"Action {action} is not available; available: {', '.join(allowed)}"
            raise bad_request(msg, "invalid_action")
        if action.startswith("send_message_to_"):
            receiver = action.removeprefix("send_message_to_")
            self._claim_message(claim, "respondent", receiver, text or "Olá, vamos resolver.")
        self._touch_claim(claim, None, action=True)
        if action == "refund":
            order = self.orders[claim["resource_id"]]
            if order["status"] in (*SHIPPABLE, "pending_cancel"):
                self.refund(order["id"])
            return self.close_claim(claim_id, "complainant", "payment_refunded")
        if action == "open_dispute":
            return self.escalate_claim(claim_id)
        return claim

    def _claim_message(self, claim: Json, sender: str, receiver: str, text: str) -> None:
        stamp = iso_brt(self._stamp())
        self.claim_messages[claim["id"]].append(
            {
                "sender_role": sender,
                "receiver_role": receiver,
                "message": text,
                "translated_message": None,
                "date_created": stamp,
                "last_updated": stamp,
                "message_date": stamp,
                "date_read": None,
                "attachments": [],
                "status": "available",
                "stage": claim["stage"],
                "message_moderation": {"status": "clean", "reason": None, "source": None},
                "repeated": False,
            }
        )

    def claim_detail(self, claim: Json) -> Json:
        """``/detail`` (FACTS.md §5.3): who must act next, and by when."""
        opened = claim["status"] == "opened"
        responsible = ("mediator" if claim["stage"] == "dispute" else "seller") if opened else None
        actions = claim["players"][1]["available_actions"]
        if not opened:
            title = "Reclamação encerrada"
        elif claim["stage"] == "dispute":
            title = "Reclamação em mediação"
        else:
            title = "Reclamação aberta"
        not_received = claim["reason_id"].startswith("PNR")
        return {
            "due_date": actions[0]["due_date"] if opened and actions else None,
            "action_responsible": responsible,
            "title": title,
            "description": f"O comprador abriu uma reclamação ({claim['reason_id']}).",
            "problem": "O produto não chegou"
            if not_received
            else "O produto é diferente ou tem defeito",
        }
