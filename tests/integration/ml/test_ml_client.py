"""The ML client against the real sandbox over HTTP, with its limiter on the real Redis."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from peepers_common.errors import (
    MlForbidden,
    MlNotFound,
    MlUnavailable,
    ReauthRequired,
)
from peepers_common.ml import HttpMlApi, endpoint_family
from peepers_common.settings import MlLimit
from peepers_sandbox.app import Sandbox, run_sandbox
from peepers_sandbox.config import MarketplaceConfig, NotifierConfig, SandboxConfig
from tests.support import ml_client, unique


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    config = SandboxConfig(
        marketplace=MarketplaceConfig(
            sellers=2,
            items_per_seller=120,
            orders_per_seller=10,
            questions_per_seller=5,
            claims_per_seller=2,
        ),
        notifier=NotifierConfig(enabled=False),
    )
    async with run_sandbox(config) as sb:
        yield sb


def _sellers(sb: Sandbox) -> tuple[int, int]:
    first, second = sb.state.market.sellers[:2]
    return first, second


async def _counter(sb: Sandbox, family: str) -> dict[str, Any]:
    for counter in await sb.admin.rate_limit_counters():
        if counter["family"] == family:
            return counter
    return {"total": 0, "limited": 0, "max_per_second": 0, "max_per_minute": 0}


class TestTypedEndpoints:
    async def test_every_endpoint_returns_its_model(self, sandbox: Sandbox) -> None:
        seller, _ = _sellers(sandbox)
        market = sandbox.state.market
        order_id = market.orders_by_seller[seller][0]
        order_json = market.orders[order_id]
        question_id = market.questions_by_seller[seller][0]
        claim_id = market.claims_by_seller[seller][0]
        async with ml_client(sandbox, [seller]) as (api, _tokens):
            me = await api.get_me(seller_id=seller)
            assert me.id == seller
            item_id = market.items_by_seller[seller][0]
            item = await api.get_item(item_id, seller_id=seller)
            assert (item.id, item.seller_id) == (item_id, seller)
            assert item.sku is not None
            order = await api.get_order(order_id, seller_id=seller)
            assert order.seller.id == seller
            page = await api.search_orders(seller_id=seller, limit=5)
            assert 0 < len(page.results) <= 5
            assert page.paging.total >= len(page.results)
            shipment = await api.get_shipment(order_json["shipping"]["id"], seller_id=seller)
            assert shipment.id == order_json["shipping"]["id"]
            question = await api.get_question(question_id, seller_id=seller)
            assert question.seller_id == seller
            claim = await api.get_claim(claim_id, seller_id=seller)
            assert claim.id == claim_id
            messages = await api.get_pack_messages(order_json["pack_id"], seller_id=seller)
            assert isinstance(messages.messages, list)
            history = await api.get_shipment_history(shipment.id, seller_id=seller)
            assert history[-1].status == shipment.status
            pack = await api.get_pack(order_json["pack_id"], seller_id=seller)
            assert order_id in [o.id for o in pack.orders]
            assert pack.shipment_id == order_json["shipping"]["id"]
            paid = next(
                market.orders[o]
                for o in market.orders_by_seller[seller]
                if market.orders[o]["payments"]
            )
            payment_id = paid["payments"][0]["id"]
            payment = await api.get_payment(payment_id, seller_id=seller)
            assert (payment.id, payment.order_id) == (payment_id, paid["id"])
            feeds = await api.missed_feeds(seller_id=seller, topic="orders_v2")
            assert feeds == []

    async def test_answering_a_question_is_seen_on_the_question(self, sandbox: Sandbox) -> None:
        seller, _ = _sellers(sandbox)
        market = sandbox.state.market
        unanswered = next(
            q
            for q in market.questions_by_seller[seller]
            if market.questions[q]["status"] == "UNANSWERED"
        )
        async with ml_client(sandbox, [seller]) as (api, _tokens):
            await api.answer_question(unanswered, "Temos sim, pode comprar!", seller_id=seller)
            question = await api.get_question(unanswered, seller_id=seller)
        assert question.answer is not None
        assert question.answer.text == "Temos sim, pode comprar!"

    def test_endpoint_families_follow_the_path(self) -> None:
        assert endpoint_family("/items?ids=MLB1,MLB2") == "items"
        assert endpoint_family("/users/1/items/search") == "items_search"
        assert endpoint_family("/users/me") == "users"
        assert endpoint_family("/post-purchase/v1/claims/5") == "claims"
        assert endpoint_family("messages/abc") == "messages"
        assert endpoint_family("/messages/packs/1/sellers/2", "POST") == "messages_write"
        assert endpoint_family("/messages/packs/1/sellers/2", "GET") == "messages"
        assert endpoint_family("/packs/2000000001") == "orders"
        assert endpoint_family("/collections/21463688923") == "payments"


class TestMultigetAndScan:
    async def test_multiget_returns_found_items_and_names_the_missing(
        self, sandbox: Sandbox
    ) -> None:
        seller, _ = _sellers(sandbox)
        ids = sandbox.state.market.items_by_seller[seller][:45]
        async with ml_client(sandbox, [seller]) as (api, _tokens):
            result = await api.multiget_items([*ids, "MLB999999999", ids[0]], seller_id=seller)
        assert sorted(i.id for i in result.items) == sorted(ids)
        assert result.missing == ["MLB999999999"]
        # 46 distinct ids at 20 a request: 3 requests, none over ML's cap (it would 400).
        assert (await _counter(sandbox, "items"))["total"] == 3

    async def test_scan_yields_every_item_once_even_when_the_scroll_expires(self) -> None:
        config = SandboxConfig(
            marketplace=MarketplaceConfig(
                sellers=1,
                items_per_seller=10_000,
                orders_per_seller=0,
                questions_per_seller=0,
                claims_per_seller=0,
            ),
            notifier=NotifierConfig(enabled=False),
        )
        async with run_sandbox(config) as sb:
            seller = sb.state.market.sellers[0]
            seen: list[str] = []
            async with ml_client(sb, [seller]) as (api, _tokens):
                async for item_id in api.iter_item_ids(seller_id=seller):
                    seen.append(item_id)
                    if len(seen) == 4_050:
                        await sb.admin.advance_clock(301)  # the scroll's 5 minutes are over
            restarted = (await _counter(sb, "items_search"))["total"]
            expected = sb.state.market.items_by_seller[seller]
        assert len(seen) == len(set(seen)) == 10_000
        assert set(seen) == set(expected)
        # 101 pages to the end, one refused expired scroll and a restarted scan.
        assert restarted > 102


class TestErrors:
    async def test_another_sellers_order_is_forbidden_without_retry(self, sandbox: Sandbox) -> None:
        seller, other = _sellers(sandbox)
        theirs = sandbox.state.market.orders_by_seller[other][0]
        async with ml_client(sandbox, [seller]) as (api, _tokens):
            with pytest.raises(MlForbidden) as caught:
                await api.get_order(theirs, seller_id=seller)
        assert caught.value.status == 403
        assert (await _counter(sandbox, "orders"))["total"] == 1

    async def test_a_missing_item_is_not_found_without_retry(self, sandbox: Sandbox) -> None:
        seller, _ = _sellers(sandbox)
        async with ml_client(sandbox, [seller]) as (api, _tokens):
            with pytest.raises(MlNotFound):
                await api.get_item("MLB424242424242", seller_id=seller)
        assert (await _counter(sandbox, "items"))["total"] == 1

    async def test_fifty_calls_with_an_expired_token_cause_exactly_one_refresh(
        self, sandbox: Sandbox
    ) -> None:
        seller, _ = _sellers(sandbox)
        ids = sandbox.state.market.items_by_seller[seller][:50]
        async with ml_client(sandbox, [seller]) as (api, tokens):
            stale = await tokens.access_token(seller)
            await sandbox.admin.expire_token(stale)
            items = await asyncio.gather(*(api.get_item(i, seller_id=seller) for i in ids))
            fresh = await tokens.access_token(seller)
        assert [i.id for i in items] == ids
        assert fresh != stale
        assert (await _counter(sandbox, "oauth"))["total"] == 1

    async def test_a_revoked_seller_needs_to_authorise_again(self, sandbox: Sandbox) -> None:
        seller, _ = _sellers(sandbox)
        async with ml_client(sandbox, [seller]) as (api, _tokens):
            await sandbox.admin.revoke(seller)
            with pytest.raises(ReauthRequired):
                await api.get_me(seller_id=seller)


class TestResilience:
    async def test_a_429_storm_is_ridden_out(self, sandbox: Sandbox) -> None:
        seller, _ = _sellers(sandbox)
        ids = sandbox.state.market.items_by_seller[seller][:30]
        await sandbox.admin.set_rate_limits([{"family": "items", "per_second": 5}])
        async with ml_client(sandbox, [seller], call_budget_s=20.0) as (api, _tokens):
            items = await asyncio.gather(*(api.get_item(i, seller_id=seller) for i in ids))
        assert len(items) == 30
        assert (await _counter(sandbox, "items"))["limited"] > 0

    async def test_thirty_percent_5xx_and_dropped_connections_still_succeed(
        self, sandbox: Sandbox
    ) -> None:
        seller, _ = _sellers(sandbox)
        ids = sandbox.state.market.items_by_seller[seller][:40]
        await sandbox.admin.set_faults(error_rate=0.3, drop_rate=0.1)
        async with ml_client(sandbox, [seller]) as (api, _tokens):
            items = await asyncio.gather(*(api.get_item(i, seller_id=seller) for i in ids))
        assert [i.id for i in items] == ids

    async def test_a_dead_ml_fails_typed_within_the_budget(self, sandbox: Sandbox) -> None:
        seller, _ = _sellers(sandbox)
        await sandbox.admin.set_faults(error_rate=1.0)
        async with ml_client(sandbox, [seller], call_budget_s=1.0) as (api, _tokens):
            start = time.monotonic()
            with pytest.raises(MlUnavailable):
                await api.get_me(seller_id=seller)
        assert time.monotonic() - start < 2.0

    async def test_a_permit_granted_after_the_budget_ran_out_is_spent_on_its_request(
        self, sandbox: Sandbox
    ) -> None:
        # Failing then would waste the permit ML counts and fail the record for another.
        async with _next_permit_past_the_budget(sandbox) as (api, seller):
            start = time.monotonic()
            me = await api.get_me(seller_id=seller)
        assert me.id == seller
        assert time.monotonic() - start > 2.0  # it did wait past its budget, then went out

    async def test_no_retry_goes_out_after_the_calls_budget_ran_out(self, sandbox: Sandbox) -> None:
        # The second call's permit comes ~3 s in, past its 1 s budget: its one request is
        # sent and answered 5xx, and the call ends there instead of retrying for another
        # second of tenacity's own clock (which starts at the first failure).
        async with _next_permit_past_the_budget(sandbox) as (api, seller):
            await sandbox.admin.reset_rate_limit_counters()
            await sandbox.admin.set_faults(error_rate=1.0)
            with pytest.raises(MlUnavailable):
                await api.get_me(seller_id=seller)
        sent = sum(c["total"] for c in await sandbox.admin.rate_limit_counters())
        assert sent == 1

    async def test_slow_answers_time_out_typed_instead_of_hanging(self, sandbox: Sandbox) -> None:
        seller, _ = _sellers(sandbox)
        await sandbox.admin.set_faults(latency_ms=800)
        async with ml_client(sandbox, [seller], read_timeout_s=0.1, call_budget_s=1.0) as (
            api,
            _tokens,
        ):
            start = time.monotonic()
            with pytest.raises(MlUnavailable):
                await api.get_me(seller_id=seller)
        assert time.monotonic() - start < 2.0


class TestSharedLimits:
    async def test_four_replicas_together_never_pass_a_per_second_limit(
        self, sandbox: Sandbox
    ) -> None:
        seller, _ = _sellers(sandbox)
        ids = sandbox.state.market.items_by_seller[seller][:40]
        await sandbox.admin.set_rate_limits([{"family": "items", "per_second": 10}])
        scope = unique("replicas")
        # Held back replicas wait on the limiter inside their call, so give calls room.
        limit = {
            "app_limit": MlLimit(amount=10, per_s=1),
            "limiter_scope": scope,
            "call_budget_s": 30.0,
        }

        async def replica(chunk: list[str]) -> int:
            async with ml_client(sandbox, [seller], **limit) as (api, _tokens):
                return len([await api.get_item(i, seller_id=seller) for i in chunk])

        done = await asyncio.gather(*(replica(ids[i::4]) for i in range(4)))
        counter = await _counter(sandbox, "items")
        assert sum(done) == 40
        assert counter["limited"] == 0
        assert counter["max_per_second"] <= 10

    async def test_four_replicas_hold_back_at_a_per_minute_limit(self, sandbox: Sandbox) -> None:
        seller, _ = _sellers(sandbox)
        ids = sandbox.state.market.items_by_seller[seller][:25]
        await sandbox.admin.set_rate_limits([{"family": "items", "per_minute": 24}])
        limit = {"app_limit": MlLimit(amount=24, per_s=60), "limiter_scope": unique("replicas")}
        async with (
            ml_client(sandbox, [seller], **limit) as (a, _),
            ml_client(sandbox, [seller], **limit) as (b, _),
            ml_client(sandbox, [seller], **limit) as (c, _),
            ml_client(sandbox, [seller], **limit) as (d, _),
        ):
            replicas = [a, b, c, d]
            await asyncio.gather(
                *(replicas[n % 4].get_item(i, seller_id=seller) for n, i in enumerate(ids[:24]))
            )
            # The 25th request is held by our limiter instead of being refused by ML.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(a.get_item(ids[24], seller_id=seller), 1.0)
        counter = await _counter(sandbox, "items")
        assert counter["total"] == 24
        assert counter["limited"] == 0

    async def test_a_slow_ml_does_not_queue_permits_behind_busy_connections(
        self, sandbox: Sandbox
    ) -> None:
        """ML slow, then fast again: no window at ML holds more than the limit.

        With 2 connections and ML answering in 2 s, the budget grants faster than the
        connections carry. Permits taken before a connection waited in the pool, then
        went out together once ML was fast again, beside that window's own permits: the
        sandbox counted 10 in a second under a limit of 5 and refused 5 (two runs of two).
        """
        seller, _ = _sellers(sandbox)
        ids = sandbox.state.market.items_by_seller[seller][:30]
        await sandbox.admin.set_rate_limits([{"family": "items", "per_second": 5}])
        limit = {
            "app_limit": MlLimit(amount=5, per_s=1),
            "max_connections": 2,
            "call_budget_s": 50.0,
        }
        await sandbox.admin.set_faults(latency_ms=2000)
        async with ml_client(sandbox, [seller], **limit) as (api, _tokens):
            calls = asyncio.gather(*(api.get_item(i, seller_id=seller) for i in ids))
            await asyncio.sleep(8)
            await sandbox.admin.clear_faults()
            assert len(await calls) == 30
        counter = await _counter(sandbox, "items")
        assert counter["limited"] == 0
        assert counter["max_per_second"] <= 5


@asynccontextmanager
async def _next_permit_past_the_budget(sandbox: Sandbox) -> AsyncIterator[tuple[HttpMlApi, int]]:
    """A client of one request per 2 s window, its first permit spent: the next call waits
    about 3 s for its permit, past its 1 s budget (as every call does for a window after a
    lost budget)."""
    seller, _ = _sellers(sandbox)
    limit = MlLimit(amount=1, per_s=2)
    async with ml_client(sandbox, [seller], call_budget_s=1.0, app_limit=limit) as (api, _):
        await api.get_me(seller_id=seller)
        yield api, seller
