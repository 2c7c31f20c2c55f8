"""The seller's login in a real headless Chromium (Debian's, from scripts/install-chromium)."""

import pytest
import redis.asyncio as aioredis
from playwright.async_api import Browser, expect

from peepers_common.settings import KafkaSettings
from tests.integration.auth.harness import SELLER, auth_stack, json_of, raw_values, read_all

pytestmark = pytest.mark.e2e


async def test_a_seller_logs_in_through_the_consent_page_and_lands_on_the_dashboard(
    browser: Browser, kafka: KafkaSettings, redis_admin: aioredis.Redis
) -> None:
    async with auth_stack(kafka, auto_approve=False) as stack:
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(f"{stack.url}/auth/")
        await page.click("#login")
        # ML's consent page (the sandbox's), on another origin.
        await expect(page.get_by_text("quer acessar sua conta")).to_be_visible()
        assert page.url.startswith(f"{stack.sandbox.url}/authorization?")
        await page.get_by_role("button", name="Permitir").click()

        await page.wait_for_url(f"{stack.url}/auth/dashboard")
        await expect(page.locator("#status")).to_have_text("Connected")
        await expect(page.locator("#seller-id")).to_have_text(str(SELLER))
        await expect(page.locator("#site")).to_have_text("MLB")

        cookies = {c["name"]: c for c in await context.cookies()}
        session = cookies["peepers_session"]
        assert session["httpOnly"]
        assert session["sameSite"] == "Lax"
        assert "peepers_login" not in cookies  # spent with the callback

        record = await stack.record()
        assert record is not None
        assert record.status == "connected"
        dump = b"\n".join(await raw_values(redis_admin, stack.namespace))
        assert b"sealed" in dump
        for token in stack.known_tokens():
            assert token.encode() not in dump
        [event] = await read_all(kafka, stack.topic)
        assert json_of(event)["type"] == "seller.connected"

        await page.click("#logout")
        await page.wait_for_url(f"{stack.url}/auth/")
        await page.goto(f"{stack.url}/auth/dashboard")
        await expect(page.get_by_text("Please log in")).to_be_visible()
        await context.close()


async def test_a_seller_who_cancels_on_the_consent_page_sees_a_clear_page(
    browser: Browser, kafka: KafkaSettings
) -> None:
    async with auth_stack(kafka, auto_approve=False) as stack:
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(f"{stack.url}/auth/login?site=MLB")
        await page.get_by_role("button", name="Cancelar").click()
        await page.wait_for_url(f"{stack.url}/auth/callback?**")
        await expect(page.locator("h1")).to_have_text("Mercado Livre did not authorize Peepers")
        await expect(page.locator(".error")).to_contain_text("access_denied")
        assert await stack.record() is None
        await context.close()
