"""Post-sale messages: one conversation per pack."""

from __future__ import annotations

from peepers_sandbox.clock import iso_z
from peepers_sandbox.errors import not_found
from peepers_sandbox.market.core import Json
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


class Messages(Orders):
    # ------------------------------------------------------------------ messages
    def new_message(
        self,
        *,
        order_id: int | None = None,
        pack_id: int | None = None,
        text: str | None = None,
        from_role: str = "buyer",
    ) -> Json:
        if pack_id is None:
            if order_id is None:
                order_id = self.rng.choice(
                    self.orders_by_seller[self.rng.choice(self.sellers)] or [0]
                )
            pack_id = self.order(order_id)["pack_id"]
        pack = self.packs.get(pack_id)
        if pack is None:
            msg = f"Pack {pack_id} not found"
            raise not_found(msg)
        order = self.orders[pack["orders"][0]["id"]]
        seller_id, buyer_id = order["seller"]["id"], order["buyer"]["id"]
        from_id, to_id = (buyer_id, seller_id) if from_role == "buyer" else (seller_id, buyer_id)
        if text is None:
            text = self.rng.choice(_BUYER_MESSAGES if from_role == "buyer" else _SELLER_MESSAGES)
        stamp = iso_z(self._stamp())
        message_id = self._hex(32)
        sender = self.users[from_id]
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
            "status": "available",
            "text": text,
            "message_date": {
                "received": stamp,
                "available": stamp,
                "notified": stamp,
                "created": stamp,
                "read": None,
            },
            "message_moderation": {
                "status": "clean",
                "reason": "none",
                "by": "none",
                "moderation_date": None,
            },
            "message_attachments": [],
            "message_resources": [
                {"id": str(pack_id), "name": "packs"},
                {"id": str(seller_id), "name": "sellers"},
            ],
            "last_updated": stamp,
        }
        self.messages[message_id] = message
        self.messages_by_pack[pack_id].append(message_id)
        self.message_pack[message_id] = pack_id
        self._emit("messages", seller_id, f"/messages/{message_id}", ["created"])
        return message

    def mark_read(self, message_id: str, reader_id: int) -> None:
        message = self.messages[message_id]
        if message["message_date"]["read"] is None and message["from"]["user_id"] != str(reader_id):
            stamp = iso_z(self._stamp())
            message["message_date"]["read"] = stamp
            message["last_updated"] = stamp
            pack = self.packs[self.message_pack[message_id]]
            seller_id = self.orders[pack["orders"][0]["id"]]["seller"]["id"]
            self._emit("messages", seller_id, f"/messages/{message_id}", ["read"])

    def pack_parties(self, pack_id: int) -> tuple[int, int]:
        pack = self.packs.get(pack_id)
        if pack is None:
            msg = f"Pack {pack_id} not found"
            raise not_found(msg)
        order = self.orders[pack["orders"][0]["id"]]
        return order["seller"]["id"], order["buyer"]["id"]
