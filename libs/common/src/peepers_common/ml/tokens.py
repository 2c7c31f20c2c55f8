"""Access tokens: the `TokenProvider` port the ML client asks, and ML's token endpoint.

ML's refresh tokens are single use and rotate, so a refresh must be serialised per
seller. `OAuthTokenProvider` does that within one process; across replicas the auth
service's broker does it with a Redis lock (its own provider plugs into the same port).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from peepers_common.errors import MlApiError, ReauthRequired, TokenUnavailable
from peepers_common.ml.ratelimit import OutboundLimiter
from peepers_common.settings import MlApiSettings

# The rate-limit family of ML's token endpoint (`endpoint_family("/oauth/token")`).
OAUTH_FAMILY = "oauth"


class TokenProvider(Protocol):
    async def access_token(self, seller_id: int) -> str:
        """A currently valid access token for the seller."""
        ...

    async def refresh(self, seller_id: int, stale_token: str) -> str:
        """A token newer than `stale_token` (which ML just refused with 401).

        Refreshes at most once per stale token, however many callers ask at once.

        Raises:
            ReauthRequired: ML refused the refresh; the seller must log in again.
            TokenUnavailable: the token source failed for now.
        """
        ...


class TokenSet(BaseModel):
    """What ML's token endpoint answers."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    access_token: SecretStr
    token_type: str = "Bearer"  # noqa: S105 - a scheme name, not a secret
    expires_in: int
    scope: str = ""
    user_id: int
    refresh_token: SecretStr | None = None


class MlOAuthClient:
    """ML's ``POST /oauth/token`` (parameters form-encoded in the body, as ML requires).

    ML limits requests per application (FACTS.md 7.1), and a token request names the
    application (``client_id``): with a `limiter`, each takes a permit of the app's shared
    budget as every other request does. The auth service passes one; without it (tools,
    tests) the endpoint is not limited here.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: MlApiSettings,
        limiter: OutboundLimiter | None = None,
        *,
        refresh_permit_wait_s: float | None = None,
    ) -> None:
        """``refresh_permit_wait_s`` bounds a refresh's wait for its permit (None: none).

        A refresh runs under a lock that lapses (auth's `refresh_lock_ttl_s`); a permit
        that came after it would spend the refresh token while another replica, holding
        the lock by then, spends it too. Past the bound the refresh fails unspent
        (`TokenUnavailable`), and a later ask refreshes.
        """
        self._session = session
        self._settings = settings
        self._limiter = limiter
        self._refresh_permit_wait_s = refresh_permit_wait_s

    async def exchange_code(
        self, code: str, *, redirect_uri: str, code_verifier: str | None
    ) -> TokenSet:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if code_verifier is not None:
            form["code_verifier"] = code_verifier
        if self._limiter is not None:
            await self._limiter.acquire(OAUTH_FAMILY, None)
        return await self._token(form, seller_id=0)

    async def refresh(self, refresh_token: str, *, seller_id: int) -> TokenSet:
        if self._limiter is not None:
            try:
                async with asyncio.timeout(self._refresh_permit_wait_s):
                    await self._limiter.acquire(OAUTH_FAMILY, seller_id)
            except TimeoutError:
                msg = (
                    f"no permit of the outbound budget within {self._refresh_permit_wait_s} s: "
                    "the refresh token is left unspent for a later refresh"
                )
                raise TokenUnavailable(msg, seller_id=seller_id) from None
        return await self._token(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}, seller_id=seller_id
        )

    async def _token(self, form: dict[str, str], *, seller_id: int) -> TokenSet:
        """``seller_id`` 0: a code exchange, for a seller not known yet (its permit taken)."""
        form = {
            **form,
            "client_id": str(self._settings.app_id),
            "client_secret": self._settings.client_secret.get_secret_value(),
        }
        url = self._settings.base_url.rstrip("/") + "/oauth/token"
        try:
            async with self._session.post(
                url, data=form, headers={"accept": "application/json"}
            ) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            msg = f"ML's token endpoint did not answer: {exc!r}"
            raise TokenUnavailable(msg, seller_id=seller_id) from exc
        if status == 200:
            try:
                return TokenSet.model_validate_json(body)
            except ValidationError as exc:
                msg = "ML's token endpoint answered an unexpected body"
                raise TokenUnavailable(msg, seller_id=seller_id) from exc
        error = _oauth_error(body)
        if status == 400 and error == "invalid_grant":
            msg = "ML refused the grant (invalid_grant): the seller must authorise again"
            raise ReauthRequired(msg, seller_id=seller_id)
        if status >= 500 or status == 429:
            msg = f"ML's token endpoint answered {status}"
            raise TokenUnavailable(msg, seller_id=seller_id)
        msg = f"ML's token endpoint refused the request: {status} {error}"
        raise MlApiError(msg, status=status, error=error, path="/oauth/token")


def _oauth_error(body: bytes) -> str | None:
    try:
        parsed = _OAuthErrorBody.model_validate_json(body)
    except ValidationError:
        return None
    return parsed.error


class _OAuthErrorBody(BaseModel):
    error: str | None = None


@dataclass
class _SellerTokens:
    access_token: str
    refresh_token: str
    expires_at: float
    lock: asyncio.Lock

    @classmethod
    def of(cls, tokens: TokenSet) -> _SellerTokens:
        held = cls("", "", 0.0, asyncio.Lock())
        held.update(tokens)
        return held

    def update(self, tokens: TokenSet) -> None:
        if tokens.refresh_token is None:
            msg = "a token set without a refresh token cannot be kept fresh"
            raise ValueError(msg)
        self.access_token = tokens.access_token.get_secret_value()
        self.refresh_token = tokens.refresh_token.get_secret_value()
        self.expires_at = time.monotonic() + tokens.expires_in


class OAuthTokenProvider:
    """Tokens held in this process, refreshed against ML's token endpoint.

    For tools, tests and single-replica use; services use the auth service's broker.
    """

    def __init__(self, oauth: MlOAuthClient, *, refresh_margin_s: float = 300.0) -> None:
        self._oauth = oauth
        self._margin_s = refresh_margin_s
        self._sellers: dict[int, _SellerTokens] = {}

    def add(self, seller_id: int, tokens: TokenSet) -> None:
        self._sellers[seller_id] = _SellerTokens.of(tokens)

    def _get(self, seller_id: int) -> _SellerTokens:
        try:
            return self._sellers[seller_id]
        except KeyError:
            msg = f"no tokens for seller {seller_id}: connect the seller first"
            raise ReauthRequired(msg, seller_id=seller_id) from None

    async def access_token(self, seller_id: int) -> str:
        tokens = self._get(seller_id)
        if tokens.expires_at - time.monotonic() > self._margin_s:
            return tokens.access_token
        return await self.refresh(seller_id, tokens.access_token)

    async def refresh(self, seller_id: int, stale_token: str) -> str:
        tokens = self._get(seller_id)
        async with tokens.lock:
            # Whoever held the lock before us may already have replaced the stale token.
            if tokens.access_token != stale_token:
                return tokens.access_token
            tokens.update(await self._oauth.refresh(tokens.refresh_token, seller_id=seller_id))
            return tokens.access_token
