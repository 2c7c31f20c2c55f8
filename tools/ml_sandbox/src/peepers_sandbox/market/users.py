"""Users: sellers and buyers, their private and public views."""

from __future__ import annotations

from peepers_sandbox.clock import iso_brt
from peepers_sandbox.errors import not_found
from peepers_sandbox.market.core import Json, MarketCore

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


class Users(MarketCore):
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
