"""Orders with their payments, packs and shipments."""

from __future__ import annotations

from peepers_sandbox.clock import iso_brt
from peepers_sandbox.errors import SandboxError, bad_request, not_found
from peepers_sandbox.market.core import Json
from peepers_sandbox.market.items import Items


class Orders(Items):
    def new_order(
        self,
        *,
        seller_id: int | None = None,
        item_id: str | None = None,
        buyer_id: int | None = None,
        quantity: int = 1,
    ) -> Json:
        rng = self.rng
        item = self._pick_seller_item(seller_id, item_id)
        seller_id = item["seller_id"]
        if buyer_id is None:
            buyer_id = rng.choice(self.buyers)
        elif buyer_id not in self.orders_by_buyer:
            msg = f"Buyer {buyer_id} not found"
            raise not_found(msg)
        stamp = self._stamp()
        order_id, pack_id, ship_id = self._next_order, self._next_pack, self._next_shipment
        self._next_order += rng.randint(1, 97)
        self._next_pack += rng.randint(1, 97)
        self._next_shipment += rng.randint(1, 97)
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
            "logistic": {"mode": "me2", "type": "drop_off", "direction": "forward"},
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
        self.orders[order_id] = order
        self.orders_by_seller[seller_id].append(order_id)
        self.orders_by_buyer[buyer_id].append(order_id)
        self.shipments[ship_id] = shipment
        self.shipment_parties[ship_id] = (seller_id, buyer_id, order_id)
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
        self.messages_by_pack[pack_id] = []
        self._emit("orders_v2", seller_id, f"/orders/{order_id}")
        self._emit("shipments", seller_id, f"/shipments/{ship_id}")
        return order

    def order(self, order_id: int) -> Json:
        order = self.orders.get(order_id)
        if order is None:
            raise SandboxError(404, "order_not_found", f"Order {order_id} not found")
        return order

    def _touch_order(self, order: Json) -> None:
        order["last_updated"] = iso_brt(self._stamp())
        self._emit("orders_v2", order["seller"]["id"], f"/orders/{order['id']}")

    def _touch_shipment(self, shipment: Json, status: str, substatus: str | None) -> None:
        shipment["status"], shipment["substatus"] = status, substatus
        shipment["last_updated"] = iso_brt(self._stamp())
        seller_id = self.shipment_parties[shipment["id"]][0]
        self._emit("shipments", seller_id, f"/shipments/{shipment['id']}")

    def pay_order(self, order_id: int) -> Json:
        order = self.order(order_id)
        if order["status"] != "confirmed":
            msg = f"Order {order_id} is {order['status']}, not payable"
            raise bad_request(msg, "invalid_order_status")
        stamp_txt = iso_brt(self._stamp())
        payment_id = self._next_payment
        self._next_payment += self.rng.randint(1, 97)
        total = order["total_amount"]
        payment: Json = {
            "id": payment_id,
            "order_id": order_id,
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
            "available_actions": ["refund"],
            "status": "approved",
            "status_code": None,
            "status_detail": "accredited",
            "transaction_amount": total,
            "transaction_amount_refunded": 0,
            "taxes_amount": 0,
            "shipping_cost": 0,
            "coupon_amount": 0,
            "overpaid_amount": 0,
            "total_paid_amount": total,
            "installment_amount": total,
            "deferred_period": None,
            "date_approved": stamp_txt,
            "authorization_code": None,
            "transaction_order_id": None,
            "date_created": stamp_txt,
            "date_last_modified": stamp_txt,
        }
        self.payments[payment_id] = payment
        order["payments"].append(payment)
        order["paid_amount"] = total
        order["status"] = "paid"
        order["date_closed"] = stamp_txt
        order["tags"] = ["paid", "pack_order"]
        item = self.items.get(order["order_items"][0]["item"]["id"])
        if item is not None:
            qty = order["order_items"][0]["quantity"]
            item["sold_quantity"] += qty
            if item["available_quantity"] > 0:
                self.change_stock(item["id"], max(0, item["available_quantity"] - qty))
        self._touch_order(order)
        self._emit("payments", order["seller"]["id"], f"/collections/{payment_id}")
        shipment = self.shipments[order["shipping"]["id"]]
        self._touch_shipment(shipment, "ready_to_ship", "ready_to_print")
        return order

    def _paid_order_shipment(self, order_id: int, expect: str) -> tuple[Json, Json]:
        order = self.order(order_id)
        shipment = self.shipments[order["shipping"]["id"]]
        if order["status"] != "paid" or shipment["status"] != expect:
            msg = (
                f"Order {order_id} is {order['status']} with shipment {shipment['status']}; "
                f"expected {expect}"
            )
            raise bad_request(msg, "invalid_shipment_status")
        return order, shipment

    def ship(self, order_id: int) -> Json:
        _, shipment = self._paid_order_shipment(order_id, "ready_to_ship")
        shipment["tracking_number"] = f"BR{shipment['id']}"
        shipment["tracking_method"] = "Correios"
        self._touch_shipment(shipment, "shipped", "in_transit")
        return shipment

    def deliver(self, order_id: int) -> Json:
        order, shipment = self._paid_order_shipment(order_id, "shipped")
        self._touch_shipment(shipment, "delivered", None)
        order["tags"] = [*order["tags"], "delivered"]
        self._touch_order(order)
        return shipment

    def cancel_order(self, order_id: int) -> Json:
        order = self.order(order_id)
        if order["status"] == "cancelled":
            msg = f"Order {order_id} is already cancelled"
            raise bad_request(msg, "invalid_order_status")
        stamp_txt = iso_brt(self._stamp())
        order["status"] = "cancelled"
        order["cancel_detail"] = {
            "group": "buyer",
            "code": "buyer_cancel",
            "description": "Cancelada pelo comprador",
            "requested_by": "buyer",
            "date": stamp_txt,
        }
        for payment in order["payments"]:
            payment["status"], payment["status_detail"] = "refunded", "refunded"
            payment["transaction_amount_refunded"] = payment["transaction_amount"]
            payment["date_last_modified"] = stamp_txt
        self._touch_order(order)
        shipment = self.shipments[order["shipping"]["id"]]
        if shipment["status"] not in ("delivered", "cancelled"):
            self._touch_shipment(shipment, "cancelled", "cancelled_manually")
        return order

    def shipment(self, shipment_id: int) -> Json:
        shipment = self.shipments.get(shipment_id)
        if shipment is None:
            msg = "failed to retrieve data"
            raise not_found(msg)
        return shipment

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
