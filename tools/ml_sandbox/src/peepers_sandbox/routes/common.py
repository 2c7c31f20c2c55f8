"""What every route family shares: the app keys, the caller and query parsing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from peepers_sandbox.clock import BRT
from peepers_sandbox.errors import SandboxError, bad_request
from peepers_sandbox.oauth import AccessToken
from peepers_sandbox.state import SandboxState

state_key = web.AppKey("state_key", SandboxState)
token_key: web.RequestKey[AccessToken | None] = web.RequestKey("token_key")


def state_of(request: web.Request) -> SandboxState:
    return request.app[state_key]


def token_of(request: web.Request) -> AccessToken:
    token: AccessToken | None = request.get(token_key)
    if token is None:
        raise SandboxError(401, "unauthorized", "authorization value not present")
    return token


def int_param(
    request: web.Request, name: str, default: int | None = None, *, maximum: int | None = None
) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        if default is None:
            msg = f"Parameter {name} is required"
            raise bad_request(msg)
        return default
    try:
        if not raw.isascii():
            raise ValueError(raw)
        value = int(raw)
    except ValueError:
        msg = f"Invalid value for {name}: {raw}"
        raise bad_request(msg) from None
    if value < 0:
        msg = f"Parameter {name} must be >= 0"
        raise bad_request(msg)
    if maximum is not None and value > maximum:
        msg = f"Parameter {name} must be lower or equal than {maximum}"
        raise bad_request(msg)
    return value


def path_int(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not (raw.isascii() and raw.isdigit()):
        msg = f"Invalid {name}: {raw}"
        raise bad_request(msg)
    return int(raw)


def parse_dt(value: str) -> datetime:
    """An ISO date; one with no offset (``2026-12-01``) is read in the site's time, UTC-3."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        msg = f"Invalid date: {value}"
        raise bad_request(msg, "invalid_date") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=BRT)


def select(body: dict[str, Any], attributes: list[str]) -> dict[str, Any]:
    return {k: body[k] for k in attributes if k in body}


def require_tag(request: web.Request) -> None:
    if request.query.get("tag") != "post_sale":
        msg = "The tag parameter is required and must be post_sale"
        raise bad_request(msg, "invalid_tag")
