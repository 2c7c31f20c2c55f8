"""The seller web app with everything behind it: the sandbox, auth, the orders worker and
its read API (a real process), and the web process, each on its own topics and keys."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import BrowserContext, Page, expect

from peepers_auth.web.settings import ReadApi
from peepers_common.settings import KafkaSettings
from peepers_common.topics import (
    PEEPERS_CATALOG,
    PEEPERS_MESSAGES,
    PEEPERS_ORDERS,
    PEEPERS_SELLERS,
)
from tests.integration.auth.harness import SELLER, AuthStack, auth_stack
from tests.integration.catalog.worker import catalog_topics, worker_run
from tests.integration.catalog.worker import ready_worker as ready_catalog
from tests.integration.messages.worker import WorkerRun as MessagesRun
from tests.integration.messages.worker import messages_topics
from tests.integration.messages.worker import notify as notify_messages
from tests.integration.messages.worker import ready_worker as ready_messages
from tests.integration.messages.worker import worker_run as messages_run
from tests.integration.orders.smtp import smtp_sink
from tests.integration.orders.worker import READER, OrdersRun, notify, orders_topics, ready_worker
from tests.integration.web.harness import WebProcess, web_process
from tests.support import wait_until

SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "web"


@dataclass
class SellerStack:
    kafka: KafkaSettings
    auth: AuthStack
    orders: OrdersRun
    messages: MessagesRun
    pages: WebProcess

    @property
    def url(self) -> str:
        return self.pages.url

    async def sandbox_event(self, kind: str, **params: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.auth.sandbox.admin.event(kind, **params)
        return result

    async def new_paid_order(self, seller_id: int) -> int:
        """An order created and paid in the sandbox, and ML's notification of it."""
        order = await self.sandbox_event("new_order", seller_id=seller_id)
        await self.sandbox_event("payment", order_id=order["id"])
        await notify(self.kafka, self.orders, "orders_v2", f"/orders/{order['id']}")
        return int(order["id"])

    async def new_question(self, seller_id: int, text: str) -> int:
        """A buyer's question in the sandbox, and ML's notification of it."""
        question = await self.sandbox_event("question", seller_id=seller_id, text=text)
        await notify_messages(
            self.kafka, self.messages, "questions", f"/questions/{question['id']}"
        )
        return int(question["id"])

    async def in_inbox(self, question_id: int) -> None:
        """Wait until the messages service has the question in the seller's inbox."""

        async def listed() -> bool:
            inbox = await self._messages_api(f"/messages/sellers/{SELLER}/questions/inbox")
            return question_id in [q["id"] for q in inbox.get("questions", [])]

        try:
            await wait_until(listed, timeout_s=45, every_s=0.3)
        except AssertionError:
            raise AssertionError(self.messages.log_tail()) from None

    async def ticket_opened(self, claim_id: int) -> None:
        """Wait until the messages service opened the claim's ticket."""

        async def listed() -> bool:
            tickets = await self._messages_api(f"/messages/sellers/{SELLER}/tickets")
            return claim_id in [t["claim_id"] for t in tickets.get("tickets", [])]

        try:
            await wait_until(listed, timeout_s=45, every_s=0.3)
        except AssertionError:
            raise AssertionError(self.messages.log_tail()) from None

    async def _messages_api(self, path: str) -> dict[str, Any]:
        headers = {"Authorization": aiohttp.encode_basic_auth(*READER)}
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.messages.url + path, headers=headers) as response,
        ):
            body: dict[str, Any] = await response.json()
            return body

    async def buyer_message(self, order_id: int, text: str) -> int:
        """The buyer writes on the order's pack in the sandbox, and ML notifies it; the pack."""
        message = await self.sandbox_event("message", order_id=order_id, text=text)
        await self.message_notified(message["id"])
        return int(self.auth.sandbox.state.market.order(order_id)["pack_id"])

    async def message_notified(self, message_id: str) -> None:
        """ML's notification of a new post-sale message."""
        await notify_messages(
            self.kafka, self.messages, "messages", f"/messages/{message_id}", actions=["created"]
        )

    async def in_conversations(self, pack_id: int) -> None:
        """Wait until the messages service has the pack's conversation with a message."""

        async def listed() -> bool:
            found = await self._messages_api(f"/messages/sellers/{SELLER}/conversations")
            packs = {c["pack_id"]: c["messages"] for c in found.get("conversations", [])}
            return int(packs.get(pack_id, 0)) > 0

        try:
            await wait_until(listed, timeout_s=45, every_s=0.3)
        except AssertionError:
            raise AssertionError(self.messages.log_tail()) from None

    async def question_changed(self, question_id: int) -> None:
        """ML's notification that a question changed (answered, moderated...)."""
        await notify_messages(self.kafka, self.messages, "questions", f"/questions/{question_id}")

    async def new_claim(self, seller_id: int) -> int:
        """A claim on a new paid order, and ML's notification of it (it opens a ticket)."""
        order_id = await self.new_paid_order(seller_id)
        claim = await self.sandbox_event("claim", order_id=order_id)
        resource = f"/post-purchase/v1/claims/{claim['id']}"
        await notify_messages(
            self.kafka, self.messages, "post_purchase", resource, actions=["claims"]
        )
        return int(claim["id"])

    async def log_in(self, context: BrowserContext, seller_id: int) -> Page:
        """The seller's login through the sandbox's consent page, then the web app."""
        page = await context.new_page()
        await page.goto(f"{self.auth.url}/auth/login?site=MLB")
        await page.fill("input[name=user_id]", str(seller_id))
        await page.get_by_role("button", name="Permitir").click()
        await page.wait_for_url(f"{self.auth.url}/auth/dashboard")
        await page.goto(f"{self.url}/app/")
        await expect(page.locator("#seller-id")).to_have_text(str(seller_id))
        return page


async def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@asynccontextmanager
async def seller_stack(kafka: KafkaSettings, tmp_path: Path) -> AsyncIterator[SellerStack]:
    prefix = await orders_topics(kafka)
    async with AsyncExitStack() as stack:
        sink = stack.enter_context(smtp_sink())
        auth = await stack.enter_async_context(
            auth_stack(kafka, auto_approve=False, topic=prefix + PEEPERS_SELLERS, sellers=2)
        )
        run = OrdersRun(
            prefix=prefix,
            kafka=kafka,
            auth=auth,
            smtp_port=sink.port,
            log=tmp_path / "orders.log",
            extra_env={"ORDERS_SERVICE_CREDENTIALS": json.dumps({READER[0]: READER[1]})},
        )
        await stack.enter_async_context(ready_worker(run))
        # The catalog worker on the same topics (one sellers topic: auth publishes to it).
        await catalog_topics(kafka, prefix)
        catalog = worker_run(
            auth,
            prefix,
            kafka,
            tmp_path / "catalog.log",
            extra_env={"CATALOG_SERVICE_CREDENTIALS": json.dumps({READER[0]: READER[1]})},
        )
        await stack.enter_async_context(ready_catalog(catalog))
        await messages_topics(kafka, prefix)
        messages = messages_run(
            auth,
            prefix,
            kafka,
            tmp_path / "messages.log",
            extra_env={"MESSAGES_SERVICE_CREDENTIALS": json.dumps({READER[0]: READER[1]})},
        )
        await stack.enter_async_context(ready_messages(messages))
        pages = await stack.enter_async_context(
            web_process(
                auth,
                live_topics=[
                    prefix + PEEPERS_ORDERS,
                    prefix + PEEPERS_MESSAGES,
                    prefix + PEEPERS_CATALOG,
                ],
                sellers_topic=prefix + PEEPERS_SELLERS,
                service_name=READER[0],
                service_secret=READER[1],
                orders=ReadApi(base_url=run.url),
                catalog=ReadApi(base_url=catalog.url),
                messages=ReadApi(base_url=messages.url),
            )
        )
        yield SellerStack(kafka, auth, run, messages, pages)
