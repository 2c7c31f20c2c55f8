from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp

from peepers_sandbox import (
    DEMO_APP_ID,
    DEMO_CLIENT_SECRET,
    DEMO_REDIRECT_URI,
    DEMO_SELLER_ID,
    Sandbox,
    s256,
)
from tests.sandbox.support import (
    NO_PKCE_APP_ID,
    NO_PKCE_REDIRECT,
    NO_PKCE_SECRET,
    OTHER_SELLER_ID,
    SmallSandbox,
    bearer,
)

RFC7636_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC7636_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
GRANT_ERROR = (
    "Error validating grant. "
    "Your authorization code or refresh token may be expired or it was already used"
)


async def authorize(
    http: aiohttp.ClientSession,
    *,
    challenge: str | None = RFC7636_CHALLENGE,
    method: str | None = "S256",
    client_id: int = DEMO_APP_ID,
    redirect_uri: str = DEMO_REDIRECT_URI,
    user_id: int = DEMO_SELLER_ID,
) -> str:
    """Walk the consent page like a browser and return the authorization code."""
    params = {
        "response_type": "code",
        "client_id": str(client_id),
        "redirect_uri": redirect_uri,
        "state": "xyz",
    }
    if challenge is not None:
        params["code_challenge"] = challenge
    if method is not None:
        params["code_challenge_method"] = method
    async with http.get("/authorization", params=params) as page:
        assert page.status == 200
        html = await page.text()
    assert '<form method="post" action="/authorization">' in html
    assert 'value="approve"' in html
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html))
    form |= {"decision": "approve", "user_id": str(user_id)}
    async with http.post("/authorization", data=form, allow_redirects=False) as resp:
        assert resp.status == 302
        location = urlsplit(resp.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == redirect_uri
    query = parse_qs(location.query)
    assert query["state"] == ["xyz"]
    return query["code"][0]


async def exchange(http: aiohttp.ClientSession, **fields: str) -> tuple[int, dict[str, Any]]:
    form = {
        "grant_type": "authorization_code",
        "client_id": str(DEMO_APP_ID),
        "client_secret": DEMO_CLIENT_SECRET,
        "redirect_uri": DEMO_REDIRECT_URI,
        **fields,
    }
    async with http.post("/oauth/token", data=form) as resp:
        return resp.status, await resp.json()


async def refresh(http: aiohttp.ClientSession, refresh_token: str) -> tuple[int, dict[str, Any]]:
    return await exchange(
        http, grant_type="refresh_token", refresh_token=refresh_token, redirect_uri=""
    )


class TestAuthorizationCodeWithPkce:
    def test_s256_derives_the_rfc_7636_appendix_b_challenge(self) -> None:
        assert s256(RFC7636_VERIFIER) == RFC7636_CHALLENGE

    async def test_consent_page_approval_yields_a_token_pair_shaped_like_mls(self, http) -> None:
        code = await authorize(http)
        assert re.fullmatch(rf"TG-[0-9a-f]{{24}}-{DEMO_SELLER_ID}", code)

        status, body = await exchange(http, code=code, code_verifier=RFC7636_VERIFIER)

        assert status == 200
        assert re.fullmatch(
            rf"APP_USR-{DEMO_APP_ID}-\d{{6}}-[0-9a-f]{{32}}-{DEMO_SELLER_ID}", body["access_token"]
        )
        assert re.fullmatch(rf"TG-[0-9a-f]{{24}}-{DEMO_SELLER_ID}", body["refresh_token"])
        assert body["token_type"] == "bearer"  # noqa: S105
        assert body["expires_in"] == 21600
        assert body["user_id"] == DEMO_SELLER_ID
        assert body["scope"] == "offline_access read write"
        async with http.get("/users/me", headers=bearer(body["access_token"])) as me:
            assert (await me.json())["id"] == DEMO_SELLER_ID

    async def test_plain_challenge_method_is_accepted(self, http) -> None:
        code = await authorize(http, challenge="plain-verifier-" + "x" * 40, method="plain")
        status, _ = await exchange(http, code=code, code_verifier="plain-verifier-" + "x" * 40)
        assert status == 200

    async def test_wrong_code_verifier_fails_with_invalid_grant(self, http) -> None:
        code = await authorize(http)
        status, body = await exchange(http, code=code, code_verifier="not-the-verifier" * 3)
        assert (status, body["error"]) == (400, "invalid_grant")

    async def test_missing_code_verifier_fails_with_invalid_grant(self, http) -> None:
        code = await authorize(http)
        status, body = await exchange(http, code=code)
        assert (status, body["error"]) == (400, "invalid_grant")

    async def test_app_with_pkce_enabled_refuses_an_authorization_without_challenge(
        self, http
    ) -> None:
        params = {
            "response_type": "code",
            "client_id": str(DEMO_APP_ID),
            "redirect_uri": DEMO_REDIRECT_URI,
        }
        async with http.get("/authorization", params=params, allow_redirects=False) as resp:
            assert resp.status == 302
            query = parse_qs(urlsplit(resp.headers["Location"]).query)
        assert query["error"] == ["invalid_request"]

    async def test_app_without_pkce_exchanges_a_code_without_verifier(self, http) -> None:
        code = await authorize(
            http,
            challenge=None,
            method=None,
            client_id=NO_PKCE_APP_ID,
            redirect_uri=NO_PKCE_REDIRECT,
        )
        status, body = await exchange(
            http,
            code=code,
            client_id=str(NO_PKCE_APP_ID),
            client_secret=NO_PKCE_SECRET,
            redirect_uri=NO_PKCE_REDIRECT,
        )
        assert status == 200
        assert body["access_token"].startswith(f"APP_USR-{NO_PKCE_APP_ID}-")

    async def test_authorization_code_is_single_use(self, http) -> None:
        code = await authorize(http)
        first, _ = await exchange(http, code=code, code_verifier=RFC7636_VERIFIER)
        second, body = await exchange(http, code=code, code_verifier=RFC7636_VERIFIER)
        assert first == 200
        assert second == 400
        assert body == {
            "error_description": GRANT_ERROR,
            "error": "invalid_grant",
            "status": 400,
            "cause": [],
        }

    async def test_authorization_code_expires_after_its_lifetime(self, small_sandbox) -> None:
        sb: Sandbox = await small_sandbox()
        async with aiohttp.ClientSession(sb.url) as http:
            code = await authorize(http)
            await sb.admin.advance_clock(601)
            status, body = await exchange(http, code=code, code_verifier=RFC7636_VERIFIER)
        assert (status, body["error"]) == (400, "invalid_grant")

    async def test_redirect_uri_must_match_exactly(self, http) -> None:
        params = {
            "response_type": "code",
            "client_id": str(DEMO_APP_ID),
            "redirect_uri": DEMO_REDIRECT_URI + "/",
            "code_challenge": RFC7636_CHALLENGE,
            "code_challenge_method": "S256",
        }
        async with http.get("/authorization", params=params) as resp:
            assert resp.status == 400
            assert "has to match with the redirect_uri param" in await resp.text()
        code = await authorize(http)
        status, body = await exchange(
            http, code=code, code_verifier=RFC7636_VERIFIER, redirect_uri=DEMO_REDIRECT_URI + "?x"
        )
        assert (status, body["error"]) == (400, "invalid_grant")

    async def test_wrong_client_secret_is_invalid_client(self, http) -> None:
        code = await authorize(http)
        status, body = await exchange(
            http,
            code=code,
            code_verifier=RFC7636_VERIFIER,
            client_secret="nope",  # noqa: S106
        )
        assert (status, body["error"]) == (401, "invalid_client")

    async def test_unknown_grant_type_is_unsupported(self, http) -> None:
        status, body = await exchange(http, grant_type="client_credentials")
        assert (status, body["error"]) == (400, "unsupported_grant_type")

    async def test_token_parameters_in_the_query_string_are_ignored(self, http) -> None:
        query = {"grant_type": "refresh_token", "client_id": str(DEMO_APP_ID)}
        async with http.post("/oauth/token", params=query, data={"x": "1"}) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"] == "invalid_request"

    async def test_auto_approve_redirects_without_the_consent_page(self, small_sandbox) -> None:
        sb: Sandbox = await small_sandbox()
        await sb.admin.patch_api(auto_approve=True)
        params = {
            "response_type": "code",
            "client_id": str(DEMO_APP_ID),
            "redirect_uri": DEMO_REDIRECT_URI,
            "code_challenge": RFC7636_CHALLENGE,
            "code_challenge_method": "S256",
            "login_as": str(OTHER_SELLER_ID),
        }
        async with (
            aiohttp.ClientSession(sb.url) as http,
            http.get("/authorization", params=params, allow_redirects=False) as resp,
        ):
            assert resp.status == 302
            code = parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]
        assert code.endswith(f"-{OTHER_SELLER_ID}")


class TestRefreshTokenRotation:
    async def test_each_refresh_rotates_and_only_the_latest_refresh_token_works(self, http) -> None:
        code = await authorize(http)
        _, first = await exchange(http, code=code, code_verifier=RFC7636_VERIFIER)

        status, second = await refresh(http, first["refresh_token"])
        assert status == 200
        assert second["refresh_token"] != first["refresh_token"]
        assert second["access_token"] != first["access_token"]

        reuse_status, reuse = await refresh(http, first["refresh_token"])
        assert reuse_status == 400
        assert reuse["error"] == "invalid_grant"
        assert reuse["error_description"] == GRANT_ERROR

        status, third = await refresh(http, second["refresh_token"])
        assert status == 200
        async with http.get("/users/me", headers=bearer(third["access_token"])) as me:
            assert me.status == 200

    async def test_refresh_token_of_another_app_is_rejected(self, http) -> None:
        code = await authorize(http)
        _, pair = await exchange(http, code=code, code_verifier=RFC7636_VERIFIER)
        status, body = await exchange(
            http,
            grant_type="refresh_token",
            refresh_token=pair["refresh_token"],
            client_id=str(NO_PKCE_APP_ID),
            client_secret=NO_PKCE_SECRET,
        )
        assert (status, body["error"]) == (400, "invalid_grant")

    async def test_revoked_grant_gets_401s_and_its_refresh_fails(self, small_sandbox) -> None:
        sb: Sandbox = await small_sandbox()
        pair = await sb.admin.mint_token(DEMO_SELLER_ID)
        async with aiohttp.ClientSession(sb.url) as http:
            assert await sb.admin.revoke(DEMO_SELLER_ID) == 1
            async with http.get("/users/me", headers=bearer(pair["access_token"])) as me:
                assert me.status == 401
            status, body = await refresh(http, pair["refresh_token"])
        assert (status, body["error"]) == (400, "invalid_grant")

    async def test_configured_token_lifetime_is_reported_and_enforced(self, small_sandbox) -> None:
        sb: Sandbox = await small_sandbox()
        await sb.admin.patch_api(access_token_ttl_s=5)
        async with aiohttp.ClientSession(sb.url) as http:
            code = await authorize(http)
            status, pair = await exchange(http, code=code, code_verifier=RFC7636_VERIFIER)
            assert (status, pair["expires_in"]) == (200, 5)
            async with http.get("/users/me", headers=bearer(pair["access_token"])) as fresh:
                assert fresh.status == 200
            await sb.admin.advance_clock(6)
            async with http.get("/users/me", headers=bearer(pair["access_token"])) as stale:
                assert stale.status == 401
                assert (await stale.json())["status"] == 401
            status, renewed = await refresh(http, pair["refresh_token"])
            assert status == 200
            async with http.get("/users/me", headers=bearer(renewed["access_token"])) as again:
                assert again.status == 200


async def test_the_consent_pages_are_the_sellers_browser_not_the_apps_quota(
    small_sandbox: SmallSandbox,
) -> None:
    """ML's per-application quota counts API calls; the consent page is its website."""
    sb: Sandbox = await small_sandbox()
    await sb.admin.set_rate_limits([{"family": "*", "per_minute": 2}])
    async with aiohttp.ClientSession(sb.url) as http:
        codes = [await authorize(http) for _ in range(3)]  # six page views and forms
        status, _ = await exchange(http, code=codes[0], code_verifier=RFC7636_VERIFIER)
    assert status == 200
    counters = await sb.admin.rate_limit_counters()
    assert [(c["family"], c["total"], c["limited"]) for c in counters] == [("oauth", 1, 0)]
