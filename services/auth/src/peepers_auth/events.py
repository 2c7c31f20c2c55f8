"""Seller lifecycle events on ``peepers.sellers.v1`` (the wire contract, v1).

They live here until ``peepers_common.events`` holds every domain's models. Records are
keyed by the seller id, so one seller's events stay in order on one partition, and the
``event_id`` is derived from the seller record's version: a transition republished after a
failure carries the same id, and consumers deduplicate on it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID, uuid5

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

# Fixed namespace for uuid5 event ids, so ids are stable across processes and releases.
_EVENT_NS = UUID("6f5c1c2e-5b7e-4f0a-9a56-2f1d8a3c9e11")


class SellerEventBase(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_id: UUID
    occurred_at: AwareDatetime
    seller_id: int


class SellerConnected(SellerEventBase):
    """A seller authorised Peepers for the first time (catalog starts a full sync)."""

    type: Literal["seller.connected"] = "seller.connected"
    nickname: str
    site_id: str


class SellerReconnected(SellerEventBase):
    """A seller known before (disconnected or needing re-authorisation) logged in again."""

    type: Literal["seller.reconnected"] = "seller.reconnected"
    nickname: str
    site_id: str


class SellerDisconnected(SellerEventBase):
    """The seller asked Peepers to forget their tokens."""

    type: Literal["seller.disconnected"] = "seller.disconnected"


class SellerReauthRequired(SellerEventBase):
    """ML refused the seller's refresh token; nothing works until they log in again."""

    type: Literal["seller.reauth_required"] = "seller.reauth_required"
    reason: str


SellerEvent = Annotated[
    SellerConnected | SellerReconnected | SellerDisconnected | SellerReauthRequired,
    Field(discriminator="type"),
]
SELLER_EVENT: TypeAdapter[SellerEvent] = TypeAdapter(SellerEvent)


def event_id(seller_id: int, event_type: str, version: int) -> UUID:
    """One id per transition: the seller, what happened, and the record version it made."""
    return uuid5(_EVENT_NS, f"{seller_id}:{event_type}:{version}")


def event_key(event: SellerEventBase) -> bytes:
    return str(event.seller_id).encode()


def occurred(now: float) -> datetime:
    return datetime.fromtimestamp(now, tz=UTC)
