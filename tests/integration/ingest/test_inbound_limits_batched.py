"""`RedisRateLimiter` checks the concurrent hits of one event-loop turn in one script call.

Every test fires its hits with `asyncio.gather`, so they land in one batch; the batch must
decide exactly as the same hits one by one would (arrival order, all levels or none).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TypeVar

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from peepers_common.namespaces import connect_redis
from peepers_ingest.inbound_limits import Check, Rate, RedisRateLimiter, Refusal
from peepers_ingest.settings import Settings as IngestSettings
from tests.integration.ingest.test_inbound_limits import limiter
from tests.support import redis_commands_during, unique

T = TypeVar("T")


@pytest.fixture
async def service_redis() -> AsyncIterator[aioredis.Redis]:
    """Redis as a service's ACL user, which may touch only its namespace and ratelimit:*."""
    client = connect_redis(IngestSettings().redis)
    yield client
    await client.aclose()


async def hit_together(
    rl: RedisRateLimiter, requests: Sequence[Sequence[Check]]
) -> list[Refusal | None]:
    """All ``requests`` in one event-loop turn, so in one batch, in this order."""
    async with asyncio.timeout(2):
        return list(await asyncio.gather(*(rl.hit(checks) for checks in requests)))


async def test_a_burst_in_one_turn_admits_exactly_the_burst_in_arrival_order(
    service_redis: aioredis.Redis,
) -> None:
    rl = limiter(service_redis)
    rate = Rate(4, per_s=60)  # a burst of 4, then one request every 15 s
    results = await hit_together(rl, [[("user", "u", rate)]] * 12)
    assert results[:4] == [None] * 4
    refusals = results[4:]
    for refusal in refusals:
        assert refusal is not None
        assert refusal.level == "user"
        assert 0 < refusal.retry_after_s <= 15
    # Only the four admitted requests were charged: the key holds 4 x 15 s of budget used.
    pttl_ms = await service_redis.pttl(rl.key("user", "u"))
    assert 59_000 < pttl_ms <= 60_000
    # And the next turn starts from the batch's state.
    later = await rl.hit([("user", "u", rate)])
    assert later is not None
    assert later.level == "user"


async def test_a_batch_decides_as_the_same_hits_one_by_one_would(
    service_redis: aioredis.Redis,
) -> None:
    one_by_one, batched = limiter(service_redis), limiter(service_redis)
    app = ("application", "svc", Rate(6, per_s=60))
    calls = ["a/x", "a/y", "a/z", "a/x", "b/x", "b/x", "b/y", "c/x", "c/y", "d/x", "d/y"]
    requests: list[list[Check]] = [
        [
            app,
            ("user", call.split("/")[0], Rate(2, per_s=60)),
            ("endpoint", call, Rate(1, per_s=60)),
        ]
        for call in calls
    ]
    expected = [await one_by_one.hit(checks) for checks in requests]
    got = await hit_together(batched, requests)
    levels = [r.level if r else None for r in got]
    assert levels == [r.level if r else None for r in expected]
    assert levels == [
        None,  # application 1/6, user a 1/2
        None,  # application 2/6, user a 2/2
        "user",
        "user",  # the user level refuses before the endpoint level is looked at
        None,  # application 3/6
        "endpoint",
        None,  # application 4/6, user b 2/2 (the refused b/x was not charged)
        None,  # application 5/6
        None,  # application 6/6
        "application",
        "application",
    ]


async def test_a_refusal_at_level_two_spends_nothing_at_level_one_within_a_batch(
    service_redis: aioredis.Redis,
) -> None:
    rl = limiter(service_redis)
    app = ("application", "svc", Rate(3, per_s=60))
    results = await hit_together(
        rl,
        [
            [app, ("user", "noisy", Rate(1, per_s=60))],  # admitted: application 1/3
            [app, ("user", "noisy", Rate(1, per_s=60))],  # refused at user
            [app, ("user", "noisy", Rate(1, per_s=60))],  # refused at user
            [app, ("user", "noisy", Rate(1, per_s=60))],  # refused at user
            [app, ("user", "a", Rate(1, per_s=60))],  # admitted: application 2/3
            [app, ("user", "b", Rate(1, per_s=60))],  # admitted: application 3/3
            [app, ("user", "c", Rate(1, per_s=60))],  # refused at application
        ],
    )
    assert [r.level if r else None for r in results] == [
        None,
        "user",
        "user",
        "user",
        None,
        None,
        "application",
    ]
    # The user "c" was not charged by its refused request either: it is admitted alone.
    assert await rl.hit([("user", "c", Rate(1, per_s=60))]) is None


async def test_requests_on_different_keys_in_one_batch_do_not_affect_each_other(
    service_redis: aioredis.Redis,
) -> None:
    rl = limiter(service_redis)
    tight, loose, roomy = Rate(2, per_s=60), Rate(3, per_s=60), Rate(100, per_s=60)
    requests: list[list[Check]] = []
    for _ in range(5):
        requests += [[("user", "u1", tight)], [("user", "u2", loose)], [("user", "u3", roomy)]]
    results = await hit_together(rl, requests)
    admitted = {"u1": 0, "u2": 0, "u3": 0}
    for checks, result in zip(requests, results, strict=True):
        if result is None:
            admitted[checks[0][1]] += 1
    assert admitted == {"u1": 2, "u2": 3, "u3": 5}
    # Per key, the admitted ones are the first to arrive.
    for user, count in admitted.items():
        mine = [r for c, r in zip(requests, results, strict=True) if c[0][1] == user]
        assert mine[:count] == [None] * count
        assert all(r is not None for r in mine[count:])
    # Each key holds its own charges: 2, 3 and 5 emission intervals of budget used.
    intervals_ms = {"u1": 30_000, "u2": 20_000, "u3": 600}
    for user, count in admitted.items():
        pttl_ms = await service_redis.pttl(rl.key("user", user))
        assert count * intervals_ms[user] - 1_000 < pttl_ms <= count * intervals_ms[user]


async def test_a_batch_is_one_script_call_that_writes_each_key_once(
    service_redis: aioredis.Redis, redis_admin: aioredis.Redis
) -> None:
    rl = limiter(service_redis)
    # An earlier turn loads the script, so the batch needs no SCRIPT LOAD and no retry.
    assert await rl.hit([("user", "warm-up", Rate(1))]) is None
    app = ("application", "svc", Rate(100, per_s=60))
    requests: list[list[Check]] = [
        [app, ("user", f"u{i % 3}", Rate(3, per_s=60))] for i in range(15)
    ]
    marker = f"ratelimit:{unique('marker')}"
    results, commands = await redis_commands_during(
        redis_admin, service_redis, marker, lambda: hit_together(rl, requests)
    )
    assert sum(r is None for r in results) == 9  # three users, three each
    prefix = rl.key("", "")[:-1]
    ours = [c for c in commands if prefix in c["command"]]
    calls = [c["command"].split()[0].upper() for c in ours if c["client_type"] != "lua"]
    assert calls == ["EVALSHA"]
    sets = [c["command"].split()[1] for c in ours if c["command"].upper().startswith("SET ")]
    assert sorted(sets) == sorted(
        [rl.key("application", "svc")] + [rl.key("user", f"u{i}") for i in range(3)]
    )


async def test_with_redis_down_every_caller_of_the_batch_gets_the_error() -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    try:
        rl = RedisRateLimiter(dead, prefix=f"ratelimit:{unique()}:")
        async with asyncio.timeout(2):
            outcomes = await asyncio.gather(
                *(rl.hit([("user", f"u{i}", Rate(1))]) for i in range(5)),
                return_exceptions=True,
            )
    finally:
        await dead.aclose()
    assert len(outcomes) == 5
    for outcome in outcomes:
        assert isinstance(outcome, RedisError | TimeoutError), outcome
