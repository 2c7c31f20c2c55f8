"""A real SMTP server for tests: aiosmtpd, on a port of its own, keeping what it received."""

from __future__ import annotations

import email
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.integration.ingest.support import free_port


@dataclass
class Inbox:
    """Every message the server answered 250 to, parsed."""

    messages: list[Message] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        content = envelope.original_content or b""
        with self._lock:
            self.messages.append(email.message_from_bytes(content))
        return "250 OK"

    def snapshot(self) -> list[Message]:
        with self._lock:
            return list(self.messages)

    def ids(self) -> list[str]:
        return [str(m["Message-ID"]) for m in self.snapshot()]


@dataclass
class SmtpSink:
    inbox: Inbox
    port: int
    _controller: Any = None

    def start(self) -> None:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@contextmanager
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink(Inbox(), free_port())
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()
