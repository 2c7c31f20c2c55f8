"""What Peepers reads from Mercado Libre, as pydantic models.

Models keep only the fields services use and ignore the rest, so ML adding fields never
breaks us. Shapes follow ../shared/ml-api/FACTS.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from pydantic import AliasChoices, BaseModel, ConfigDict, Field


class MlModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class MlUser(MlModel):
    id: int
    nickname: str
    site_id: str | None = None
    country_id: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    permalink: str | None = None


class MlAttribute(MlModel):
    id: str
    name: str | None = None
    value_name: str | None = None


class MlVariation(MlModel):
    id: int
    price: float | None = None
    available_quantity: int = 0
    sold_quantity: int = 0
    seller_custom_field: str | None = None
    attribute_combinations: list[dict[str, Any]] = []


class MlItem(MlModel):
    id: str
    seller_id: int
    site_id: str | None = None
    title: str
    category_id: str | None = None
    price: float
    currency_id: str = "BRL"
    available_quantity: int = 0
    sold_quantity: int = 0
    status: str
    sub_status: list[str] = []
    permalink: str | None = None
    thumbnail: str | None = None
    seller_custom_field: str | None = None
    attributes: list[MlAttribute] = []
    variations: list[MlVariation] = []
    date_created: datetime | None = None
    last_updated: datetime

    @property
    def sku(self) -> str | None:
        for attribute in self.attributes:
            if attribute.id == "SELLER_SKU" and attribute.value_name:
                return attribute.value_name
        return self.seller_custom_field


class MlOrderItem(MlModel):
    item: dict[str, Any]
    quantity: int
    unit_price: float
    currency_id: str | None = None

    @property
    def item_id(self) -> str | None:
        value = self.item.get("id")
        return value if isinstance(value, str) else None

    @property
    def title(self) -> str | None:
        value = self.item.get("title")
        return value if isinstance(value, str) else None


class MlPayment(MlModel):
    """A payment of an order (in the order's ``payments`` and at ``/collections/{id}``)."""

    id: int
    order_id: int | None = None
    status: str
    status_detail: str | None = None
    transaction_amount: float = 0
    transaction_amount_refunded: float = 0
    total_paid_amount: float | None = None
    currency_id: str | None = None
    date_approved: datetime | None = None
    date_last_modified: datetime | None = None


class MlOrderParty(MlModel):
    id: int
    nickname: str | None = None


# Every order status ML documents (FACTS.md 4.2): a search for all of a seller's orders
# names them, as ML's search hides cancelled ones otherwise.
ORDER_STATUSES: Final = (
    "confirmed",
    "payment_required",
    "payment_in_process",
    "partially_paid",
    "paid",
    "partially_refunded",
    "pending_cancel",
    "cancelled",
    "invalid",
)


class MlOrder(MlModel):
    id: int
    status: str
    status_detail: Any = None
    date_created: datetime
    date_closed: datetime | None = None
    last_updated: datetime | None = Field(
        default=None, validation_alias=AliasChoices("last_updated", "date_last_updated")
    )
    total_amount: float
    paid_amount: float | None = None
    currency_id: str | None = None
    buyer: MlOrderParty
    seller: MlOrderParty
    order_items: list[MlOrderItem] = []
    payments: list[MlPayment] = []
    shipping: dict[str, Any] = {}
    pack_id: int | None = None
    tags: list[str] = []
    cancel_detail: dict[str, Any] | None = None

    @property
    def shipment_id(self) -> int | None:
        value = self.shipping.get("id")
        return value if isinstance(value, int) else None


class MlPaging(MlModel):
    total: int = 0
    offset: int = 0
    limit: int = 0


class MlOrderPage(MlModel):
    results: list[MlOrder]
    paging: MlPaging


class MlShipment(MlModel):
    id: int
    status: str
    substatus: str | None = None
    tracking_number: str | None = None
    tracking_method: str | None = None
    last_updated: datetime | None = None
    date_created: datetime | None = None


class MlShipmentStep(MlModel):
    """One step of ``/shipments/{id}/history`` (FACTS.md 6)."""

    status: str
    substatus: str | None = None
    date: datetime


class MlPackOrder(MlModel):
    id: int


class MlPack(MlModel):
    """A pack: orders of one cart that share a shipment (FACTS.md 4.4)."""

    id: int
    status: str | None = None
    shipment: dict[str, Any] | None = None
    orders: list[MlPackOrder] = []

    @property
    def shipment_id(self) -> int | None:
        value = (self.shipment or {}).get("id")
        return value if isinstance(value, int) else None


class MlAnswer(MlModel):
    text: str
    status: str | None = None
    date_created: datetime | None = None


class MlQuestion(MlModel):
    id: int
    seller_id: int
    item_id: str
    # Open: UNANSWERED, ANSWERED, CLOSED_UNANSWERED, UNDER_REVIEW, BANNED, DELETED,
    # DISABLED today (FACTS.md 5.1); a new value is kept as ML sent it.
    status: str
    text: str
    date_created: datetime
    last_updated: datetime | None = None
    hold: bool = False
    answer: MlAnswer | None = None
    from_: dict[str, Any] | None = Field(default=None, alias="from")

    @property
    def buyer_id(self) -> int | None:
        value = (self.from_ or {}).get("id")
        return value if isinstance(value, int) else None


class MlQuestionPage(MlModel):
    """A page of ``/questions/search`` (FACTS.md 5.1)."""

    total: int = 0
    limit: int = 0
    questions: list[MlQuestion] = []


class MlMessage(MlModel):
    id: str
    text: str | None = None
    # Open: available, moderated, rejected, pending_translation (FACTS.md 5.2).
    status: str | None = None
    from_: dict[str, Any] | None = Field(default=None, alias="from")
    to: dict[str, Any] | None = None
    message_date: dict[str, Any] | None = None
    message_moderation: dict[str, Any] | None = None
    message_attachments: list[dict[str, Any]] = []
    message_resources: list[dict[str, Any]] = []

    def _date(self, name: str) -> str | None:
        value = (self.message_date or {}).get(name)
        return value if isinstance(value, str) else None

    @property
    def created(self) -> str | None:
        return self._date("created") or self._date("received")

    @property
    def read(self) -> str | None:
        return self._date("read")

    @property
    def pack_id(self) -> int | None:
        """The pack of the conversation, from ``message_resources``."""
        for resource in self.message_resources:
            raw = resource.get("id")
            if resource.get("name") == "packs" and isinstance(raw, str | int):
                text = str(raw)
                return int(text) if text.isdigit() else None
        return None

    def user_id(self, side: str) -> int | None:
        """The ``from`` or ``to`` user id (ML sends it as a string)."""
        party = self.from_ if side == "from" else self.to
        raw = (party or {}).get("user_id")
        text = str(raw) if isinstance(raw, str | int) else ""
        return int(text) if text.isdigit() else None


class MlConversationStatus(MlModel):
    """Whether a pack's conversation takes messages (FACTS.md 5.2, 11).

    ``status`` is ``active`` or ``blocked``; ``substatus`` says why it is blocked
    (``blocked_by_time``, ``_buyer``, ``_mediation``, ``_fulfillment``; open).
    """

    status: str = "active"
    substatus: str | None = None
    status_date: datetime | None = None
    claim_id: int | None = None


class MlMessagePage(MlModel):
    messages: list[MlMessage]
    paging: dict[str, Any] | None = None
    conversation_status: MlConversationStatus | None = None


class MlClaim(MlModel):
    id: int
    resource_id: int | None = None
    status: str
    type: str | None = None
    stage: str | None = None
    resource: str | None = None
    reason_id: str | None = None
    date_created: datetime | None = None
    last_updated: datetime | None = None
    players: list[dict[str, Any]] = []
    resolution: dict[str, Any] | None = None

    def player(self, role: str) -> int | None:
        """The user id of the claim's ``complainant``, ``respondent`` or ``mediator``."""
        for player in self.players:
            if player.get("role") == role and isinstance(player.get("user_id"), int):
                return int(player["user_id"])
        return None


class MlClaimDetail(MlModel):
    """``/post-purchase/v1/claims/{id}/detail``: who must act next, and by when."""

    due_date: datetime | None = None
    action_responsible: str | None = None
    title: str | None = None
    description: str | None = None
    problem: str | None = None


class MlClaimPage(MlModel):
    paging: MlPaging = MlPaging()
    data: list[MlClaim] = []


class MlMissedFeedsPage(MlModel):
    """A page of ``/missed_feeds``: notifications ML gave up delivering.

    Entries stay as ML sent them (the notification plus ``request`` and ``response``, the
    failed delivery): they are notifications to take in again verbatim, so the receiver's
    notification model judges each one. A typed entry here would drop fields the receiver
    must keep (``actions``) and let one odd entry (an ``orders_v2`` without ``_id``, as in
    ML's own sample) fail the whole page.
    """

    messages: list[dict[str, Any]]
