"""Drift audits: a low-rate background check of a service's cache against ML.

Webhooks can be missed (ML gave up retrying, a change ML never notified): a mirror then
drifts from ML with nothing to tell. A drift audit samples cached entities at random,
reads them from ML, and repairs what differs through the service's normal write path.
It must never crowd out real work, so it spends a fixed *share* of the app's ML budget
(`MlApiSettings.app_limit`, default share 2%), and only one replica of a service audits
at a time (a lease in its namespace), so the share does not grow with the replicas.

`BudgetedSampler` is the loop and its pacing; the service gives it ``sample``, one audit
step that returns the ML calls it made (the catalog: one multiget of up to 20 items).
`drifted_fields` and `drift_metrics` are the shared pieces of a step.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Final

import redis.asyncio as aioredis
from prometheus_client import Counter
from pydantic import BaseModel

from peepers_common.errors import PeepersError
from peepers_common.lease import RedisLease
from peepers_common.namespaces import Namespace
from peepers_common.settings import MlApiSettings, MlLimit

log = logging.getLogger(__name__)

# One audit step: returns how many ML calls it made.
Sample = Callable[[], Awaitable[int]]

_LEASE: Final = "audit:lease"


def audit_calls_per_s(ml: MlApiSettings, share: float) -> float:
    """ML calls a second the audit may make: ``share`` of the app's limit."""
    limit = ml.app_limit or MlLimit(amount=300, per_s=60)  # ML's documented default
    return limit.amount / limit.per_s * share


@dataclass(frozen=True)
class DriftMetrics:
    audited: Counter
    drift: Counter


@functools.cache
def drift_metrics(service: str) -> DriftMetrics:
    """``peepers_<service>_audited_total`` and ``peepers_<service>_drift_total{field}``."""
    return DriftMetrics(
        audited=Counter(
            f"peepers_{service}_audited_total", "Cached entities the drift audit compared with ML"
        ),
        drift=Counter(
            f"peepers_{service}_drift_total",
            "Fields the drift audit found different from ML (then repaired), by field",
            ["field"],
        ),
    )


def drifted_fields(
    cached: BaseModel, fresh: BaseModel, *, ignore: Collection[str] = ()
) -> list[str]:
    """The fields whose values differ between the cached and ML's copy of an entity."""
    before, after = cached.model_dump(), fresh.model_dump()
    return sorted(name for name in after if name not in ignore and before.get(name) != after[name])


class Roster:
    """The sellers an audit samples from.

    Read from ``fetch`` (Kafka: slow) at most every ``every_s``, and at every call while it
    is empty (no seller connected yet).
    """

    def __init__(self, fetch: Callable[[], Awaitable[list[int]]], every_s: float = 60.0) -> None:
        self._fetch = fetch
        self._every_s = every_s
        self._sellers: list[int] = []
        self._at = float("-inf")

    async def sellers(self) -> list[int]:
        now = time.monotonic()
        if not self._sellers or now - self._at >= self._every_s:
            self._sellers = await self._fetch()
            self._at = now
        return self._sellers


class BudgetedSampler:
    """Runs ``sample`` at most ``calls_per_s`` ML calls a second, on one replica at a time.

    ``paused`` says when not to audit (a rebuild is running: the cache is incomplete and
    the budget is the rebuild's). Failures of a step are logged and the loop goes on.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        namespace: Namespace,
        sample: Sample,
        *,
        calls_per_s: float,
        paused: Callable[[], bool] = lambda: False,
    ) -> None:
        if calls_per_s <= 0:
            msg = f"an audit needs a positive ML budget (got {calls_per_s} calls/s)"
            raise ValueError(msg)
        self._lease = RedisLease(redis, namespace.key(_LEASE))
        self._service = namespace.service
        self._sample = sample
        self._interval_s = 1 / calls_per_s
        self._paused = paused

    async def run(self) -> None:
        while True:
            calls = 1
            try:
                # Held a little longer than one step's pause, so the holder keeps it.
                lease_s = self._interval_s * 3 + 1
                if not self._paused() and await self._lease.take(lease_s):
                    calls = max(await self._sample(), 1)
            except PeepersError as exc:
                log.warning("%s: a drift audit step failed: %s", self._service, exc)
            await asyncio.sleep(calls * self._interval_s)
