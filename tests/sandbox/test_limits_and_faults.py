from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from peepers_sandbox import DEMO_APP_ID, DEMO_SELLER_ID, Sandbox, SandboxConfig, run_sandbox
from peepers_sandbox import app as sandbox_app
from peepers_sandbox.config import FaultConfig
from tests.sandbox.support import SmallSandbox, bearer

USERS_ME = "/users/me"


async def started(small_sandbox: SmallSandbox) -> tuple[Sandbox, str]:
    sb: Sandbox = await small_sandbox()
    return sb, (await sb.admin.mint_token(DEMO_SELLER_ID))["access_token"]


class TestRateLimits:
    async def test_past_the_limit_the_answer_is_429_local_rate_limited(self, small_sandbox):
        sb, token = await started(small_sandbox)
        await sb.admin.set_rate_limits([{"family": "users", "per_minute": 5}])
        async with aiohttp.ClientSession(sb.url, headers=bearer(token)) as http:
            answers = []
            for _ in range(11):
                async with http.get(USERS_ME) as resp:
                    answers.append((resp.status, await resp.read(), resp.headers))
        limited = [a for a in answers if a[0] == 429]
        # 11 calls span at most two minute windows of 5, so at least one is refused.
        assert limited
        assert all(body == b'{"message":"local_rate_limited"}' for _, body, _ in limited)
        assert all("Retry-After" not in headers for _, _, headers in limited)
        counters = await sb.admin.rate_limit_counters()
        users = next(c for c in counters if c["family"] == "users")
        assert users["app_id"] == DEMO_APP_ID
        assert users["total"] == 11
        assert users["limited"] == len(limited)
        assert users["max_per_minute"] >= 6
        # When: each refusal under the calendar minute it fell in.
        minutes = users["limited_minutes"]
        assert sum(minutes.values()) == len(limited)
        assert all(int(start) % 60 == 0 and int(start) <= time.time() for start in minutes)

    async def test_limits_are_per_endpoint_family(self, small_sandbox):
        sb, token = await started(small_sandbox)
        await sb.admin.set_rate_limits([{"family": "users", "per_minute": 1}])
        item_id = sb.state.market.items_by_seller[DEMO_SELLER_ID][0]
        async with aiohttp.ClientSession(sb.url, headers=bearer(token)) as http:
            for _ in range(3):
                async with http.get(f"/items/{item_id}") as resp:
                    assert resp.status == 200

    async def test_claims_style_body_and_retry_after_are_configurable(self, small_sandbox):
        sb, token = await started(small_sandbox)
        await sb.admin.set_rate_limits(
            [{"family": "*", "per_minute": 1}], body_style="claims", retry_after_s=7
        )
        body: dict[str, object] = {}
        retry_after = ""
        async with aiohttp.ClientSession(sb.url, headers=bearer(token)) as http:
            statuses = []
            for _ in range(3):
                async with http.get(USERS_ME) as resp:
                    statuses.append(resp.status)
                    if resp.status == 429:
                        body, retry_after = await resp.json(), resp.headers["Retry-After"]
        assert 429 in statuses
        assert body == {
            "message": "Too Many Requests",
            "error": "too_many_requests",
            "status": 429,
            "cause": [],
        }
        assert retry_after == "7"

    async def test_counters_show_a_polite_client_never_exceeded_the_limit(self, small_sandbox):
        sb, token = await started(small_sandbox)
        await sb.admin.set_rate_limits([{"family": "users", "per_second": 1000}])
        async with aiohttp.ClientSession(sb.url, headers=bearer(token)) as http:
            for _ in range(20):
                async with http.get(USERS_ME) as resp:
                    assert resp.status == 200
        users = next(c for c in await sb.admin.rate_limit_counters() if c["family"] == "users")
        assert users["limited"] == 0
        assert users["max_per_second"] <= 20


class TestFaults:
    async def test_error_share_answers_ml_5xx_bodies(self, small_sandbox):
        sb, token = await started(small_sandbox)
        await sb.admin.set_faults(error_rate=1.0, error_statuses=[503])
        async with (
            aiohttp.ClientSession(sb.url, headers=bearer(token)) as http,
            http.get(USERS_ME) as resp,
        ):
            assert resp.status == 503
            assert (await resp.json())["error"] == "service_not_available"

    async def test_a_partial_error_share_fails_only_some_requests(self, small_sandbox):
        sb, token = await started(small_sandbox)
        await sb.admin.set_faults(error_rate=0.5)
        async with aiohttp.ClientSession(sb.url, headers=bearer(token)) as http:
            statuses = []
            for _ in range(60):
                async with http.get(USERS_ME) as resp:
                    statuses.append(resp.status)
        assert 200 in statuses
        assert any(s >= 500 for s in statuses)

    async def test_dropped_connections_close_without_an_answer(self, small_sandbox):
        sb, token = await started(small_sandbox)
        await sb.admin.set_faults(drop_rate=1.0)
        async with aiohttp.ClientSession(sb.url, headers=bearer(token)) as http:
            with pytest.raises(aiohttp.ClientConnectionError):
                async with http.get(USERS_ME) as resp:
                    await resp.read()
            await sb.admin.clear_faults()
            async with http.get(USERS_ME) as resp:
                assert resp.status == 200

    async def test_added_latency_delays_answers(self, small_sandbox):
        sb, token = await started(small_sandbox)
        await sb.admin.set_faults(latency_ms=150)
        async with aiohttp.ClientSession(sb.url, headers=bearer(token)) as http:
            started_at = time.perf_counter()
            async with http.get(USERS_ME) as resp:
                assert resp.status == 200
            assert time.perf_counter() - started_at >= 0.15

    async def test_faults_can_target_one_family_and_spare_the_admin_api(self, small_sandbox):
        sb, token = await started(small_sandbox)
        await sb.admin.set_faults(error_rate=1.0, families=["orders"])
        async with aiohttp.ClientSession(sb.url, headers=bearer(token)) as http:
            async with http.get(USERS_ME) as resp:
                assert resp.status == 200
            order_id = sb.state.market.orders_by_seller[DEMO_SELLER_ID][0]
            async with http.get(f"/orders/{order_id}") as resp:
                assert resp.status >= 500
        assert (await sb.admin.info())["demo_seller_id"] == DEMO_SELLER_ID

    async def test_forced_401_hits_one_seller_until_cleared(self, small_sandbox):
        sb, token = await started(small_sandbox)
        await sb.admin.set_faults(force_401_user_ids=[DEMO_SELLER_ID])
        async with aiohttp.ClientSession(sb.url, headers=bearer(token)) as http:
            async with http.get(USERS_ME) as resp:
                assert resp.status == 401
            await sb.admin.clear_faults()
            async with http.get(USERS_ME) as resp:
                assert resp.status == 200

    async def test_expired_token_gets_401(self, small_sandbox):
        sb, token = await started(small_sandbox)
        await sb.admin.expire_token(token)
        async with (
            aiohttp.ClientSession(sb.url, headers=bearer(token)) as http,
            http.get(USERS_ME) as resp,
        ):
            assert resp.status == 401
            assert await resp.json() == {
                "message": "invalid access token",
                "error": "unauthorized",
                "status": 401,
                "cause": [],
            }


async def test_a_stopping_sandbox_cancels_a_slow_request_it_still_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A request held by the latency fault, its client gone: the stop waits for it only
    # STOP_WAIT_S (aiohttp's default, 60 s, held tests' teardowns past their timeouts).
    monkeypatch.setattr(sandbox_app, "STOP_WAIT_S", 0.5)
    config = SandboxConfig(faults=FaultConfig(latency_ms=30_000))
    async with run_sandbox(config) as sb:

        async def get() -> None:
            async with aiohttp.ClientSession() as http, http.get(f"{sb.url}/sites/MLB") as r:
                await r.read()

        held = asyncio.create_task(get())
        await asyncio.sleep(0.5)
        held.cancel()
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 5
