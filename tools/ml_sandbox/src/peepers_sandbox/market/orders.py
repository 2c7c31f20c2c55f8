"""Orders with their payments, packs and shipments (FACTS.md §4, §6).

Order statuses follow FACTS.md §4.2: ``confirmed`` → (``payment_required`` |
``payment_in_process``) → ``partially_paid`` → ``paid`` → ``partially_refunded`` →
``pending_cancel`` → ``cancelled``, and ``invalid`` for a malicious buyer. A pack groups
orders of one buyer and one seller that share one shipment; each order has its own
payments. Every shipment change is kept in its history (``/shipments/{id}/history``).
"""

from __future__ import annotations

from peepers_sandbox.clock import iso_brt, iso_z
from peepers_sandbox.errors import SandboxError, bad_request, not_found
from peepers_sandbox.market.core import Json
from peepers_sandbox.market.items import Items

# Statuses an order can be paid from, and the ones a paid order ships from.
PAYABLE = ("confirmed", "payment_required", "payment_in_process", "partially_paid")
SHIPPABLE = ("paid", "partially_refunded")
_LIVE_PACK_ORDER = ("cancelled", "invalid")
_CANCELLABLE = (*PAYABLE, "paid", "partially_refunded", "pending_cancel")
LOGISTIC_TYPES = ("drop_off", "cross_docking", "fulfillment")


def _money(value: float) -> float:
    return round(value + 0.0, 2)


class Orders(Items):
    def new_order(
        self,
        *,
        seller_id: int | None = None,
        item_id: str | None = None,
        buyer_id: int | None = None,
        quantity: int = 1,
        pack_id: int | None = None,
        logistic_type: str = "drop_off",
    ) -> Json:
        """A new ``confirmed`` order; ``pack_id`` adds it to an unpaid pack (a cart)."""
        rng = self.rng
        if quantity < 1:
            msg = "quantity must be >= 1"
            raise bad_request(msg)
        if logistic_type not in LOGISTIC_TYPES:
            msg = f"logistic_type must be one of {', '.join(LOGISTIC_TYPES)}"
            raise bad_request(msg)
        pack = self._cart_pack(pack_id, seller_id, buyer_id) if pack_id is not None else None
        if pack is not None:
            first = self.orders[pack["orders"][0]["id"]]
            seller_id, buyer_id = first["seller"]["id"], first["buyer"]["id"]
        item = self._pick_seller_item(seller_id, item_id)
        if seller_id is not None and item["seller_id"] != seller_id:
            msg = f"Item {item['id']} is not sold by {seller_id}"
            raise bad_request(msg)
        seller_id = item["seller_id"]
        if buyer_id is None:
            buyer_id = rng.choice(self.buyers)
        elif buyer_id not in self.orders_by_buyer:
            msg = f"Buyer {buyer_id} not found"
            raise not_found(msg)
        stamp = self._stamp()
        order_id = self._next_order
        self._next_order += rng.randint(1, 97)
        if pack is None:
            pack_id, ship_id = self._next_pack, self._next_shipment
            self._next_pack += rng.randint(1, 97)
            self._next_shipment += rng.randint(1, 97)
        else:
            pack_id, ship_id = pack["id"], pack["shipment"]["id"]
        variation = rng.choice(item["variations"]) if item["variations"] else None
        total = round(item["price"] * quantity, 2)
        order: Json = {
            "id": order_id,
            "date_created": iso_brt(stamp),
            "date_closed": None,
            "last_updated": iso_brt(stamp),
            "manufacturing_ending_date": None,
            "comment": None,
            "pack_id": pack_id,
            "pickup_id": None,
            "order_request": {"return": None, "change": None},
            "fulfilled": None,
            "mediations": [],
            "total_amount": total,
            "paid_amount": 0,
            "coupon": {"id": None, "amount": 0},
            "buying_mode": "buy_equals_pay",
            "shipping_cost": None,
            "order_items": [
                {
                    "item": {
                        "id": item["id"],
                        "title": item["title"],
                        "category_id": item["category_id"],
                        "variation_id": variation["id"] if variation else None,
                        "seller_custom_field": item["seller_custom_field"],
                        "variation_attributes": [
                            {k: c[k] for k in ("id", "name", "value_id", "value_name")}
                            for c in (variation["attribute_combinations"] if variation else [])
                        ],
                        "warranty": item["warranty"],
                        "condition": item["condition"],
                        "seller_sku": item["seller_custom_field"],
                        "global_price": None,
                        "net_weight": None,
                    },
                    "quantity": quantity,
                    "requested_quantity": {"value": quantity, "measure": "unit"},
                    "picked_quantity": None,
                    "unit_price": item["price"],
                    "full_unit_price": item["price"],
                    "currency_id": "BRL",
                    "manufacturing_days": None,
                    "sale_fee": round(item["price"] * 0.14, 2),
                    "listing_type_id": item["listing_type_id"],
                }
            ],
            "currency_id": "BRL",
            "payments": [],
            "shipping": {"id": ship_id},
            "status": "confirmed",
            "status_detail": None,
            "tags": ["not_paid", "pack_order"],
            "feedback": {"buyer": None, "seller": None},
            "context": {"channel": "marketplace", "site": self.site_id, "flows": []},
            "buyer": {"id": buyer_id, "nickname": self.users[buyer_id]["nickname"]},
            "seller": {"id": seller_id, "nickname": self.users[seller_id]["nickname"]},
            "taxes": {"amount": None, "currency_id": None, "id": None},
            "cancel_detail": None,
        }
        self.orders[order_id] = order
        self.orders_by_seller[seller_id].append(order_id)
        self.orders_by_buyer[buyer_id].append(order_id)
        if pack is not None:
            pack["orders"].append({"id": order_id})
            shared = self.shipments[ship_id]
            shared["declared_value"] = _money(shared["declared_value"] + total)
            self._touch_pack(pack)
            self._emit("orders_v2", seller_id, f"/orders/{order_id}")
            self._touch_shipment(shared, shared["status"], shared["substatus"])
            return order
        buyer = self.users[buyer_id]
        shipment: Json = {
            "id": ship_id,
            "status": "pending",
            "substatus": "waiting_for_payment",
            "date_created": iso_brt(stamp),
            "last_updated": iso_brt(stamp),
            "tracking_number": None,
            "tracking_method": None,
            "declared_value": total,
            "dimensions": {"height": 10, "width": 20, "length": 30, "weight": 800},
            "logistic": {"mode": "me2", "type": logistic_type, "direction": "forward"},
            "origin": {
                "type": "selling_address",
                "sender_id": seller_id,
                "shipping_address": {
                    "city": {"name": self.users[seller_id]["address"]["city"]},
                    "state": {"id": self.users[seller_id]["address"]["state"]},
                    "country": {"id": "BR"},
                },
            },
            "destination": {
                "type": "buying_address",
                "receiver_id": buyer_id,
                "receiver_name": f"{buyer['first_name']} {buyer['last_name']}",
                "receiver_phone": None,
                "shipping_address": {
                    "city": {"name": buyer["address"]["city"]},
                    "state": {"id": buyer["address"]["state"]},
                    "country": {"id": "BR"},
                    "zip_code": "01310100",
                },
            },
            "source": {
                "site_id": self.site_id,
                "market_place": "MELI",
                "customer_id": buyer_id,
                "application_id": None,
            },
            "lead_time": {
                "cost": 19.9,
                "list_cost": 19.9,
                "cost_type": "charged",
                "currency_id": "BRL",
                "shipping_method": {
                    "id": 182,
                    "name": "Normal",
                    "type": "standard",
                    "deliver_to": "address",
                },
            },
            "tags": [],
            "items_types": ["new"],
            "priority_class": {"id": None},
        }
        self.shipments[ship_id] = shipment
        self.shipment_parties[ship_id] = (seller_id, buyer_id, order_id)
        self.shipment_history[ship_id] = [
            {"status": "pending", "substatus": "waiting_for_payment", "date": iso_z(stamp)}
        ]
        self.packs[pack_id] = {
            "id": pack_id,
            "status": "released",
            "status_detail": None,
            "shipment": {"id": ship_id},
            "orders": [{"id": order_id}],
            "buyer": {"id": buyer_id},
            "date_created": iso_brt(stamp),
            "last_updated": iso_brt(stamp),
        }
        self.pack_flags[pack_id] = {"fulfillment"} if logistic_type == "fulfillment" else set()
        self.messages_by_pack[pack_id] = []
        self._emit("orders_v2", seller_id, f"/orders/{order_id}")
        self._emit("shipments", seller_id, f"/shipments/{ship_id}")
        return order

    def new_cart(
        self, *, seller_id: int | None = None, buyer_id: int | None = None, size: int = 2
    ) -> Json:
        """A pack of ``size`` orders from one buyer to one seller with one shared shipment."""
        if not 2 <= size <= 10:
            msg = "size must be between 2 and 10"
            raise bad_request(msg)
        first = self.new_order(seller_id=seller_id, buyer_id=buyer_id)
        for _ in range(size - 1):
            self.new_order(pack_id=first["pack_id"])
        return self.packs[first["pack_id"]]

    def _cart_pack(self, pack_id: int, seller_id: int | None, buyer_id: int | None) -> Json:
        pack = self.pack(pack_id)
        first = self.orders[pack["orders"][0]["id"]]
        if (seller_id is not None and seller_id != first["seller"]["id"]) or (
            buyer_id is not None and buyer_id != first["buyer"]["id"]
        ):
            msg = f"Pack {pack_id} belongs to another seller or buyer"
            raise bad_request(msg)
        if self.shipments[pack["shipment"]["id"]]["status"] != "pending":
            msg = f"Pack {pack_id} is already paid or closed"
            raise bad_request(msg, "invalid_pack_status")
        return pack

    def order(self, order_id: int) -> Json:
        order = self.orders.get(order_id)
        if order is None:
            raise SandboxError(404, "order_not_found", f"Order {order_id} not found")
        return order

    def pack(self, pack_id: int) -> Json:
        pack = self.packs.get(pack_id)
        if pack is None:
            msg = f"Pack {pack_id} not found"
            raise not_found(msg)
        return pack

    def pack_orders(self, pack_id: int) -> list[Json]:
        return [self.orders[o["id"]] for o in self.packs[pack_id]["orders"]]

    def _touch_pack(self, pack: Json) -> None:
        statuses = {self.orders[o["id"]]["status"] for o in pack["orders"]}
        if statuses <= set(_LIVE_PACK_ORDER):
            pack["status"] = "cancelled"
        elif "pending_cancel" in statuses:
            pack["status"] = "pending_cancel"
        else:
            pack["status"] = "released"
        pack["last_updated"] = iso_brt(self._stamp())

    def _touch_order(self, order: Json) -> None:
        order["last_updated"] = iso_brt(self._stamp())
        self._touch_pack(self.packs[order["pack_id"]])
        self._emit("orders_v2", order["seller"]["id"], f"/orders/{order['id']}")

    def _touch_shipment(self, shipment: Json, status: str, substatus: str | None) -> None:
        shipment["status"], shipment["substatus"] = status, substatus
        stamp = self._stamp()
        shipment["last_updated"] = iso_brt(stamp)
        self.shipment_history[shipment["id"]].append(
            {"status": status, "substatus": substatus, "date": iso_z(stamp)}
        )
        seller_id = self.shipment_parties[shipment["id"]][0]
        self._emit("shipments", seller_id, f"/shipments/{shipment['id']}")

    # ------------------------------------------------------------------ payments
    def _new_payment(self, order: Json, amount: float, status: str, detail: str) -> Json:
        stamp_txt = iso_brt(self._stamp())
        payment_id = self._next_payment
        self._next_payment += self.rng.randint(1, 97)
        payment: Json = {
            "id": payment_id,
            "order_id": order["id"],
            "payer_id": order["buyer"]["id"],
            "collector": {"id": order["seller"]["id"]},
            "card_id": None,
            "site_id": self.site_id,
            "reason": order["order_items"][0]["item"]["title"],
            "payment_method_id": self.rng.choice(["account_money", "pix", "master", "visa"]),
            "currency_id": "BRL",
            "installments": 1,
            "issuer_id": None,
            "atm_transfer_reference": {"company_id": None, "transaction_id": None},
            "coupon_id": None,
            "activation_uri": None,
            "operation_type": "regular_payment",
            "payment_type": "account_money",
            "available_actions": ["refund"] if status == "approved" else [],
            "status": status,
            "status_code": None,
            "status_detail": detail,
            "transaction_amount": amount,
            "transaction_amount_refunded": 0,
            "taxes_amount": 0,
            "shipping_cost": 0,
            "coupon_amount": 0,
            "overpaid_amount": 0,
            "total_paid_amount": amount,
            "installment_amount": amount,
            "deferred_period": None,
            "date_approved": stamp_txt if status == "approved" else None,
            "authorization_code": None,
            "transaction_order_id": None,
            "date_created": stamp_txt,
            "date_last_modified": stamp_txt,
        }
        self.payments[payment_id] = payment
        order["payments"].append(payment)
        return payment

    def _payable(self, order_id: int) -> Json:
        order = self.order(order_id)
        if order["status"] not in PAYABLE:
            msg = f"Order {order_id} is {order['status']}, not payable"
            raise bad_request(msg, "invalid_order_status")
        return order

    def _emit_payment(self, order: Json, payment: Json) -> None:
        self._emit("payments", order["seller"]["id"], f"/collections/{payment['id']}")

    def require_payment(self, order_id: int) -> Json:
        """The buyer's payment is rejected: ``payment_required`` until another one is made."""
        order = self._payable(order_id)
        if order["status"] not in ("confirmed", "payment_required"):
            msg = f"Order {order_id} is {order['status']}; expected confirmed"
            raise bad_request(msg, "invalid_order_status")
        remaining = _money(order["total_amount"] - order["paid_amount"])
        payment = self._new_payment(order, remaining, "rejected", "cc_rejected_insufficient_amount")
        order["status"] = "payment_required"
        self._touch_order(order)
        self._emit_payment(order, payment)
        return order

    def start_payment(self, order_id: int, amount: float | None = None) -> Json:
        """A payment still being processed (a boleto, a card in review): ``payment_in_process``."""
        order = self._payable(order_id)
        if any(p["status"] == "in_process" for p in order["payments"]):
            msg = f"Order {order_id} already has a payment in process"
            raise bad_request(msg, "invalid_order_status")
        payment = self._new_payment(
            order, self._amount(order, amount), "in_process", "pending_contingency"
        )
        order["status"] = "payment_in_process"
        self._touch_order(order)
        self._emit_payment(order, payment)
        return order

    def _amount(self, order: Json, amount: float | None) -> float:
        remaining = _money(order["total_amount"] - order["paid_amount"])
        if amount is None:
            return remaining
        if not isinstance(amount, int | float) or isinstance(amount, bool):
            msg = "amount must be a number"
            raise bad_request(msg)
        if not 0 < amount <= remaining:
            msg = f"amount must be > 0 and <= the {remaining} still owed"
            raise bad_request(msg)
        return _money(amount)

    def pay_order(self, order_id: int, amount: float | None = None, handling: bool = False) -> Json:
        """Approve a payment: the one in process, or a new one of ``amount`` (default: the rest).

        Paid in part, the order is ``partially_paid``; paid in full, ``paid``. When every
        order of the pack is paid, the shared shipment becomes ``ready_to_ship`` (or
        ``handling`` first, with ``handling``).
        """
        order = self._payable(order_id)
        stamp_txt = iso_brt(self._stamp())
        pending = next((p for p in order["payments"] if p["status"] == "in_process"), None)
        if pending is not None:
            payment = pending
            payment["status"], payment["status_detail"] = "approved", "accredited"
            payment["available_actions"] = ["refund"]
            payment["date_approved"] = payment["date_last_modified"] = stamp_txt
        else:
            payment = self._new_payment(
                order, self._amount(order, amount), "approved", "accredited"
            )
        order["paid_amount"] = _money(order["paid_amount"] + payment["transaction_amount"])
        if order["paid_amount"] < order["total_amount"]:
            order["status"] = "partially_paid"
            self._touch_order(order)
            self._emit_payment(order, payment)
            return order
        order["status"] = "paid"
        order["date_closed"] = stamp_txt
        order["tags"] = [t for t in order["tags"] if t != "not_paid"] + ["paid"]
        item = self.items.get(order["order_items"][0]["item"]["id"])
        if item is not None:
            qty = order["order_items"][0]["quantity"]
            item["sold_quantity"] += qty
            if item["available_quantity"] > 0:
                self.change_stock(item["id"], max(0, item["available_quantity"] - qty))
        self._touch_order(order)
        self._emit_payment(order, payment)
        shipment = self.shipments[order["shipping"]["id"]]
        pack_paid = all(
            o["status"] in ("paid", *_LIVE_PACK_ORDER) for o in self.pack_orders(order["pack_id"])
        )
        if shipment["status"] == "pending" and pack_paid:
            if handling:
                self._touch_shipment(shipment, "handling", "waiting_for_label_generation")
            else:
                self._touch_shipment(shipment, "ready_to_ship", "ready_to_print")
        return order

    def refund(self, order_id: int, amount: float | None = None) -> Json:
        """Refund ``amount`` (default: all) of a paid order, newest payment first.

        Each changed payment notifies ``payments``. A part refund leaves the order
        ``partially_refunded``; a full one cancels it (FACTS.md §4.2).
        """
        order = self.order(order_id)
        if order["status"] not in (*SHIPPABLE, "pending_cancel"):
            msg = f"Order {order_id} is {order['status']}, nothing to refund"
            raise bad_request(msg, "invalid_order_status")
        approved = [p for p in order["payments"] if p["status"] == "approved"]
        refundable = _money(
            sum(p["transaction_amount"] - p["transaction_amount_refunded"] for p in approved)
        )
        if amount is None:
            amount = refundable
        elif isinstance(amount, bool) or not isinstance(amount, int | float):
            msg = "amount must be a number"
            raise bad_request(msg)
        if not 0 < amount <= refundable:
            msg = f"amount must be > 0 and <= the {refundable} refundable"
            raise bad_request(msg)
        if amount >= refundable:
            return self._cancel(order, group="seller", code="refunded")
        changed = self._refund_payments(order, _money(amount))
        order["status"] = "partially_refunded"
        self._touch_order(order)
        for payment in changed:
            self._emit_payment(order, payment)
        return order

    def _refund_payments(self, order: Json, amount: float) -> list[Json]:
        stamp_txt = iso_brt(self._stamp())
        changed: list[Json] = []
        for payment in reversed(order["payments"]):
            if amount <= 0:
                break
            if payment["status"] != "approved":
                continue
            left = _money(payment["transaction_amount"] - payment["transaction_amount_refunded"])
            part = min(left, amount)
            amount = _money(amount - part)
            payment["transaction_amount_refunded"] = _money(
                payment["transaction_amount_refunded"] + part
            )
            if payment["transaction_amount_refunded"] >= payment["transaction_amount"]:
                payment["status"], payment["status_detail"] = "refunded", "refunded"
                payment["available_actions"] = []
            else:
                payment["status_detail"] = "partially_refunded"
            payment["date_last_modified"] = stamp_txt
            changed.append(payment)
        return changed

    # ------------------------------------------------------------------ cancellation
    def request_cancel(self, order_id: int) -> Json:
        """The buyer asks to cancel a paid order: ``pending_cancel`` until it is cancelled."""
        order = self.order(order_id)
        shipment = self.shipments[order["shipping"]["id"]]
        if order["status"] not in SHIPPABLE or shipment["status"] in ("shipped", "delivered"):
            msg = f"Order {order_id} is {order['status']} with shipment {shipment['status']}"
            raise bad_request(msg, "invalid_order_status")
        order["status"] = "pending_cancel"
        self._touch_order(order)
        return order

    def invalidate(self, order_id: int) -> Json:
        """ML flags the buyer as malicious before payment: the order becomes ``invalid``."""
        order = self.order(order_id)
        if order["status"] not in ("confirmed", "payment_required", "payment_in_process"):
            msg = f"Order {order_id} is {order['status']}; only an unpaid order turns invalid"
            raise bad_request(msg, "invalid_order_status")
        order["status"] = "invalid"
        order["status_detail"] = "fraud_risk_detected"
        for payment in order["payments"]:
            if payment["status"] == "in_process":
                payment["status"], payment["status_detail"] = "rejected", "cc_rejected_high_risk"
        self._touch_order(order)
        self._close_shipment_if_empty(order, "fraudulent")
        return order

    def cancel_order(
        self, order_id: int, *, group: str = "buyer", code: str = "buyer_cancel"
    ) -> Json:
        """Cancel an order not yet delivered, refunding what was paid (one ``payments`` each)."""
        order = self.order(order_id)
        shipment = self.shipments[order["shipping"]["id"]]
        if order["status"] not in _CANCELLABLE:
            msg = f"Order {order_id} is {order['status']}, it cannot be cancelled"
            raise bad_request(msg, "invalid_order_status")
        if shipment["status"] in ("delivered", "not_delivered"):
            msg = f"Order {order_id} was already {shipment['status']}, it cannot be cancelled"
            raise bad_request(msg, "invalid_order_status")
        return self._cancel(order, group=group, code=code)

    def _cancel(self, order: Json, *, group: str, code: str) -> Json:
        """Cancel, refunding every approved payment (a full refund cancels even after delivery)."""
        left = sum(
            p["transaction_amount"] - p["transaction_amount_refunded"]
            for p in order["payments"]
            if p["status"] == "approved"
        )
        refunded = self._refund_payments(order, _money(left)) if left > 0 else []
        for payment in order["payments"]:
            if payment["status"] == "in_process":
                payment["status"], payment["status_detail"] = "cancelled", "by_collector"
                refunded.append(payment)
        stamp_txt = iso_brt(self._stamp())
        order["status"] = "cancelled"
        order["tags"] = [t for t in order["tags"] if t != "paid"]
        order["cancel_detail"] = {
            "group": group,
            "code": code,
            "description": "Cancelada pelo comprador" if group == "buyer" else "Venda reembolsada",
            "requested_by": group,
            "date": stamp_txt,
        }
        self._touch_order(order)
        for payment in refunded:
            self._emit_payment(order, payment)
        self._close_shipment_if_empty(order, "cancelled_manually")
        return order

    def _close_shipment_if_empty(self, order: Json, substatus: str) -> None:
        shipment = self.shipments[order["shipping"]["id"]]
        live = [
            o for o in self.pack_orders(order["pack_id"]) if o["status"] not in _LIVE_PACK_ORDER
        ]
        if not live and shipment["status"] not in ("delivered", "not_delivered", "cancelled"):
            self._touch_shipment(shipment, "cancelled", substatus)

    # ------------------------------------------------------------------ shipping
    def _paid_order_shipment(self, order_id: int, *expect: str) -> tuple[Json, Json]:
        order = self.order(order_id)
        shipment = self.shipments[order["shipping"]["id"]]
        if order["status"] not in SHIPPABLE or shipment["status"] not in expect:
            msg = (
                f"Order {order_id} is {order['status']} with shipment {shipment['status']}; "
                f"expected {' or '.join(expect)}"
            )
            raise bad_request(msg, "invalid_shipment_status")
        return order, shipment

    def label_ready(self, order_id: int) -> Json:
        """``handling`` → ``ready_to_ship``: the label can be printed."""
        _, shipment = self._paid_order_shipment(order_id, "handling")
        self._touch_shipment(shipment, "ready_to_ship", "ready_to_print")
        return shipment

    def ship(self, order_id: int) -> Json:
        _, shipment = self._paid_order_shipment(order_id, "ready_to_ship")
        shipment["tracking_number"] = f"BR{shipment['id']}"
        shipment["tracking_method"] = "Correios"
        self._touch_shipment(shipment, "shipped", "in_transit")
        return shipment

    def deliver(self, order_id: int) -> Json:
        """The shared shipment is delivered; each live order of the pack is ``fulfilled``.

        ML no longer adds a ``delivered`` tag itself (FACTS.md §4.1).
        """
        order, shipment = self._paid_order_shipment(order_id, "shipped")
        self._touch_shipment(shipment, "delivered", None)
        for pack_order in self.pack_orders(order["pack_id"]):
            if pack_order["status"] in SHIPPABLE:
                pack_order["fulfilled"] = True
                self._touch_order(pack_order)
        return shipment

    def fail_delivery(self, order_id: int) -> Json:
        """The carrier gives up: ``not_delivered``/``returning_to_sender``, order tag too."""
        order, shipment = self._paid_order_shipment(order_id, "shipped")
        self._touch_shipment(shipment, "not_delivered", "returning_to_sender")
        for pack_order in self.pack_orders(order["pack_id"]):
            if pack_order["status"] in SHIPPABLE:
                pack_order["fulfilled"] = False
                if "not_delivered" not in pack_order["tags"]:
                    pack_order["tags"] = [*pack_order["tags"], "not_delivered"]
                self._touch_order(pack_order)
        return shipment

    def unverified_delivery(self, order_id: int) -> Json:
        """The carrier reports a delivery it cannot prove: ``not_verified``."""
        _, shipment = self._paid_order_shipment(order_id, "shipped")
        self._touch_shipment(shipment, "not_verified", None)
        return shipment

    def shipment(self, shipment_id: int) -> Json:
        shipment = self.shipments.get(shipment_id)
        if shipment is None:
            msg = "failed to retrieve data"
            raise not_found(msg)
        return shipment

    # ------------------------------------------------------------------ feedback
    def give_feedback(
        self, order_id: int, role: str = "buyer", rating: str = "positive", fulfilled: bool = True
    ) -> Json:
        """Feedback from the ``buyer`` (the purchase) or the ``seller`` (the sale)."""
        order = self.order(order_id)
        if role not in ("buyer", "seller") or rating not in ("positive", "neutral", "negative"):
            msg = "role is buyer or seller; rating is positive, neutral or negative"
            raise bad_request(msg)
        if order["status"] not in (*SHIPPABLE, "cancelled"):
            msg = f"Order {order_id} is {order['status']}; feedback needs a closed sale"
            raise bad_request(msg, "invalid_order_status")
        if order["feedback"][role] is not None:
            msg = f"The {role} already gave feedback on order {order_id}"
            raise bad_request(msg, "feedback_already_exists")
        order["feedback"][role] = {
            "id": order_id * 10 + (1 if role == "seller" else 0),
            "rating": rating,
            "fulfilled": bool(fulfilled),
            "status": "active",
            "date_created": iso_brt(self._stamp()),
        }
        self._touch_order(order)
        return order

    def _silent_order(self, order: Json) -> Json:
        old_tags, old_stamp = list(order["tags"]), order["last_updated"]
        # An internal tag with no effect on the sale's state: it only has to differ.
        tag = "high_concurrency"
        order["tags"] = [t for t in old_tags if t != tag] if tag in old_tags else [*old_tags, tag]
        order["last_updated"] = iso_brt(self._stamp())
        changed = {
            "tags": [old_tags, order["tags"]],
            "last_updated": [old_stamp, order["last_updated"]],
        }
        return {"resource": f"/orders/{order['id']}", "changed": changed}
