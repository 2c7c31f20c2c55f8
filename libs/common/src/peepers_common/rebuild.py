"""Noticing a lost cache by itself, and rebuilding it, for every consumer service.

A service's Redis view of ML (items, orders, messages, ...) is a cache that may vanish at
any time (``FLUSHALL``, a restart without persistence, a new node). `CacheGuard` keeps an
*epoch marker* in the service's namespace and notices when it is gone:

- at start (`CacheGuard.start` checks once, and waits for a rebuild's restore phase,
  before the service takes records: owned state is back before anything uses it);
- periodically (every ``check_every_s``);
- whenever a read misses (`CacheGuard.after_miss`): a miss is how a service meets a lost
  cache between two periodic checks, before it announces what it found as new. Misses
  that overlap share one check; ``miss_check_every_s`` (default 0) can thin them out
  further, at the price of a window where a lost cache's items are announced as new.

The marker, ``<ns>epoch``, is JSON ``{"epoch": id, "state": "rebuilding" | "ready",
"since": unix time}``; ``since`` is when the epoch began, and stays so when it turns
ready (`epoch_began`: what was created after it cannot have been announced before). A
replica that finds it missing writes a new epoch in state ``rebuilding`` (only if still
missing: one replica wins), takes the lease ``<ns>epoch:lease`` and runs the service's
rebuild in two phases: restore the state it owns (from its changelogs), then resync every
seller from ML. When the rebuild returns,
the marker turns ``ready``, but only if it is still that epoch (a second loss during a
rebuild starts another one). Every other replica reads ``rebuilding`` and says so too. A
rebuild whose owner died lets its lease lapse (``lease_s``, renewed every third of it),
and the next replica to check takes it over; the service's rebuild must be resumable (the
catalog's full sync resumes from its checkpoints).

A failed rebuild is retried after ``retry_after_s``; no human action is needed. Progress
goes to the service's ``peepers_<service>_rebuild_*`` metrics (`rebuild_metrics`) and logs.

While rebuilding (`CacheGuard.rebuilding`), a service flags its read answers and announces
entities it meets as snapshots (``<entity>.snapshot``, see `peepers_common.events`): it
cannot prove it announced them before.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Literal, Protocol
from uuid import uuid4

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field

from peepers_common.errors import CacheUnavailable, MlForbidden, ReauthRequired
from peepers_common.lease import RedisLease
from peepers_common.namespaces import Namespace, redis_errors

# What a rebuild's resync skips a seller for: they can no longer be read (ML refused the
# refresh, or the seller's data to this app) until they log in again, and that login
# resyncs them. Anything else (auth or ML down for now, a 401 after the client's
# refreshes) fails the attempt instead, retried after ``retry_after_s`` from the sellers'
# checkpoints: a transient error must not leave a seller unmirrored.
SELLER_GONE: Final = (ReauthRequired, MlForbidden)

log = logging.getLogger(__name__)

Status = Literal["starting", "ready", "rebuilding"]
# The second phase of a rebuild: resync the mirrored data from ML.
Resync = Callable[[], Awaitable[None]]
# The first phase, given the epoch being rebuilt (a stable name for resumable runs):
# restore the state the service owns, and return its resync (None: nothing to resync).
Rebuild = Callable[[str], Awaitable[Resync | None]]


class CacheEpoch(Protocol):
    """What a handler asks of `CacheGuard`: whether the cache is being rebuilt after a loss."""

    @property
    def rebuilding(self) -> bool: ...

    async def after_miss(self) -> bool:
        """An entity was not cached: check for a lost cache; returns `rebuilding`."""
        ...


class _SteadyCache:
    """A cache nobody watches: never rebuilding (a shell's sync or backfill, tests, benches)."""

    rebuilding = False

    async def after_miss(self) -> bool:
        return False


STEADY_CACHE: CacheEpoch = _SteadyCache()

_MARKER: Final = "epoch"
# How long a stop waits for a cancelled rebuild before cancelling it again.
_RECANCEL_S: Final = 0.5
_LEASE: Final = "epoch:lease"
# Mark the epoch ready only if it is still the one this rebuild was for.
_READY_SCRIPT: Final = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local marker = cjson.decode(raw)
if marker['epoch'] ~= ARGV[1] then return 0 end
marker['state'] = 'ready'
redis.call('SET', KEYS[1], cjson.encode(marker))
redis.call('DEL', KEYS[2])
return 1
"""
# A new epoch, with its lease for the caller, if there is no marker: one replica wins.
_NEW_EPOCH_SCRIPT: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
"""


@dataclass(frozen=True)
class RebuildMetrics:
    running: Gauge
    started: Counter
    finished: Counter
    duration: Gauge


@functools.cache
def rebuild_metrics(service: str) -> RebuildMetrics:
    """``peepers_<service>_rebuild_*``, registered once per process."""
    prefix = f"peepers_{service}_rebuild"
    return RebuildMetrics(
        running=Gauge(f"{prefix}_running", "1 while this replica rebuilds the lost cache"),
        started=Counter(
            f"{prefix}_started_total", "Rebuilds started, by what noticed the loss", ["reason"]
        ),
        finished=Counter(
            f"{prefix}_finished_total", "Rebuild attempts that ended, by outcome", ["outcome"]
        ),
        duration=Gauge(f"{prefix}_last_duration_seconds", "How long the last rebuild took"),
    )


class GuardOptions(BaseModel):
    """A service's settings group (``<SERVICE>_REBUILD__CHECK_EVERY_S``, ...)."""

    model_config = ConfigDict(frozen=True)

    check_every_s: float = Field(default=5.0, gt=0)
    miss_check_every_s: float = Field(default=0.0, ge=0)
    lease_s: float = Field(default=30.0, gt=0)
    retry_after_s: float = Field(default=10.0, gt=0)


class CacheGuard:
    """The epoch marker of one service's cache, and the rebuild it starts when it is lost.

    `start` checks once and starts the periodic checks; `aclose` stops them and any
    rebuild this replica runs (the lease lapses; another replica, or this one restarted,
    resumes it). With ``rebuild=None`` it only observes (a shell tool): it says
    ``rebuilding`` when the marker is missing or not ready, and never writes one.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        namespace: Namespace,
        rebuild: Rebuild | None,
        *,
        options: GuardOptions | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._marker = namespace.key(_MARKER)
        self._rebuild = rebuild
        self._opts = options or GuardOptions()
        self._clock = clock
        self._metrics = rebuild_metrics(namespace.service)
        self._service = namespace.service
        self._lease = RedisLease(redis, namespace.key(_LEASE))
        self._ready_script = redis.register_script(_READY_SCRIPT)
        self._new_epoch_script = redis.register_script(_NEW_EPOCH_SCRIPT)
        self._check_lock = asyncio.Lock()
        self._last_check = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self._rebuilding: asyncio.Task[None] | None = None
        self._restored = asyncio.Event()
        # Concurrent misses (a sync's chunk) share one check instead of one GET each.
        self._miss_check: asyncio.Future[None] | None = None
        self.status: Status = "starting"
        self.epoch: str | None = None

    @property
    def rebuilds(self) -> bool:
        """Whether this guard rebuilds a lost cache, or only observes (``rebuild=None``)."""
        return self._rebuild is not None

    @property
    def rebuilding(self) -> bool:
        """True while the cache is being rebuilt, here or by another replica."""
        return self.status == "rebuilding"

    async def start(self) -> None:
        await self.check("start")
        rebuild = self._rebuilding
        if rebuild is not None:
            restored = asyncio.ensure_future(self._restored.wait())
            await asyncio.wait({restored, rebuild}, return_when=asyncio.FIRST_COMPLETED)
            restored.cancel()
        self._task = asyncio.create_task(self._periodic(), name=f"{self._service}-cache-guard")

    async def aclose(self) -> None:
        for task in (self._task, self._rebuilding):
            if task is not None:
                await _cancelled(task)
        self._task = self._rebuilding = None

    async def after_miss(self) -> bool:
        """A read found nothing: check the marker (at most every ``miss_check_every_s``).

        Returns `rebuilding` after the check, so the caller can decide how to announce what
        it is about to write.
        """
        if self._clock() - self._last_check >= self._opts.miss_check_every_s:
            if self._miss_check is None:
                self._miss_check = asyncio.ensure_future(self.check("read miss"))
                self._miss_check.add_done_callback(self._miss_checked)
            await asyncio.shield(self._miss_check)
        return self.rebuilding

    def _miss_checked(self, check: asyncio.Future[None]) -> None:
        if self._miss_check is check:
            self._miss_check = None

    async def check(self, reason: str) -> None:
        """Read the marker; start (or take over) a rebuild when the cache was lost."""
        async with self._check_lock:
            self._last_check = self._clock()
            with redis_errors("reading the cache epoch"):
                raw = await self._redis.get(self._marker)
            rebuild = self._rebuild
            if raw is None:
                if rebuild is None:
                    self.status = "rebuilding"  # an observer: a worker notices and rebuilds
                    return
                epoch = uuid4().hex
                marker = _encode(epoch, "rebuilding", self._clock())
                ttl_ms = int(self._opts.lease_s * 1000)
                with redis_errors("writing a new cache epoch"):
                    won = await self._new_epoch_script(
                        keys=[self._marker, self._lease.key],
                        args=[marker, self._lease.owner, ttl_ms],
                    )
                if won:
                    log.warning(
                        "%s: no cache epoch marker (%s): a new or lost cache; "
                        "rebuilding it as epoch %s",
                        self._service,
                        reason,
                        epoch,
                    )
                    self._begin(epoch, reason, rebuild)
                    return
                with redis_errors("reading the cache epoch"):
                    raw = await self._redis.get(self._marker)
                if raw is None:
                    return  # lost again between two commands: the next check sees it
            current = json.loads(raw)
            self.epoch = str(current["epoch"])
            if current["state"] == "ready":
                self.status = "ready"
                return
            self.status = "rebuilding"
            if rebuild is None or self._rebuilding is not None:
                return
            if await self._lease.take(self._opts.lease_s):
                log.warning(
                    "%s: taking over the unfinished rebuild of epoch %s", self._service, self.epoch
                )
                self._begin(self.epoch, "takeover", rebuild)

    def _begin(self, epoch: str, reason: str, rebuild: Rebuild) -> None:
        self.epoch = epoch
        self.status = "rebuilding"
        self._restored.clear()
        if self._rebuilding is not None:
            self._rebuilding.cancel()  # an earlier epoch, lost again meanwhile
        self._metrics.started.labels(reason).inc()
        self._rebuilding = asyncio.create_task(
            self._run(epoch, rebuild), name=f"{self._service}-rebuild-{epoch}"
        )

    async def _run(self, epoch: str, rebuild: Rebuild) -> None:
        self._metrics.running.set(1)
        renew = asyncio.create_task(self._renew_lease())
        try:
            while True:
                started = time.monotonic()
                try:
                    await self._lease.take(self._opts.lease_s)
                    resync = await rebuild(epoch)
                    if resync is not None:
                        self._restored.set()
                        await resync()
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except Exception:
                    self._metrics.finished.labels("failed").inc()
                    log.exception(
                        "%s: rebuild of epoch %s failed; retrying in %.0f s",
                        self._service,
                        epoch,
                        self._opts.retry_after_s,
                    )
                    await asyncio.sleep(self._opts.retry_after_s)
                    continue
                took = time.monotonic() - started
                self._metrics.duration.set(took)
                with redis_errors("marking the cache epoch ready"):
                    current = await self._ready_script(
                        keys=[self._marker, self._lease.key], args=[epoch]
                    )
                self._metrics.finished.labels("done" if current else "superseded").inc()
                if current and self.epoch == epoch:
                    self.status = "ready"
                self._restored.set()
                log.info("%s: rebuild of epoch %s done in %.1f s", self._service, epoch, took)
                return
        finally:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renew
            if self._rebuilding is asyncio.current_task():
                self._rebuilding = None
                self._metrics.running.set(0)

    async def _renew_lease(self) -> None:
        while True:
            await asyncio.sleep(self._opts.lease_s / 3)
            with contextlib.suppress(CacheUnavailable):
                await self._lease.take(self._opts.lease_s)

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(self._opts.check_every_s)
            try:
                await self.check("periodic check")
            except CacheUnavailable as exc:
                log.warning("%s: cannot check the cache epoch: %s", self._service, exc)


async def _cancelled(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` until it ends.

    One cancellation can be lost on its way down (code that catches it, or a client's own
    timeout racing it), and a rebuild left running holds the worker's stop for as long as
    the whole rebuild takes: an orders worker stopped under load was seen waiting ~10 s
    for its rebuild to finish before it went on stopping.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=_RECANCEL_S)
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def epoch_began(
    redis: aioredis.Redis, namespace: Namespace, *, clock: Callable[[], float] = time.time
) -> float:
    """When the cache's current epoch began (unix time); a missing marker begins one now.

    For handlers that judge what they meet by the epoch (orders: an order created before
    it is history, a snapshot) and may meet a lost cache before the guard does. The marker
    written here is ``rebuilding`` with no lease, so the service's `CacheGuard` takes its
    rebuild over at its next check.
    """
    key = namespace.key(_MARKER)
    now = clock()
    with redis_errors("reading the cache epoch"):
        await redis.set(key, _encode(uuid4().hex, "rebuilding", now), nx=True)
        raw = await redis.get(key)
    # None only if the cache was lost again between the two commands: it begins now.
    return now if raw is None else float(json.loads(raw)["since"])


def _encode(epoch: str, state: Status, since: float) -> str:
    return json.dumps({"epoch": epoch, "state": state, "since": since})
