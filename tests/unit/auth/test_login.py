import json

import pytest
from aiohttp.test_utils import TestClient, TestServer

from peepers_auth.app import create_app
from peepers_auth.pkce import code_challenge
from peepers_auth.settings import Settings
from peepers_common.testing import InMemoryEventPublisher
from tests.unit.auth.fakes import (
    FakeMlOAuth,
    InMemoryLoginStates,
    InMemorySellerStore,
    InMemorySessions,
)
from tests.unit.auth.flows import Client, login, start


class TestLoginStart:
    async def test_login_redirects_to_the_sites_authorization_url_with_an_s256_challenge(
        self, client: Client
    ) -> None:
        query = await start(client, site="mla")
        assert query["_base"] == "http://auth-ar.ml.invalid"
        assert query["response_type"] == "code"
        assert query["client_id"] == "1234"
        assert query["redirect_uri"] == "http://localhost:8081/auth/callback"
        assert query["code_challenge_method"] == "S256"
        assert len(query["code_challenge"]) == 43
        assert len(query["state"]) >= 43

    async def test_every_login_gets_its_own_state_and_challenge(self, client: Client) -> None:
        first, second = await start(client), await start(client)
        assert first["state"] != second["state"]
        assert first["code_challenge"] != second["code_challenge"]

    async def test_the_login_cookie_is_httponly_lax_and_scoped_to_the_callback(
        self, client: Client
    ) -> None:
        response = await client.get("/auth/login", allow_redirects=False)
        cookie = response.cookies["peepers_login"]
        assert cookie["httponly"]
        assert cookie["samesite"] == "Lax"
        assert cookie["path"] == "/auth/callback"
        assert not cookie["secure"]

    async def test_an_unknown_site_gets_a_clear_page(self, client: Client) -> None:
        response = await client.get("/auth/login?site=XXX", allow_redirects=False)
        assert response.status == 400
        assert "Unknown Mercado Livre site" in await response.text()


class TestCallback:
    async def test_a_completed_login_lands_on_the_dashboard_with_the_account(
        self, client: Client, ml: FakeMlOAuth
    ) -> None:
        html = await login(client, ml)
        assert "LOJA_TESTE" in html
        assert 'id="status">Connected<' in html
        assert ml.access_token not in html

    async def test_the_session_cookie_is_httponly_and_lax(
        self, client: Client, ml: FakeMlOAuth
    ) -> None:
        query = await start(client)
        response = await client.get(
            "/auth/callback",
            params={"code": ml.issue_code(query["code_challenge"]), "state": query["state"]},
            allow_redirects=False,
        )
        cookie = response.cookies["peepers_session"]
        assert cookie["httponly"]
        assert cookie["samesite"] == "Lax"
        assert not cookie["secure"]  # served over plain http here

    async def test_a_completed_login_lands_where_the_dashboard_is_configured(
        self, settings: Settings, ml: FakeMlOAuth
    ) -> None:
        app = create_app(
            settings.model_copy(update={"dashboard_url": "https://peepers.example.com/app/"}),
            ml=ml,
            publisher=InMemoryEventPublisher(),
            states=InMemoryLoginStates(),
            sessions=InMemorySessions(),
            sellers=InMemorySellerStore(),
        )
        async with TestClient(TestServer(app)) as client:
            query = await start(client)
            response = await client.get(
                "/auth/callback",
                params={"code": ml.issue_code(query["code_challenge"]), "state": query["state"]},
                allow_redirects=False,
            )
        assert response.status == 303
        assert response.headers["Location"] == "https://peepers.example.com/app/"

    async def test_a_first_login_publishes_seller_connected_keyed_by_seller(
        self, client: Client, ml: FakeMlOAuth, publisher: InMemoryEventPublisher
    ) -> None:
        await login(client, ml)
        [record] = publisher.records
        event = json.loads(record.value)
        assert record.topic == "test.sellers"
        assert record.key == b"3000000001"
        assert event["type"] == "seller.connected"
        assert event["nickname"] == "LOJA_TESTE"
        assert ("ce_id", event["event_id"].encode()) in record.headers

    async def test_a_second_login_publishes_seller_reconnected_with_a_new_event_id(
        self, client: Client, ml: FakeMlOAuth, publisher: InMemoryEventPublisher
    ) -> None:
        await login(client, ml)
        await login(client, ml)
        first, second = (json.loads(r.value) for r in publisher.records)
        assert [first["type"], second["type"]] == ["seller.connected", "seller.reconnected"]
        assert first["event_id"] != second["event_id"]

    async def test_a_replayed_state_is_refused_with_a_clear_page(
        self, client: Client, ml: FakeMlOAuth
    ) -> None:
        query = await start(client)
        params = {"code": ml.issue_code(query["code_challenge"]), "state": query["state"]}
        first = await client.get("/auth/callback", params=params, allow_redirects=False)
        assert first.status == 303
        replay = await client.get("/auth/callback", params=params, allow_redirects=False)
        assert replay.status == 400
        assert "already used" in await replay.text()

    @pytest.mark.parametrize("state", ["", "forged-state", None])
    async def test_a_missing_unknown_or_tampered_state_is_refused(
        self, client: Client, ml: FakeMlOAuth, state: str | None
    ) -> None:
        query = await start(client)
        params = {"code": ml.issue_code(query["code_challenge"])}
        if state is not None:
            params["state"] = state or query["state"][:-1] + (
                "A" if query["state"][-1] != "A" else "B"
            )
        response = await client.get("/auth/callback", params=params, allow_redirects=False)
        assert response.status == 400
        assert "expired" in await response.text()

    async def test_a_callback_in_another_browser_is_refused(
        self, client: Client, ml: FakeMlOAuth
    ) -> None:
        query = await start(client)
        client.session.cookie_jar.clear()
        response = await client.get(
            "/auth/callback",
            params={"code": ml.issue_code(query["code_challenge"]), "state": query["state"]},
            allow_redirects=False,
        )
        assert response.status == 400
        assert "another browser" in await response.text()

    async def test_an_ml_error_redirect_gets_a_clear_page_and_burns_the_state(
        self, client: Client, ml: FakeMlOAuth
    ) -> None:
        query = await start(client)
        denied = await client.get(
            "/auth/callback",
            params={
                "error": "access_denied",
                "error_description": "The user denied the authorization",
                "state": query["state"],
            },
        )
        assert denied.status == 400
        text = await denied.text()
        assert "did not authorize" in text
        assert "access_denied" in text
        retry = await client.get(
            "/auth/callback",
            params={"code": ml.issue_code(query["code_challenge"]), "state": query["state"]},
        )
        assert "already used" in await retry.text()

    async def test_a_code_that_does_not_match_the_verifier_is_refused(
        self, client: Client, ml: FakeMlOAuth
    ) -> None:
        query = await start(client)
        stolen = ml.issue_code(code_challenge("x" * 43))
        response = await client.get(
            "/auth/callback", params={"code": stolen, "state": query["state"]}
        )
        assert response.status == 400
        assert "refused the authorization" in await response.text()

    async def test_error_pages_escape_what_ml_sent(self, client: Client) -> None:
        query = await start(client)
        response = await client.get(
            "/auth/callback",
            params={"error": "<script>x</script>", "state": query["state"]},
        )
        text = await response.text()
        assert "<script>" not in text
        assert "&lt;script&gt;" in text


class TestPages:
    async def test_pages_forbid_scripts_framing_and_cross_site_referrers(
        self, client: Client
    ) -> None:
        response = await client.get("/auth/")
        assert response.status == 200
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["X-Frame-Options"] == "DENY"

    async def test_the_dashboard_without_a_session_asks_to_log_in(self, client: Client) -> None:
        response = await client.get("/auth/dashboard")
        assert response.status == 401
        assert "Please log in" in await response.text()


def _csrf(html: str) -> str:
    marker = 'name="csrf_token" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


class TestLogoutAndDisconnect:
    async def test_logout_without_the_csrf_token_is_refused(
        self, client: Client, ml: FakeMlOAuth
    ) -> None:
        await login(client, ml)
        response = await client.post("/auth/logout", data={}, allow_redirects=False)
        assert response.status == 403
        assert (await client.get("/auth/dashboard")).status == 200

    async def test_logout_with_the_csrf_token_ends_the_session(
        self, client: Client, ml: FakeMlOAuth
    ) -> None:
        html = await login(client, ml)
        response = await client.post(
            "/auth/logout", data={"csrf_token": _csrf(html)}, allow_redirects=False
        )
        assert response.status == 303
        assert (await client.get("/auth/dashboard")).status == 401

    @pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://localhost:9"])
    async def test_a_cross_site_post_is_refused_even_with_the_token(
        self, client: Client, ml: FakeMlOAuth, origin: str
    ) -> None:
        html = await login(client, ml)
        response = await client.post(
            "/auth/disconnect",
            data={"csrf_token": _csrf(html)},
            headers={"Origin": origin},
            allow_redirects=False,
        )
        assert response.status == 403

    async def test_disconnect_forgets_the_tokens_and_publishes_seller_disconnected(
        self, client: Client, ml: FakeMlOAuth, publisher: InMemoryEventPublisher
    ) -> None:
        html = await login(client, ml)
        response = await client.post(
            "/auth/disconnect",
            data={"csrf_token": _csrf(html)},
            headers={"Origin": "http://localhost:8081"},
            allow_redirects=False,
        )
        assert response.status == 303
        assert json.loads(publisher.records[-1].value)["type"] == "seller.disconnected"
        assert (await client.get("/auth/dashboard")).status == 401


async def test_the_session_cookie_is_secure_when_served_over_tls(settings: Settings) -> None:
    assert settings.model_copy(update={"public_base_url": "https://peepers.example"}).cookie_secure
    assert not settings.cookie_secure
