"""HTTP views: the webhook pipeline, probes and metrics.

`POST /internal/reconcile` runs a missed_feeds round now, for services and operators
holding service credentials.

The webhook refuses, in this order (issue 5), each refusal counted by reason:
size (413) and content type (415); source IP (403); HMAC signature when configured (401);
JSON and schema (400) and our application_id (403); rate limit per source (429). Then
the notification goes to Kafka or the spool (200), or nowhere (503).
"""

from __future__ import annotations

import functools
import hmac
import logging
import time
from datetime import UTC, datetime
from typing import Any, Final, NoReturn

import orjson
from aiohttp import web
from pydantic import ValidationError

from peepers_common.notifications import Notification
from peepers_common.service_auth import authenticate_service
from peepers_common.tracing import TraceContext, bind_trace, current_trace
from peepers_ingest import metrics
from peepers_ingest.errors import SpoolUnavailable
from peepers_ingest.handlers import build_record
from peepers_ingest.keys import (
    client_ip_key,
    intake_key,
    publisher_state_key,
    rate_limit_key,
    reconciler_key,
    settings_key,
    source_check_key,
    spool_key,
)
from peepers_ingest.security import signature_valid

__all__ = ["healthz", "readyz", "reconcile", "webhook"]

log = logging.getLogger(__name__)

# ML's body is flat; a few levels leave room for what ML may add, not for a parser bomb.
MAX_JSON_DEPTH: Final = 16
_MAX_REPORTED_ERRORS: Final = 10


class _Refused(Exception):
    def __init__(
        self, status: int, reason: str, detail: Any, headers: dict[str, str] | None = None
    ):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.headers = headers


def _refuse(status: int, reason: str, detail: Any) -> NoReturn:
    raise _Refused(status, reason, detail)


def _too_deep(value: Any) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return False


def _parse_body(body: bytes) -> dict[str, Any]:
    # orjson (several times cheaper than json here) refuses malformed JSON, invalid UTF-8
    # and lone surrogates, NaN and Infinity, and nesting beyond 1,024 levels; a number
    # beyond 64 bits is read as a float, as JavaScript does.
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        _refuse(400, "invalid_json", f"the body is not valid JSON: {exc.msg}")
    if not isinstance(parsed, dict):
        _refuse(400, "invalid_json", "the body must be a JSON object")
    # Brackets bound the depth from above, so ML's flat bodies skip the walk.
    if body.count(b"{") + body.count(b"[") > MAX_JSON_DEPTH and _too_deep(parsed):
        _refuse(400, "invalid_json", f"the body is nested deeper than {MAX_JSON_DEPTH} levels")
    return parsed


# A few outcomes: each series is looked up once, not on every request.
_ack_latency = functools.cache(metrics.ACK_LATENCY.labels)


def _path_token_ok(request: web.Request) -> bool:
    expected = request.app[settings_key].webhook_path_token
    given = request.match_info.get("token")
    if expected is None:
        return given is None
    if given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.get_secret_value().encode())


async def webhook(request: web.Request) -> web.Response:
    started = time.perf_counter()
    trace = TraceContext.parse(request.headers.get("traceparent")) or TraceContext.new()
    token = bind_trace(trace)
    outcome = "rejected"
    try:
        response, outcome = await _webhook(request, trace)
    except _Refused as refused:
        metrics.REJECTED.labels(refused.reason).inc()
        outcome = "unavailable" if refused.status == 503 else "rejected"
        if refused.status >= 500:
            log.error("refused a notification: %s (%s)", refused.reason, refused.detail)
        response = web.json_response(
            {"error": refused.reason, "detail": refused.detail},
            status=refused.status,
            headers=refused.headers,
        )
    finally:
        current_trace.reset(token)
        _ack_latency(outcome).observe(time.perf_counter() - started)
    return response


async def _webhook(request: web.Request, trace: TraceContext) -> tuple[web.Response, str]:
    app = request.app
    settings = app[settings_key]
    if not _path_token_ok(request):
        _refuse(404, "unknown_path", "no webhook here")

    # 1. Size and content type, before reading a byte of the body.
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        _refuse(413, "too_large", f"the body is larger than {settings.max_body_bytes} bytes")
    if request.content_type != "application/json":
        _refuse(415, "unsupported_media_type", "the body must be application/json")

    # 2. Source address, through trusted proxies only.
    source = app[source_check_key].admitted(
        request.remote, tuple(request.headers.getall("X-Forwarded-For", ()))
    )
    if source is None:
        _refuse(403, "forbidden_source", "this source address may not post notifications")
    request[client_ip_key] = source

    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        _refuse(413, "too_large", f"the body is larger than {settings.max_body_bytes} bytes")

    # 3. Optional signature (ML does not sign; for deployments behind a signing relay).
    if settings.hmac_secret is not None and not signature_valid(
        body,
        request.headers.get(settings.hmac_header),
        settings.hmac_secret.get_secret_value().encode(),
    ):
        _refuse(401, "bad_signature", f"missing or wrong {settings.hmac_header}")

    # 4. Parse and validate.
    raw = _parse_body(body)
    try:
        notification = Notification.model_validate(raw)
    except ValidationError as exc:
        errors = [
            {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
            for error in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        _refuse(400, "invalid_notification", errors[:_MAX_REPORTED_ERRORS])
    if (
        settings.application_id is not None
        and notification.application_id != settings.application_id
    ):
        _refuse(403, "foreign_application", "this notification is for another ML application")

    # 5. Rate limit per source.
    limit = app[rate_limit_key]
    if limit is not None and (refused := await limit.check(request)) is not None:
        metrics.REJECTED.labels("rate_limited").inc()
        return refused, "rejected"

    # 6-7. Kafka (or the spool), exactly once per notification id.
    intake = app[intake_key]
    record = build_record(
        notification,
        raw,
        topic_for=intake.topic_for,
        received_at=datetime.now(UTC),
        traceparent=trace.child().traceparent,
    )
    try:
        outcome = await intake.accept(record)
    except SpoolUnavailable as exc:
        raise _Refused(
            503, "unavailable", f"could not store the notification: {exc}", {"Retry-After": "1"}
        ) from exc
    accepted = {"status": "accepted", "id": record.notification_id, "outcome": outcome}
    return web.Response(body=orjson.dumps(accepted), content_type="application/json"), outcome


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when a notification can be made durable: Kafka connected, or the spool writable."""
    intake = request.app[intake_key]
    spool = request.app[spool_key]
    kafka_connected = request.app[publisher_state_key]()
    ready = kafka_connected or spool.writable
    return web.json_response(
        {
            "status": "ready" if ready else "unavailable",
            "kafka": {"connected": kafka_connected, "publishing_directly": intake.kafka_healthy},
            "spool": {"writable": spool.writable, "depth": spool.depth},
        },
        status=200 if ready else 503,
    )


async def reconcile(request: web.Request) -> web.Response:
    """Run a missed_feeds round now; 200 with the report, 502 when ML could not be read."""
    caller = authenticate_service(
        request.app[settings_key].service_credentials, request.headers.get("Authorization")
    )
    reconciler = request.app[reconciler_key]
    if reconciler is None:
        return web.json_response(
            {"error": "reconciler_off", "detail": "the missed_feeds reconciler is not configured"},
            status=503,
        )
    log.info("missed_feeds round requested by %s", caller)
    report = await reconciler.run_once()
    return web.json_response(report.as_json(), status=200 if report.failure is None else 502)
