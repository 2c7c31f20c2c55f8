"""What the sandbox holds for one seller, whole: the truth a mirror is compared against.

ML's public API would make a comparison call it as a seller does (paged searches that
hide cancelled orders, ...); this reads the sandbox's own state instead. Served on the
admin API (``GET /_admin/sellers/{user_id}/state``) for ``make check``, and beside the
sandbox by the proof's host (``peepers_proof.sandbox_host``).
"""

from __future__ import annotations

import json
from typing import Any

from peepers_sandbox.marketplace import Marketplace


def seller_state(market: Marketplace, seller_id: int) -> dict[str, Any]:
    """Everything the sandbox holds for the seller.

    Its items (as the owner sees them), orders with their shipments, questions,
    conversations (message ids, unread count) and claims.
    """
    items = {
        item_id: json.loads(market.item_json(item_id, owner=True))
        for item_id in market.items_by_seller.get(seller_id, [])
    }
    orders = []
    for order_id in market.orders_by_seller.get(seller_id, []):
        order = market.orders[order_id]
        orders.append({"order": order, "shipment": market.shipments[order["shipping"]["id"]]})
    questions = [market.questions[q] for q in market.questions_by_seller.get(seller_id, [])]
    conversations = [
        {
            "pack_id": pack_id,
            "message_ids": list(ids),
            "unread": market.unread.get(seller_id, {}).get(pack_id, 0),
        }
        for pack_id, ids in market.messages_by_pack.items()
        if ids and market.pack_parties(pack_id)[0] == seller_id
    ]
    claims = [market.claims[c] for c in market.claims_by_seller.get(seller_id, [])]
    return {
        "seller_id": seller_id,
        "items": items,
        "orders": orders,
        "questions": questions,
        "conversations": conversations,
        "claims": claims,
    }
