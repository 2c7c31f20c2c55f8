"""The in-process limiter: the same GCRA rule as the Redis one, on an injected clock."""

from __future__ import annotations

import pytest

from peepers_ingest.inbound_limits import LocalRateLimiter, Rate, Refusal


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_a_burst_is_admitted_then_refused_until_a_token_returns(clock: Clock) -> None:
    limiter = LocalRateLimiter(clock=clock)
    checks = [("user", "10.0.0.1", Rate(4))]  # 4/s, burst 4
    answers = [await limiter.hit(checks) for _ in range(6)]
    assert answers[:4] == [None] * 4
    refusal = answers[4]
    assert isinstance(refusal, Refusal)
    assert refusal.level == "user"
    assert refusal.retry_after_s == pytest.approx(0.25)
    clock.now += 0.25
    assert await limiter.hit(checks) is None
    assert await limiter.hit(checks) is not None


async def test_a_refusal_at_one_level_spends_nothing_at_the_others(clock: Clock) -> None:
    limiter = LocalRateLimiter(clock=clock)
    app = ("application", "all", Rate(3))
    assert await limiter.hit([app, ("user", "a", Rate(1))]) is None
    refused = await limiter.hit([app, ("user", "a", Rate(1))])
    assert refused is not None
    assert refused.level == "user"
    # The application level was not charged for the refused request: two more fit.
    assert await limiter.hit([app, ("user", "b", Rate(1))]) is None
    assert await limiter.hit([app, ("user", "c", Rate(1))]) is None
    refused = await limiter.hit([app, ("user", "d", Rate(1))])
    assert refused is not None
    assert refused.level == "application"


async def test_callers_do_not_share_a_budget(clock: Clock) -> None:
    limiter = LocalRateLimiter(clock=clock)
    assert await limiter.hit([("user", "a", Rate(1))]) is None
    assert await limiter.hit([("user", "b", Rate(1))]) is None
    assert await limiter.hit([("user", "a", Rate(1))]) is not None


async def test_idle_callers_are_forgotten_when_the_table_is_full(clock: Clock) -> None:
    limiter = LocalRateLimiter(clock=clock, max_keys=10)
    for n in range(10):
        assert await limiter.hit([("user", f"idle-{n}", Rate(1))]) is None
    clock.now += 5  # every one of them is idle again
    assert await limiter.hit([("user", "busy", Rate(1))]) is None
    assert len(limiter._tats) == 1
    # Forgetting changed no answer: an idle caller has its whole burst again.
    assert await limiter.hit([("user", "idle-0", Rate(1))]) is None
    assert await limiter.hit([("user", "busy", Rate(1))]) is not None
