"""``python -m peepers_proof.check`` (``make check``): does a running ``make run`` hold ML?

Compares what the run's Redis holds (the catalog's items, the orders, the messages
mirror and its tickets) with what its sandbox holds, by the proof's own convergence
checks (`peepers_proof.checks`). A mirror trails ML by the time a change takes to arrive,
so the sandbox's activity is paused first, the notifier is waited on until it has
nothing pending, and the comparison is repeated until it holds or ``--timeout`` passes;
the activity is then turned on again at its rate. What still differs is printed, up to
five lines per check.

Exit status: 0 when Peepers equals the sandbox, 1 when something differs, 2 when there is
no run to compare (nothing answers on the sandbox's port, or no run's scope is recorded)
or the comparison could not finish (Redis or the sandbox failed under it).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import aiohttp
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from peepers_common.errors import CacheUnavailable
from peepers_common.namespaces import Namespace, connect_redis
from peepers_common.settings import StackSettings
from peepers_devstack.plan import Ports
from peepers_devstack.settings import Settings
from peepers_devstack.state import current_scope
from peepers_messages.backfill import RedisBackfillCheckpoints
from peepers_orders.adapters.redis_store import RedisSellerDirectory
from peepers_orders.settings import BackfillSettings
from peepers_proof.checks import Check, convergence
from peepers_sandbox.client import SandboxAdmin, SandboxAdminError
from peepers_sandbox.config import DEMO_SELLER_ID

EVERY_S: Final = 2.0


@dataclass(frozen=True)
class Options:
    port_base: int = 18080
    sandbox_url: str | None = None  # instead of the port base's
    work_dir: Path | None = None
    sellers: tuple[int, ...] = (DEMO_SELLER_ID,)
    timeout_s: float = 60.0


class NoRun(Exception):
    """Nothing to compare (no make run answers, none recorded its scope), or no way to."""


def _say(line: str) -> None:
    print(f"check: {line}", flush=True)


async def _drained(admin: SandboxAdmin, deadline: float) -> None:
    """Until the notifier has delivered (or given up on) everything it had to send."""
    while time.monotonic() < deadline:
        if not (await admin.notifier_summary())["pending"]:
            return
        await asyncio.sleep(0.5)


async def compare(
    admin: SandboxAdmin, redis: aioredis.Redis, scope: str, options: Options
) -> list[Check]:
    """The checks, repeated every `EVERY_S` until they hold or the timeout passes."""
    deadline = time.monotonic() + options.timeout_s
    await _drained(admin, deadline)
    while True:
        states = [await admin.seller_state(seller) for seller in options.sellers]
        # The orders worker's backfill reads back this many days (make run keeps the
        # default): an older order no webhook brought is not Peepers' to hold.
        since = datetime.now(UTC) - timedelta(days=BackfillSettings().days)
        checks = list(await convergence(redis, scope, states, orders_since=since))
        if all(check.ok for check in checks) or time.monotonic() >= deadline:
            return checks
        await asyncio.sleep(EVERY_S)


async def unfinished_backfills(
    redis: aioredis.Redis, scope: str, sellers: Sequence[int]
) -> list[str]:
    """A line for each seller whose orders or messages backfill has not finished.

    Running, or stopped midway (its worker will resume it, or a crash left it so): its
    checkpoint cannot tell which.

    What a backfill has not reached yet shows as "not cached" or "not mirrored": a check
    run right after `make run` started (or after Redis was flushed under it) says so
    rather than leave it to be read as lost.
    """
    orders = RedisSellerDirectory(redis, Namespace("orders", scope=scope))
    messages = RedisBackfillCheckpoints(redis, Namespace("messages", scope=scope))
    lines = []
    for seller in sellers:
        order_run = await orders.load(seller)
        if order_run is not None and order_run.phase != "done":
            lines.append(
                f"the orders backfill of seller {seller} has not finished "
                f"({order_run.offset} of {order_run.total} orders)"
            )
        messages_run = await messages.load(seller)
        if messages_run is not None and messages_run.phase != "done":
            lines.append(
                f"the messages backfill of seller {seller} has not finished "
                f"(phase {messages_run.phase}, offset {messages_run.offset})"
            )
    return lines


async def check(options: Options) -> int:
    work_dir = options.work_dir or Settings().stack_dir / "run"
    scope = current_scope(work_dir)
    if scope is None:
        msg = f"no make run recorded its scope in {work_dir}: start one with make run"
        raise NoRun(msg)
    url = options.sandbox_url or f"http://127.0.0.1:{Ports.from_base(options.port_base).sandbox}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        admin = SandboxAdmin(url, session)
        try:
            activity = await admin.activity()
        except (aiohttp.ClientError, SandboxAdminError) as exc:
            msg = f"no make run's sandbox answers on {url} ({exc}); is make run running?"
            raise NoRun(msg) from exc
        _say(f"comparing run {scope} with the sandbox on {url}")
        if activity["running"]:
            await admin.stop_activity()
            _say("sandbox activity paused while Peepers catches up")
        # Redis's default user (the stack's, for operations): it reads every service's keys.
        redis = connect_redis(StackSettings().redis)
        try:
            started = time.monotonic()
            checks = await compare(admin, redis, scope, options)
            running = (
                []
                if all(c.ok for c in checks)
                else await unfinished_backfills(redis, scope, options.sellers)
            )
        except (aiohttp.ClientError, SandboxAdminError, CacheUnavailable, RedisError) as exc:
            msg = f"the comparison could not finish: {exc}"
            raise NoRun(msg) from exc
        finally:
            await redis.aclose()
            if activity["running"]:
                await admin.start_activity(float(activity["rate"]), activity["mix"])
                _say(f"sandbox activity on again: {activity['rate']:g} changes/s")
    for one in checks:
        _say(one.line())
    for line in running:
        _say(f"{line}: what it has not reached shows as missing; check again once it is done")
    held = all(one.ok for one in checks)
    took = time.monotonic() - started
    _say(f"Peepers {'equals' if held else 'differs from'} the sandbox ({took:.1f} s)")
    return 0 if held else 1


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="peepers-check", description=__doc__)
    parser.add_argument("--port-base", type=int, default=18080,
                        help="the make run's --port-base (18080)")  # fmt: skip
    parser.add_argument("--sandbox-url", default=None,
                        help="the run's sandbox when not at the port base")  # fmt: skip
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="the make run's --work-dir (<stack dir>/run)")  # fmt: skip
    parser.add_argument("--seller", type=int, action="append", dest="sellers",
                        help=f"a seller to compare ({DEMO_SELLER_ID}, make run's)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds Peepers may take to catch up (60)")  # fmt: skip
    args = parser.parse_args(argv)
    return Options(
        port_base=args.port_base,
        sandbox_url=args.sandbox_url,
        work_dir=args.work_dir,
        sellers=tuple(args.sellers or (DEMO_SELLER_ID,)),
        timeout_s=args.timeout,
    )


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_options(argv)
    try:
        status = asyncio.run(check(options))
    except NoRun as exc:
        print(f"check: {exc}", file=sys.stderr)
        status = 2
    sys.exit(status)


if __name__ == "__main__":
    main()
