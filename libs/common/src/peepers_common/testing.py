"""Fakes of the shared ports, importable by every service's tests (fakes behave; no mocks)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from peepers_common.errors import MlBadRequest, MlForbidden, MlNotFound
from peepers_common.kafka import Headers, Published
from peepers_common.ml.client import Multiget
from peepers_common.ml.models import (
    MlAnswer,
    MlClaim,
    MlClaimDetail,
    MlClaimPage,
    MlItem,
    MlMessage,
    MlMessagePage,
    MlOrder,
    MlOrderPage,
    MlPack,
    MlPaging,
    MlPayment,
    MlQuestion,
    MlQuestionPage,
    MlShipment,
    MlShipmentStep,
    MlUser,
)

__all__ = ["FakeMlApi", "InMemoryEventPublisher", "PublishedRecord"]

K = TypeVar("K")
V = TypeVar("V")


@dataclass
class PublishedRecord:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]

    def header(self, name: str) -> bytes | None:
        return dict(self.headers).get(name)


class InMemoryEventPublisher:
    """`EventPublisher` that keeps what it acked.

    Publishes raise each of ``failures`` once, in order, then ``failure`` while it is set.
    """

    def __init__(self) -> None:
        self.records: list[PublishedRecord] = []
        self.failures: list[Exception] = []
        self.failure: Exception | None = None
        self.attempts = 0

    async def publish(
        self, topic: str, *, key: bytes, value: bytes, headers: Headers = ()
    ) -> Published:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        if self.failure is not None:
            raise self.failure
        self.records.append(PublishedRecord(topic, key, value, list(headers)))
        return Published(topic, 0, len(self.records) - 1)

    def on(self, topic: str) -> list[PublishedRecord]:
        return [record for record in self.records if record.topic == topic]


class FakeMlApi:
    """`MlApi` over in-memory dicts: put what ML holds in them; absent ids answer 404.

    ``calls`` records each call as ``(method, id)``. Calls raise each of ``failures`` once,
    in order, then ``failure`` while it is set (an `MlUnavailable` for an outage).
    """

    def __init__(self) -> None:
        self.users: dict[int, MlUser] = {}
        self.items: dict[str, MlItem] = {}
        self.orders: dict[int, MlOrder] = {}
        self.shipments: dict[int, MlShipment] = {}
        self.shipment_history: dict[int, list[MlShipmentStep]] = {}
        self.packs: dict[int, MlPack] = {}
        self.payments: dict[int, MlPayment] = {}
        self.questions: dict[int, MlQuestion] = {}
        self.pack_messages: dict[int, MlMessagePage] = {}
        self.claims: dict[int, MlClaim] = {}
        self.claim_details: dict[int, MlClaimDetail] = {}
        self.question_search_cap = 1000
        self.missed: list[dict[str, Any]] = []
        self.calls: list[tuple[str, object]] = []
        self.failures: list[Exception] = []
        self.failure: Exception | None = None

    def _take(self, method: str, key: object) -> None:
        self.calls.append((method, key))
        if self.failures:
            raise self.failures.pop(0)
        if self.failure is not None:
            raise self.failure

    def _found(self, method: str, table: dict[K, V], key: K) -> V:
        self._take(method, key)
        if key not in table:
            msg = f"ML has no {method.removeprefix('get_')} {key}"
            raise MlNotFound(msg, status=404)
        return table[key]

    async def get_me(self, *, seller_id: int) -> MlUser:
        return self._found("get_me", self.users, seller_id)

    async def get_item(self, item_id: str, *, seller_id: int) -> MlItem:
        return self._found("get_item", self.items, item_id)

    async def multiget_items(self, ids: Sequence[str], *, seller_id: int) -> Multiget:
        self._take("multiget_items", tuple(ids))
        return Multiget(
            [self.items[i] for i in ids if i in self.items],
            [i for i in ids if i not in self.items],
        )

    async def iter_item_ids(
        self, *, seller_id: int, status: str | None = None
    ) -> AsyncIterator[str]:
        self._take("iter_item_ids", seller_id)
        for item in list(self.items.values()):
            if item.seller_id == seller_id and status in (None, item.status):
                yield item.id

    async def get_order(self, order_id: int, *, seller_id: int) -> MlOrder:
        return self._found("get_order", self.orders, order_id)

    async def search_orders(
        self,
        *,
        seller_id: int,
        offset: int = 0,
        limit: int = 50,
        sort: str = "date_desc",
        created_from: datetime | None = None,
        closed_from: datetime | None = None,
        statuses: Sequence[str] = (),
    ) -> MlOrderPage:
        """As ML: the seller's orders by date closed, cancelled ones only when asked for."""
        self._take("search_orders", offset)
        found = [
            order
            for order in self.orders.values()
            if order.seller.id == seller_id
            and (created_from is None or order.date_created >= created_from)
            and (
                closed_from is None
                or (order.date_closed is not None and order.date_closed >= closed_from)
            )
            and (order.status in statuses if statuses else order.status != "cancelled")
        ]
        found.sort(key=lambda o: (o.date_closed or o.date_created, o.id))
        if sort == "date_desc":
            found.reverse()
        return MlOrderPage(
            results=found[offset : offset + limit],
            paging=MlPaging(total=len(found), offset=offset, limit=limit),
        )

    async def get_shipment(self, shipment_id: int, *, seller_id: int) -> MlShipment:
        return self._found("get_shipment", self.shipments, shipment_id)

    async def get_shipment_history(
        self, shipment_id: int, *, seller_id: int
    ) -> list[MlShipmentStep]:
        return self._found("get_shipment_history", self.shipment_history, shipment_id)

    async def get_pack(self, pack_id: int, *, seller_id: int) -> MlPack:
        return self._found("get_pack", self.packs, pack_id)

    async def get_payment(self, payment_id: int, *, seller_id: int) -> MlPayment:
        return self._found("get_payment", self.payments, payment_id)

    async def get_question(self, question_id: int, *, seller_id: int) -> MlQuestion:
        return self._found("get_question", self.questions, question_id)

    async def answer_question(self, question_id: int, text: str, *, seller_id: int) -> MlQuestion:
        question = self._found("answer_question", self.questions, question_id)
        answered = question.model_copy(
            update={"status": "ANSWERED", "answer": MlAnswer(text=text, status="ACTIVE")}
        )
        self.questions[question_id] = answered
        return answered

    async def get_pack_messages(
        self, pack_id: int, *, seller_id: int, offset: int = 0, limit: int = 10
    ) -> MlMessagePage:
        page = self._found("get_pack_messages", self.pack_messages, pack_id)
        return page.model_copy(update={"messages": page.messages[offset : offset + limit]})

    async def get_claim(self, claim_id: int, *, seller_id: int) -> MlClaim:
        return self._found("get_claim", self.claims, claim_id)

    async def missed_feeds(
        self,
        *,
        seller_id: int,
        topic: str | None = None,
        site_id: str | None = None,
        offset: int = 0,
        limit: int = 10,
    ) -> list[dict[str, Any]]:
        self._take("missed_feeds", offset)
        chosen = [m for m in self.missed if topic is None or m.get("topic") == topic]
        return chosen[offset : offset + limit]

    # -- questions, post-sale messages and claims (the messages service) --

    async def search_questions(
        self,
        *,
        seller_id: int,
        status: str | None = None,
        item_id: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> MlQuestionPage:
        """As ML: oldest first, and no page past ``question_search_cap`` results."""
        self._take("search_questions", (item_id, offset))
        if offset + limit > self.question_search_cap:
            msg = f"offset + limit past {self.question_search_cap}"
            raise MlBadRequest(msg, status=400, error="invalid_offset")
        found = sorted(
            (
                q
                for q in self.questions.values()
                if q.seller_id == seller_id
                and (item_id is None or q.item_id == item_id)
                and (status is None or q.status == status)
            ),
            key=lambda q: (q.date_created, q.id),
        )
        return MlQuestionPage(
            total=len(found), limit=limit, questions=found[offset : offset + limit]
        )

    async def get_message(self, message_id: str, *, seller_id: int) -> MlMessagePage:
        self._take("get_message", message_id)
        for page in self.pack_messages.values():
            for message in page.messages:
                if message.id == message_id:
                    return MlMessagePage(messages=[message])
        msg = f"ML has no message {message_id}"
        raise MlNotFound(msg, status=404)

    async def send_message(
        self, pack_id: int, text: str, *, seller_id: int, buyer_id: int
    ) -> MlMessage:
        page = self._found("send_message", self.pack_messages, pack_id)
        status = page.conversation_status
        if status is not None and status.status == "blocked":
            msg = f"The conversation is blocked: {status.substatus}"
            raise MlForbidden(msg, status=403, error="blocked_conversation")
        message = MlMessage.model_validate(
            {
                "id": f"sent{len(self.calls):028d}",
                "text": text,
                "status": "available",
                "from": {"user_id": str(seller_id)},
                "to": {"user_id": str(buyer_id)},
                "message_resources": [{"id": str(pack_id), "name": "packs"}],
            }
        )
        self.pack_messages[pack_id] = page.model_copy(
            update={"messages": [*page.messages, message]}
        )
        return message

    async def get_claim_detail(self, claim_id: int, *, seller_id: int) -> MlClaimDetail:
        return self._found("get_claim_detail", self.claim_details, claim_id)

    async def search_claims(
        self, *, seller_id: int, status: str | None = "opened", offset: int = 0, limit: int = 30
    ) -> MlClaimPage:
        self._take("search_claims", offset)
        found = sorted(
            (
                c
                for c in self.claims.values()
                if c.player("respondent") == seller_id and status in (None, c.status)
            ),
            key=lambda c: c.id,
        )
        return MlClaimPage(
            paging=MlPaging(total=len(found), offset=offset, limit=limit),
            data=found[offset : offset + limit],
        )
