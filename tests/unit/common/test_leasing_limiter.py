"""The leasing limiter: the shared budget's rules (`MemoryLeaseBudget`, the same as the
Redis script's) on an injected clock, and the limiter's local side over that budget."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

import pytest
from prometheus_client import REGISTRY

from peepers_common.ml.leases import (
    ACTIVE_S,
    LIVE_RESERVE,
    Lane,
    LeaseGrant,
    LeaseRequest,
    Level,
    MemoryLeaseBudget,
)
from peepers_common.ml.ratelimit import MARGIN_S, OutboundLimiter, bulk_lane
from peepers_common.settings import MlApiSettings, MlLimit

LEVEL = Level("ratelimit:test:app", amount=12, window_s=2.0)
APP_KEY = "ratelimit:unit:0:app"  # the limiter's app level: scope "unit", app id 0
MARKER = "ratelimit:test:epoch"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class CountingBudget(MemoryLeaseBudget):
    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.requests: list[LeaseRequest] = []

    async def take(self, request: LeaseRequest) -> LeaseGrant:
        self.requests.append(request)
        return await super().take(request)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def budget(clock: Clock) -> CountingBudget:
    return CountingBudget(clock)


def ask(
    holder: str,
    want: int,
    seq: int = 0,
    lane: Lane = Lane.LIVE,
    give_back: tuple[str, int] | None = None,
    epoch: str = "",
) -> LeaseRequest:
    return LeaseRequest(
        holder, seq, want, lane, (LEVEL,), give_back=give_back, marker=MARKER, epoch=epoch
    )


class TestSharedBudget:
    async def test_a_lease_is_granted_up_to_what_the_window_has_left(
        self, budget: CountingBudget
    ) -> None:
        assert (await budget.take(ask("a", 8))).granted == 8
        assert (await budget.take(ask("a", 8, seq=1))).granted == 4
        assert budget.held(LEVEL.key) == 12
        refused = await budget.take(ask("a", 1, seq=2))
        assert refused.granted == 0
        assert 0 < refused.retry_in_s <= LEVEL.window_s

    async def test_leases_expire_when_they_leave_the_window(
        self, budget: CountingBudget, clock: Clock
    ) -> None:
        await budget.take(ask("a", 12))
        clock.now += LEVEL.window_s - 0.1
        assert (await budget.take(ask("a", 1, seq=1))).granted == 0
        clock.now += 0.1
        assert (await budget.take(ask("a", 12, seq=2))).granted == 12

    async def test_permits_given_back_leave_the_count_at_once(self, budget: CountingBudget) -> None:
        lease = await budget.take(ask("a", 10))
        await budget.take(ask("a", 0, seq=1, give_back=(lease.member, 7)))
        assert budget.held(LEVEL.key) == 3
        assert (await budget.take(ask("a", 12, seq=2))).granted == 9

    async def test_a_crashed_holders_lease_simply_expires(
        self, budget: CountingBudget, clock: Clock
    ) -> None:
        await budget.take(ask("crashed", 12))  # and never gives anything back
        assert (await budget.take(ask("b", 1))).granted == 0
        clock.now += LEVEL.window_s  # its lease left the window; its demand is still fresh
        assert (await budget.take(ask("b", 12, seq=1))).granted == 6
        clock.now += ACTIVE_S  # silent that long: it no longer counts as a holder
        assert (await budget.take(ask("b", 12, seq=2))).granted == 12

    async def test_a_holder_that_took_everything_then_gets_only_its_share(
        self, budget: CountingBudget, clock: Clock
    ) -> None:
        assert (await budget.take(ask("a", 12))).granted == 12  # alone: all of it
        assert (await budget.take(ask("b", 6))).granted == 0  # b and c wait, wanting 6
        assert (await budget.take(ask("c", 6))).granted == 0
        clock.now += LEVEL.window_s  # the window frees up; a asks first
        assert (await budget.take(ask("a", 12, seq=1))).granted == 4
        assert (await budget.take(ask("b", 6, seq=1))).granted == 4
        assert (await budget.take(ask("c", 6, seq=1))).granted == 4

    async def test_bulk_leases_leave_live_demand_its_share_and_live_ones_take_all(
        self, budget: CountingBudget, clock: Clock
    ) -> None:
        assert (await budget.take(ask("sync", 12, lane=Lane.BULK))).granted == 12
        assert (await budget.take(ask("hook", 6, lane=Lane.LIVE))).granted == 0
        clock.now += LEVEL.window_s
        assert (await budget.take(ask("sync", 12, seq=1, lane=Lane.BULK))).granted == 6
        assert (await budget.take(ask("hook", 6, seq=1, lane=Lane.LIVE))).granted == 6
        clock.now += LEVEL.window_s  # both still active; now the live one asks first
        assert (await budget.take(ask("hook", 12, seq=2, lane=Lane.LIVE))).granted == 12

    async def test_a_holder_that_stops_asking_stops_holding_its_share(
        self, budget: CountingBudget, clock: Clock
    ) -> None:
        await budget.take(ask("sync", 12, lane=Lane.BULK))
        await budget.take(ask("hook", 6, lane=Lane.LIVE))
        clock.now += LEVEL.window_s
        assert (await budget.take(ask("sync", 12, seq=1, lane=Lane.BULK))).granted == 6
        clock.now += 3.5  # the window passed and hook has not asked for 3.5 s
        assert (await budget.take(ask("sync", 12, seq=2, lane=Lane.BULK))).granted == 12

    async def test_a_greedy_holder_is_capped_at_its_share_while_another_waits(
        self, budget: CountingBudget, clock: Clock
    ) -> None:
        assert (await budget.take(ask("greedy", 12))).granted == 12  # alone: all of it
        assert (await budget.take(ask("small", 2))).granted == 0  # small waits for 2
        clock.now += LEVEL.window_s
        # Setting aside small's 2 alone would leave greedy 10; small waits below its
        # share, so greedy gets its own share only.
        assert (await budget.take(ask("greedy", 12, seq=1))).granted == 6
        assert (await budget.take(ask("greedy", 12, seq=2))).granted == 0
        # small may now take up to its share, even more than it first asked for.
        assert (await budget.take(ask("small", 6, seq=1))).granted == 6

    async def test_a_peer_served_in_full_does_not_cap_anyone(self, budget: CountingBudget) -> None:
        assert (await budget.take(ask("small", 1))).granted == 1
        # small is active but got all it asked: greedy may go past its share of 6.
        assert (await budget.take(ask("greedy", 10))).granted == 10

    async def test_greedy_holders_end_with_even_shares(
        self, budget: CountingBudget, clock: Clock
    ) -> None:
        """Four holders asking for everything, in turns, over many windows."""
        granted = dict.fromkeys("abcd", 0)
        for seq in range(200):
            for name in ("a", "b", "c", "d") if seq % 2 else ("d", "c", "b", "a"):
                granted[name] += (await budget.take(ask(name, 12, seq=seq))).granted
            clock.now += LEVEL.window_s / 8
        # Apart from the first window, which the first asker had alone, all even.
        assert max(granted.values()) - min(granted.values()) <= LEVEL.amount

    async def test_bulk_leases_leave_a_reserve_of_the_window_to_live_ones(
        self, budget: CountingBudget
    ) -> None:
        level = Level("ratelimit:test:big", amount=100, window_s=2.0)
        sync = LeaseRequest("sync", 0, 100, Lane.BULK, (level,), marker=MARKER)
        assert (await budget.take(sync)).granted == 100 - math.floor(100 * LIVE_RESERVE)
        hook = LeaseRequest("hook", 0, 100, Lane.LIVE, (level,), marker=MARKER)
        assert (await budget.take(hook)).granted == math.floor(100 * LIVE_RESERVE)


class TestLostBudget:
    """Redis lost the budget (FLUSHALL, a restart without persistence): ML did not."""

    async def test_a_holder_that_finds_its_epoch_gone_is_granted_nothing_for_a_window(
        self, budget: CountingBudget, clock: Clock
    ) -> None:
        first = await budget.take(ask("a", 4))
        assert (first.granted, first.lost) == (4, False)
        budget.lose()
        clock.now += 0.5
        found = await budget.take(ask("a", 4, seq=1, epoch=first.epoch))
        assert (found.granted, found.lost) == (0, True)
        assert found.epoch != first.epoch
        assert 0 < found.retry_in_s <= LEVEL.window_s
        # Nobody is granted anything in that window, on the new epoch or the old one.
        assert (await budget.take(ask("b", 1, epoch=found.epoch))).granted == 0
        late = await budget.take(ask("c", 1, epoch=first.epoch))
        assert (late.granted, late.lost) == (0, True)
        clock.now += LEVEL.window_s - 0.01
        assert (await budget.take(ask("a", 1, seq=2, epoch=found.epoch))).granted == 0
        clock.now += 0.01
        assert (await budget.take(ask("a", 1, seq=3, epoch=found.epoch))).granted == 1

    async def test_a_loss_is_accounted_once_however_late_a_holder_finds_it(
        self, budget: CountingBudget, clock: Clock
    ) -> None:
        first = await budget.take(ask("a", 1))
        budget.lose()
        found = await budget.take(ask("a", 1, seq=1, epoch=first.epoch))
        clock.now += LEVEL.window_s
        idle = await budget.take(ask("b", 1, epoch=first.epoch))  # asks again only now
        assert (idle.granted, idle.lost, idle.epoch) == (1, True, found.epoch)

    async def test_a_holder_that_saw_no_epoch_cannot_tell(self, budget: CountingBudget) -> None:
        await budget.take(ask("a", 12))
        budget.lose()
        fresh = await budget.take(ask("new", 12))
        assert (fresh.granted, fresh.lost) == (12, False)

    async def test_the_limiter_waits_a_full_window_logs_it_and_counts_it(
        self, budget: CountingBudget, clock: Clock, caplog: pytest.LogCaptureFixture
    ) -> None:
        lost_before = REGISTRY.get_sample_value("peepers_ml_limiter_budget_lost_total") or 0
        limiter = limiter_over(budget, clock, amount=100, per_s=60)
        await limiter.acquire("items")
        budget.lose()
        clock.now += 1.0  # past the first lease's ttl
        waiting = asyncio.create_task(limiter.acquire("items"))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        assert REGISTRY.get_sample_value("peepers_ml_limiter_budget_lost_total") == lost_before + 1
        assert "budget ratelimit:unit:0 was lost" in caplog.text
        clock.now += 60 + MARGIN_S + 1.0 - 0.1  # the counted window, less a little
        await asyncio.sleep(1.2)  # the limiter asks again every second
        assert not waiting.done()
        await until_done(clock, [waiting], step_s=0.1)
        assert budget.held(APP_KEY) == budget.requests[-1].want
        await limiter.aclose()


def limiter_over(
    budget: MemoryLeaseBudget, clock: Clock, amount: int, per_s: int
) -> OutboundLimiter:
    settings = MlApiSettings(app_limit=MlLimit(amount=amount, per_s=per_s), family_limits={})
    return OutboundLimiter(None, settings, scope="unit", budget=budget, clock=clock)  # type: ignore[arg-type]


async def until_done(clock: Clock, tasks: Sequence[asyncio.Task[object]], step_s: float) -> None:
    """Let fake time pass (``step_s`` per real 20 ms) until every task is done."""
    for _ in range(250):
        if all(task.done() for task in tasks):
            return
        clock.now += step_s
        await asyncio.sleep(0.02)
    pytest.fail("the limiter never let the requests through")


class TestLimiter:
    async def test_a_named_budget_scope_is_shared_whatever_the_services_own(
        self, budget: CountingBudget, clock: Clock
    ) -> None:
        """``ML__LIMITER_SCOPE`` puts services of other Redis scopes under one budget."""
        shared = MlApiSettings(
            app_limit=MlLimit(amount=2, per_s=60), family_limits={}, limiter_scope="app"
        )
        catalog = OutboundLimiter(None, shared, scope="catalog-scope", budget=budget, clock=clock)  # type: ignore[arg-type]
        orders = OutboundLimiter(None, shared, scope="orders-scope", budget=budget, clock=clock)  # type: ignore[arg-type]
        await catalog.acquire("items")
        await catalog.acquire("items")
        waiting = asyncio.create_task(orders.acquire("orders"))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # the two permits of the one budget are spent
        assert {level.key for r in budget.requests for level in r.levels} == {"ratelimit:app:0:app"}
        waiting.cancel()
        await catalog.aclose()
        await orders.aclose()

    async def test_one_round_trip_serves_many_requests(
        self, budget: CountingBudget, clock: Clock
    ) -> None:
        limiter = limiter_over(budget, clock, amount=120, per_s=60)
        await asyncio.gather(*(limiter.acquire("items", 1) for _ in range(5)))
        assert len(budget.requests) == 1
        request = budget.requests[0]
        assert request.want == 5
        # Counted for the window, the margin and the lease's ttl (1 s on a minute).
        assert request.levels[0].window_s == pytest.approx(60 + MARGIN_S + 1.0)
        await limiter.aclose()

    async def test_a_lease_is_sized_from_the_recent_demand(
        self, budget: CountingBudget, clock: Clock
    ) -> None:
        limiter = limiter_over(budget, clock, amount=4000, per_s=60)
        for _ in range(10):  # 400 a second, steadily
            clock.now += 0.25
            await asyncio.gather(*(limiter.acquire("items") for _ in range(100)))
        # A lease covers a quarter of a second of demand: one round trip per 100 requests.
        assert [r.want for r in budget.requests[-3:]] == [100, 100, 100]
        assert len(budget.requests) == 10
        await limiter.aclose()

    async def test_requests_one_at_a_time_still_get_leases_of_their_rate(
        self, budget: CountingBudget, clock: Clock
    ) -> None:
        limiter = limiter_over(budget, clock, amount=4000, per_s=60)
        for _ in range(800):  # 400 a second, each alone (a pipelined consumer's fetches)
            clock.now += 0.0025
            await limiter.acquire("items")
        # Leases grow to a quarter of a second of demand, not shrink to a request each.
        assert budget.requests[-1].want >= 90
        assert len(budget.requests) <= 25
        await limiter.aclose()

    async def test_waiting_live_requests_go_before_bulk_ones(
        self, budget: CountingBudget, clock: Clock
    ) -> None:
        limiter = limiter_over(budget, clock, amount=2, per_s=1)
        order: list[str] = []

        async def one(name: str) -> None:
            await limiter.acquire("items")
            order.append(name)

        async def bulk(name: str) -> None:
            with bulk_lane():
                await one(name)

        tasks = [asyncio.create_task(bulk(f"bulk{n}")) for n in range(3)]
        await asyncio.sleep(0.01)
        assert order == ["bulk0", "bulk1"]  # the first lease: the window's 2 permits
        tasks += [asyncio.create_task(one(f"live{n}")) for n in range(2)]
        await until_done(clock, tasks, step_s=1.0)
        assert order[2:] == ["live0", "live1", "bulk2"]
        await limiter.aclose()

    async def test_a_process_asks_as_one_holder_per_lane(
        self, budget: CountingBudget, clock: Clock
    ) -> None:
        """So the budget's lane rules order its own sync behind its own webhooks."""
        limiter = limiter_over(budget, clock, amount=40, per_s=60)
        await limiter.acquire("items")
        with bulk_lane():
            clock.now += LEVEL.window_s  # past the first lease's ttl
            await limiter.acquire("items")
        live, bulk = (request.holder for request in budget.requests)
        assert live.endswith(".live")
        assert bulk == live.removesuffix(".live") + ".bulk"
        await limiter.aclose()
        leaving = {r.holder for r in budget.requests if r.leaving}
        assert leaving == {live, bulk}

    async def test_unused_permits_are_given_back(
        self, budget: CountingBudget, clock: Clock
    ) -> None:
        limiter = limiter_over(budget, clock, amount=100, per_s=60)
        await asyncio.gather(*(limiter.acquire("items") for _ in range(5)))
        clock.now += 0.25
        await limiter.acquire("items")  # the rate so far asks for a lease of 3
        assert budget.requests[1].want == 3
        assert budget.held(APP_KEY) == 5 + 3
        await limiter.aclose()
        assert budget.held(APP_KEY) == 5 + 1

    async def test_an_expired_lease_is_not_spent_and_its_rest_goes_back(
        self, budget: CountingBudget, clock: Clock
    ) -> None:
        limiter = limiter_over(budget, clock, amount=100, per_s=60)
        await asyncio.gather(*(limiter.acquire("items") for _ in range(5)))
        clock.now += 0.25
        await limiter.acquire("items")  # a lease of 3: 2 left
        clock.now += 1.0  # its ttl: the 2 left may no longer be spent
        await limiter.acquire("items")
        assert len(budget.requests) == 3
        assert budget.requests[2].give_back == (budget.requests[1].holder + "|1|3", 2)
        assert budget.held(APP_KEY) == 5 + 1 + budget.requests[2].want
        await limiter.aclose()
        assert budget.held(APP_KEY) == 5 + 1 + 1

    async def test_without_an_applicable_limit_nothing_is_asked(
        self, budget: CountingBudget, clock: Clock
    ) -> None:
        settings = MlApiSettings(app_limit=None, family_limits={})
        limiter = OutboundLimiter(None, settings, budget=budget, clock=clock)  # type: ignore[arg-type]
        assert await limiter.acquire("items") == 0.0
        assert budget.requests == []
