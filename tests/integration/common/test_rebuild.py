"""`CacheGuard` on the real Redis: the epoch marker, its loss, one rebuild, takeover."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from peepers_common.namespaces import Namespace
from peepers_common.rebuild import CacheGuard, GuardOptions, Resync, epoch_began
from tests.support import unique, wait_until

FAST = GuardOptions(check_every_s=0.1, miss_check_every_s=0.0, lease_s=0.6, retry_after_s=0.1)


class Rebuilds:
    """A service's rebuild: records each epoch; the resync waits for ``release``."""

    def __init__(self, *, resync: bool = True) -> None:
        self.epochs: list[str] = []
        self.release = asyncio.Event()
        self.failures = 0
        self._resync = resync

    async def __call__(self, epoch: str) -> Resync | None:
        self.epochs.append(epoch)
        if not self._resync:
            return None

        async def resync() -> None:
            if self.failures:
                self.failures -= 1
                msg = "ML answered 503"
                raise RuntimeError(msg)
            await self.release.wait()

        return resync


@pytest.fixture
def namespace() -> Namespace:
    return Namespace("catalog", scope=unique("guard"))


@pytest.fixture
async def guards() -> AsyncIterator[list[CacheGuard]]:
    made: list[CacheGuard] = []
    yield made
    for guard in made:
        await guard.aclose()


async def marker(redis: aioredis.Redis, namespace: Namespace) -> dict[str, str] | None:
    raw = await redis.get(namespace.key("epoch"))
    return None if raw is None else json.loads(raw)


async def test_a_new_namespace_is_ready_once_restored_with_nothing_to_resync(
    redis_admin: aioredis.Redis, namespace: Namespace, guards: list[CacheGuard]
) -> None:
    rebuilds = Rebuilds(resync=False)
    guard = CacheGuard(redis_admin, namespace, rebuilds, options=FAST)
    guards.append(guard)
    await guard.start()
    assert guard.status == "ready"  # start waited for the restore phase
    assert len(rebuilds.epochs) == 1
    assert (await marker(redis_admin, namespace) or {})["state"] == "ready"


async def test_a_lost_marker_is_noticed_periodically_and_rebuilt_once_across_replicas(
    redis_admin: aioredis.Redis, namespace: Namespace, guards: list[CacheGuard]
) -> None:
    rebuilds = Rebuilds()
    rebuilds.release.set()
    replicas = [CacheGuard(redis_admin, namespace, rebuilds, options=FAST) for _ in range(2)]
    guards.extend(replicas)
    for guard in replicas:
        await guard.start()

    async def ready() -> bool:
        return all(g.status == "ready" for g in replicas)

    await wait_until(ready, timeout_s=10)
    first = list(rebuilds.epochs)
    assert len(first) == 1

    rebuilds.release.clear()
    await redis_admin.delete(namespace.key("epoch"))  # the cache is lost (this scope only)

    async def rebuilding() -> bool:
        return all(g.rebuilding for g in replicas) and len(rebuilds.epochs) == 2

    await wait_until(rebuilding, timeout_s=10)  # one replica rebuilds, both say so
    rebuilds.release.set()
    await wait_until(ready, timeout_s=10)
    assert len(rebuilds.epochs) == 2
    assert (await marker(redis_admin, namespace) or {})["epoch"] == rebuilds.epochs[1]


async def test_a_read_miss_notices_the_loss_before_the_next_periodic_check(
    redis_admin: aioredis.Redis, namespace: Namespace, guards: list[CacheGuard]
) -> None:
    slow = GuardOptions(check_every_s=3600, miss_check_every_s=0.0)
    guard = CacheGuard(redis_admin, namespace, Rebuilds(), options=slow)
    guards.append(guard)
    await guard.start()
    assert guard.rebuilding  # a new namespace, resync still running
    await redis_admin.set(namespace.key("epoch"), json.dumps({"epoch": "x", "state": "ready"}))
    assert not await guard.after_miss()
    await redis_admin.delete(namespace.key("epoch"))
    assert await guard.after_miss()


async def test_a_failed_rebuild_is_retried_and_a_dead_owners_rebuild_is_taken_over(
    redis_admin: aioredis.Redis, namespace: Namespace, guards: list[CacheGuard]
) -> None:
    rebuilds = Rebuilds()
    rebuilds.failures = 1
    owner = CacheGuard(redis_admin, namespace, rebuilds, options=FAST)
    guards.append(owner)
    await owner.start()

    async def retried() -> bool:
        return rebuilds.failures == 0 and len(rebuilds.epochs) >= 2

    await wait_until(retried, timeout_s=10)
    assert set(rebuilds.epochs) == {rebuilds.epochs[0]}  # the same epoch, resumed

    await owner.aclose()  # the owner dies mid-rebuild; its lease lapses
    other = CacheGuard(redis_admin, namespace, rebuilds, options=FAST)
    guards.append(other)
    rebuilds.release.set()
    await other.start()

    async def ready() -> bool:
        return other.status == "ready"

    await wait_until(ready, timeout_s=10)
    assert set(rebuilds.epochs) == {rebuilds.epochs[0]}


async def test_an_observer_says_rebuilding_but_never_writes_an_epoch(
    redis_admin: aioredis.Redis, namespace: Namespace, guards: list[CacheGuard]
) -> None:
    observer = CacheGuard(redis_admin, namespace, None, options=FAST)  # a shell's sync
    guards.append(observer)
    assert await observer.after_miss()  # no marker: a worker will rebuild
    assert await marker(redis_admin, namespace) is None
    await redis_admin.set(namespace.key("epoch"), json.dumps({"epoch": "x", "state": "ready"}))
    assert not await observer.after_miss()


async def test_a_rebuild_that_swallows_a_cancellation_is_stopped_promptly(
    redis_admin: aioredis.Redis, namespace: Namespace
) -> None:
    never = asyncio.Event()
    resyncing = asyncio.Event()

    async def rebuild(epoch: str) -> Resync:
        async def resync() -> None:
            resyncing.set()
            # Lost, as a client's own timeout racing the cancellation loses it.
            with contextlib.suppress(asyncio.CancelledError):
                await never.wait()
            await never.wait()

        return resync

    guard = CacheGuard(redis_admin, namespace, rebuild, options=FAST)
    await guard.start()
    await resyncing.wait()
    stop = asyncio.ensure_future(guard.aclose())
    # Else the stop waits for the whole rebuild (here: for ever).
    done, _ = await asyncio.wait({stop}, timeout=5)
    assert done == {stop}
    await stop
    never.set()


async def test_the_epoch_began_when_the_cache_was_found_lost_not_when_its_rebuild_ended(
    redis_admin: aioredis.Redis, namespace: Namespace, guards: list[CacheGuard]
) -> None:
    # Orders judge a first-seen order by it: one created while the rebuild ran is news
    # (it was mailed as a new sale), not history from before the loss.
    rebuilds = Rebuilds()
    guard = CacheGuard(redis_admin, namespace, rebuilds, options=FAST)
    guards.append(guard)
    await guard.start()
    began = await epoch_began(redis_admin, namespace)
    await asyncio.sleep(0.3)  # the resync runs on
    rebuilds.release.set()

    async def ready() -> bool:
        return (await marker(redis_admin, namespace) or {}).get("state") == "ready"

    await wait_until(ready)
    assert await epoch_began(redis_admin, namespace) == pytest.approx(began, abs=1e-3)
