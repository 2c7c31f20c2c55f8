"""The marketplace's shared state: ids, stamps and the change hook every family uses.

Objects are kept as ML-shaped JSON dicts so the REST layer serves them as they are.
Every change stamps ``last_updated`` (strictly later than before) and calls the change
hook with ``(topic, user_id, resource, actions)``; the notifier turns that into ML's
notification bodies, applying the quirks there so the data here stays canonical.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from peepers_sandbox.clock import Clock
from peepers_sandbox.config import MarketplaceConfig
from peepers_sandbox.errors import bad_request

ChangeHook = Callable[[str, int, str, list[str] | None], None]
Json = dict[str, Any]

# Seeded objects are dated from here, so the same seed gives byte-identical data.
SEED_EPOCH_MS = 1_748_779_200_000  # 2025-06-01T12:00:00Z
DAY_MS = 86_400_000

FIRST_BUYER_ID = 4_000_000_001
_FIRST_ITEM_NUMBER = 4_100_000_000
_FIRST_ORDER_ID = 2_000_010_000_000_000
_FIRST_PACK_ID = 2_000_020_000_000_000
_FIRST_SHIPMENT_ID = 44_000_000_000
_FIRST_PAYMENT_ID = 90_000_000_000
_FIRST_QUESTION_ID = 13_000_000_000
_FIRST_CLAIM_ID = 5_300_000_000
_FIRST_VARIATION_ID = 180_000_000_000


def id_param(name: str, value: object) -> int:
    """A numeric id from an admin body: a JSON integer or a string of digits."""
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        msg = f"{name} must be a positive integer, got {value!r}"
        raise bad_request(msg)
    return int(value)


class MarketCore:
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
        self.shipment_history: dict[int, list[Json]] = {}
        self.packs: dict[int, Json] = {}
        self.pack_flags: dict[int, set[str]] = {}  # fulfillment, buyer_wrote, seller_started
        self.buyer_blocks: dict[int, int] = {}  # pack id -> when its buyer blocked the seller
        self.payments: dict[int, Json] = {}
        self.questions: dict[int, Json] = {}
        self.questions_by_seller: dict[int, list[int]] = {}
        self.questions_by_item: dict[str, list[int]] = {}
        self.questions_by_buyer: dict[int, list[int]] = {}
        self.messages: dict[str, Json] = {}
        self.messages_by_pack: dict[int, list[str]] = {}
        self.message_pack: dict[str, int] = {}
        self.claims: dict[int, Json] = {}
        self.claims_by_seller: dict[int, list[int]] = {}
        self.claims_by_buyer: dict[int, list[int]] = {}
        self.claim_messages: dict[int, list[Json]] = {}
        # Unread messages per reader and pack, kept as messages come and are read.
        self.unread: dict[int, dict[int, int]] = {}
        self._item_json: dict[tuple[str, bool], bytes] = {}
        self._next_item = _FIRST_ITEM_NUMBER
        self._next_order = _FIRST_ORDER_ID + cfg.id_offset
        self._next_pack = _FIRST_PACK_ID + cfg.id_offset
        self._next_shipment = _FIRST_SHIPMENT_ID + cfg.id_offset
        self._next_payment = _FIRST_PAYMENT_ID + cfg.id_offset
        self._next_question = _FIRST_QUESTION_ID + cfg.id_offset
        self._next_claim = _FIRST_CLAIM_ID + cfg.id_offset
        self._next_variation = _FIRST_VARIATION_ID
        self._now_ms: int | None = None  # set while seeding, so seeded stamps ignore wall time

    # ------------------------------------------------------------------ helpers
    def _stamp(self) -> int:
        if self._now_ms is not None:
            self._now_ms += self.rng.randint(1_000, 600_000)
            return self._now_ms
        return self.clock.tick_ms()

    def now_ms(self) -> int:
        """Sandbox time in ms; while seeding, the seed's own time."""
        return self._now_ms if self._now_ms is not None else int(self.clock.now() * 1000)

    def _emit(
        self, topic: str, user_id: int, resource: str, actions: list[str] | None = None
    ) -> None:
        if self._now_ms is None and self.on_change is not None:
            self.on_change(topic, user_id, resource, actions)

    def _hex(self, n: int) -> str:
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(n))
