"""The admin API under ``/_admin``: make things happen and look inside.

It is never rate limited, never faulted and needs no token: it is the test's side door.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from peepers_sandbox.config import AppConfig, RateLimitConfig
from peepers_sandbox.errors import SandboxError, json_response
from peepers_sandbox.marketplace import Marketplace
from peepers_sandbox.routes.common import state_key
from peepers_sandbox.snapshot import seller_state
from peepers_sandbox.state import SandboxState


def _events(market: Marketplace) -> dict[str, Callable[..., Any]]:
    return {
        "new_order": market.new_order,
        "cart": market.new_cart,
        "payment_required": market.require_payment,
        "payment_in_process": market.start_payment,
        "payment": market.pay_order,
        "refund": market.refund,
        "pending_cancel": market.request_cancel,
        "invalid": market.invalidate,
        "label": market.label_ready,
        "shipment": market.ship,
        "delivery": market.deliver,
        "not_delivered": market.fail_delivery,
        "not_verified": market.unverified_delivery,
        "cancellation": market.cancel_order,
        "feedback": market.give_feedback,
        "new_item": market.new_item,
        "item_edit": market.edit_item,
        "pause": lambda item_id: market.set_item_status(item_id, "paused"),
        "close": lambda item_id: market.set_item_status(item_id, "closed"),
        "reactivate": lambda item_id: market.set_item_status(item_id, "active"),
        "price_change": market.change_price,
        "stock_change": market.change_stock,
        "question": market.new_question,
        "answer": market.answer_question,
        "question_moderation": market.moderate_question,
        "answer_ban": market.ban_answer,
        "message": market.new_message,
        "conversation_block": market.block_conversation,
        "claim": market.new_claim,
        "claim_action": market.claim_action,
        "claim_dispute": market.escalate_claim,
        "claim_stale": market.stale_claim,
        "claim_close": market.close_claim,
        "claim_recontact": market.recontact_claim,
        "silent_change": market.silent_change,
    }


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except ValueError:
        raise SandboxError(400, "bad_request", "admin bodies are JSON objects") from None
    if not isinstance(data, dict):
        raise SandboxError(400, "bad_request", "admin bodies are JSON objects")
    return data


def _patch(model: BaseModel, changes: dict[str, Any]) -> None:
    """Validate ``changes`` against the model and apply them in place (others hold a reference)."""
    try:
        updated = type(model).model_validate({**model.model_dump(), **changes})
    except ValidationError as exc:
        raise SandboxError(400, "bad_request", str(exc)) from None
    for name in changes:
        setattr(model, name, getattr(updated, name))


def _st(request: web.Request) -> SandboxState:
    return request.app[state_key]


@web.middleware
async def admin_errors(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except SandboxError as exc:
        return json_response(exc.body(), status=exc.status)
    except (TypeError, ValueError, OverflowError) as exc:
        # A parameter of the wrong type (``{"seconds": "soon"}``): refused, nothing changed.
        error = SandboxError(400, "bad_request", f"bad parameter: {exc}")
        return json_response(error.body(), status=400)
    return response


async def health(request: web.Request) -> web.StreamResponse:
    return json_response({"status": "ok"})


async def info(request: web.Request) -> web.StreamResponse:
    st = _st(request)
    market = st.market
    return json_response(
        {
            "apps": [
                {
                    "app_id": a.app_id,
                    "client_secret": a.client_secret,
                    "redirect_uris": a.redirect_uris,
                    "pkce_required": a.pkce_required,
                    "callback_url": a.callback_url,
                }
                for a in st.oauth.apps.values()
            ],
            "demo_seller_id": market.sellers[0] if market.sellers else None,
            "sellers": market.sellers,
            "buyers": len(market.buyers),
            "counts": {
                "items": len(market.items),
                "orders": len(market.orders),
                "shipments": len(market.shipments),
                "questions": len(market.questions),
                "messages": len(market.messages),
                "claims": len(market.claims),
            },
        }
    )


async def config_get(request: web.Request) -> web.StreamResponse:
    return json_response(_st(request).config.model_dump(mode="json"))


async def api_patch(request: web.Request) -> web.StreamResponse:
    st = _st(request)
    _patch(st.config.api, await _body(request))
    return json_response(st.config.api.model_dump(mode="json"))


async def faults_put(request: web.Request) -> web.StreamResponse:
    st = _st(request)
    _patch(st.config.faults, await _body(request))
    return json_response(st.config.faults.model_dump(mode="json"))


async def faults_delete(request: web.Request) -> web.StreamResponse:
    st = _st(request)
    defaults = type(st.config.faults)()
    _patch(st.config.faults, defaults.model_dump())
    return json_response(st.config.faults.model_dump(mode="json"))


async def limits_get(request: web.Request) -> web.StreamResponse:
    return json_response(_st(request).limiter.snapshot())


async def limits_put(request: web.Request) -> web.StreamResponse:
    st = _st(request)
    try:
        cfg = RateLimitConfig.model_validate(await _body(request))
    except ValidationError as exc:
        raise SandboxError(400, "bad_request", str(exc)) from None
    st.config.rate_limits = cfg
    st.limiter.set_config(cfg)
    return json_response(cfg.model_dump(mode="json"))


async def limits_reset(request: web.Request) -> web.StreamResponse:
    _st(request).limiter.reset()
    return json_response({"reset": True})


async def notifier_get(request: web.Request) -> web.StreamResponse:
    return json_response(_st(request).notifier.summary())


async def notifier_patch(request: web.Request) -> web.StreamResponse:
    st = _st(request)
    body = await _body(request)
    for nested in ("quirks", "chaos"):
        if nested in body:
            _patch(getattr(st.config.notifier, nested), body.pop(nested))
    _patch(st.config.notifier, body)
    return json_response(st.config.notifier.model_dump(mode="json"))


async def notifier_attempts(request: web.Request) -> web.StreamResponse:
    st = _st(request)
    query = request.query
    log = list(st.notifier.attempt_log)
    if nid := query.get("notification_id"):
        log = [a for a in log if a["notification_id"] == nid]
    if topic := query.get("topic"):
        log = [a for a in log if a["topic"] == topic]
    if chaos := query.get("chaos"):
        log = [a for a in log if a["chaos"] == (None if chaos == "none" else chaos)]
    if "ok" in query:
        wanted = query["ok"] == "true"
        log = [a for a in log if a["ok"] is wanted]
    limit = int(query.get("limit", "1000"))
    return json_response({"total": len(log), "attempts": log[-limit:]})


async def notifier_notification(request: web.Request) -> web.StreamResponse:
    st = _st(request)
    n = st.notifier.notifications.get(request.match_info["notification_id"])
    if n is None:
        raise SandboxError(404, "not_found", "notification not found")
    return json_response({**st.notifier.body(n), "state": n.state, "statuses": n.history})


async def apps_post(request: web.Request) -> web.StreamResponse:
    st = _st(request)
    try:
        app = AppConfig.model_validate(await _body(request))
    except ValidationError as exc:
        raise SandboxError(400, "bad_request", str(exc)) from None
    st.oauth.apps[app.app_id] = app
    st.config.apps = list(st.oauth.apps.values())
    return json_response(app.model_dump(mode="json"), status=201)


async def apps_patch(request: web.Request) -> web.StreamResponse:
    st = _st(request)
    app = st.oauth.apps.get(int(request.match_info["app_id"]))
    if app is None:
        raise SandboxError(404, "not_found", "app not found")
    body = await _body(request)
    body.pop("app_id", None)
    _patch(app, body)
    return json_response(app.model_dump(mode="json"))


async def tokens_post(request: web.Request) -> web.StreamResponse:
    st = _st(request)
    body = await _body(request)
    app_id = int(body.get("app_id", next(iter(st.oauth.apps))))
    user_id = int(body.get("user_id", st.market.sellers[0]))
    if app_id not in st.oauth.apps:
        raise SandboxError(404, "not_found", "app not found")
    st.market.user(user_id)
    ttl = body.get("expires_in")
    return json_response(
        st.oauth.issue(app_id, user_id, ttl_s=int(ttl) if ttl is not None else None), status=201
    )


async def tokens_expire(request: web.Request) -> web.StreamResponse:
    st = _st(request)
    token = str((await _body(request)).get("access_token", ""))
    if not st.oauth.expire(token):
        raise SandboxError(404, "not_found", "unknown access token")
    return json_response({"expired": True})


async def sellers_state(request: web.Request) -> web.StreamResponse:
    market = _st(request).market
    seller_id = int(request.match_info["user_id"])
    if seller_id not in market.sellers:
        raise SandboxError(404, "not_found", f"no seller {seller_id} in this sandbox")
    return json_response(seller_state(market, seller_id))


async def sellers_revoke(request: web.Request) -> web.StreamResponse:
    st = _st(request)
    body = await _body(request)
    app_id = body.get("app_id")
    count = st.oauth.revoke(
        int(request.match_info["user_id"]), int(app_id) if app_id is not None else None
    )
    return json_response({"revoked": count})


async def clock_advance(request: web.Request) -> web.StreamResponse:
    st = _st(request)
    seconds = float((await _body(request)).get("seconds", 0))
    st.clock.advance(seconds)
    return json_response({"offset_s": st.clock.offset_s})


async def events_post(request: web.Request) -> web.StreamResponse:
    st = _st(request)
    kind = request.match_info["kind"]
    action = _events(st.market).get(kind)
    if action is None:
        raise SandboxError(404, "not_found", f"unknown event kind {kind}")
    try:
        result = action(**await _body(request))
    except (TypeError, ValueError, OverflowError) as exc:
        # A parameter of the wrong name or type: the event changes nothing and says why.
        raise SandboxError(400, "bad_request", f"bad parameters for {kind}: {exc}") from None
    return json_response({"kind": kind, "result": result}, status=201)


async def activity_get(request: web.Request) -> web.StreamResponse:
    return json_response(_st(request).activity.snapshot())


async def activity_start(request: web.Request) -> web.StreamResponse:
    st = _st(request)
    body = await _body(request)
    st.activity.start(float(body.get("rate", 100)), body.get("mix"))
    return json_response(st.activity.snapshot())


async def activity_stop(request: web.Request) -> web.StreamResponse:
    st = _st(request)
    await st.activity.stop()
    return json_response(st.activity.snapshot())


def setup_admin_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/_admin/health", health)
    r.add_get("/_admin/info", info)
    r.add_get("/_admin/config", config_get)
    r.add_patch("/_admin/api", api_patch)
    r.add_put("/_admin/faults", faults_put)
    r.add_delete("/_admin/faults", faults_delete)
    r.add_get("/_admin/rate-limits", limits_get)
    r.add_put("/_admin/rate-limits", limits_put)
    r.add_delete("/_admin/rate-limits/counters", limits_reset)
    r.add_get("/_admin/notifier", notifier_get)
    r.add_patch("/_admin/notifier", notifier_patch)
    r.add_get("/_admin/notifier/attempts", notifier_attempts)
    r.add_get("/_admin/notifier/notifications/{notification_id}", notifier_notification)
    r.add_post("/_admin/apps", apps_post)
    r.add_patch("/_admin/apps/{app_id}", apps_patch)
    r.add_post("/_admin/tokens", tokens_post)
    r.add_post("/_admin/tokens/expire", tokens_expire)
    r.add_get("/_admin/sellers/{user_id:\\d+}/state", sellers_state)
    r.add_post("/_admin/sellers/{user_id}/revoke", sellers_revoke)
    r.add_post("/_admin/clock/advance", clock_advance)
    r.add_post("/_admin/events/{kind}", events_post)
    r.add_get("/_admin/activity", activity_get)
    r.add_post("/_admin/activity", activity_start)
    r.add_delete("/_admin/activity", activity_stop)
