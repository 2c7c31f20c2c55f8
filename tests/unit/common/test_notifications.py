import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from peepers_common.consuming import InboundRecord
from peepers_common.notifications import (
    CE_SPECVERSION,
    Notification,
    changed_resource,
    cloudevent_headers,
    decode_value,
    encode_value,
    parse_cloudevent_headers,
    record_key,
)

# FACTS.md 1.3: the general-topic sample, the orders_v2 sample (no _id), the subtopic
# sample (id, bare resource, actions) and the questions sample (string user_id).
ITEMS = {
    "_id": "f9f08571-1f65-4c46-9e0a-c0f43faa1557e",
    "resource": "/items/MLA686791111",
    "user_id": 123456789,
    "topic": "items",
    "application_id": 2069392825111111,
    "attempts": 1,
    "sent": "2025-01-21T13:44:33.006Z",
    "received": "2025-01-21T13:44:32.984Z",
}
ORDERS = {
    "resource": "/orders/2195160686",
    "user_id": 468424240,
    "topic": "orders_v2",
    "application_id": 5503910054141466,
    "attempts": 1,
    "sent": "2019-10-30T16:19:20.129Z",
    "received": "2019-10-30T16:19:20.106Z",
}
MESSAGES = {
    "id": "5e2827f2-99b7-474e-b68b-6a86e934cc7e",
    "resource": "3f6da1e35ac84f70a24af7360d24c7bc",
    "user_id": 123456789,
    "topic": "messages",
    "actions": ["created"],
    "application_id": 89745685555,
    "attempts": 1,
    "sent": "2017-10-09T13:44:33.006Z",
    "received": "2017-10-09T13:44:32.984Z",
}
QUESTIONS = {
    **ITEMS,
    "_id": "5da8a1b24be30a49eb66c52a",
    "user_id": "123456789",
    "topic": "questions",
}
NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


@pytest.mark.parametrize("body", [ITEMS, ORDERS, MESSAGES, QUESTIONS])
def test_every_documented_ml_sample_is_accepted(body: dict[str, Any]) -> None:
    notification = Notification.model_validate(body)
    assert notification.resource_path.startswith("/")
    assert notification.user_id in (123456789, 468424240)


def test_id_and_underscore_id_are_the_same_field() -> None:
    assert Notification.model_validate(ITEMS).notification_id == ITEMS["_id"]
    assert Notification.model_validate(MESSAGES).notification_id == MESSAGES["id"]


def test_a_string_user_id_becomes_an_integer() -> None:
    assert Notification.model_validate(QUESTIONS).user_id == 123456789


def test_a_resource_without_leading_slash_keys_like_one_with_it() -> None:
    bare = Notification.model_validate({**ITEMS, "resource": "post-purchase/v1/claims/5108684499"})
    slashed = Notification.model_validate(
        {**ITEMS, "resource": "/post-purchase/v1/claims/5108684499"}
    )
    assert (
        record_key(bare) == record_key(slashed) == b"123456789:/post-purchase/v1/claims/5108684499"
    )


def test_fields_ml_adds_later_are_kept() -> None:
    notification = Notification.model_validate({**ITEMS, "recieved": "typo kept", "new": {"a": 1}})
    assert notification.model_extra == {"recieved": "typo kept", "new": {"a": 1}}


def test_a_notification_without_id_gets_one_that_is_stable_across_retries() -> None:
    first = Notification.model_validate(ORDERS)
    retry = Notification.model_validate(
        {**ORDERS, "attempts": 3, "sent": "2019-10-30T16:25:00.000Z"}
    )
    other_change = Notification.model_validate({**ORDERS, "received": "2019-10-30T16:30:00.000Z"})
    assert first.notification_id == retry.notification_id
    assert first.notification_id != other_change.notification_id
    assert first.notification_id.startswith("sha256-")


def test_without_id_nor_received_two_attempts_never_share_an_id() -> None:
    body = {k: v for k, v in ORDERS.items() if k != "received"}
    first = Notification.model_validate(body)
    retry = Notification.model_validate({**body, "attempts": 2})
    assert first.notification_id != retry.notification_id


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("user_id", True),
        ("user_id", 1.5),
        ("user_id", -3),
        ("user_id", 0),
        ("user_id", "12a"),
        ("user_id", "\uff11\uff12\uff13"),  # fullwidth digits: isdigit() but not ASCII
        ("user_id", 2**70),
        ("user_id", None),
        ("application_id", "abc"),
        ("topic", ""),
        ("topic", "Items; DROP"),
        ("topic", 7),
        ("resource", ""),
        ("resource", "https://evil.example/items/1"),
        ("resource", "//evil.example/items/1"),
        ("resource", "/items/a b"),
        ("resource", "/items/\u00e9"),
        ("resource", "x" * 600),
        ("resource", ["/items/1"]),
        ("_id", ""),
        ("_id", "id with spaces"),
        ("_id", {"$oid": "1"}),
        ("attempts", -1),
        ("sent", "yesterday"),
        ("sent", "2025-01-21T13:44:33"),
        ("actions", "created"),
        ("actions", ["ok", ""]),
    ],
)
def test_garbage_is_refused_with_the_field_named(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        Notification.model_validate({**ITEMS, field: value})
    assert any(field in error["loc"] or field == "_id" for error in caught.value.errors())


@pytest.mark.parametrize("missing", ["resource", "user_id", "topic", "application_id"])
def test_a_required_field_missing_is_refused(missing: str) -> None:
    with pytest.raises(ValidationError):
        Notification.model_validate({k: v for k, v in ITEMS.items() if k != missing})


def test_the_value_is_the_body_as_sent_plus_received_at() -> None:
    value = encode_value(QUESTIONS, NOW)
    assert json.loads(value) == {**QUESTIONS, "received_at": "2026-01-02T03:04:05.678Z"}
    decoded = decode_value(value)
    assert decoded.received_at == NOW
    assert decoded.notification_id == QUESTIONS["_id"]


def test_cloudevent_headers_round_trip_with_traceparent() -> None:
    notification = Notification.model_validate(ITEMS)
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    headers = cloudevent_headers(notification, received_at=NOW, traceparent=traceparent)
    attributes = parse_cloudevent_headers(headers)
    assert attributes.id == ITEMS["_id"]
    assert attributes.type == "com.mercadolibre.notification.items"
    assert attributes.ml_topic == "items"
    assert attributes.source == "https://api.mercadolibre.com/applications/2069392825111111"
    assert attributes.time == datetime(2025, 1, 21, 13, 44, 32, 984000, tzinfo=UTC)
    assert attributes.specversion == CE_SPECVERSION
    assert attributes.subject == "/items/MLA686791111"
    assert attributes.traceparent == traceparent
    assert ("content-type", b"application/json") in headers


def test_ce_time_falls_back_to_when_ingest_received_it() -> None:
    body = {k: v for k, v in ITEMS.items() if k != "received"}
    headers = cloudevent_headers(Notification.model_validate(body), received_at=NOW)
    assert parse_cloudevent_headers(headers).time == NOW


def test_headers_without_cloudevents_attributes_are_refused() -> None:
    with pytest.raises(ValueError, match="ce_id"):
        parse_cloudevent_headers(
            [("ce_type", b"x"), ("ce_source", b"y"), ("ce_specversion", b"1.0")]
        )


def test_a_records_changed_resource_is_its_seller_and_resource_path() -> None:
    def record(value: bytes | None) -> InboundRecord:
        return InboundRecord.from_kafka("ml.notifications.questions", 0, 0, None, value, [])

    asked = changed_resource(record(encode_value(QUESTIONS, NOW)))
    again = changed_resource(record(encode_value({**QUESTIONS, "_id": "other"}, NOW)))
    assert asked == again == (123456789, Notification.model_validate(QUESTIONS).resource_path)
    for malformed in (b"\xffnot json", None):
        with pytest.raises(ValidationError):
            changed_resource(record(malformed))
