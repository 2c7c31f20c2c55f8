import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from ipaddress import ip_network
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from pydantic import SecretStr

from peepers_ingest.edge import EdgeRoutes
from tests.unit.ingest.fakes import encoded, notification_body

JSON = {"Content-Type": "application/json"}
URL = "/webhooks/mercadolibre"
DEEP: Any = 1
for _ in range(20):
    DEEP = [DEEP]


async def test_a_valid_notification_is_acked_after_kafka_has_it(harness) -> None:
    async with harness() as h:
        response = await h.client.post(URL, data=encoded(notification_body()), headers=JSON)
        assert response.status == 200
        assert await response.json() == {
            "status": "accepted",
            "id": notification_body()["_id"],
            "outcome": "published",
        }
        [sent] = h.publisher.acked
        assert sent.ce_id == notification_body()["_id"]
        assert json.loads(sent.value)["received_at"].endswith("Z")


async def test_the_original_design_path_is_served_too(harness) -> None:
    async with harness() as h:
        response = await h.client.post(
            "/api/webhook/mercado-livre", data=encoded(notification_body()), headers=JSON
        )
        assert response.status == 200


async def test_a_traceparent_from_the_caller_continues_into_the_record(harness) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with harness() as h:
        await h.client.post(
            URL,
            data=encoded(notification_body()),
            headers={**JSON, "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
        )
        traceparent = dict(h.publisher.acked[0].headers)["traceparent"].decode()
        assert traceparent.split("-")[1] == trace_id


async def test_a_redelivery_is_answered_200_and_not_published_again(harness) -> None:
    async with harness() as h:
        for attempt in (1, 2, 3):
            body = encoded(notification_body(attempts=attempt))
            assert (await h.client.post(URL, data=body, headers=JSON)).status == 200
        assert len(h.publisher.acked) == 1


async def test_kafka_down_still_answers_200_from_the_spool(harness) -> None:
    async with harness() as h:
        h.publisher.fail = True
        response = await h.client.post(URL, data=encoded(notification_body()), headers=JSON)
        assert response.status == 200
        assert (await response.json())["outcome"] == "spooled"
        assert h.spool.depth == 1


async def test_kafka_and_spool_down_answer_503_and_remember_nothing(harness) -> None:
    async with harness() as h:
        h.publisher.fail = True
        h.spool.broken = True
        response = await h.client.post(URL, data=encoded(notification_body()), headers=JSON)
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert h.dedup.marked == set()
        ready = await h.client.get("/readyz")
        assert ready.status == 200  # the (fake) publisher still counts as connected


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        (b"{" + b" " * 9000 + b"}", JSON, 413, "too_large"),
        (
            encoded(notification_body()),
            {"Content-Type": "text/plain"},
            415,
            "unsupported_media_type",
        ),
        (encoded(notification_body()), {}, 415, "unsupported_media_type"),
        (b"\xff\xfe\xfa not utf-8", JSON, 400, "invalid_json"),
        (b"[1, 2, 3]", JSON, 400, "invalid_json"),
        (b'{"a": NaN}', JSON, 400, "invalid_json"),
        (b"[" * 4000 + b"]" * 4000, JSON, 400, "invalid_json"),
        (encoded(notification_body(extra=DEEP)), JSON, 400, "invalid_json"),
        (b'{"user_id": 1' + b"0" * 5000 + b"}", JSON, 400, "invalid_json"),
        (encoded(notification_body(user_id="12x")), JSON, 400, "invalid_notification"),
        (
            encoded(notification_body(resource="https://evil.example/")),
            JSON,
            400,
            "invalid_notification",
        ),
        (encoded(notification_body(application_id=42)), JSON, 403, "foreign_application"),
        # A lone surrogate escape is no Unicode text: refused by the parser already.
        (encoded({"resource": "\ud800"}), JSON, 400, "invalid_json"),
    ],
)
async def test_bad_input_gets_a_clear_4xx_and_is_never_published(
    harness, body: bytes, headers: dict[str, str], status: int, error: str
) -> None:
    async with harness() as h:
        response = await h.client.post(URL, data=body, headers=headers)
        assert response.status == status
        assert (await response.json())["error"] == error
        assert h.publisher.acked == []
        assert h.spool.depth == 0


async def test_an_invalid_notification_is_told_which_field_is_wrong(harness) -> None:
    async with harness() as h:
        response = await h.client.post(
            URL, data=encoded(notification_body(user_id=True)), headers=JSON
        )
        detail = (await response.json())["detail"]
        assert [error["loc"] for error in detail] == [["user_id"]]


async def test_a_chunked_body_over_the_limit_is_refused_with_413(harness) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 1024

    async with harness() as h:
        response = await h.client.post(URL, data=chunks(), headers=JSON)
        assert response.status == 413
        assert h.publisher.acked == []


async def test_a_source_outside_the_allowlist_is_refused_with_403(harness) -> None:
    async with harness(allowed_cidrs=[ip_network("54.88.218.97/32")]) as h:
        response = await h.client.post(URL, data=encoded(notification_body()), headers=JSON)
        assert response.status == 403
        assert (await response.json())["error"] == "forbidden_source"


async def test_a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(harness) -> None:
    async with harness(allowed_cidrs=[ip_network("54.88.218.97/32")]) as h:
        response = await h.client.post(
            URL,
            data=encoded(notification_body()),
            headers={**JSON, "X-Forwarded-For": "54.88.218.97"},
        )
        assert response.status == 403
        assert h.publisher.acked == []


async def test_a_trusted_proxy_forwards_an_allowed_source(harness) -> None:
    async with harness(
        allowed_cidrs=[ip_network("54.88.218.97/32")], trusted_proxies=[ip_network("127.0.0.1/32")]
    ) as h:
        response = await h.client.post(
            URL,
            data=encoded(notification_body()),
            headers={**JSON, "X-Forwarded-For": "54.88.218.97"},
        )
        assert response.status == 200


async def test_with_an_hmac_secret_only_signed_bodies_pass(harness) -> None:
    secret = "shared-secret"  # noqa: S105 - a test value
    body = encoded(notification_body())
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    async with harness(hmac_secret=SecretStr(secret)) as h:
        unsigned = await h.client.post(URL, data=body, headers=JSON)
        wrong = await h.client.post(
            URL, data=body, headers={**JSON, "X-Peepers-Signature": "00" * 32}
        )
        signed = await h.client.post(
            URL, data=body, headers={**JSON, "X-Peepers-Signature": signature}
        )
        assert (unsigned.status, wrong.status, signed.status) == (401, 401, 200)
        assert len(h.publisher.acked) == 1


async def test_with_a_path_token_only_the_secret_path_accepts(harness) -> None:
    async with harness(webhook_path_token=SecretStr("t0ken")) as h:
        body = encoded(notification_body())
        bare = await h.client.post(URL, data=body, headers=JSON)
        wrong = await h.client.post(URL + "/nope", data=body, headers=JSON)
        right = await h.client.post(URL + "/t0ken", data=body, headers=JSON)
        assert (bare.status, wrong.status, right.status) == (404, 404, 200)


async def test_without_a_path_token_a_token_path_is_not_found(harness) -> None:
    async with harness() as h:
        response = await h.client.post(
            URL + "/guess", data=encoded(notification_body()), headers=JSON
        )
        assert response.status == 404


async def test_probes_and_metrics_answer(harness) -> None:
    async with harness() as h:
        await h.client.post(URL, data=b"{}", headers=JSON)
        assert (await h.client.get("/healthz")).status == 200
        ready = await h.client.get("/readyz")
        assert ready.status == 200
        assert (await ready.json())["spool"] == {"writable": True, "depth": 0}
        text = await (await h.client.get("/metrics")).text()
        assert 'peepers_ingest_rejected_total{reason="invalid_notification"}' in text
        assert "peepers_ingest_spool_depth" in text
        assert "peepers_ingest_ack_duration_seconds_bucket" in text


async def test_an_unknown_route_answers_json_404(harness) -> None:
    async with harness() as h:
        response = await h.client.get("/nowhere")
        assert response.status == 404
        assert (await response.json())["error"] == "not_found"


async def test_a_wrong_method_answers_json_405_with_allow(harness) -> None:
    async with harness() as h:
        response = await h.client.get(URL)
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
        assert (await response.json())["error"] == "method_not_allowed"
        assert (await h.client.head("/healthz")).status == 200


def http_requests(route: str, status: int) -> float:
    labels = {"service": "ingest", "route": route, "status": str(status)}
    return REGISTRY.get_sample_value("peepers_http_requests_total", labels) or 0.0


def http_timed(route: str) -> float:
    labels = {"service": "ingest", "route": route}
    return REGISTRY.get_sample_value("peepers_http_request_duration_seconds_count", labels) or 0.0


async def test_requests_are_counted_by_route_template_and_only_non_webhooks_timed(
    harness,
) -> None:
    before = {
        "token": http_requests(URL + "/{token}", 200),
        "webhook": http_requests(URL, 404),
        "unmatched": http_requests("unmatched", 404),
        "timed webhooks": http_timed(URL + "/{token}"),
        "timed probes": http_timed("/healthz"),
    }
    async with harness(webhook_path_token=SecretStr("t0ken")) as h:
        body = encoded(notification_body())
        assert (await h.client.post(URL + "/t0ken", data=body, headers=JSON)).status == 200
        assert (await h.client.post(URL, data=body)).status == 404  # the token is required
        assert (await h.client.get("/nowhere/1")).status == 404
        assert (await h.client.get("/nowhere/2")).status == 404
        assert (await h.client.get("/healthz")).status == 200
    assert http_timed("/healthz") - before["timed probes"] == 1
    assert http_requests(URL + "/{token}", 200) - before["token"] == 1
    assert http_requests(URL, 404) - before["webhook"] == 1
    assert http_requests("unmatched", 404) - before["unmatched"] == 2
    # The webhook is timed by its ack histogram (by outcome), the other routes here.
    assert http_timed(URL + "/{token}") == before["timed webhooks"]


async def test_a_path_with_a_newline_answers_json_404_too(harness) -> None:
    async with harness() as h:
        response = await h.client.get("/a%0Ab")
        assert response.status == 404
        assert (await response.json())["error"] == "not_found"


def test_a_route_added_after_the_catch_all_is_refused() -> None:
    async def ok(_request: web.Request) -> web.StreamResponse:
        return web.json_response({})

    routes = EdgeRoutes(web.Application(), "test")
    routes.add("GET", "/before", ok)
    routes.close()
    with pytest.raises(RuntimeError, match="after the catch-all"):
        routes.add("GET", "/after", ok)
