"""Email to the seller on each transition, at most once per (order, transition).

The mailer is its own consumer group on ``peepers.orders.v1`` (`peepers_orders.mailer`):
a slow or dead SMTP server holds up mail only, never the order cache. For each event:

1. skip ``order.snapshot`` (backfilled history and orders found again after a cache
   loss send no email) and the transitions the settings do not mail;
2. skip it when the **ledger** says its mail went out (`MailLedger`: a compacted Kafka
   changelog with a Redis view, so it survives redelivery, restarts, kill -9, a replay of
   the topic from its start and a Redis flush);
3. render it (jinja2, text and HTML, pt-BR or en) and hand it to the SMTP server;
4. once the server answered 250, write the ledger (acks=all).

One sender at a time: the same (order, transition) can reach the mailer twice at once
(the event published twice when two writers race on the outbox, one copy fresh and one
parked, both due when an SMTP outage ends; or one copy handled by two processes, the
partition's old owner and its new one after a rebalance). Steps 2 to 4 run under a
per-order lock in the process and a claim across processes (`MailClaims`: a Redis key
naming the process, for longer than a send takes), taken right before the send with the
ledger re-checked under it; a mail claimed elsewhere is retried later (`MailInFlight`),
when the ledger has it, or the claim of a process that died has lapsed.

The window between 3 and 4 is the one place a mail can go twice: a crash after the 250
and before the ledger's first write (its Redis view, one round trip; the changelog
follows, see `adapters.mail_ledger`) leaves no trace of the send, and the redelivered
event sends it again. The copy carries the same deterministic ``Message-ID``
(``<order-{id}-{transition}@{domain}>``), so mail clients and servers that deduplicate on
it show one. Writing the ledger before the send would turn that duplicate into a possible
loss (a crash between the ledger write and the 250 would never send it); a sale's notice
is worth more than a rare duplicate, so the ledger is written after the send.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from peepers_common.events import ORDERS_EVENT, OrderEvent, OrderRefunded, event_type_of
from peepers_orders import metrics
from peepers_orders.errors import MailInFlight
from peepers_orders.handlers import OrderLocks
from peepers_orders.ports import (
    MailClaims,
    MailLedger,
    MailSender,
    OrderSource,
    OutgoingMail,
    SellerDirectory,
    SellerProfile,
)
from peepers_orders.settings import MailSettings, SmtpSettings

log = logging.getLogger(__name__)

LOCALES: Final = ("pt-BR", "en")

# Per locale and transition: the subject's verb phrase and the seller's next step.
_COPY: Final[dict[str, dict[str, tuple[str, str]]]] = {
    "pt-BR": {
        "created": ("Nova venda", "Aguarde a confirmação do pagamento antes de preparar o envio."),
        "paid": ("Pagamento aprovado", "Prepare o pacote e imprima a etiqueta de envio."),
        "shipped": ("Pedido enviado", "Acompanhe a entrega pelo código de rastreio."),
        "delivered": ("Pedido entregue", "Tudo certo! Peça ao comprador para avaliar a compra."),
        "cancelled": ("Venda cancelada", "Não envie o produto; o estoque volta ao anúncio."),
        "refunded": ("Reembolso total", "O valor foi devolvido ao comprador."),
        "partially_refunded": ("Reembolso parcial", "Parte do valor foi devolvida ao comprador."),
        "not_delivered": (
            "Entrega não concluída",
            "Verifique o envio: o pacote pode estar voltando para você.",
        ),
    },
    "en": {
        "created": ("New sale", "Wait for the payment before preparing the shipment."),
        "paid": ("Payment approved", "Pack the order and print the shipping label."),
        "shipped": ("Order shipped", "Follow the delivery with the tracking number."),
        "delivered": ("Order delivered", "All done! Ask the buyer to rate the purchase."),
        "cancelled": ("Sale cancelled", "Do not ship it; the stock goes back to the listing."),
        "refunded": ("Full refund", "The buyer got the money back."),
        "partially_refunded": ("Partial refund", "Part of the money went back to the buyer."),
        "not_delivered": (
            "Delivery failed",
            "Check the shipment: the package may be coming back to you.",
        ),
    },
}
_MAILED_TYPES: Final = frozenset(
    {
        "order.created",
        "order.paid",
        "order.shipped",
        "order.delivered",
        "order.cancelled",
        "order.refunded",
        "order.not_delivered",
    }
)
_SYMBOLS: Final = {"BRL": "R$", "USD": "US$", "ARS": "$", "MXN": "$", "CLP": "$", "COP": "$"}


def transition_of(event: OrderEvent) -> str:
    """The lifecycle transition an event announces (a partial refund is its own)."""
    if isinstance(event, OrderRefunded) and event.partial:
        return "partially_refunded"
    return event.type.removeprefix("order.")


def ledger_key(order_id: int, transition: str) -> str:
    return f"{order_id}:{transition}"


def message_id(order_id: int, transition: str, from_address: str) -> str:
    """The same ``Message-ID`` every time this mail is sent: receivers deduplicate on it."""
    domain = from_address.rsplit("@", 1)[-1].rstrip(">").strip() or "peepers.local"
    return f"<order-{order_id}-{transition}@{domain}>"


def money(amount: Decimal, currency: str | None, locale: str) -> str:
    """``R$ 1.234,50`` in pt-BR, ``R$ 1,234.50`` in en."""
    text = f"{amount:,.2f}"
    if locale == "pt-BR":
        text = text.replace(",", "_").replace(".", ",").replace("_", ".")
    return f"{_SYMBOLS.get(currency or '', currency or '')} {text}".strip()


class Templates:
    """The email templates (``templates/mail.<locale>.{txt,html}.j2``), autoescaped HTML."""

    def __init__(self) -> None:
        self._env = Environment(
            loader=PackageLoader("peepers_orders", "templates"),
            autoescape=select_autoescape(["html.j2"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(
        self, event: OrderEvent, transition: str, profile: SellerProfile, locale: str
    ) -> tuple[str, str, str]:
        """Subject, text and HTML of the mail for ``transition``."""
        headline, next_step = _COPY[locale][transition]
        order = event.order
        context = {
            "headline": headline,
            "next_step": next_step,
            "seller": profile,
            "order": order,
            "lines": [
                {
                    "title": line.title or line.item_id or "",
                    "item_id": line.item_id,
                    "quantity": line.quantity,
                    "unit_price": money(line.unit_price, order.currency_id, locale),
                }
                for line in order.lines
            ],
            "total": money(order.total_amount, order.currency_id, locale),
            "refunded": money(order.refunded_amount, order.currency_id, locale),
            "transition": transition,
        }
        subject = f"{headline}: #{order.order_id}"
        text = self._env.get_template(f"mail.{locale}.txt.j2").render(context)
        html = self._env.get_template(f"mail.{locale}.html.j2").render(context)
        return subject, text, html


class WaitingMail:
    """The mails this worker failed to send and has not sent since, for the age gauge.

    A mail dead-lettered after its last parking round stays: it was never sent, and the
    alert on this age should fire. A worker that restarts forgets its list until the mail
    fails again.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._since: dict[str, float] = {}
        metrics.EMAILS_OLDEST_PENDING.set_function(self.oldest_age_s)

    def failed(self, key: str) -> None:
        self._since.setdefault(key, self._clock())

    def done(self, key: str) -> None:
        self._since.pop(key, None)

    def oldest_age_s(self) -> float:
        return self._clock() - min(self._since.values()) if self._since else 0.0


@dataclass(frozen=True)
class Mailer:
    """Everything the mail handler needs, built by the composition root (or a test)."""

    ledger: MailLedger
    claims: MailClaims
    sender: MailSender
    sellers: SellerDirectory
    ml: OrderSource
    mail: MailSettings
    smtp: SmtpSettings
    templates: Templates
    waiting: WaitingMail = field(default_factory=WaitingMail)
    # One mail of an order at a time in this process (the same lock as the handlers').
    sending: OrderLocks = field(default_factory=OrderLocks)


async def on_order_event(raw: bytes, mailer: Mailer) -> str:
    """One record of ``peepers.orders.v1``: mail its transition once, or skip it."""
    if event_type_of(raw) not in _MAILED_TYPES:
        return _counted("skipped")  # snapshots, and types newer than this code
    event = ORDERS_EVENT.validate_json(raw)
    transition = transition_of(event)
    if transition not in mailer.mail.transitions:
        return _counted("skipped")
    key = ledger_key(event.order_id, transition)
    if await mailer.ledger.sent(key):
        return _counted("duplicate")
    async with mailer.sending.hold(event.order_id):
        return await _send(event, transition, key, mailer)


async def _send(event: OrderEvent, transition: str, key: str, mailer: Mailer) -> str:
    profile = await _profile(event.seller_id, mailer)
    to = mailer.smtp.override_to or profile.email
    if not to:
        log.warning("seller %d has no email address: order %d", event.seller_id, event.order_id)
        return _counted("no_address")
    subject, text, html = mailer.templates.render(event, transition, profile, mailer.mail.locale)
    mid = message_id(event.order_id, transition, mailer.smtp.from_address)
    # The claim is taken last, right before the send: it lives for a send and the ledger's
    # first write, and no longer. Taken before the profile's lookup (an ML call that can wait
    # on the shared limiter longer than that), it lapsed while its holder still meant to
    # send, and the process that took the event over after a rebalance sent it too.
    if not await mailer.claims.take(key):
        msg = f"another mailer process is sending {key}"
        raise MailInFlight(msg)
    if await mailer.ledger.sent(key):  # sent meanwhile, here or by another process
        return _counted("duplicate")
    try:
        await mailer.sender.send(
            OutgoingMail(message_id=mid, to=to, subject=subject, text=text, html=html)
        )
    except Exception:
        mailer.waiting.failed(key)
        _counted("failed")
        raise
    await mailer.ledger.record(key, mid)
    mailer.waiting.done(key)
    return _counted("sent")


async def _profile(seller_id: int, mailer: Mailer) -> SellerProfile:
    """The seller's nickname and email: cached, else ML's ``/users/me`` for the seller."""
    profile = await mailer.sellers.profile(seller_id)
    if profile is None:
        me = await mailer.ml.get_me(seller_id=seller_id)
        profile = SellerProfile(seller_id=seller_id, nickname=me.nickname, email=me.email)
        await mailer.sellers.save_profile(profile)
    return profile


def _counted(outcome: str) -> str:
    metrics.EMAILS.labels(outcome).inc()
    return outcome
