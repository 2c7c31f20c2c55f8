"""The web process holds no secret and reads only sessions (real Redis ACL users)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError

from peepers_auth.settings import Settings
from peepers_auth.web.settings import WebSettings
from peepers_common.namespaces import connect_redis
from peepers_common.settings import KafkaSettings
from tests.integration.auth.harness import SELLER, auth_stack, login
from tests.integration.web.harness import web_process

pytestmark = pytest.mark.integration


def test_the_web_settings_have_no_place_for_a_token_key_an_ml_secret_or_a_broker_credential() -> (
    None
):
    secrets = {"token_keys", "service_credentials", "ml"}
    assert secrets <= set(Settings.model_fields)
    assert not secrets & set(WebSettings.model_fields)


async def test_the_web_processs_redis_user_cannot_read_a_sealed_token_record(
    kafka: KafkaSettings,
) -> None:
    async with auth_stack(kafka) as stack:
        browser = stack.browser()
        async with browser:
            await login(stack, browser)
            session_id = next(c.value for c in browser.cookie_jar if c.key == "peepers_session")
            record_key = stack.namespace.key("seller", SELLER)
            assert await stack.redis.hget(record_key, "sealed")  # the auth user can

            settings = WebSettings()
            assert settings.redis.username == "auth-web"
            web_redis: aioredis.Redis = connect_redis(settings.redis)
            try:
                for command in (
                    web_redis.hgetall(record_key),
                    web_redis.hget(record_key, "sealed"),
                    web_redis.get(record_key),
                    web_redis.dump(record_key),
                    web_redis.keys(stack.namespace.prefix + "*"),
                    web_redis.set(stack.namespace.key("session", "forged"), b"{}"),
                ):
                    with pytest.raises(NoPermissionError):
                        await command

                # ...and yet the pages work: the session the auth process wrote is readable.
                async with web_process(stack) as pages:
                    async with browser.get(f"{pages.url}/app/") as response:
                        assert response.status == 200, await response.text()
                        html = await response.text()
                        assert f'id="seller-id">{SELLER}<' in html
                        assert "Serviço indisponível" in html  # no read API configured here
                    async with browser.get(f"{pages.url}/readyz") as ready:
                        assert ready.status == 200
                    # ...and logging out there ends the session (DEL is all it may write).
                    csrf = html.split('name="csrf_token" value="')[1].split('"')[0]
                    async with browser.post(
                        f"{pages.url}/app/logout",
                        data={"csrf_token": csrf},
                        allow_redirects=False,
                    ) as out:
                        assert out.status == 303
                        assert out.headers["Location"] == f"{stack.url}/auth/"
                    async with browser.get(f"{pages.url}/app/") as after:
                        assert after.status == 401
            finally:
                await web_redis.aclose()
            assert session_id
