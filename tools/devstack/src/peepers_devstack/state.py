"""Each ``make run`` starts Peepers' own state fresh; the previous run's is dropped.

Why fresh Peepers state, not a sandbox that keeps its marketplace under ``.stack/``: the
sandbox is a seeded, reproducible stand-in for ML, and a run is a demo or a test of the
whole flow from a known start (the login, the full sync, live changes). A catalog left
from an earlier run describes a marketplace that no longer exists (the seeded items
come back older than the cached versions: the sync counted them ``stale`` and kept the
old data). So every run gets a catalog of its own, a Redis scope and a consumer group
named by the run (starting at the topics' current end, so the old world's notifications
and seller events are not replayed), and its first sync says ``created`` for every item,
as the first run's did. The orders and messages workers follow the same rule (their
Redis scope and consumer groups, the orders mailer's included, are the run's too): an
order or a question of the old marketplace is not one of the new. Auth's seller
authorization is renewed by each run's login.

The scope of the last run is written to ``<work dir>/catalog.scope``; the next run drops
its keys before it starts anything (SCAN and UNLINK as each service's Redis user: a
developer tool emptying its own scratch scope, never a service's cache invalidation),
and the workers' Faust data directories it left in the work dir.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Final

from peepers_common.namespaces import Namespace, connect_redis, redis_errors
from peepers_common.settings import RedisSettings

_SCOPE_FILE: Final = "catalog.scope"
_BATCH: Final = 1000


def swap_scope(work_dir: Path, scope: str) -> str | None:
    """Record ``scope`` as this run's; returns the previous run's, if another."""
    previous = current_scope(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / _SCOPE_FILE).write_text(scope + "\n")
    return previous if previous != scope else None


def current_scope(work_dir: Path) -> str | None:
    """The scope of the run that last started in ``work_dir`` (running or not)."""
    record = work_dir / _SCOPE_FILE
    scope = record.read_text().strip() if record.exists() else ""
    return scope or None


async def drop_scope(redis: RedisSettings, service: str, scope: str) -> int:
    """Drop every key of ``service`` in ``scope``; returns how many there were."""
    prefix = Namespace(service, scope=scope).prefix
    dropped = 0
    client = connect_redis(redis)
    try:
        with redis_errors(f"dropping the previous run's keys ({prefix}*)"):
            batch: list[bytes] = []
            async for key in client.scan_iter(match=prefix + "*", count=_BATCH):
                batch.append(key)
                if len(batch) >= _BATCH:
                    dropped += await client.unlink(*batch)
                    batch = []
            if batch:
                dropped += await client.unlink(*batch)
    finally:
        await client.aclose()
    return dropped


def drop_data_dirs(work_dir: Path, scope: str) -> int:
    """Remove the Faust data directories of the run ``scope``; returns how many.

    Each worker keeps one in its cwd, the work dir, named after its app id (the
    catalog's sync process: ``<app id>-sync``).
    """
    found = [
        *work_dir.glob(f"peepers-*-{scope}-data"),
        *work_dir.glob(f"peepers-*-{scope}-sync-data"),
    ]
    for directory in found:
        shutil.rmtree(directory, ignore_errors=True)
    return len(found)
