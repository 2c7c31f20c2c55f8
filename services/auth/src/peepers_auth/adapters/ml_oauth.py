"""`MlOAuth` over ML's token endpoint (peepers_common's `MlOAuthClient`) and ``/users/me``.

``/users/me`` is called once per login, with the token just issued; it goes straight
through the shared session instead of `HttpMlApi`, which asks a token provider for a
seller that is not stored yet. Both endpoints take a permit of the app's shared outbound
budget first, as every request of the app does: ML counts them against the application
(docs/ml-client.md).
"""

from __future__ import annotations

import aiohttp
from pydantic import ValidationError

from peepers_common.errors import MlApiError, ReauthRequired, TokenUnavailable
from peepers_common.ml import MlOAuthClient, OutboundLimiter, TokenSet, endpoint_family
from peepers_common.ml.models import MlUser
from peepers_common.settings import MlApiSettings


class HttpMlOAuth:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: MlApiSettings,
        limiter: OutboundLimiter,
        *,
        refresh_permit_wait_s: float | None = None,
    ) -> None:
        """``refresh_permit_wait_s``: see `MlOAuthClient` (auth: inside its refresh lock)."""
        self._session = session
        self._limiter = limiter
        self._oauth = MlOAuthClient(
            session, settings, limiter, refresh_permit_wait_s=refresh_permit_wait_s
        )
        self._me_url = settings.base_url.rstrip("/") + "/users/me"

    async def exchange_code(self, *, code: str, verifier: str, redirect_uri: str) -> TokenSet:
        return await self._oauth.exchange_code(
            code, redirect_uri=redirect_uri, code_verifier=verifier
        )

    async def refresh(self, refresh_token: str, *, seller_id: int) -> TokenSet:
        return await self._oauth.refresh(refresh_token, seller_id=seller_id)

    async def me(self, access_token: str) -> MlUser:
        await self._limiter.acquire(endpoint_family("/users/me"))
        try:
            async with self._session.get(
                self._me_url,
                headers={"Authorization": f"Bearer {access_token}", "accept": "application/json"},
            ) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            msg = f"ML's /users/me did not answer: {exc.__class__.__name__}"
            raise TokenUnavailable(msg, seller_id=0) from exc
        if status == 401:
            msg = "ML refused the token it had just issued (/users/me answered 401)"
            raise ReauthRequired(msg, seller_id=0)
        if status != 200:
            msg = f"ML's /users/me answered {status}"
            raise MlApiError(msg, status=status, path="/users/me")
        try:
            return MlUser.model_validate_json(body)
        except ValidationError as exc:
            msg = "ML's /users/me answered a body that is not a user"
            raise MlApiError(msg, status=status, path="/users/me") from exc
