"""Post-sale messages: one conversation per pack (FACTS.md §5.2, §11).

A conversation is ``active`` or ``blocked``; the substatus says why (FACTS.md §11):
``blocked_by_buyer`` (the buyer blocked the seller), ``blocked_by_mediation`` (a claim
of the pack is in dispute), ``blocked_by_fulfillment`` (a Full shipment not yet
delivered: ML talks to the buyer) and ``blocked_by_time`` (30 days after the delivery,
or after the cancellation). Nobody can post into a blocked conversation, and a seller
may only start one with a reason (``/messages/action_guide``).
"""

from __future__ import annotations

from datetime import datetime

from peepers_sandbox.clock import iso_z
from peepers_sandbox.errors import SandboxError, bad_request, not_found
from peepers_sandbox.market.core import DAY_MS, Json
from peepers_sandbox.market.orders import Orders

_BUYER_MESSAGES = [
    "Olá, quando será enviado meu pedido?",
    "Recebi o produto, obrigado!",
    "O produto veio com defeito, como faço a troca?",
    "Pode enviar a nota fiscal?",
]
_SELLER_MESSAGES = [
    "Olá! Seu pedido já foi despachado.",
    "Obrigado pela compra!",
    "Segue a nota fiscal em anexo.",
]


BLOCK_AFTER_MS = 30 * DAY_MS
# The reasons a seller may start a conversation with (ML's action guide options).
SELLER_REASONS = (
    "REQUEST_VARIANTS",
    "REQUEST_BILLING_INFO",
    "SEND_INVOICE_LINK",
    "DELIVERY_PROMISE",
    "OTHER",
)
# A message's moderation outcome: (message status, moderation status, reason, by).
MODERATIONS: dict[str, tuple[str, str, str, str]] = {
    "clean": ("available", "clean", "none", "none"),
    "rejected": ("rejected", "rejected", "out_of_place_language", "ml"),
    "pending": ("moderated", "pending", "automatic_review", "ml"),
    "non_moderated": ("available", "non_moderated", "none", "none"),
}


def _ms(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


class Messages(Orders):
    def new_message(
        self,
        *,
        order_id: int | None = None,
        pack_id: int | None = None,
        text: str | None = None,
        from_role: str = "buyer",
        moderation: str = "clean",
        attachments: int = 0,
        reason: str | None = None,
    ) -> Json:
        """A message into a pack's conversation, refused as ML refuses it.

        A blocked conversation takes no message; a seller's first message needs a
        ``reason`` (one of ``SELLER_REASONS``).
        """
        if pack_id is None:
            if order_id is None:
                order_id = self.rng.choice(
                    self.orders_by_seller[self.rng.choice(self.sellers)] or [0]
                )
            pack_id = self.order(order_id)["pack_id"]
        seller_id, buyer_id = self.pack_parties(pack_id)
        if from_role not in ("buyer", "seller") or moderation not in MODERATIONS:
            msg = f"from_role is buyer or seller; moderation is one of {', '.join(MODERATIONS)}"
            raise bad_request(msg)
        if not 0 <= attachments <= 5:
            msg = "attachments must be between 0 and 5"
            raise bad_request(msg)
        conversation = self.conversation_status(pack_id)
        if conversation["status"] == "blocked":
            msg = f"The conversation is blocked: {conversation['substatus']}"
            raise SandboxError(403, "blocked_conversation", msg)
        flags = self.pack_flags[pack_id]
        if from_role == "seller" and "buyer_wrote" not in flags and "seller_started" not in flags:
            if reason not in SELLER_REASONS:
                msg = "A seller can only start a conversation with a reason (action guide option)"
                raise SandboxError(403, "seller_cannot_initiate", msg)
            flags.add("seller_started")
        flags.add(f"{from_role}_wrote")
        from_id, to_id = (buyer_id, seller_id) if from_role == "buyer" else (seller_id, buyer_id)
        if text is None:
            text = self.rng.choice(_BUYER_MESSAGES if from_role == "buyer" else _SELLER_MESSAGES)
        stamp = iso_z(self._stamp())
        message_id = self._hex(32)
        sender = self.users[from_id]
        status, moderation_status, moderation_reason, moderated_by = MODERATIONS[moderation]
        message: Json = {
            "id": message_id,
            "site_id": self.site_id,
            "client_id": None,
            "from": {
                "user_id": str(from_id),
                "email": sender["email"],
                "name": f"{sender['first_name']} {sender['last_name']}",
            },
            "to": {"user_id": str(to_id)},
            "status": status,
            "text": text,
            "message_date": {
                "received": stamp,
                "available": stamp if status == "available" else None,
                "notified": stamp if status == "available" else None,
                "created": stamp,
                "read": None,
            },
            "message_moderation": {
                "status": moderation_status,
                "reason": moderation_reason,
                "by": moderated_by,
                "moderation_date": stamp if moderated_by != "none" else None,
            },
            "message_attachments": [
                {
                    "filename": f"{from_id}_{self._hex(8)}-{n}.pdf",
                    "original_filename": f"nota-fiscal-{n + 1}.pdf",
                    "type": "application/pdf",
                    "size": 20_000 + 1_000 * n,
                    "potential_security_threat": False,
                    "creation_date": stamp,
                }
                for n in range(attachments)
            ],
            "message_resources": [
                {"id": str(pack_id), "name": "packs"},
                {"id": str(seller_id), "name": "seller"},
            ],
            "last_updated": stamp,
        }
        self.messages[message_id] = message
        self.messages_by_pack[pack_id].append(message_id)
        self.message_pack[message_id] = pack_id
        if status == "available":
            per_pack = self.unread.setdefault(to_id, {})
            per_pack[pack_id] = per_pack.get(pack_id, 0) + 1
        self._emit("messages", seller_id, f"/messages/{message_id}", ["created"])
        return message

    def mark_read(self, message_id: str, reader_id: int) -> None:
        message = self.messages[message_id]
        if message["message_date"]["read"] is None and message["to"]["user_id"] == str(reader_id):
            stamp = iso_z(self._stamp())
            message["message_date"]["read"] = stamp
            message["last_updated"] = stamp
            pack_id = self.message_pack[message_id]
            per_pack = self.unread.get(reader_id, {})
            # Only available messages were counted as unread.
            if message["status"] == "available":
                left = per_pack.pop(pack_id, 0) - 1
                if left > 0:
                    per_pack[pack_id] = left
            seller_id = self.pack_parties(pack_id)[0]
            self._emit("messages", seller_id, f"/messages/{message_id}", ["read"])

    def pack_parties(self, pack_id: int) -> tuple[int, int]:
        pack = self.packs.get(pack_id)
        if pack is None:
            msg = f"Pack {pack_id} not found"
            raise not_found(msg)
        order = self.orders[pack["orders"][0]["id"]]
        return order["seller"]["id"], order["buyer"]["id"]

    def block_conversation(
        self, *, pack_id: int | None = None, order_id: int | None = None
    ) -> Json:
        """The buyer blocks the seller: ``blocked_by_buyer`` from now on."""
        if pack_id is None:
            if order_id is None:
                msg = "Give pack_id or order_id"
                raise bad_request(msg)
            pack_id = self.order(order_id)["pack_id"]
        self.pack(pack_id)
        self.buyer_blocks.setdefault(pack_id, self._stamp())
        return self.conversation_status(pack_id)

    def conversation_status(self, pack_id: int) -> Json:
        """``conversation_status`` of a pack, worked out from the pack's state when asked."""
        seller_id, _ = self.pack_parties(pack_id)
        pack = self.packs[pack_id]
        flags = self.pack_flags[pack_id]
        shipment = self.shipments[pack["shipment"]["id"]]
        open_claims = [
            self.claims[m["id"]]
            for o in pack["orders"]
            for m in self.orders[o["id"]]["mediations"]
            if self.claims[m["id"]]["status"] == "opened"
        ]
        status, substatus, since = "active", None, None
        disputed = [c for c in open_claims if c["stage"] == "dispute"]
        if pack_id in self.buyer_blocks:
            substatus, since = "blocked_by_buyer", self.buyer_blocks[pack_id]
        elif disputed:
            substatus, since = "blocked_by_mediation", _ms(disputed[0]["last_updated"])
        elif "fulfillment" in flags and shipment["status"] not in ("delivered", "cancelled"):
            substatus, since = "blocked_by_fulfillment", _ms(shipment["date_created"])
        elif shipment["status"] in ("delivered", "not_delivered", "cancelled"):
            ended = _ms(self.shipment_history[shipment["id"]][-1]["date"])
            if self.now_ms() >= ended + BLOCK_AFTER_MS:
                substatus, since = "blocked_by_time", ended + BLOCK_AFTER_MS
        if substatus is not None:
            status = "blocked"
        return {
            "path": f"/packs/{pack_id}/seller/{seller_id}",
            "status": status,
            "substatus": substatus,
            "status_date": iso_z(since) if since is not None else None,
            "status_update_allowed": False,
            "claim_id": open_claims[0]["id"] if open_claims else None,
            "shipping_id": shipment["id"] if substatus == "blocked_by_fulfillment" else None,
        }

    def unread_for(self, user_id: int, role: str) -> list[Json]:
        """Conversations with unread messages for ``user_id`` as ``role`` (at most 500)."""
        results: list[Json] = []
        for pack_id, count in self.unread.get(user_id, {}).items():
            seller_id, _ = self.pack_parties(pack_id)
            if (seller_id == user_id) == (role == "seller"):
                results.append(
                    {"resource": f"/packs/{pack_id}/sellers/{seller_id}", "count": count}
                )
            if len(results) == 500:
                break
        return results
