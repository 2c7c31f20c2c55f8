"""Auth's requests to ML take permits of the app's shared budget, as every service's do.

ML limits an application's requests (FACTS.md 7.1) and the sandbox counts ``/oauth/token``
(its ``client_id``) and ``/users/me`` (its token) with the rest of the app's. Auth sent
both without a permit: the whole-stack proof's logins and mass token expiries went to ML
beside a budget the syncs had spent in full.
"""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from peepers_auth.adapters.ml_oauth import HttpMlOAuth
from peepers_catalog.settings import Settings as CatalogSettings
from peepers_common.errors import TokenUnavailable
from peepers_common.ml import OutboundLimiter, ml_session
from peepers_common.namespaces import connect_redis
from peepers_common.settings import MlApiSettings, MlLimit
from peepers_sandbox.app import run_sandbox
from peepers_sandbox.config import (
    DEMO_APP_ID,
    DEMO_CLIENT_SECRET,
    MarketplaceConfig,
    NotifierConfig,
    SandboxConfig,
)
from tests.support import unique

pytestmark = pytest.mark.integration


async def test_the_token_endpoint_and_users_me_wait_for_a_permit() -> None:
    config = SandboxConfig(
        marketplace=MarketplaceConfig(sellers=1, items_per_seller=1),
        notifier=NotifierConfig(enabled=False),
    )
    async with run_sandbox(config) as sb:
        seller = sb.state.market.sellers[0]
        settings = MlApiSettings(
            base_url=sb.url,
            app_id=DEMO_APP_ID,
            client_secret=SecretStr(DEMO_CLIENT_SECRET),
            app_limit=MlLimit(amount=2, per_s=60),
        )
        redis = connect_redis(CatalogSettings().redis)
        try:
            async with ml_session(settings) as session:
                limiter = OutboundLimiter(redis, settings, scope=unique("auth"))
                # As auth builds it: a refresh waits for its permit within its lock only.
                oauth = HttpMlOAuth(session, settings, limiter, refresh_permit_wait_s=0.5)
                minted = await sb.admin.mint_token(seller)
                tokens = await oauth.refresh(minted["refresh_token"], seller_id=seller)
                access = tokens.access_token.get_secret_value()
                assert (await oauth.me(access)).id == seller
                # The budget of 2 is spent: both wait for the window instead of going out,
                # and the refresh gives up unspent once its lock would have lapsed.
                assert tokens.refresh_token is not None
                refresh_token = tokens.refresh_token.get_secret_value()
                with pytest.raises(TokenUnavailable, match="left unspent"):
                    await asyncio.wait_for(oauth.refresh(refresh_token, seller_id=seller), 5.0)
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(oauth.me(access), 1.0)
                await limiter.aclose()
        finally:
            await redis.aclose()
        counted = {c["family"]: c["total"] for c in await sb.admin.rate_limit_counters()}
        assert counted.get("oauth") == 1
        assert counted.get("users") == 1
