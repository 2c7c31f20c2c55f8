"""Error tracking: off without a DSN; with one, events carry the service, trace and seller
tags, and no token or secret leaves the process (a local capture transport sees exactly
what would have been sent)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from pydantic import SecretStr
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from peepers_common.error_tracking import (
    ErrorTrackingSettings,
    bind_seller,
    current_seller,
    init_error_tracking,
    scrub_text,
    seller_of_key,
)
from peepers_common.tracing import TraceContext, bind_trace, current_trace

ACCESS = "APP_USR-5503910054141466-120716-0a1b2c3d4e5f60718293a4b5c6d7e8f9-123456789"
REFRESH = "TG-6751f1a2b3c4d5e6f7a8b9c0-123456789"
SECRET = "s3cr3t-client-value"  # noqa: S105 - a test value to look for


class CaptureTransport(Transport):
    """Keeps each envelope instead of sending it."""

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def events(self) -> list[dict[str, Any]]:
        return [
            item.payload.json
            for envelope in self.envelopes
            for item in envelope.items
            if item.type == "event" and item.payload.json is not None
        ]


@pytest.fixture
def transport() -> Iterator[CaptureTransport]:
    capture = CaptureTransport()
    settings = ErrorTrackingSettings(dsn=SecretStr("http://public@127.0.0.1:9/1"))
    assert init_error_tracking("catalog", settings, transport=capture)
    yield capture
    sentry_sdk.get_client().close()
    sentry_sdk.init()  # no DSN: nothing is sent by later tests


def test_without_a_dsn_nothing_is_initialised() -> None:
    assert not init_error_tracking("catalog", ErrorTrackingSettings(dsn=None))
    assert not sentry_sdk.get_client().is_active()


def test_an_error_is_tagged_with_the_service_trace_and_seller(transport: CaptureTransport) -> None:
    trace = TraceContext.new()
    trace_token, seller_token = bind_trace(trace), bind_seller(123456789)
    failure = "ML answered 500"
    try:
        raise RuntimeError(failure)
    except RuntimeError as exc:
        sentry_sdk.capture_exception(exc)
    finally:
        current_trace.reset(trace_token)
        current_seller.reset(seller_token)
    sentry_sdk.flush()
    (event,) = transport.events()
    assert event["tags"]["service"] == "catalog"
    assert event["tags"]["trace_id"] == trace.trace_id
    assert event["tags"]["seller_id"] == "123456789"


def test_no_token_or_secret_leaves_the_process(transport: CaptureTransport) -> None:
    sentry_sdk.set_extra("refresh_token", REFRESH)
    sentry_sdk.set_context("oauth", {"client_secret": SECRET, "nested": {"access_token": ACCESS}})
    sentry_sdk.add_breadcrumb(message=f"GET /users/me with Bearer {ACCESS}")
    logging.getLogger("peepers.test").error("refresh with %s failed", REFRESH)
    token_url = f"https://auth:{SECRET}@api.example.com/oauth/token"
    failure = f"ML refused {ACCESS} at {token_url}"
    try:
        raise RuntimeError(failure)
    except RuntimeError as exc:
        sentry_sdk.capture_exception(exc)
    sentry_sdk.flush()
    events = transport.events()
    assert len(events) == 2  # the log record and the exception
    sent = json.dumps(events)
    for secret in (ACCESS, REFRESH, SECRET, ACCESS.rsplit("-", 2)[0]):
        assert secret not in sent
    assert '"client_secret": "[Filtered]"' in sent
    assert "RuntimeError" in sent  # the error itself still gets there
    assert "ML refused APP_USR-***" in sent


def test_secrets_in_text_are_masked() -> None:
    assert scrub_text(f"token {ACCESS}") == "token APP_USR-***"
    assert scrub_text("Authorization: Bearer abcdef123456") == "Authorization: Bearer ***"
    assert scrub_text("redis://catalog:pw-123@redis:6379/0") == "redis://***@redis:6379/0"
    assert scrub_text("order 2000003508 paid") == "order 2000003508 paid"


@pytest.mark.parametrize(
    ("key", "seller"),
    [
        (b"123456789:/orders/2000003508", 123456789),
        (b"123456789", 123456789),
        (b"MLB123:/items/MLB123", None),
        (None, None),
        (b"", None),
    ],
)
def test_the_seller_comes_from_a_records_key(key: bytes | None, seller: int | None) -> None:
    assert seller_of_key(key) == seller
