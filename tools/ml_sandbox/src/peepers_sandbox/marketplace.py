"""The living marketplace: seeded data plus the changes that make it move.

Objects are kept as ML-shaped JSON dicts so the REST layer serves them as they are.
Every change stamps ``last_updated`` (strictly later than before) and calls the change
hook with ``(topic, user_id, resource, actions)``; the notifier turns that into ML's
notification bodies, applying the quirks there so the data here stays canonical.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from peepers_sandbox.clock import Clock, iso_brt, iso_z
from peepers_sandbox.config import DEMO_SELLER_ID, MarketplaceConfig
from peepers_sandbox.errors import SandboxError, bad_request, not_found

ChangeHook = Callable[[str, int, str, list[str] | None], None]
Json = dict[str, Any]

# Seeded objects are dated from here, so the same seed gives byte-identical data.
SEED_EPOCH_MS = 1_748_779_200_000  # 2025-06-01T12:00:00Z
_DAY_MS = 86_400_000

_FIRST_BUYER_ID = 4_000_000_001
_FIRST_ITEM_NUMBER = 4_100_000_000
_FIRST_ORDER_ID = 2_000_010_000_000_000
_FIRST_PACK_ID = 2_000_020_000_000_000
_FIRST_SHIPMENT_ID = 44_000_000_000
_FIRST_PAYMENT_ID = 90_000_000_000
_FIRST_QUESTION_ID = 13_000_000_000
_FIRST_CLAIM_ID = 5_300_000_000
_FIRST_VARIATION_ID = 180_000_000_000

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
_FIRST_NAMES = [
    "Ana",
    "Bruno",
    "Carla",
    "Diego",
    "Eduarda",
    "Felipe",
    "Gabriela",
    "Henrique",
    "Isabela",
    "João",
    "Larissa",
    "Marcos",
    "Natália",
    "Otávio",
    "Paula",
    "Rafael",
    "Sofia",
    "Thiago",
    "Vitória",
    "Yuri",
]
_LAST_NAMES = [
    "Silva",
    "Santos",
    "Oliveira",
    "Souza",
    "Lima",
    "Pereira",
    "Costa",
    "Almeida",
    "Ribeiro",
    "Carvalho",
]
_CITIES = [
    ("BR-SP", "São Paulo", "São Paulo"),
    ("BR-RJ", "Rio de Janeiro", "Rio de Janeiro"),
    ("BR-MG", "Minas Gerais", "Belo Horizonte"),
    ("BR-PR", "Paraná", "Curitiba"),
    ("BR-RS", "Rio Grande do Sul", "Porto Alegre"),
    ("BR-BA", "Bahia", "Salvador"),
]
_QUESTIONS = [
    "Olá, tem disponível para entrega imediata?",
    "Qual o prazo de entrega para o CEP 01310-100?",
    "Esse produto tem garantia?",
    "Vocês emitem nota fiscal?",
    "Tem na cor azul?",
    "Serve no modelo anterior?",
    "Qual a voltagem?",
    "Aceita troca se não servir?",
]
_ANSWERS = [
    "Olá! Sim, temos disponível. Obrigado pela pergunta!",
    "Bom dia! Emitimos nota fiscal, sim.",
    "Olá! Garantia de 90 dias contra defeitos de fabricação.",
]
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


def _id_param(name: str, value: object) -> int:
    """A numeric id from an admin body: a JSON integer or a string of digits."""
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        msg = f"{name} must be a positive integer, got {value!r}"
        raise bad_request(msg)
    return int(value)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


class Marketplace:
    def __init__(self, cfg: MarketplaceConfig, clock: Clock) -> None:
        self.cfg = cfg
        self.clock = clock
        self.site_id = cfg.site_id
        # Seeded data must be reproducible, so a plain PRNG is the right tool.
        self.rng = random.Random(cfg.seed)  # noqa: S311
        self.on_change: ChangeHook | None = None
        self.users: dict[int, Json] = {}
        self.sellers: list[int] = []
        self.buyers: list[int] = []
        self.items: dict[str, Json] = {}
        self.items_by_seller: dict[int, list[str]] = {}
        self.orders: dict[int, Json] = {}
        self.orders_by_seller: dict[int, list[int]] = {}
        self.orders_by_buyer: dict[int, list[int]] = {}
        self.shipments: dict[int, Json] = {}
        self.shipment_parties: dict[int, tuple[int, int, int]] = {}  # id -> seller, buyer, order
        self.packs: dict[int, Json] = {}
        self.payments: dict[int, Json] = {}
        self.questions: dict[int, Json] = {}
        self.questions_by_seller: dict[int, list[int]] = {}
        self.messages: dict[str, Json] = {}
        self.messages_by_pack: dict[int, list[str]] = {}
        self.message_pack: dict[str, int] = {}
        self.claims: dict[int, Json] = {}
        self.claims_by_seller: dict[int, list[int]] = {}
        self._item_json: dict[tuple[str, bool], bytes] = {}
        self._next_item = _FIRST_ITEM_NUMBER
        self._next_order = _FIRST_ORDER_ID
        self._next_pack = _FIRST_PACK_ID
        self._next_shipment = _FIRST_SHIPMENT_ID
        self._next_payment = _FIRST_PAYMENT_ID
        self._next_question = _FIRST_QUESTION_ID
        self._next_claim = _FIRST_CLAIM_ID
        self._next_variation = _FIRST_VARIATION_ID
        self._now_ms: int | None = None  # set while seeding, so seeded stamps ignore wall time
        self._seed()

    # ------------------------------------------------------------------ helpers
    def _stamp(self) -> int:
        if self._now_ms is not None:
            self._now_ms += self.rng.randint(1_000, 600_000)
            return self._now_ms
        return self.clock.tick_ms()

    def _emit(
        self, topic: str, user_id: int, resource: str, actions: list[str] | None = None
    ) -> None:
        if self._now_ms is None and self.on_change is not None:
            self.on_change(topic, user_id, resource, actions)

    def _hex(self, n: int) -> str:
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(n))

    # ------------------------------------------------------------------ seeding
    def _seed(self) -> None:
        cfg = self.cfg
        self._now_ms = SEED_EPOCH_MS - 400 * _DAY_MS
        for i in range(cfg.sellers):
            self._add_user(DEMO_SELLER_ID + i, seller=True, index=i)
        for j in range(cfg.buyers):
            self._add_user(_FIRST_BUYER_ID + j, seller=False, index=j)
        for seller_id in self.sellers:
            for _ in range(cfg.items_per_seller):
                self.new_item(seller_id)
        self._now_ms = SEED_EPOCH_MS - 60 * _DAY_MS
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
                    self.answer_question(question["id"], self.rng.choice(_ANSWERS), seller_id)
            paid = [
                o for o in self.orders_by_seller[seller_id] if self.orders[o]["status"] == "paid"
            ]
            for order_id in paid[: cfg.claims_per_seller]:
                self.new_claim(order_id=order_id)
        self._now_ms = None

    def _add_user(self, user_id: int, *, seller: bool, index: int) -> None:
        first = _FIRST_NAMES[index % len(_FIRST_NAMES)]
        last = _LAST_NAMES[(index // len(_FIRST_NAMES)) % len(_LAST_NAMES)]
        nickname = (
            ("LOJA_DEMO" if index == 0 else f"LOJA{index:04d}")
            if seller
            else f"{first.upper()}{index:05d}"
        )
        state_id, state_name, city = _CITIES[index % len(_CITIES)]
        stamp = self._stamp()
        user: Json = {
            "id": user_id,
            "nickname": nickname,
            "registration_date": iso_brt(stamp),
            "first_name": first,
            "last_name": last,
            "country_id": "BR",
            "email": f"test_user_{user_id}@testuser.com",
            "identification": {"type": "CPF", "number": f"{(user_id * 7919) % 10**11:011d}"},
            "address": {
                "state": state_id,
                "city": city,
                "address": f"Rua Teste {100 + index}",
                "zip_code": "01310100",
            },
            "phone": {
                "area_code": "11",
                "number": f"9{index:04d}-{user_id % 10000:04d}",
                "extension": "",
                "verified": False,
            },
            "alternative_phone": {"area_code": "", "number": "", "extension": ""},
            "user_type": "normal",
            "tags": ["normal", "test_user", "user_info_verified"],
            "logo": None,
            "points": 100,
            "site_id": self.site_id,
            "permalink": f"http://perfil.mercadolivre.com.br/{nickname}",
            "seller_experience": "ADVANCED" if seller else "NEWBIE",
            "seller_reputation": {
                "level_id": "5_green" if seller else None,
                "power_seller_status": "gold" if seller and index == 0 else None,
                "transactions": {
                    "period": "historic",
                    "total": 0,
                    "completed": 0,
                    "canceled": 0,
                    "ratings": {"positive": 0, "negative": 0, "neutral": 0},
                },
            },
            "buyer_reputation": {
                "canceled_transactions": 0,
                "transactions": {"period": "historic", "total": None},
                "tags": [],
            },
            "status": {
                "site_status": "active",
                "list": {"allow": True, "codes": []},
                "buy": {"allow": True, "codes": []},
                "sell": {"allow": True, "codes": []},
                "billing": {"allow": True, "codes": []},
                "mercadopago_tc_accepted": True,
                "mercadopago_account_type": "personal",
                "mercadoenvios": "accepted",
                "immediate_payment": False,
                "confirmed_email": True,
                "user_type": "eventual",
                "required_action": "",
            },
            "credit": {"consumed": 100, "credit_level_id": "MLB5"},
            "_state_name": state_name,
        }
        self.users[user_id] = user
        if seller:
            self.sellers.append(user_id)
            self.items_by_seller[user_id] = []
            self.orders_by_seller[user_id] = []
            self.questions_by_seller[user_id] = []
            self.claims_by_seller[user_id] = []
        else:
            self.buyers.append(user_id)
            self.orders_by_buyer[user_id] = []

    @staticmethod
    def private_user(user: Json) -> Json:
        return {k: v for k, v in user.items() if not k.startswith("_")}

    @staticmethod
    def public_user(user: Json) -> Json:
        return {
            "id": user["id"],
            "nickname": user["nickname"],
            "country_id": user["country_id"],
            "address": {"city": user["address"]["city"], "state": user["address"]["state"]},
            "user_type": user["user_type"],
            "site_id": user["site_id"],
            "permalink": user["permalink"],
            "seller_reputation": {
                "level_id": user["seller_reputation"]["level_id"],
                "power_seller_status": user["seller_reputation"]["power_seller_status"],
                "transactions": {
                    "period": "historic",
                    "total": user["seller_reputation"]["transactions"]["total"],
                },
            },
            "status": {"site_status": user["status"]["site_status"]},
        }

    def user(self, user_id: int) -> Json:
        user = self.users.get(user_id)
        if user is None:
            msg = f"User {user_id} not found"
            raise not_found(msg)
        return user

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
        stop = stamp + 20 * 365 * _DAY_MS
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
            return self._silent_order(self.order(_id_param("order_id", order_id)))
        return self._silent_question(self.question(_id_param("question_id", question_id)))

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

    def _silent_question(self, question: Json) -> Json:
        old_status, old_hold, old_stamp = (
            question["status"],
            question["hold"],
            question["last_updated"],
        )
        # Moderation holds an unanswered question and releases it; others toggle the spam flag.
        flips = {"UNANSWERED": "UNDER_REVIEW", "UNDER_REVIEW": "UNANSWERED"}
        changed: Json = {}
        if old_status in flips:
            question["status"] = flips[old_status]
            question["hold"] = question["status"] == "UNDER_REVIEW"
            changed["status"] = [old_status, question["status"]]
            if question["hold"] != old_hold:
                changed["hold"] = [old_hold, question["hold"]]
        else:
            old_spam = question["suspected_spam"]
            question["suspected_spam"] = not old_spam
            changed["suspected_spam"] = [old_spam, question["suspected_spam"]]
        question["last_updated"] = iso_z(self._stamp())
        changed["last_updated"] = [old_stamp, question["last_updated"]]
        return {"resource": f"/questions/{question['id']}", "changed": changed}

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

    # ------------------------------------------------------------------ questions
    def new_question(
        self,
        *,
        item_id: str | None = None,
        seller_id: int | None = None,
        buyer_id: int | None = None,
        text: str | None = None,
    ) -> Json:
        item = self._pick_seller_item(seller_id, item_id)
        buyer_id = buyer_id if buyer_id is not None else self.rng.choice(self.buyers)
        stamp = iso_z(self._stamp())
        qid = self._next_question
        self._next_question += self.rng.randint(1, 97)
        question: Json = {
            "id": qid,
            "seller_id": item["seller_id"],
            "buyer_id": buyer_id,
            "item_id": item["id"],
            "deleted_from_listing": False,
            "suspected_spam": False,
            "status": "UNANSWERED",
            "hold": False,
            "text": text or self.rng.choice(_QUESTIONS),
            "app_id": None,
            "date_created": stamp,
            "last_updated": stamp,
            "answer": None,
            "from": {"id": buyer_id},
        }
        self.questions[qid] = question
        self.questions_by_seller[item["seller_id"]].append(qid)
        self._emit("questions", item["seller_id"], f"/questions/{qid}")
        return question

    def question(self, question_id: int) -> Json:
        question = self.questions.get(question_id)
        if question is None:
            msg = f"Question {question_id} not found"
            raise not_found(msg)
        return question

    def answer_question(self, question_id: int, text: str, seller_id: int) -> Json:
        question = self.question(question_id)
        if question["seller_id"] != seller_id:
            raise SandboxError(403, "forbidden", "The user is not the owner of the question")
        if question["status"] != "UNANSWERED":
            msg = f"Question {question_id} is {question['status']}"
            raise bad_request(msg, "invalid_question")
        if not text or len(text) > 2000:
            msg = "text must have between 1 and 2000 characters"
            raise bad_request(msg, "invalid_post_body")
        stamp = self._stamp()
        question["answer"] = {"text": text, "status": "ACTIVE", "date_created": iso_brt(stamp)}
        question["status"] = "ANSWERED"
        question["last_updated"] = iso_z(stamp)
        self._emit("questions", seller_id, f"/questions/{question_id}")
        return question

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
