"""The mail handler: one mail per (order, transition), rendered for the seller."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from peepers_common.events import (
    OrderLine,
    OrderPaid,
    OrderRefunded,
    OrderSnapshotted,
    OrderSummary,
)
from peepers_common.testing import FakeMlApi
from peepers_orders.errors import MailInFlight, MailUnavailable
from peepers_orders.handlers import OrderLocks
from peepers_orders.mail import (
    Mailer,
    Templates,
    WaitingMail,
    message_id,
    money,
    on_order_event,
)
from peepers_orders.ports import OutgoingMail, SellerProfile
from peepers_orders.settings import MailSettings, SmtpSettings
from tests.unit.orders.fakes import (
    SELLER,
    T0,
    FakeMailSender,
    InMemoryClaims,
    InMemoryLedger,
    InMemorySellers,
    Market,
)

SUMMARY = OrderSummary(
    order_id=2000001,
    state="paid",
    ml_status="paid",
    buyer_id=9001,
    currency_id="BRL",
    total_amount=Decimal("1234.5"),
    paid_amount=Decimal("1234.5"),
    lines=(
        OrderLine(
            item_id="MLB100", title="Camiseta <Básica>", quantity=2, unit_price=Decimal("617.25")
        ),
    ),
    date_created=T0,
    paid_at=T0 + timedelta(minutes=5),
)


def paid_event(**fields) -> bytes:
    return (
        OrderPaid(
            event_id=fields.pop("event_id", "6f5c1c2e-5b7e-4f0a-9a56-2f1d8a3c9e11"),
            occurred_at=T0,
            seller_id=SELLER,
            order_id=2000001,
            order=SUMMARY,
            revealed_by="notification:n1",
        )
        .model_dump_json()
        .encode()
    )


@pytest.fixture
def mailer() -> Mailer:
    return Mailer(
        ledger=InMemoryLedger(),
        claims=InMemoryClaims(),
        sender=FakeMailSender(),
        sellers=InMemorySellers(),
        ml=Market(FakeMlApi()).ml,
        mail=MailSettings(),
        smtp=SmtpSettings(from_address="Peepers <vendas@loja.example>"),
        templates=Templates(),
    )


def sent(mailer: Mailer) -> FakeMailSender:
    assert isinstance(mailer.sender, FakeMailSender)
    return mailer.sender


async def test_a_transition_sends_one_mail_to_the_sellers_address(mailer: Mailer) -> None:
    assert await on_order_event(paid_event(), mailer) == "sent"
    [mail] = sent(mailer).sent
    assert mail.to == "loja@example.com"
    assert mail.subject == "Pagamento aprovado: #2000001"
    assert mail.message_id == "<order-2000001-paid@loja.example>"
    assert "R$ 1.234,50" in mail.text
    assert "Prepare o pacote" in mail.text
    assert "Camiseta &lt;Básica&gt;" in mail.html  # autoescaped
    assert "Camiseta <Básica>" in mail.text


async def test_the_same_transition_redelivered_or_replayed_sends_nothing(mailer: Mailer) -> None:
    await on_order_event(paid_event(), mailer)
    assert await on_order_event(paid_event(), mailer) == "duplicate"
    assert len(sent(mailer).sent) == 1


async def test_a_mail_the_server_did_not_take_is_not_in_the_ledger_and_waits(
    mailer: Mailer,
) -> None:
    now = [100.0]
    waiting = replace(mailer, waiting=WaitingMail(clock=lambda: now[0]))
    sent(mailer).down = True
    with pytest.raises(MailUnavailable):
        await on_order_event(paid_event(), waiting)
    assert isinstance(mailer.ledger, InMemoryLedger)
    assert mailer.ledger.entries == {}
    now[0] = 160.0
    assert waiting.waiting.oldest_age_s() == 60.0
    sent(mailer).down = False
    assert await on_order_event(paid_event(), waiting) == "sent"
    assert waiting.waiting.oldest_age_s() == 0.0


async def test_snapshots_and_unmailed_transitions_send_nothing(mailer: Mailer) -> None:
    snapshot = OrderSnapshotted(
        event_id="6f5c1c2e-5b7e-4f0a-9a56-2f1d8a3c9e12",
        occurred_at=T0,
        seller_id=SELLER,
        order_id=2000001,
        order=SUMMARY,
        revealed_by="backfill:r1",
    )
    assert await on_order_event(snapshot.model_dump_json().encode(), mailer) == "skipped"
    assert await on_order_event(b'{"type": "order.teleported"}', mailer) == "skipped"
    only_shipped = replace(mailer, mail=MailSettings(transitions=["shipped"]))
    assert await on_order_event(paid_event(), only_shipped) == "skipped"
    assert sent(mailer).sent == []


async def test_a_partial_refund_is_its_own_mail_in_english_when_asked(mailer: Mailer) -> None:
    english = replace(mailer, mail=MailSettings(locale="en"))
    refund = OrderRefunded(
        event_id="6f5c1c2e-5b7e-4f0a-9a56-2f1d8a3c9e13",
        occurred_at=T0,
        seller_id=SELLER,
        order_id=2000001,
        order=SUMMARY.model_copy(update={"refunded_amount": Decimal("20")}),
        revealed_by="notification:n2",
        partial=True,
    )
    assert await on_order_event(refund.model_dump_json().encode(), english) == "sent"
    [mail] = sent(mailer).sent
    assert mail.subject == "Partial refund: #2000001"
    assert "Refunded: R$ 20.00" in mail.text
    assert mail.message_id == "<order-2000001-partially_refunded@loja.example>"


def test_message_ids_and_amounts() -> None:
    assert message_id(7, "paid", "vendas@x.example") == "<order-7-paid@x.example>"
    assert money(Decimal("1234567.5"), "BRL", "pt-BR") == "R$ 1.234.567,50"
    assert money(Decimal("3"), "USD", "en") == "US$ 3.00"


class HeldServer(FakeMailSender):
    """An SMTP server that takes each message once `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def send(self, message: OutgoingMail) -> None:
        self.reached.set()
        await self.release.wait()
        await super().send(message)


async def test_two_copies_of_a_transition_at_once_send_one_mail(mailer: Mailer) -> None:
    # A copy parked during an SMTP outage and a fresh copy (the event published twice),
    # both handled as the server comes back.
    server = HeldServer()
    held = replace(mailer, sender=server)
    first = asyncio.create_task(on_order_event(paid_event(), held))
    await server.reached.wait()
    second = asyncio.create_task(on_order_event(paid_event(), held))
    for _ in range(10):  # let the second copy run as far as it can (no time passes)
        await asyncio.sleep(0)
    server.release.set()
    assert sorted(await asyncio.gather(first, second)) == ["duplicate", "sent"]
    assert len(server.sent) == 1


async def test_a_mail_another_process_is_sending_is_retried_and_then_skipped(
    mailer: Mailer,
) -> None:
    store: dict[str, str] = {}
    other = replace(mailer, claims=InMemoryClaims(store, owner="mailer-2"))
    mine = replace(mailer, claims=InMemoryClaims(store, owner="mailer-1"))
    assert await other.claims.take("2000001:paid")  # the other process is sending it
    with pytest.raises(MailInFlight):
        await on_order_event(paid_event(), mine)
    assert sent(mailer).sent == []
    assert await on_order_event(paid_event(), other) == "sent"
    assert await on_order_event(paid_event(), mine) == "duplicate"
    assert len(sent(mailer).sent) == 1


class SlowSellers(InMemorySellers):
    """A seller directory whose lookups wait for `answer` (ML's limiter holding them)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()

    async def profile(self, seller_id: int) -> SellerProfile | None:
        self.asked.set()
        await self.answer.wait()
        return await super().profile(seller_id)


async def test_a_mail_sent_by_the_new_owner_while_the_old_one_waited_is_not_sent_again(
    mailer: Mailer,
) -> None:
    # After a rebalance the partition's old owner and its new one handle the same event.
    # The old one waits on the seller's profile for longer than a claim lives; the new
    # one sends the mail meanwhile. The old one must not send it again.
    store: dict[str, str] = {}
    slow = SlowSellers()
    old = replace(mailer, claims=InMemoryClaims(store, owner="mailer-1"), sellers=slow)
    new = replace(mailer, claims=InMemoryClaims(store, owner="mailer-2"), sending=OrderLocks())
    waiting = asyncio.create_task(on_order_event(paid_event(), old))
    await slow.asked.wait()
    store.clear()  # whatever the old owner held has lapsed
    assert await on_order_event(paid_event(), new) == "sent"
    store.clear()  # and so has the new owner's claim, its mail in the ledger
    slow.answer.set()
    assert await waiting == "duplicate"
    assert len(sent(mailer).sent) == 1
