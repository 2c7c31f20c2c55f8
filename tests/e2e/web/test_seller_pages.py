"""The seller web app in Debian's headless Chromium, against the sandbox, auth, the orders
worker and its read API. Each test writes screenshots for docs/web.md."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, expect

from peepers_common.settings import KafkaSettings
from tests.e2e.web.stack import SellerStack, screenshot, seller_stack
from tests.integration.auth.harness import SELLER
from tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

OTHER_SELLER = SELLER + 1  # the sandbox's second seller


@pytest.fixture(scope="module")
async def sellers(
    kafka: KafkaSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SellerStack]:
    async with seller_stack(kafka, tmp_path_factory.mktemp("web")) as running:
        yield running


@pytest.fixture
async def page(browser: Browser, sellers: SellerStack) -> AsyncIterator[Page]:
    """The seller's page; at the end, the browser must have refused nothing under the CSP
    (an inline script or style anywhere would show up here)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    refused: list[str] = []
    try:
        opened = await sellers.log_in(context, SELLER)
        opened.on(
            "console",
            lambda message: (
                refused.append(f"{opened.url} {message.location}: {message.text}")
                if "Content Security Policy" in message.text
                else None
            ),
        )
        yield opened
    finally:
        await context.close()
    assert refused == []


async def _sales_counted(sellers: SellerStack, seller_id: int) -> bool:
    body = await sellers.orders.get(f"/orders/sellers/{seller_id}/analytics")
    return int(body["total"]["orders"]) > 0


async def test_a_seller_logs_in_and_sees_a_chart_of_the_sandboxs_orders(
    sellers: SellerStack, page: Page
) -> None:
    for _ in range(3):
        await sellers.new_paid_order(SELLER)
    await wait_until(lambda: _sales_counted(sellers, SELLER), timeout_s=30, every_s=0.3)
    await page.goto(f"{sellers.url}/app/")
    await expect(page.locator("#chart svg")).to_be_visible()
    heights = await page.locator("#chart rect.bar").evaluate_all(
        "bars => bars.map(b => parseFloat(b.getAttribute('height')))"
    )
    assert len(heights) == 30
    assert heights[-1] > 0  # today's orders
    await expect(page.locator("#status")).to_have_text("Conectada")
    await screenshot(page, "overview")
    await page.click("#lang")
    await expect(page.locator("#sales-today h2")).to_have_text("Sales today")
    await screenshot(page, "overview-en")
    await page.click("#lang")  # back to Portuguese for the next screenshots


async def test_a_new_order_appears_on_the_open_orders_page_within_2_seconds(
    sellers: SellerStack, page: Page
) -> None:
    await page.goto(f"{sellers.url}/app/orders")
    await expect(page.locator("#live-state")).to_have_class("live on")
    started = time.monotonic()
    order_id = await sellers.new_paid_order(SELLER)
    row = page.locator(f"#order-{order_id}")
    await expect(row).to_be_visible(timeout=2000)
    assert time.monotonic() - started < 2.5  # the notification's own trip included
    await screenshot(page, "orders")
    await row.get_by_role("link").click()
    await expect(page.locator("#order-id")).to_have_text(str(order_id))
    await expect(page.locator("#timeline li").first).to_be_visible()
    await screenshot(page, "order")


async def test_another_sellers_order_id_gets_404(
    sellers: SellerStack, page: Page, browser: Browser
) -> None:
    other = await browser.new_context()
    try:
        await sellers.log_in(other, OTHER_SELLER)  # connects: the worker backfills its orders
    finally:
        await other.close()

    async def others_orders() -> list[int]:
        body = await sellers.orders.get(f"/orders/sellers/{OTHER_SELLER}/orders")
        return [o["order_id"] for o in body["orders"]]

    async def backfilled() -> bool:
        return bool(await others_orders())

    await wait_until(backfilled, timeout_s=30, every_s=0.3)
    [foreign, *_] = await others_orders()
    response = await page.goto(f"{sellers.url}/app/orders/{foreign}")
    assert response is not None
    assert response.status == 404
    await expect(page.locator("h1")).to_have_text("Não encontrado")
    await screenshot(page, "not-found")


async def test_a_form_posted_without_its_csrf_token_is_refused(
    sellers: SellerStack, page: Page
) -> None:
    await page.locator("header form input[name=csrf_token]").evaluate("e => e.remove()")
    await page.click("#logout")
    await expect(page.locator("h1")).to_have_text("Este formulário expirou")
    response = await page.goto(f"{sellers.url}/app/")
    assert response is not None
    assert response.status == 200  # refused, so nothing happened: still logged in


async def test_the_catalog_searches_with_facets(sellers: SellerStack, page: Page) -> None:
    await page.goto(f"{sellers.url}/app/catalog")
    await expect(page.locator("#catalog-total")).not_to_have_text("0 anúncios", timeout=20000)
    facet = page.locator('a.facet[data-facet="status"]').first
    await expect(facet).to_be_visible()
    await facet.click()
    await expect(page.locator('a.facet[aria-current="true"]')).to_be_visible()
    await expect(page.locator("table.list tbody tr").first).to_be_visible()
    await screenshot(page, "catalog")


async def test_answering_the_oldest_question_reaches_ml_and_clears_it_from_another_page(
    sellers: SellerStack, page: Page, browser: Browser
) -> None:
    for text in ("Tem na cor azul?", "Entrega em Curitiba?"):
        await sellers.in_inbox(await sellers.new_question(SELLER, text))
    other = await browser.new_context()
    try:
        second = await sellers.log_in(other, SELLER)
        await second.goto(f"{sellers.url}/app/questions")
        await page.goto(f"{sellers.url}/app/questions")
        oldest = page.locator("article.question").first
        await expect(oldest).to_be_visible(timeout=15000)
        question_id = int((await oldest.get_attribute("id") or "q-0").removeprefix("q-"))
        await expect(second.locator(f"#q-{question_id}")).to_be_visible(timeout=15000)
        await screenshot(page, "questions")

        await oldest.locator("textarea").fill("Sim, temos em azul.")
        await oldest.get_by_role("button", name="Responder").click()
        await expect(page.locator(f"#answered-{question_id}")).to_be_visible()
        answered = sellers.auth.sandbox.state.market.question(question_id)
        assert answered["status"] == "ANSWERED"
        assert answered["answer"]["text"] == "Sim, temos em azul."
        # ML notifies the answer too; both open pages drop the question without a reload
        # (the messages service's question.answered).
        await sellers.question_changed(question_id)
        await expect(second.locator(f"#q-{question_id}")).to_have_count(0, timeout=10000)
        await expect(page.locator(f"#q-{question_id}")).to_have_count(0)
    finally:
        await other.close()


async def test_an_answer_over_2000_characters_shows_the_error_next_to_the_field(
    sellers: SellerStack, page: Page
) -> None:
    question_id = await sellers.new_question(SELLER, "Qual a voltagem?")
    await sellers.in_inbox(question_id)
    await page.goto(f"{sellers.url}/app/questions")
    question = page.locator(f"#q-{question_id}")
    await expect(question).to_be_visible(timeout=15000)
    await question.locator("textarea").fill("x" * 2001)
    await expect(question.locator(".counter")).to_have_class("counter over")
    await expect(question.locator(".counter span")).to_have_text("-1")
    await question.get_by_role("button", name="Responder").click()
    error = page.locator(f"#error-{question_id}")
    await expect(error).to_be_visible()
    await expect(error).to_have_attribute("data-code", "too_long")
    await screenshot(page, "question-error")
    assert sellers.auth.sandbox.state.market.question(question_id)["status"] == "UNANSWERED"


async def test_a_ticket_moved_to_in_progress_with_a_note_survives_a_reload(
    sellers: SellerStack, page: Page
) -> None:
    claim_id = await sellers.new_claim(SELLER)
    await sellers.ticket_opened(claim_id)
    await page.goto(f"{sellers.url}/app/tickets")
    link = page.locator(f"#ticket-{claim_id} a").first
    await expect(link).to_be_visible(timeout=15000)
    await screenshot(page, "tickets")
    await link.click()
    await page.select_option("#ticket-status-select", "in_progress")
    await page.fill("#ticket-assignee-input", "Ana")
    await page.fill("#ticket-note", "Trocar o produto")
    # A plain form POST (then a redirect to the ticket): the reload waits for it to land,
    # or it races the navigation (Page.reload: "Not attached to an active page").
    async with page.expect_navigation():
        await page.click("#ticket-save")
    await page.reload()
    await expect(page.locator("#ticket-status")).to_have_text("em andamento")
    await expect(page.locator("#ticket-assignee")).to_have_text("Ana")
    await expect(page.locator("#ticket-notes")).to_contain_text("Trocar o produto")
    await screenshot(page, "ticket")


async def test_a_buyers_message_appears_live_and_the_seller_replies_from_the_page(
    sellers: SellerStack, page: Page
) -> None:
    order_id = await sellers.new_paid_order(SELLER)
    await page.goto(f"{sellers.url}/app/conversations")
    await expect(page.locator("h1")).to_be_visible()
    pack_id = await sellers.buyer_message(order_id, "Olá, quando chega?")
    # message.received reaches the open list without a reload
    row = page.locator(f"#c-{pack_id}")
    await expect(row).to_be_visible(timeout=15000)
    await expect(row.locator(".unread-count")).to_have_text("1")
    await screenshot(page, "conversations")

    await row.locator("a").click()
    await expect(page.locator("#thread")).to_contain_text("Olá, quando chega?")
    await page.fill("#message-text", "Sai hoje pelos Correios!")
    await expect(page.locator("#message-count span")).to_have_text(str(350 - 24))
    await page.click("#send button")
    await expect(page.locator("#sent")).to_be_visible()
    market = sellers.auth.sandbox.state.market
    texts = [market.messages[m]["text"] for m in market.messages_by_pack[pack_id]]
    assert texts == ["Olá, quando chega?", "Sai hoje pelos Correios!"]
    # ML notifies the seller's message too: the open thread shows it without a reload.
    await sellers.message_notified(market.messages_by_pack[pack_id][-1])
    await expect(page.locator("#thread li.mine")).to_contain_text("Sai hoje pelos Correios!")
    await screenshot(page, "conversation")


async def test_a_blocked_conversation_shows_mls_refusal_next_to_the_field(
    sellers: SellerStack, page: Page
) -> None:
    order_id = await sellers.new_paid_order(SELLER)
    pack_id = await sellers.buyer_message(order_id, "Não quero mais contato.")
    await sellers.in_conversations(pack_id)
    await sellers.sandbox_event("conversation_block", pack_id=pack_id)
    await page.goto(f"{sellers.url}/app/conversations/{pack_id}")
    await page.fill("#message-text", "Podemos conversar?")
    await page.click("#send button")
    error = page.locator("#message-error")
    await expect(error).to_be_visible()
    await expect(error).to_have_attribute("data-code", "blocked")
    # the text stays in the field, to send elsewhere
    await expect(page.locator("#message-text")).to_have_value("Podemos conversar?")
    await screenshot(page, "conversation-blocked")
    market = sellers.auth.sandbox.state.market
    assert len(market.messages_by_pack[pack_id]) == 1
