"""The messages API over the real Redis, Kafka changelogs and sandbox."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from peepers_messages.api import create_api
from peepers_messages.settings import Settings
from tests.integration.messages.harness import Stack, an_order, claim_changed, new_question

AUTH = {"Authorization": "Basic " + base64.b64encode(b"support:s3cret").decode()}

Client = TestClient[Any, Any]


@pytest.fixture
async def client(messages: Stack) -> AsyncIterator[Client]:
    settings = Settings(service_credentials={"support": SecretStr("s3cret")})

    async def ready() -> tuple[bool, dict[str, Any]]:
        return True, {"status": "ready"}

    app = create_api(settings, deps=messages.deps, subs=messages.subs, ready=ready)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def base(messages: Stack) -> str:
    return f"/messages/sellers/{messages.seller}"


class TestQuestionsApi:
    async def test_the_inbox_answers_unanswered_questions_oldest_first(
        self, messages: Stack, client: Client
    ) -> None:
        question_id = await new_question(messages)
        response = await client.get(f"{base(messages)}/questions/inbox", headers=AUTH)
        body = await response.json()
        assert response.status == 200
        assert question_id in [q["id"] for q in body["questions"]]
        assert body["questions"][0]["breached"] is False

    async def test_answering_needs_an_idempotency_key_and_a_valid_text(
        self, messages: Stack, client: Client
    ) -> None:
        question_id = await new_question(messages)
        url = f"{base(messages)}/questions/{question_id}/answer"
        missing = await client.post(url, json={"text": "Oi"}, headers=AUTH)
        assert missing.status == 400
        assert "Idempotency-Key" in (await missing.json())["detail"]
        empty = await client.post(url, json={"text": " "}, headers={**AUTH, "Idempotency-Key": "a"})
        assert empty.status == 422
        assert (await empty.json())["rule"] == "not_empty"
        ok = await client.post(url, json={"text": "Sim!"}, headers={**AUTH, "Idempotency-Key": "b"})
        assert ok.status == 200
        assert (await ok.json())["answer"] == "Sim!"

    async def test_another_sellers_question_answers_404(
        self, messages: Stack, client: Client
    ) -> None:
        market = messages.sandbox.state.market
        other_question = market.questions_by_seller[market.sellers[1]][0]
        url = f"{base(messages)}/questions/{other_question}/answer"
        response = await client.post(
            url, json={"text": "Oi"}, headers={**AUTH, "Idempotency-Key": "x"}
        )
        assert response.status == 404
        assert (await response.json())["error"] == "not_found"

    async def test_without_credentials_nothing_is_answered(self, client: Client) -> None:
        response = await client.get("/messages/sellers/1/questions/inbox")
        assert response.status == 401


class TestTicketsApi:
    async def test_a_ticket_is_listed_moved_assigned_and_noted(
        self, messages: Stack, client: Client
    ) -> None:
        claim = await messages.sandbox.admin.event("claim", order_id=an_order(messages)["id"])
        claim_id = int(claim["id"])
        await claim_changed(messages, claim_id)
        listed = await (await client.get(f"{base(messages)}/tickets", headers=AUTH)).json()
        assert claim_id in [t["claim_id"] for t in listed["tickets"]]
        url = f"{base(messages)}/tickets/{claim_id}"
        illegal = await client.post(f"{url}/status", json={"status": "closed"}, headers=AUTH)
        assert illegal.status == 409
        assert (await illegal.json())["error"] == "illegal_transition"
        moved = await client.post(f"{url}/status", json={"status": "in_progress"}, headers=AUTH)
        assert (await moved.json())["status"] == "in_progress"
        await client.post(f"{url}/assignee", json={"assignee": "ana"}, headers=AUTH)
        noted = await client.post(
            f"{url}/notes", json={"author": "ana", "text": "Liguei"}, headers=AUTH
        )
        body = await noted.json()
        assert (body["assignee"], [n["text"] for n in body["notes"]]) == ("ana", ["Liguei"])
        assert body["due_soon"] is False  # the sandbox's claims are due in 3 days
        other = messages.sandbox.state.market.sellers[1]
        stolen = await client.post(
            f"/messages/sellers/{other}/tickets/{claim_id}/status",
            json={"status": "resolved"},
            headers=AUTH,
        )
        assert stolen.status == 404
        stats = await (await client.get(f"{base(messages)}/stats", headers=AUTH)).json()
        assert stats["open_tickets"] >= 1
