"""The shared outbound budget that `OutboundLimiter` leases permits from.

A *limit* is N requests in any window of W seconds, shared by every process of the app.
A process does not ask the budget once per request: it takes a *lease* of k permits in one
round trip, hands them out locally, and gives back what it did not use. The budget
counts a lease from the moment it is granted until it leaves the window, stretched so
that the guarantee holds whenever in its life a permit is spent:

    counted window = W + margin + ttl

A permit is spent at most ``ttl`` after its lease was granted (the holder drops it
afterwards), and ML counts the request up to ``margin`` later still (event loop, network;
see docs/ml-client.md). So any window of W seconds at ML sees only requests whose leases
were granted within a span of W + margin + ttl, which the budget never lets past N.
Permits given back were never spent, so they leave the count at once. A holder that
crashes gives nothing back: its lease stays counted until it slides out of the window,
and nobody waits on it (that is the lease expiring).

**Fair share.** Holders that asked within the last ``active_s`` are active. When the
budget is short, each active holder may count on ``N / active`` permits of the window:
a holder is granted only what is left after the other holders' unmet demand (what each
last asked for, up to its share minus what it holds) is set aside. And while another
holder *waits* (its last ask was not granted in full) and holds less than its share, the
asker is capped at its own share minus what it holds: a greedy holder cannot keep
taking what its peers' next asks would need. A holder alone, or whose peers were served
in full, takes everything (the budget is work-conserving).

**Priority.** A lease asked for in the ``live`` lane (webhook-driven fetches) sets aside
only the demand of other live holders; one asked for in the ``bulk`` lane (full syncs,
backfills) sets aside every other holder's, so live demand is served first. A process is
one holder per lane, so this orders its own sync behind its own webhooks too. And bulk
leases leave ``LIVE_RESERVE`` of every window unused: a webhook that arrives after a
quiet spell, while a sync has filled the window, finds permits at once instead of
waiting for the sync's leases to slide out (up to a minute on ML's limits). The reserve
is kept free above what the others hold, so what a sync can take is
``amount * (1 - LIVE_RESERVE)`` per counted window less the others' use
(`ratelimit.bulk_rate`).

**A lost budget.** The budget lives in Redis, ML's count of the same requests does not:
after a FLUSHALL or a restart without persistence a fresh budget would grant a full
window again while ML still counts the one before. So a budget has an *epoch*, kept in a
marker without TTL (one per app and scope, shared by its levels), and every grant tells
the holder the epoch; a holder that saw an epoch and finds another (the marker was lost
and made anew) has found the budget lost. The first to find it marks the window from then
spent in full at every level: nothing is granted until each level's counted window has
passed since (docs/ml-client.md: why a full window). A process that starts after the loss
saw no epoch and cannot tell: the processes that ran before it do.

Two budgets keep these rules: `RedisLeaseBudget` (one Lua script on Redis time, shared by
every replica; the script is ``leases.lua``) and `MemoryLeaseBudget` (in the process, on
an injected clock: for one process, and for the rules' unit tests).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from typing import Final, NamedTuple, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from peepers_common.errors import CacheUnavailable

SEP: Final = "|"
# How long a holder counts as active (its demand set aside) after it last asked. Waiting
# holders ask again at least once a second (`MAX_RETRY_S`), so they stay active.
ACTIVE_S: Final = 3.0
MAX_RETRY_S: Final = 1.0
MIN_RETRY_S: Final = 0.01
# The share of every window that bulk leases leave to live ones (rounded down).
LIVE_RESERVE: Final = 0.05


class Lane(StrEnum):
    LIVE = "live"  # webhook-driven fetches: a change someone waits to see
    BULK = "bulk"  # full syncs and backfills


@dataclass(frozen=True)
class Level:
    """One limit, under its own key: ``amount`` permits in any ``window_s`` (counted)."""

    key: str
    amount: int
    window_s: float


@dataclass(frozen=True)
class LeaseRequest:
    holder: str
    seq: int  # unique per lease of this holder
    want: int  # 0: only give back, or leave
    lane: Lane
    levels: Sequence[Level]
    give_back: tuple[str, int] | None = None  # (lease member, permits not used)
    leaving: bool = False  # the holder closes: it is no longer active
    marker: str = field(kw_only=True)  # the key of the budget's epoch marker
    epoch: str = field(default="", kw_only=True)  # the epoch last granted under ('' = none)


class LeaseGrant(NamedTuple):
    granted: int
    member: str  # names the lease for a later give-back
    retry_in_s: float  # when nothing was granted: when asking again may succeed
    epoch: str  # the budget's epoch, to send with the next request
    lost: bool  # the request's epoch was lost: the window from then on is spent


def lease_member(holder: str, seq: int, count: int) -> str:
    return f"{holder}{SEP}{seq}{SEP}{count}"


def _parse(member: str) -> tuple[str, str, int]:
    """(holder, seq, permits) of a lease member ``holder|seq|count``."""
    head, _, count = member.rpartition(SEP)
    holder, _, seq = head.rpartition(SEP)
    return holder, seq, int(count)


class LeaseBudget(Protocol):
    async def take(self, request: LeaseRequest) -> LeaseGrant:
        """Give back what the request returns, then grant up to ``want`` permits.

        The same number at every level, possibly 0.
        """
        ...


# ---------------------------------------------------------------- in the process


@dataclass
class _Holder:
    seen: float
    want: int
    lane: Lane
    short: int = 0  # permits of its last ask it was refused: it waits for them


@dataclass
class _LevelState:
    window_s: float
    leases: dict[str, float] = field(default_factory=dict)  # member -> granted at
    holders: dict[str, _Holder] = field(default_factory=dict)

    def expire(self, now: float) -> None:
        for member, at in list(self.leases.items()):
            if at <= now - self.window_s:
                del self.leases[member]
        for name, holder in list(self.holders.items()):
            if holder.seen <= now - ACTIVE_S:
                del self.holders[name]

    def give_back(self, member: str, unused: int) -> None:
        at = self.leases.pop(member, None)
        holder, seq, count = _parse(member)
        if at is not None and count > unused:
            self.leases[f"{holder}{SEP}{seq}{SEP}{count - unused}"] = at

    def room(self, amount: int, request: LeaseRequest) -> int:
        used: dict[str, int] = {}
        for member in self.leases:
            holder, _, count = _parse(member)
            used[holder] = used.get(holder, 0) + count
        room = amount - sum(used.values())
        if request.lane is Lane.BULK:
            room -= math.floor(amount * LIVE_RESERVE)
        share = max(1, amount // max(1, len(self.holders)))
        waiting = False
        for name, other in self.holders.items():
            if name != request.holder and (request.lane is Lane.BULK or other.lane is Lane.LIVE):
                room -= max(0, min(other.want, share - used.get(name, 0)))
                waiting = waiting or (other.short > 0 and used.get(name, 0) < share)
        if waiting:
            room = min(room, share - used.get(request.holder, 0))
        return room

    def retry_in_s(self, now: float, lost_at: float | None) -> float:
        first = min(self.leases.values(), default=now) if lost_at is None else lost_at
        return min(max(first + self.window_s - now, MIN_RETRY_S), MAX_RETRY_S)


@dataclass
class _Marker:
    epoch: str
    lost_at: float | None = None
    accounted: set[str] = field(default_factory=set)  # lost epochs already marked


class MemoryLeaseBudget:
    """`LeaseBudget` in the process, on an injected clock (seconds).

    The rules of ``leases.lua``, for one process and for the rules' unit tests.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._levels: dict[str, _LevelState] = {}
        self._markers: dict[str, _Marker] = {}

    def lose(self) -> None:
        """Forget everything, as Redis does on a FLUSHALL."""
        self._levels.clear()
        self._markers.clear()

    def held(self, key: str) -> int:
        """Permits counted in the window of level ``key`` now."""
        state = self._levels.get(key)
        if state is None:
            return 0
        state.expire(self._clock())
        return sum(_parse(member)[2] for member in state.leases)

    async def take(self, request: LeaseRequest) -> LeaseGrant:
        now = self._clock()
        marker = self._markers.get(request.marker)
        if marker is None:
            epoch = f"{now}:{request.holder}:{request.seq}"
            marker = self._markers[request.marker] = _Marker(epoch)
        lost = request.epoch not in ("", marker.epoch)
        if lost and request.epoch not in marker.accounted:
            marker.accounted.add(request.epoch)
            marker.lost_at = now
        grant, retry = request.want, 0.0
        states = []
        for level in request.levels:
            state = self._levels.setdefault(level.key, _LevelState(level.window_s))
            state.window_s = level.window_s
            states.append(state)
            state.expire(now)
            if request.give_back is not None:
                state.give_back(*request.give_back)
            if request.leaving:
                state.holders.pop(request.holder, None)
            elif request.want > 0:
                state.holders[request.holder] = _Holder(now, request.want, request.lane)
            room = state.room(level.amount, request)
            lost_at = marker.lost_at
            if lost_at is not None and lost_at + level.window_s > now:
                room = 0  # the window since a lost budget was found is spent
            else:
                lost_at = None
            if room < grant:
                grant, retry = max(room, 0), state.retry_in_s(now, lost_at)
        member = lease_member(request.holder, request.seq, grant)
        for state in states:
            if grant > 0:
                state.leases[member] = now
            if request.want > 0 and not request.leaving:
                state.holders[request.holder].short = request.want - grant
        return LeaseGrant(grant, member, 0.0 if grant > 0 else retry, marker.epoch, lost)


# ---------------------------------------------------------------- shared, in Redis

_SCRIPT: Final = resources.files("peepers_common.ml").joinpath("leases.lua").read_text("utf-8")


class RedisLeaseBudget:
    """`LeaseBudget` shared by every replica: one Lua script (``leases.lua``) per lease.

    The script runs on Redis time, so replicas disagree on no clock.

    The budget's epoch marker is a hash without TTL under the request's ``marker``.
    Each level keeps three keys under its ``key``: ``:leases`` (sorted set of lease
    members by grant time), ``:held`` (hash: the permits counted, and each active
    holder's demand) and ``:holders`` (sorted set of active holders by last request).
    """

    def __init__(self, redis: aioredis.Redis) -> None:
        self._script = redis.register_script(_SCRIPT)

    async def take(self, request: LeaseRequest) -> LeaseGrant:
        keys: list[str] = [request.marker]
        args: list[str | int | float] = [
            request.holder,
            request.seq,
            request.want,
            request.lane.value,
            int(ACTIVE_S * 1000),
            request.give_back[0] if request.give_back else "",
            request.give_back[1] if request.give_back else 0,
            1 if request.leaving else 0,
            int(MIN_RETRY_S * 1000),
            int(MAX_RETRY_S * 1000),
            LIVE_RESERVE,
            request.epoch,
        ]
        for level in request.levels:
            keys += [f"{level.key}:leases", f"{level.key}:held", f"{level.key}:holders"]
            args += [level.amount, math.ceil(level.window_s * 1000)]
        try:
            granted, retry_ms, epoch, lost = await self._script(keys=keys, args=args)
        except RedisError as exc:
            msg = f"the outbound rate limiter's Redis failed: {exc!r}"
            raise CacheUnavailable(msg) from exc
        granted = int(granted)
        return LeaseGrant(
            granted,
            lease_member(request.holder, request.seq, granted),
            int(retry_ms) / 1000,
            epoch.decode() if isinstance(epoch, bytes) else str(epoch),
            bool(lost),
        )
