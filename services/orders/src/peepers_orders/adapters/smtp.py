"""`MailSender` over SMTP with aiosmtplib: one connection per message, settings-driven TLS.

aiosmtplib's and the socket's failures become `MailUnavailable` (transient: the mail is
parked and sent when the server is back), except a 5xx refusal of the sender or of the
recipient, which no retry fixes (`MailRejected`: to the DLQ). A 4xx refusal (greylisting)
is transient.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from peepers_orders.errors import MailRejected, MailUnavailable
from peepers_orders.ports import OutgoingMail
from peepers_orders.settings import SmtpSettings


def build_message(mail: OutgoingMail, from_address: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = from_address
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Message-ID"] = mail.message_id
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message


class SmtpMailSender:
    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings

    async def send(self, mail: OutgoingMail) -> None:
        settings = self._settings
        try:
            await aiosmtplib.send(
                build_message(mail, settings.from_address),
                hostname=settings.host,
                port=settings.port,
                use_tls=settings.use_tls,
                start_tls=settings.starttls,
                username=settings.username,
                password=settings.password.get_secret_value() if settings.password else None,
                timeout=settings.timeout_s,
            )
        except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPSenderRefused) as exc:
            if not _permanent(exc):  # 4xx: greylisting, a full mailbox for now
                msg = f"the SMTP server deferred mail {mail.message_id}: {exc}"
                raise MailUnavailable(msg) from exc
            msg = f"the SMTP server refused mail {mail.message_id}: {exc}"
            raise MailRejected(msg) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            msg = (
                f"the SMTP server at {settings.host}:{settings.port} did not take the mail: {exc!r}"
            )
            raise MailUnavailable(msg) from exc


def _permanent(exc: aiosmtplib.SMTPRecipientsRefused | aiosmtplib.SMTPSenderRefused) -> bool:
    """A 5xx refusal (of the sender, or of every recipient) that no retry fixes."""
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return exc.code >= 500
    return all(refused.code >= 500 for refused in exc.recipients)
