"""The pages with in-memory read APIs: what a seller sees, and what they may not."""

from __future__ import annotations

import re

from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.unit.web.conftest import CSRF
from tests.unit.web.fakes import FakeCatalog, FakeMessages, FakeOrders

Client = TestClient[web.Request, web.Application]


async def _page(client: Client, path: str, status: int = 200) -> str:
    response = await client.get(path)
    text = await response.text()
    assert response.status == status, text
    return text


class TestOverview:
    async def test_shows_sales_counts_and_a_chart_in_portuguese_by_default(
        self, client: Client
    ) -> None:
        html = await _page(client, "/app/")
        assert '<html lang="pt-BR">' in html
        assert "Vendas hoje" in html
        assert "<svg" in html
        assert html.count('class="bar"') == 30
        assert 'id="questions-count"' in html
        # two unanswered questions of this seller, one open ticket with its due date
        assert re.search(r'href="/app/questions">2<', html)
        assert re.search(r'href="/app/tickets">1<', html)
        # three unread messages over its two conversations (not the other seller's)
        assert re.search(r'href="/app/conversations">3<', html)
        assert "R$" in html

    async def test_english_is_one_click_away_and_remembered(self, client: Client) -> None:
        html = await _page(client, "/app/?lang=en")
        assert '<html lang="en">' in html
        assert "Sales today" in html
        html = await _page(client, "/app/")
        assert "Sales today" in html

    async def test_a_service_that_is_down_leaves_the_rest_of_the_page_working(
        self, client: Client, orders: FakeOrders
    ) -> None:
        orders.down = True
        html = await _page(client, "/app/")
        assert "Serviço indisponível" in html
        assert "Perguntas sem resposta" in html

    async def test_without_a_session_the_page_asks_to_log_in(self, client: Client) -> None:
        client.session.cookie_jar.clear()
        html = await _page(client, "/app/", 401)
        assert "http://localhost:8081/auth/login" in html


class TestOrders:
    async def test_lists_only_the_sessions_orders_with_money_per_currency(
        self, client: Client
    ) -> None:
        html = await _page(client, "/app/orders")
        assert "2000000001" in html
        assert "2000000099" not in html
        assert "R$ 1.234,56" in html
        # escaped, never markup
        assert "Caneca &lt;b&gt;azul&lt;/b&gt;" in html

    async def test_filters_reach_the_read_api(self, client: Client, orders: FakeOrders) -> None:
        await _page(client, "/app/orders?state=paid&buyer=42&from=2026-12-01&to=2026-12-07")
        [query] = orders.queries
        assert (query.state, query.buyer_id) == ("paid", 42)
        # the seller's days (São Paulo), the last one whole
        assert str(query.created_from) == "2026-12-01 00:00:00-03:00"
        assert str(query.created_to) == "2026-12-07 23:59:59.999999-03:00"

    async def test_a_bad_filter_is_explained_and_not_sent(
        self, client: Client, orders: FakeOrders
    ) -> None:
        html = await _page(client, "/app/orders?buyer=abc")
        assert 'id="filter-error"' in html
        assert orders.queries == []

    async def test_an_order_shows_its_timeline_merged_with_its_messages(
        self, client: Client
    ) -> None:
        html = await _page(client, "/app/orders/2000000001")
        assert "Olá, quando chega?" in html
        assert 'id="timeline"' in html
        # its messages are a conversation, one click away
        assert 'id="order-conversation" href="/app/conversations/2000001001"' in html

    async def test_another_sellers_order_is_not_found(self, client: Client) -> None:
        await _page(client, "/app/orders/2000000099", 404)
        await _page(client, "/app/orders/not-a-number", 404)
        await _page(client, "/app/orders/%C2%B2", 404)  # a digit, but not an ASCII one

    async def test_a_query_the_orders_api_refuses_is_explained(
        self, client: Client, orders: FakeOrders
    ) -> None:
        html = await _page(client, "/app/orders?cursor=stale")
        assert 'id="filter-error"' in html
        assert "cursor" in html


class TestQuestions:
    async def test_the_inbox_is_oldest_first_and_only_the_sellers(self, client: Client) -> None:
        html = await _page(client, "/app/questions")
        assert html.index("Entrega amanhã?") < html.index("Tem em azul?")
        assert "outro vendedor" not in html
        assert 'data-maxchars="2000"' in html

    async def test_an_answer_reaches_the_messages_service(
        self, client: Client, messages: FakeMessages
    ) -> None:
        response = await client.post(
            "/app/questions/5000/answer",
            data={"text": "Sim, chega amanhã.", "csrf_token": CSRF},
            headers={"HX-Request": "true"},
        )
        assert response.status == 200
        assert 'id="answered-5000"' in await response.text()
        assert messages.answers == {5000: "Sim, chega amanhã."}

    async def test_an_answer_over_2000_characters_is_refused_next_to_the_field(
        self, client: Client, messages: FakeMessages
    ) -> None:
        response = await client.post(
            "/app/questions/5000/answer",
            data={"text": "x" * 2001, "csrf_token": CSRF},
            headers={"HX-Request": "true"},
        )
        html = await response.text()
        assert response.status == 422
        assert 'id="error-5000"' in html
        assert 'data-code="too_long"' in html
        assert messages.answers == {}

    async def test_the_apis_refusal_is_shown_next_to_the_field(
        self, client: Client, messages: FakeMessages
    ) -> None:
        messages.answers[5000] = "before"
        response = await client.post(
            "/app/questions/5000/answer", data={"text": "again", "csrf_token": CSRF}
        )
        html = await response.text()
        assert response.status == 422
        assert 'data-code="already_answered"' in html

    async def test_another_sellers_question_is_not_found(
        self, client: Client, messages: FakeMessages
    ) -> None:
        response = await client.post(
            "/app/questions/5099/answer", data={"text": "hi", "csrf_token": CSRF}
        )
        assert response.status == 404
        assert messages.answers == {}


class TestConversations:
    async def test_lists_the_sellers_conversations_with_unread_counts(self, client: Client) -> None:
        html = await _page(client, "/app/conversations")
        assert 'id="c-4001"' in html
        assert 'data-unread="2"' in html
        assert 'id="c-4002"' in html
        assert "bloqueada" in html
        assert "4099" not in html

    async def test_one_conversation_shows_its_messages_and_a_send_form(
        self, client: Client
    ) -> None:
        html = await _page(client, "/app/conversations/4001")
        assert html.index("Olá, quando chega?") < html.index("Pode enviar hoje?")
        assert 'data-maxchars="350"' in html
        assert re.search(r'name="nonce" value="[0-9a-f]{32}"', html)

    async def test_a_message_is_sent_once_per_form(
        self, client: Client, messages: FakeMessages
    ) -> None:
        form = {"text": "Sai hoje!", "nonce": "a" * 32, "csrf_token": CSRF}
        for _ in range(2):  # a double click
            response = await client.post(
                "/app/conversations/4001/messages", data=form, headers={"HX-Request": "true"}
            )
            assert response.status == 200
            assert response.headers["HX-Trigger"] == "peepers:sent"
            html = await response.text()
            assert 'id="sent"' in html
            # a fresh form, for the next message
            assert 'value="' + "a" * 32 + '"' not in html
        assert messages.sent == [(4001, "a" * 32, "Sai hoje!")]

    async def test_without_htmx_a_sent_message_returns_to_the_conversation(
        self, client: Client, messages: FakeMessages
    ) -> None:
        response = await client.post(
            "/app/conversations/4001/messages",
            data={"text": "Sai hoje!", "nonce": "b" * 32, "csrf_token": CSRF},
            allow_redirects=False,
        )
        assert response.status == 303
        assert response.headers["Location"] == "/app/conversations/4001"
        assert len(messages.sent) == 1

    async def test_a_blocked_conversation_shows_the_refusal_next_to_the_field(
        self, client: Client, messages: FakeMessages
    ) -> None:
        response = await client.post(
            "/app/conversations/4002/messages",
            data={"text": "Olá de novo", "nonce": "c" * 32, "csrf_token": CSRF},
        )
        html = await response.text()
        assert response.status == 422
        assert 'id="message-error" data-code="blocked"' in html
        assert "Esta conversa está bloqueada" in html
        assert "blocked_by_time" in html
        assert "Olá de novo</textarea>" in html
        assert messages.sent == []

    async def test_an_empty_or_too_long_message_is_refused_before_asking(
        self, client: Client, messages: FakeMessages
    ) -> None:
        for text, code in (("  ", "empty"), ("x" * 351, "too_long")):
            response = await client.post(
                "/app/conversations/4001/messages",
                data={"text": text, "csrf_token": CSRF},
                headers={"HX-Request": "true"},
            )
            assert response.status == 422
            assert f'data-code="{code}"' in await response.text()
        assert messages.sent == []

    async def test_another_sellers_conversation_is_not_found(
        self, client: Client, messages: FakeMessages
    ) -> None:
        assert (await client.get("/app/conversations/4099")).status == 404
        response = await client.post(
            "/app/conversations/4099/messages", data={"text": "hi", "csrf_token": CSRF}
        )
        assert response.status == 404
        assert messages.sent == []

    async def test_a_message_posted_without_its_csrf_token_is_refused(
        self, client: Client, messages: FakeMessages
    ) -> None:
        response = await client.post("/app/conversations/4001/messages", data={"text": "hi"})
        assert response.status == 403
        assert messages.sent == []


class TestCsrf:
    async def test_a_form_posted_without_its_token_is_refused_and_changes_nothing(
        self, client: Client, messages: FakeMessages
    ) -> None:
        response = await client.post("/app/questions/5000/answer", data={"text": "hi"})
        assert response.status == 403
        assert messages.answers == {}

    async def test_a_wrong_token_or_a_foreign_origin_is_refused(
        self, client: Client, messages: FakeMessages
    ) -> None:
        wrong = await client.post(
            "/app/tickets/7001", data={"status": "closed", "csrf_token": "guess"}
        )
        assert wrong.status == 403
        foreign = await client.post(
            "/app/tickets/7001",
            data={"status": "closed", "csrf_token": CSRF},
            headers={"Origin": "https://evil.example"},
        )
        assert foreign.status == 403
        assert messages.tickets_[0].status == "open"

    async def test_htmx_sends_the_token_as_a_header(
        self, client: Client, messages: FakeMessages
    ) -> None:
        response = await client.post(
            "/app/questions/5000/answer",
            data={"text": "ok"},
            headers={"X-CSRF-Token": CSRF, "HX-Request": "true"},
        )
        assert response.status == 200
        assert 5000 in messages.answers


class TestTickets:
    async def test_a_status_assignee_and_note_are_saved(
        self, client: Client, messages: FakeMessages
    ) -> None:
        response = await client.post(
            "/app/tickets/7001",
            data={
                "status": "in_progress",
                "assignee": "Ana",
                "note": "Trocar o produto",
                "csrf_token": CSRF,
            },
            allow_redirects=False,
        )
        assert response.status == 303
        html = await _page(client, "/app/tickets/7001")
        assert "em andamento" in html
        assert "Trocar o produto" in html
        assert "Ana" in html

    async def test_emptying_the_assignee_unassigns_and_an_unchanged_status_is_not_moved(
        self, client: Client, messages: FakeMessages
    ) -> None:
        messages.tickets_[0] = messages.tickets_[0].model_copy(update={"assignee": "Ana"})
        response = await client.post(
            "/app/tickets/7001",
            data={"status": "open", "assignee": "", "csrf_token": CSRF},
            allow_redirects=False,
        )
        assert response.status == 303
        assert (messages.tickets_[0].status, messages.tickets_[0].assignee) == ("open", None)

    async def test_an_unknown_status_is_refused(
        self, client: Client, messages: FakeMessages
    ) -> None:
        response = await client.post(
            "/app/tickets/7001", data={"status": "bogus", "csrf_token": CSRF}
        )
        assert response.status == 422
        assert messages.tickets_[0].status == "open"

    async def test_a_move_the_workflow_refuses_is_explained_and_changes_nothing(
        self, client: Client, messages: FakeMessages
    ) -> None:
        response = await client.post(
            "/app/tickets/7001", data={"status": "closed", "note": "x", "csrf_token": CSRF}
        )
        assert response.status == 422
        assert "open to in_progress" in await response.text()
        assert messages.tickets_[0].notes == ()

    async def test_another_sellers_ticket_is_not_found(self, client: Client) -> None:
        await _page(client, "/app/tickets/7009", 404)
        await _page(client, "/app/tickets/x1", 404)


class TestCatalog:
    async def test_search_with_facets(self, client: Client, catalog: FakeCatalog) -> None:
        html = await _page(client, "/app/catalog?q=item&status=active")
        assert "MLB1" in html
        assert "MLB9" not in html
        assert 'data-facet="status"' in html
        assert catalog.asked[-1]["q"] == "item"

    async def test_a_refused_query_is_explained(self, client: Client) -> None:
        html = await _page(client, "/app/catalog?price_min=abc")
        assert 'id="search-error"' in html


class TestHeaders:
    async def test_pages_allow_no_inline_script(self, client: Client) -> None:
        response = await client.get("/app/")
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "unsafe-eval" not in csp
        html = await response.text()
        scripts = re.findall(r"<script[^>]*>", html)
        assert scripts
        assert all('src="/static/' in tag for tag in scripts)
        assert " on" not in "".join(re.findall(r"<[a-z]+ [^>]*\bon\w+=", html))
        assert response.headers["X-Frame-Options"] == "DENY"

    async def test_live_parts_pass_none_of_their_refresh_attributes_to_the_forms_inside(
        self, client: Client
    ) -> None:
        # htmx inherits hx-select: an answer form inside the questions part would select
        # "#questions" out of its own fragment and swap in nothing.
        for path in ("/app/", "/app/orders", "/app/questions", "/app/tickets", "/app/catalog"):
            html = await _page(client, path)
            regions = re.findall(r"<div [^>]*data-live=[^>]*>", html)
            assert regions, path
            assert all('hx-disinherit="*"' in region for region in regions), path

    async def test_the_vendored_assets_are_served(self, client: Client) -> None:
        for path in ("/static/htmx.min.js", "/static/app.js", "/static/app.css"):
            response = await client.get(path)
            assert response.status == 200, path
