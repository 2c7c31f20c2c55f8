from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from peepers_common.events import SellerDisconnected, event_headers, event_type_of, seller_event_id
from peepers_common.tracing import TraceContext, bind_trace, current_trace


def test_the_type_of_an_event_is_read_without_knowing_its_model() -> None:
    assert event_type_of(b'{"type": "seller.renamed", "seller_id": 1}') == "seller.renamed"


@pytest.mark.parametrize("raw", [b"\xffnot json", b"{}", b'{"type": 3}', b"[]"])
def test_garbage_has_no_type(raw: bytes) -> None:
    with pytest.raises(ValidationError):
        event_type_of(raw)


def test_event_headers_are_cloudevents_binary_mode() -> None:
    event = SellerDisconnected(
        event_id=seller_event_id(7, "seller.disconnected", 3),
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        seller_id=7,
    )
    assert dict(event_headers(event, source="peepers-auth")) == {
        "ce_id": str(event.event_id).encode(),
        "ce_type": b"seller.disconnected",
        "ce_source": b"peepers-auth",
        "ce_specversion": b"1.0",
        "content-type": b"application/json",
    }
    cause = TraceContext.new()
    token = bind_trace(cause)
    try:
        sent = TraceContext.parse(dict(event_headers(event, source="x"))["traceparent"].decode())
    finally:
        current_trace.reset(token)
    assert sent is not None
    assert sent.trace_id == cause.trace_id
    assert sent.span_id != cause.span_id
