"""Outbound rate limiting shared by every replica: permits leased from a shared budget.

Every applicable limit (the endpoint family's, the seller's, the application's) is a
budget of N requests in any window of W seconds, shared by all replicas (`leases`: its
rules and why the window guarantee holds). A process does not ask Redis once per request:
it takes a *lease* of several permits in one round trip, hands them out to its requests,
and gives back what it did not use, on its next lease or when the lease's ``ttl`` has
passed. A lease is sized from the process's recent demand (``LEASE_S`` of it), so a busy
process makes a few round trips a second whatever its rate, and an idle one holds nothing.

Requests wait in two lanes: ``live`` (the default: webhook-driven fetches) before
``bulk`` (full syncs and backfills: ``with bulk_lane(): ...``). The lane is a context
variable, so a sync marks its whole task tree at once, and the shared budget serves live
demand across replicas first too.

A budget lost with Redis (FLUSHALL, a restart without persistence) is noticed by the
processes that had leased from it, and the window from then is treated as spent in full
(`leases`: "A lost budget"), logged and counted (``peepers_ml_limiter_budget_lost_total``).
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import math
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Final

import redis.asyncio as aioredis
from prometheus_client import Counter

from peepers_common.ml.leases import (
    LIVE_RESERVE,
    Lane,
    LeaseBudget,
    LeaseGrant,
    LeaseRequest,
    Level,
    RedisLeaseBudget,
)
from peepers_common.settings import MlApiSettings, MlLimit

__all__ = ["KEY_PREFIX", "Lane", "OutboundLimiter", "bulk_lane", "bulk_rate", "current_lane"]

log = logging.getLogger(__name__)

KEY_PREFIX: Final = "ratelimit"
# ML counts a request a little after its permit is spent here (event loop, network): two
# requests one window apart here can land in one window at ML (the multiget bench saw 53
# in one second under a 50/s limit). A one-second margin on every window absorbs that.
# ML's limits are minute-scale (FACTS.md 7.1), where it costs under 2% (3% with the
# lease ttl below).
MARGIN_S: Final = 1.0
# A leased permit is usable for this long, at most a twentieth of the limit's window: the
# window is counted longer by as much (leases.py), 1 s on a minute.
LEASE_TTL_S: Final = 1.0
# A lease covers this long of the process's recent demand.
LEASE_S: Final = 0.25

LEASES: Final = Counter(
    "peepers_ml_limiter_leases_total",
    "Round trips to the shared outbound budget, by outcome (granted, refused, returned)",
    ["outcome"],
)

BUDGET_LOST: Final = Counter(
    "peepers_ml_limiter_budget_lost_total",
    "Times this process found the shared outbound budget lost (Redis flushed or restarted "
    "empty) and treated the window from then as spent",
)

_lane: contextvars.ContextVar[Lane] = contextvars.ContextVar("outbound_lane", default=Lane.LIVE)


def current_lane() -> Lane:
    return _lane.get()


@contextmanager
def bulk_lane() -> Iterator[None]:
    """Requests made inside (and in tasks started inside) wait behind live ones."""
    token = _lane.set(Lane.BULK)
    try:
        yield
    finally:
        _lane.reset(token)


@dataclass
class _Lease:
    member: str
    left: int
    expires: float  # monotonic


@dataclass
class _Pool:
    """The permits of one set of levels in this process, and the requests waiting."""

    levels: tuple[Level, ...]
    ttl_s: float
    max_lease: int
    clock: Callable[[], float]
    lease: _Lease | None = None
    waiting: dict[Lane, deque[asyncio.Future[None]]] = field(
        default_factory=lambda: {Lane.LIVE: deque(), Lane.BULK: deque()}
    )
    refill: asyncio.Task[None] | None = None
    asked: int = 0  # acquisitions since the last lease request
    rate: float = 0.0  # permits a second, smoothed
    last_request: float = 0.0
    give_back: tuple[str, int] | None = None

    def take_local(self, now: float) -> bool:
        lease = self.lease
        if lease is not None and lease.left > 0 and now < lease.expires:
            lease.left -= 1
            return True
        return False

    def hand_out(self) -> None:
        """Permits of the current lease to the waiting requests, live ones first."""
        now = self.clock()
        for lane in (Lane.LIVE, Lane.BULK):
            queue = self.waiting[lane]
            while queue:
                waiter = queue[0]
                if not waiter.done():  # else its caller gave up (cancelled)
                    if not self.take_local(now):
                        return
                    waiter.set_result(None)
                del queue[0]

    def n_waiting(self) -> int:
        return sum(1 for q in self.waiting.values() for f in q if not f.done())

    def retire(self) -> None:
        """Drop the current lease; what it did not hand out is given back next time."""
        lease, self.lease = self.lease, None
        if lease is not None and lease.left > 0:
            self.give_back = (lease.member, lease.left)

    def want(self) -> int:
        """The next lease's size: the waiting requests, or ``LEASE_S`` of recent demand."""
        now = self.clock()
        # A moving average of the rate with a time constant of LEASE_S, weighted by the
        # time each interval covers: a steady rate reads as itself however often leases
        # are asked for, and a first burst as that much in LEASE_S, not infinite (the
        # weight over the interval tends to 1 / LEASE_S as it shrinks). Averaging
        # asked / max(elapsed, LEASE_S) per lease read a steady stream as less the more
        # often it asked, so small leases begot smaller ones (23 round trips a second
        # at 200 requests a second, one at a time).
        elapsed = now - self.last_request
        weight = -math.expm1(-elapsed / LEASE_S) / elapsed if elapsed > 0 else 1 / LEASE_S
        self.rate += weight * (self.asked - self.rate * elapsed)
        self.asked, self.last_request = 0, now
        return max(self.n_waiting(), min(self.max_lease, math.ceil(self.rate * LEASE_S)))


class OutboundLimiter:
    """Waits until every applicable limit (family, seller, app) has given a permit."""

    def __init__(
        self,
        redis: aioredis.Redis,
        settings: MlApiSettings,
        *,
        scope: str | None = None,
        budget: LeaseBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Limit over `redis`, a client the caller owns (logged in as the service's ACL user).

        `scope` separates limit sets: replicas of one app share one; tests use their own.
        It is the service's own (its Redis scope; None: "ml"), unless the settings'
        ``limiter_scope`` names the app's budget for every service alike.
        `budget` replaces the shared Redis budget (a `MemoryLeaseBudget` in unit tests),
        `clock` the monotonic clock leases expire on.
        """
        self._clock = clock
        self._budget = budget or RedisLeaseBudget(redis)
        self._settings = settings
        self._scope = settings.limiter_scope or scope or "ml"
        self._holder = uuid.uuid4().hex[:12]
        self._epoch = ""  # the shared budget's epoch, once a lease told it
        self._seq = itertools.count()
        self._pools: dict[tuple[str, int | None], _Pool] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def scope(self) -> str:
        """The shared budget's scope, as resolved from the settings and the service's own."""
        return self._scope

    @property
    def _app(self) -> str:
        return f"{KEY_PREFIX}:{self._scope}:{self._settings.app_id}"

    def _limits(self, family: str, seller_id: int | None) -> list[tuple[str, MlLimit]]:
        app = self._app
        limits: list[tuple[str, MlLimit]] = []
        family_limit = self._settings.family_limits.get(family)
        if family_limit is not None:
            limits.append((f"{app}:family:{family}", family_limit))
        if self._settings.seller_limit is not None and seller_id is not None:
            limits.append((f"{app}:seller:{seller_id}", self._settings.seller_limit))
        if self._settings.app_limit is not None:
            limits.append((f"{app}:app", self._settings.app_limit))
        return limits

    def _pool(self, family: str, seller_id: int | None) -> _Pool | None:
        seller = seller_id if self._settings.seller_limit is not None else None
        pool = self._pools.get((family, seller))
        if pool is None:
            limits = self._limits(family, seller)
            if not limits:
                return None
            ttl_s = min(_ttl_s(limit) for _, limit in limits)
            pool = self._pools[(family, seller)] = _Pool(
                tuple(
                    # Counted for its window, the margin and the time a permit stays usable.
                    Level(key, limit.amount, limit.per_s + MARGIN_S + ttl_s)
                    for key, limit in limits
                ),
                ttl_s=ttl_s,
                max_lease=max(1, min(limit.amount for _, limit in limits) // 20),
                clock=self._clock,
                last_request=self._clock(),
            )
        return pool

    async def acquire(self, family: str, seller_id: int | None = None) -> float:
        """Take one permit from every applicable limit; returns the seconds waited."""
        pool = self._pool(family, seller_id)
        if pool is None:
            return 0.0
        pool.asked += 1
        lane = _lane.get()
        now = self._clock()
        queued = pool.waiting[Lane.LIVE] or (lane is Lane.BULK and pool.waiting[Lane.BULK])
        if not queued and pool.take_local(now):
            return 0.0
        waiter = asyncio.get_running_loop().create_future()
        pool.waiting[lane].append(waiter)
        if pool.refill is None or pool.refill.done():
            pool.refill = asyncio.create_task(self._refill(pool))
        await waiter
        return self._clock() - now

    async def _refill(self, pool: _Pool) -> None:
        """Lease permits for the waiting requests until none waits."""
        try:
            while True:
                pool.hand_out()
                if not pool.n_waiting():
                    break
                pool.retire()
                lane = (
                    Lane.LIVE if any(not f.done() for f in pool.waiting[Lane.LIVE]) else Lane.BULK
                )
                started = self._clock()
                grant = await self._take(pool, pool.want(), lane)
                if grant.granted:
                    pool.lease = _Lease(grant.member, grant.granted, started + pool.ttl_s)
                    continue
                # Jitter spreads replicas that wake for the same permits.
                await asyncio.sleep(grant.retry_in_s + random.uniform(0, 0.02))  # noqa: S311
        except Exception as exc:
            for queue in pool.waiting.values():
                while queue:
                    waiter = queue.popleft()
                    if not waiter.done():
                        waiter.set_exception(exc)
            return
        self._expire_later(pool)

    async def _take(
        self, pool: _Pool, want: int, lane: Lane, *, leaving: bool = False
    ) -> LeaseGrant:
        give_back, pool.give_back = pool.give_back, None
        seen = self._epoch
        grant = await self._budget.take(
            LeaseRequest(
                # One holder per lane: the budget's lane rules then order this process's
                # own sync behind its own webhooks, as they order other processes'.
                holder=f"{self._holder}.{lane.value}",
                seq=next(self._seq),
                want=want,
                lane=lane,
                levels=pool.levels,
                give_back=give_back,
                leaving=leaving,
                marker=f"{self._app}:epoch",
                epoch=seen,
            )
        )
        if grant.lost and self._epoch == seen:  # else a concurrent lease reported it
            BUDGET_LOST.inc()
            log.warning(
                "the shared outbound budget %s was lost (epoch %s, now %s): Redis was flushed "
                "or restarted empty while ML still counts the last window, so the window from "
                "now is treated as spent in full: no permits until it has passed",
                self._app,
                seen,
                grant.epoch,
            )
        self._epoch = grant.epoch
        if want:
            LEASES.labels("granted" if grant.granted else "refused").inc()
        else:
            LEASES.labels("returned").inc()
        return grant

    def _expire_later(self, pool: _Pool) -> None:
        """Give back an idle pool's unused permits once its lease has expired."""
        lease = pool.lease
        if lease is None or lease.left == 0:
            return
        delay = max(lease.expires - self._clock(), 0.0)

        async def expire() -> None:
            await asyncio.sleep(delay)
            idle = pool.refill is None or pool.refill.done()
            if pool.lease is lease and lease.left > 0 and idle:
                pool.retire()
                with suppress(Exception):  # the permits expire in the window anyway
                    await self._take(pool, 0, Lane.LIVE)

        task = asyncio.create_task(expire())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Give back every unused permit and leave the budgets' fair share."""
        for task in list(self._tasks):
            task.cancel()
        for pool in self._pools.values():
            if pool.refill is not None:
                pool.refill.cancel()
            pool.retire()
            for lane in Lane:
                with suppress(Exception):
                    await self._take(pool, 0, lane, leaving=True)


def _ttl_s(limit: MlLimit) -> float:
    return min(LEASE_TTL_S, limit.per_s / 20)


def bulk_rate(limit: MlLimit, others_per_s: float) -> float:
    """The permits a second bulk leases can take of ``limit`` while others take theirs.

    The budget counts each lease for the limit's window plus ``MARGIN_S`` and the lease
    ttl (what keeps ML's own count under the limit: `leases`), and bulk leases leave
    `LIVE_RESERVE` of it free above what the others hold, for webhooks: so a sync gets
    ``amount * (1 - LIVE_RESERVE)`` per counted window less the others' share, not
    ``amount`` per window less it. Where the others take most of the budget, these fixed
    costs are a large part of what is left (bench.limiter_pace, docs/benchmarks.md).
    """
    counted_s = limit.per_s + MARGIN_S + _ttl_s(limit)
    return max(limit.amount * (1 - LIVE_RESERVE) / counted_s - others_per_s, 0.0)
