"""`TokenProvider` over the auth service's token broker (``/internal/sellers/{id}/token``).

The broker serialises refreshes across every replica of every service, so services never
hold refresh tokens. This provider keeps each access token only until shortly before it
expires, and drops it when ML refuses it.

Broker answers and what they become:

- 200: the token (``access_token``, ``expires_at``, ``expires_in``).
- 404 ``seller_not_connected``, 409 ``reauth_required``: ``ReauthRequired``.
- 401: ``ConfigurationError`` (this service's credentials are wrong: retrying cannot help).
- 5xx, timeouts, connection errors: ``TokenUnavailable`` (retryable).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

import aiohttp
from pydantic import BaseModel, Field, SecretStr, ValidationError

from peepers_common.errors import ConfigurationError, ReauthRequired, TokenUnavailable

_REAUTH_STATUSES: Final = frozenset({404, 409})


class TokenBrokerSettings(BaseModel):
    """Where the auth service's broker is and who this service is to it."""

    url: str = "http://127.0.0.1:8081"
    service: str = ""
    secret: SecretStr = SecretStr("")
    timeout_s: float = Field(default=25.0, gt=0)
    # Keep a token in this process until this long before it expires (the broker itself
    # never hands out one with less than its own margin left).
    cache_margin_s: float = Field(default=120.0, ge=0)


class _Grant(BaseModel):
    access_token: SecretStr
    expires_in: int


class _Error(BaseModel):
    error: str = "unknown"
    detail: str = ""


@dataclass
class _Cached:
    token: str
    good_until: float


class BrokerTokenProvider:
    """Asks the auth service for sellers' tokens, with HTTP Basic service credentials."""

    def __init__(self, session: aiohttp.ClientSession, settings: TokenBrokerSettings) -> None:
        self._session = session
        self._settings = settings
        self._base = settings.url.rstrip("/")
        self._headers = {
            "Authorization": aiohttp.encode_basic_auth(
                settings.service, settings.secret.get_secret_value()
            ),
            "accept": "application/json",
        }
        self._cache: dict[int, _Cached] = {}

    async def access_token(self, seller_id: int) -> str:
        cached = self._cache.get(seller_id)
        if cached is not None and cached.good_until > time.monotonic():
            return cached.token
        return await self._ask("GET", f"/internal/sellers/{seller_id}/token", seller_id)

    async def refresh(self, seller_id: int, stale_token: str) -> str:
        self._cache.pop(seller_id, None)
        return await self._ask(
            "POST",
            f"/internal/sellers/{seller_id}/token/refresh",
            seller_id,
            json={"stale_token": stale_token},
        )

    async def _ask(
        self, method: str, path: str, seller_id: int, json: dict[str, str] | None = None
    ) -> str:
        try:
            async with self._session.request(
                method,
                self._base + path,
                headers=self._headers,
                json=json,
                timeout=aiohttp.ClientTimeout(total=self._settings.timeout_s),
            ) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            msg = f"the auth service's token broker did not answer: {exc.__class__.__name__}"
            raise TokenUnavailable(msg, seller_id=seller_id) from exc
        if status == 200:
            try:
                grant = _Grant.model_validate_json(body)
            except ValidationError as exc:
                msg = "the token broker answered a body without a token"
                raise TokenUnavailable(msg, seller_id=seller_id) from exc
            token = grant.access_token.get_secret_value()
            good_for = grant.expires_in - self._settings.cache_margin_s
            if good_for > 0:
                self._cache[seller_id] = _Cached(token, time.monotonic() + good_for)
            return token
        error = _error(body)
        if status in _REAUTH_STATUSES:
            self._cache.pop(seller_id, None)
            msg = f"seller {seller_id} has no usable authorization ({error.error}): {error.detail}"
            raise ReauthRequired(msg, seller_id=seller_id)
        if status == 401:
            msg = (
                f"the token broker refused service {self._settings.service!r}: check its "
                "broker secret against the auth service's AUTH_SERVICE_CREDENTIALS"
            )
            raise ConfigurationError(msg)
        msg = f"the token broker answered {status} ({error.error})"
        raise TokenUnavailable(msg, seller_id=seller_id)


def _error(body: bytes) -> _Error:
    try:
        return _Error.model_validate_json(body)
    except ValidationError:
        return _Error()
