import hashlib
from urllib.parse import parse_qs, urlsplit

import aiohttp
import redis.asyncio as aioredis

from peepers_common.settings import KafkaSettings
from tests.integration.auth.harness import (
    SELLER,
    auth_stack,
    authorization_redirect,
    json_of,
    login,
    raw_values,
    read_all,
)
from tests.support import wait_until


async def test_a_login_against_the_sandbox_lands_on_the_dashboard_with_tokens_encrypted(
    kafka: KafkaSettings, redis_admin: aioredis.Redis
) -> None:
    async with auth_stack(kafka) as stack, stack.browser() as browser:
        html = await login(stack, browser)
        assert 'id="status">Connected<' in html
        assert f"<dd id='seller-id'>{SELLER}</dd>" in html
        record = await stack.record()
        assert record is not None
        assert record.status == "connected"
        assert record.tokens is not None
        assert record.tokens.access_token.get_secret_value() in stack.known_tokens()
        raw = await redis_admin.hgetall(stack.namespace.key("seller", SELLER))
        assert set(raw) == {b"version", b"meta", b"sealed", b"offset"}
        dump = b" ".join(await raw_values(redis_admin, stack.namespace))
        for token in stack.known_tokens():
            assert token.encode() not in dump
        [event] = await read_all(kafka, stack.topic)
        assert event.key == str(SELLER).encode()
        assert json_of(event)["type"] == "seller.connected"


async def test_a_replayed_callback_is_refused(kafka: KafkaSettings) -> None:
    async with auth_stack(kafka) as stack, stack.browser() as browser:
        callback = await authorization_redirect(stack, browser)
        async with browser.get(callback) as first:
            assert urlsplit(str(first.url)).path == "/auth/dashboard"
        async with browser.get(callback) as replay:
            assert replay.status == 400
            assert "already used" in await replay.text()


async def test_a_tampered_state_is_refused(kafka: KafkaSettings) -> None:
    async with auth_stack(kafka) as stack, stack.browser() as browser:
        callback = await authorization_redirect(stack, browser)
        query = parse_qs(urlsplit(callback).query)
        tampered = query["state"][0][:-2] + "xy"
        async with browser.get(
            f"{stack.url}/auth/callback", params={"code": query["code"][0], "state": tampered}
        ) as response:
            assert response.status == 400
            assert "expired" in await response.text()
        assert await stack.record() is None


async def test_an_expired_state_is_refused(
    kafka: KafkaSettings, redis_admin: aioredis.Redis
) -> None:
    async with auth_stack(kafka) as stack, stack.browser() as browser:
        callback = await authorization_redirect(stack, browser)
        state = parse_qs(urlsplit(callback).query)["state"][0]
        key = stack.namespace.key("login", hashlib.sha256(state.encode()).hexdigest())
        assert await redis_admin.ttl(key) > 500  # ~10 minutes
        # Let Redis expire it now instead of waiting ten minutes.
        await redis_admin.pexpire(key, 1)

        async def gone() -> bool:
            return not await redis_admin.exists(key)

        await wait_until(gone)
        async with browser.get(callback) as response:
            assert response.status == 400
            assert "expired" in await response.text()


async def test_a_redirect_uri_the_app_did_not_register_is_refused_by_ml(
    kafka: KafkaSettings,
) -> None:
    async with auth_stack(kafka) as stack, stack.browser() as browser:
        async with browser.get(f"{stack.url}/auth/login", allow_redirects=False) as started:
            authorize = started.headers["Location"]
        wrong = authorize.replace("%2Fauth%2Fcallback", "%2Fauth%2Fcallback2")
        assert wrong != authorize
        async with browser.get(wrong, allow_redirects=False) as refused:
            assert refused.status == 400
            assert "redirect_uri" in await refused.text()


async def test_a_code_exchanged_with_another_redirect_uri_is_refused(
    kafka: KafkaSettings,
) -> None:
    # A second instance shares the states but is configured with another registered URI:
    # ML only exchanges a code for the redirect URI it was issued to.
    async with (
        auth_stack(kafka, extra_redirect_paths=["/auth/callback"]) as stack,
        stack.browser() as browser,
    ):
        callback = await authorization_redirect(stack, browser)
        other = stack.extra_redirect_uris[0]
        async with browser.get(other + "?" + urlsplit(callback).query) as response:
            assert response.status == 400
            assert "refused the authorization" in await response.text()
        assert await stack.record() is None


async def test_a_seller_who_denies_access_gets_a_clear_page(kafka: KafkaSettings) -> None:
    async with auth_stack(kafka, auto_approve=False) as stack, stack.browser() as browser:
        async with browser.get(f"{stack.url}/auth/login") as consent:
            assert consent.status == 200
            assert "Permitir" in await consent.text()
            params = {k: v[0] for k, v in parse_qs(urlsplit(str(consent.url)).query).items()}
        form = aiohttp.FormData({**params, "user_id": str(SELLER), "decision": "deny"})
        async with browser.post(f"{stack.sandbox.url}/authorization", data=form) as denied:
            assert urlsplit(str(denied.url)).path == "/auth/callback"
            assert denied.status == 400
            text = await denied.text()
            assert "did not authorize" in text
            assert "access_denied" in text
        assert await stack.record() is None
