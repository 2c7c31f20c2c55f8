"""The SMTP adapter against a real SMTP server (aiosmtpd): what it sends, how it fails."""

from __future__ import annotations

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from peepers_orders.adapters.smtp import SmtpMailSender
from peepers_orders.errors import MailRejected, MailUnavailable
from peepers_orders.ports import OutgoingMail
from peepers_orders.settings import SmtpSettings
from tests.integration.ingest.support import free_port
from tests.integration.orders.smtp import Inbox, SmtpSink, smtp_sink

MAIL = OutgoingMail(
    message_id="<order-1-paid@peepers.local>",
    to="loja@example.com",
    subject="Pagamento aprovado: #1",
    text="Olá",
    html="<p>Olá</p>",
)


class _Refusing(Inbox):
    def __init__(self, code: int) -> None:
        super().__init__()
        self.code = code

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        return f"{self.code} no such mailbox" if self.code >= 500 else f"{self.code} try later"


async def test_a_mail_arrives_whole_with_its_message_id() -> None:
    with smtp_sink() as sink:
        await SmtpMailSender(
            SmtpSettings(port=sink.port, from_address="Peepers <v@x.example>")
        ).send(MAIL)
        [got] = sink.inbox.snapshot()
    assert got["Message-ID"] == MAIL.message_id
    assert (got["To"], got["From"], got["Subject"]) == (
        MAIL.to,
        "Peepers <v@x.example>",
        MAIL.subject,
    )
    assert got.is_multipart()
    assert [part.get_content_type() for part in got.walk()][1:] == ["text/plain", "text/html"]


async def test_no_server_is_transient() -> None:
    with pytest.raises(MailUnavailable):
        await SmtpMailSender(SmtpSettings(port=free_port(), timeout_s=2)).send(MAIL)


@pytest.mark.parametrize(("code", "error"), [(550, MailRejected), (450, MailUnavailable)])
async def test_a_refused_recipient_is_permanent_only_on_a_5xx(
    code: int, error: type[Exception]
) -> None:
    sink = SmtpSink(_Refusing(code), free_port())
    sink.start()
    try:
        with pytest.raises(error):
            await SmtpMailSender(SmtpSettings(port=sink.port)).send(MAIL)
    finally:
        sink.stop()
