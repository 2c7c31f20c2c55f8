"""The small ports the messages service's handlers talk through; adapters in ``adapters/``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict

from peepers_common.ml.models import (
    MlClaim,
    MlClaimDetail,
    MlClaimPage,
    MlMessage,
    MlMessagePage,
    MlOrderPage,
    MlQuestion,
    MlQuestionPage,
)


class MessagesSource(Protocol):
    """The part of `peepers_common.ml.MlApi` the messages service uses."""

    async def get_question(self, question_id: int, *, seller_id: int) -> MlQuestion: ...
    async def answer_question(
        self, question_id: int, text: str, *, seller_id: int
    ) -> MlQuestion: ...
    async def search_questions(
        self,
        *,
        seller_id: int,
        status: str | None = None,
        item_id: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> MlQuestionPage: ...
    def iter_item_ids(self, *, seller_id: int, status: str | None = None) -> AsyncIterator[str]: ...
    async def get_message(self, message_id: str, *, seller_id: int) -> MlMessagePage: ...
    async def get_pack_messages(
        self, pack_id: int, *, seller_id: int, offset: int = 0, limit: int = 10
    ) -> MlMessagePage: ...
    async def send_message(
        self, pack_id: int, text: str, *, seller_id: int, buyer_id: int
    ) -> MlMessage: ...
    async def get_claim(self, claim_id: int, *, seller_id: int) -> MlClaim: ...
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
    ) -> MlOrderPage: ...
    async def get_claim_detail(self, claim_id: int, *, seller_id: int) -> MlClaimDetail: ...
    async def search_claims(
        self, *, seller_id: int, status: str | None = "opened", offset: int = 0, limit: int = 30
    ) -> MlClaimPage: ...


class MessageView(BaseModel):
    """One post-sale message as the mirror keeps it."""

    model_config = ConfigDict(frozen=True)

    id: str
    pack_id: int
    from_user_id: int | None = None
    to_user_id: int | None = None
    text: str | None = None
    status: str | None = None
    moderation: str | None = None
    attachments: int = 0
    created_at: AwareDatetime | None = None
    read_at: AwareDatetime | None = None


class ConversationView(BaseModel):
    """A pack's conversation: who talks, whether it takes messages, what is unread."""

    model_config = ConfigDict(frozen=True)

    pack_id: int
    seller_id: int
    buyer_id: int | None = None
    status: str = "active"
    substatus: str | None = None
    claim_id: int | None = None
    messages: tuple[MessageView, ...] = ()

    @property
    def unread(self) -> int:
        """Messages to the seller, delivered (``available``) and not read yet.

        A message held by moderation (``moderated``, ``rejected``, ...) is not shown to the
        seller, so it is not unread either (as ML counts ``/messages/unread``).
        """
        return sum(
            1
            for m in self.messages
            if m.to_user_id == self.seller_id
            and m.read_at is None
            and m.status in (None, "available")
        )

    def summary(self) -> dict[str, Any]:
        last = max((m.created_at for m in self.messages if m.created_at), default=None)
        return {
            "pack_id": self.pack_id,
            "seller_id": self.seller_id,
            "buyer_id": self.buyer_id,
            "status": self.status,
            "substatus": self.substatus,
            "claim_id": self.claim_id,
            "messages": len(self.messages),
            "unread": self.unread,
            "last_message_at": last.isoformat() if last else None,
        }


class TimelineEntry(BaseModel):
    """One moment of an order's life: an order event, a message or a claim change."""

    model_config = ConfigDict(frozen=True)

    id: str
    at: AwareDatetime
    kind: str  # order | message | claim
    type: str
    detail: dict[str, Any] = {}
