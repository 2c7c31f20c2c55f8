"""Items: listings, their prices and stock."""

from __future__ import annotations

import json
from typing import Any

from peepers_sandbox.clock import iso_z
from peepers_sandbox.errors import bad_request, not_found
from peepers_sandbox.market.core import DAY_MS, Json
from peepers_sandbox.market.users import Users

# (category_id, domain_id, nouns, brands, variation axes)
_CATEGORIES: list[tuple[str, str, list[str], list[str], list[str]]] = [
    (
        "MLB1055",
        "MLB-CELLPHONES",
        ["Smartphone", "Celular"],
        ["Samsung", "Motorola", "Xiaomi"],
        ["COLOR"],
    ),
    (
        "MLB31447",
        "MLB-T_SHIRTS",
        ["Camiseta Básica", "Camiseta Estampada", "Camiseta Polo"],
        ["Hering", "Reserva", "Malwee"],
        ["COLOR", "SIZE"],
    ),
    (
        "MLB23332",
        "MLB-SNEAKERS",
        ["Tênis Esportivo", "Tênis Casual", "Tênis de Corrida"],
        ["Olympikus", "Mizuno", "Fila"],
        ["SIZE"],
    ),
    (
        "MLB1646",
        "MLB-HEADPHONES",
        ["Fone de Ouvido Bluetooth", "Headset Gamer"],
        ["JBL", "Philips", "Edifier"],
        [],
    ),
    (
        "MLB1574",
        "MLB-COOKWARE_SETS",
        ["Jogo de Panelas", "Frigideira Antiaderente"],
        ["Tramontina", "Rochedo"],
        [],
    ),
    (
        "MLB270227",
        "MLB-THERMAL_BOTTLES",
        ["Garrafa Térmica", "Copo Térmico"],
        ["Stanley", "Termolar"],
        ["COLOR"],
    ),
    (
        "MLB1659",
        "MLB-BACKPACKS",
        ["Mochila Executiva", "Mochila Escolar"],
        ["Samsonite", "Sestini"],
        ["COLOR"],
    ),
    (
        "MLB438271",
        "MLB-COFFEE_MAKERS",
        ["Cafeteira Elétrica", "Cafeteira Expresso"],
        ["Oster", "Mondial", "Arno"],
        [],
    ),
    (
        "MLB268333",
        "MLB-GAMEPADS_AND_JOYSTICKS",
        ["Controle Sem Fio", "Controle Gamer"],
        ["Xbox", "Multilaser"],
        ["COLOR"],
    ),
    (
        "MLB1384",
        "MLB-BABY_STROLLERS",
        ["Carrinho de Bebê", "Bebê Conforto"],
        ["Burigotto", "Galzerano"],
        [],
    ),
]
_QUALIFIERS = [
    "Original",
    "Lacrado",
    "Premium",
    "Novo",
    "com Garantia",
    "Envio Imediato",
    "Kit 2 Unidades",
    "Pronta Entrega",
    "Alta Qualidade",
    "Promoção",
]
_COLORS = [
    ("52049", "Preto"),
    ("52055", "Branco"),
    ("51993", "Vermelho"),
    ("52028", "Azul"),
    ("283165", "Cinza"),
]
_SIZES = [("3189155", "P"), ("2282666", "M"), ("3189156", "G"), ("3189157", "GG")]
_SHOE_SIZES = [
    ("3189160", "38"),
    ("3189161", "39"),
    ("3189162", "40"),
    ("3189163", "41"),
    ("3189164", "42"),
]
ITEM_STATUSES = (
    "active",
    "paused",
    "closed",
    "under_review",
    "inactive",
    "payment_required",
    "not_yet_active",
    "programmed",
    "pending",
)
_OWNER_ONLY_ITEM_FIELDS = (
    "sold_quantity",
    "start_time",
    "historical_start_time",
    "stop_time",
    "channels",
)


def public_quantity(qty: int) -> int:
    """ML's reference bucket for ``available_quantity`` seen without the owner's token."""
    for upper, shown in (
        (0, 0),
        (50, 1),
        (100, 50),
        (150, 100),
        (200, 150),
        (250, 200),
        (500, 250),
        (5000, 500),
        (50000, 5000),
    ):
        if qty <= upper:
            return shown
    return 50000


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


class Items(Users):
    # ------------------------------------------------------------------ items
    def new_item(self, seller_id: int | None = None) -> Json:
        rng = self.rng
        seller_id = seller_id if seller_id is not None else rng.choice(self.sellers)
        self.user(seller_id)
        number = self._next_item
        self._next_item += 1
        item_id = f"{self.site_id}{number}"
        cat_id, domain, nouns, brands, axes = _CATEGORIES[rng.randrange(len(_CATEGORIES))]
        brand = rng.choice(brands)
        title = f"{rng.choice(nouns)} {brand} {rng.choice(_QUALIFIERS)}"
        price = round(rng.uniform(19.9, 2999.9), 1) + 0.0
        qty = rng.choice([0, 1, 3, 7, 12, 40, 75, 130, 260, 600])
        stamp = self._stamp()
        # stop_time follows creation order, so the seller's list is already stop_time_asc.
        stop = stamp + 20 * 365 * DAY_MS
        sku = f"SKU-{seller_id % 100000:05d}-{number % 1000000:06d}"
        pic = (
            f"{rng.randrange(100000, 999999)}-{self.site_id}"
            f"{rng.randrange(10**10, 10**11)}_{rng.randrange(1, 13):02d}2025"
        )
        variations: list[Json] = []
        if axes:
            for k in range(rng.randint(2, 4)):
                combos: list[Json] = []
                for axis in axes:
                    if axis == "COLOR":
                        vid, vname = _COLORS[(k + number) % len(_COLORS)]
                        combos.append(
                            {
                                "id": "COLOR",
                                "name": "Cor",
                                "value_id": vid,
                                "value_name": vname,
                                "value_type": "string",
                            }
                        )
                    else:
                        sizes = _SHOE_SIZES if domain == "MLB-SNEAKERS" else _SIZES
                        vid, vname = sizes[k % len(sizes)]
                        combos.append(
                            {
                                "id": "SIZE",
                                "name": "Tamanho",
                                "value_id": vid,
                                "value_name": vname,
                                "value_type": "string",
                            }
                        )
                var_id = self._next_variation
                self._next_variation += 1
                variations.append(
                    {
                        "id": var_id,
                        "price": price,
                        "attribute_combinations": combos,
                        "available_quantity": qty // (k + 1),
                        "sold_quantity": rng.randrange(0, 50),
                        "sale_terms": [],
                        "picture_ids": [pic],
                        "seller_custom_field": f"{sku}-{k + 1}",
                        "catalog_product_id": None,
                    }
                )
        status = "active" if qty > 0 else "paused"
        item: Json = {
            "id": item_id,
            "site_id": self.site_id,
            "title": title,
            "seller_id": seller_id,
            "category_id": cat_id,
            "official_store_id": None,
            "price": price,
            "base_price": price,
            "original_price": None,
            "currency_id": "BRL",
            "initial_quantity": qty + 10,
            "available_quantity": qty,
            "sold_quantity": rng.randrange(0, 500),
            "sale_terms": [
                {
                    "id": "WARRANTY_TYPE",
                    "name": "Tipo de garantia",
                    "value_id": "2230280",
                    "value_name": "Garantia do vendedor",
                }
            ],
            "buying_mode": "buy_it_now",
            "listing_type_id": rng.choice(["gold_special", "gold_pro"]),
            "start_time": iso_z(stamp),
            "historical_start_time": iso_z(stamp),
            "stop_time": iso_z(stop),
            "condition": "new",
            "permalink": f"https://produto.mercadolivre.com.br/{self.site_id}-{number}-"
            + title.lower().replace(" ", "-")
            + "-_JM",
            "thumbnail_id": pic,
            "thumbnail": f"http://http2.mlstatic.com/D_{pic}-I.jpg",
            "pictures": [
                {
                    "id": pic,
                    "url": f"http://http2.mlstatic.com/D_{pic}-O.jpg",
                    "secure_url": f"https://http2.mlstatic.com/D_{pic}-O.jpg",
                    "size": "500x500",
                    "max_size": "1200x1200",
                    "quality": "",
                }
            ],
            "video_id": None,
            "descriptions": [],
            "accepts_mercadopago": True,
            "non_mercado_pago_payment_methods": [],
            "shipping": {
                "mode": "me2",
                "free_methods": [],
                "tags": [],
                "dimensions": None,
                "local_pick_up": False,
                "free_shipping": price >= 79,
                "logistic_type": "drop_off",
                "store_pick_up": False,
            },
            "international_delivery_mode": "none",
            "seller_address": {
                "city": {"name": self.users[seller_id]["address"]["city"]},
                "state": {
                    "id": self.users[seller_id]["address"]["state"],
                    "name": self.users[seller_id]["_state_name"],
                },
                "country": {"id": "BR", "name": "Brasil"},
            },
            "seller_contact": None,
            "location": {},
            "coverage_areas": [],
            "attributes": [
                {"id": "BRAND", "name": "Marca", "value_id": None, "value_name": brand},
                {"id": "SELLER_SKU", "name": "SKU", "value_id": None, "value_name": sku},
                {
                    "id": "ITEM_CONDITION",
                    "name": "Condição do item",
                    "value_id": "2230284",
                    "value_name": "Novo",
                },
            ],
            "listing_source": "",
            "variations": variations,
            "status": status,
            "sub_status": [] if status == "active" else ["out_of_stock"],
            "tags": ["good_quality_thumbnail", "immediate_payment", "cart_eligible"],
            "warranty": "Garantia do vendedor: 90 dias",
            "catalog_product_id": None,
            "domain_id": domain,
            "seller_custom_field": sku,
            "parent_item_id": None,
            "deal_ids": [],
            "automatic_relist": False,
            "date_created": iso_z(stamp),
            "last_updated": iso_z(stamp),
            "total_listing_fee": None,
            "health": None,
            "catalog_listing": False,
            "channels": ["marketplace"],
            "bundle": None,
        }
        self.items[item_id] = item
        self.items_by_seller[seller_id].append(item_id)
        self._emit("items", seller_id, f"/items/{item_id}")
        return item

    def item(self, item_id: str) -> Json:
        item = self.items.get(item_id)
        if item is None:
            msg = f"Item with id {item_id} not found"
            raise not_found(msg)
        return item

    def item_view(self, item: Json, *, owner: bool) -> Json:
        if owner:
            return item
        view = {k: v for k, v in item.items() if k not in _OWNER_ONLY_ITEM_FIELDS}
        view["available_quantity"] = public_quantity(item["available_quantity"])
        return view

    def item_json(self, item_id: str, *, owner: bool) -> bytes:
        key = (item_id, owner)
        cached = self._item_json.get(key)
        if cached is None:
            cached = _dumps(self.item_view(self.item(item_id), owner=owner))
            self._item_json[key] = cached
        return cached

    def _touch_item(self, item: Json) -> None:
        item["last_updated"] = iso_z(self._stamp())
        self._item_json.pop((item["id"], True), None)
        self._item_json.pop((item["id"], False), None)
        self._emit("items", item["seller_id"], f"/items/{item['id']}")

    def edit_item(self, item_id: str, *, title: str | None = None) -> Json:
        item = self.item(item_id)
        if title is None:
            title = item["title"].split(" - ")[0] + f" - {self.rng.choice(_QUALIFIERS)}"
        item["title"] = title
        self._touch_item(item)
        return item

    def set_item_status(self, item_id: str, status: str) -> Json:
        item = self.item(item_id)
        if status not in ("active", "paused", "closed"):
            msg = f"Invalid status {status}; use active, paused or closed"
            raise bad_request(msg)
        if item["status"] == "closed" and status != "closed":
            msg = "Item closed: a closed item cannot change status"
            raise bad_request(msg, "item.status.invalid")
        item["status"] = status
        item["sub_status"] = (
            []
            if status == "active"
            else (["paused_by_seller"] if status == "paused" else ["expired"])
        )
        self._touch_item(item)
        return item

    def change_price(self, item_id: str, price: float | None = None) -> Json:
        item = self.item(item_id)
        if price is None:
            price = round(item["price"] * self.rng.uniform(0.85, 1.15), 1)
        if price <= 0:
            msg = "price must be positive"
            raise bad_request(msg)
        item["price"] = item["base_price"] = price
        for variation in item["variations"]:
            variation["price"] = price
        self._touch_item(item)
        self._emit("items_prices", item["seller_id"], f"/items/{item_id}/prices")
        return item

    def change_stock(self, item_id: str, available_quantity: int | None = None) -> Json:
        item = self.item(item_id)
        if available_quantity is None:
            available_quantity = self.rng.choice([0, 5, 20, 100])
        if available_quantity < 0:
            msg = "available_quantity must be >= 0"
            raise bad_request(msg)
        item["available_quantity"] = available_quantity
        # ML pauses an item that runs out of stock and reactivates it when stock returns.
        if available_quantity == 0 and item["status"] == "active":
            item["status"], item["sub_status"] = "paused", ["out_of_stock"]
        elif (
            available_quantity > 0
            and item["status"] == "paused"
            and item["sub_status"] == ["out_of_stock"]
        ):
            item["status"], item["sub_status"] = "active", []
        self._touch_item(item)
        return item

    def _silent_item(self, item: Json) -> Json:
        old = {k: item[k] for k in ("price", "available_quantity", "last_updated")}
        price = old["price"]
        while price == old["price"]:
            price = round(old["price"] * self.rng.uniform(0.85, 1.15), 1)
        item["price"] = item["base_price"] = price
        for variation in item["variations"]:
            variation["price"] = price
        item["available_quantity"] = old["available_quantity"] + self.rng.randint(1, 9)
        item["last_updated"] = iso_z(self._stamp())
        self._item_json.pop((item["id"], True), None)
        self._item_json.pop((item["id"], False), None)
        changed = {k: [v, item[k]] for k, v in old.items()}
        return {"resource": f"/items/{item['id']}", "changed": changed}

    def item_prices(self, item: Json) -> Json:
        return {
            "id": item["id"],
            "prices": [
                {
                    "id": "1",
                    "type": "standard",
                    "amount": item["price"],
                    "regular_amount": None,
                    "currency_id": item["currency_id"],
                    "last_updated": item["last_updated"],
                    "conditions": {
                        "context_restrictions": ["channel_marketplace"],
                        "start_time": None,
                        "end_time": None,
                    },
                    "metadata": {},
                }
            ],
        }

    # ------------------------------------------------------------------ orders
    def _pick_seller_item(self, seller_id: int | None, item_id: str | None) -> Json:
        if item_id is not None:
            return self.item(item_id)
        if seller_id is None:
            seller_id = self.rng.choice(self.sellers)
        ids = self.items_by_seller.get(seller_id)
        if ids is None:
            msg = f"Seller {seller_id} not found"
            raise not_found(msg)
        if not ids:
            msg = f"Seller {seller_id} has no items"
            raise bad_request(msg)
        return self.items[self.rng.choice(ids)]
