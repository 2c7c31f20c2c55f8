"""One proof run, start to end.

1. start the stack (`Stack.start`), log every seller in, wait until the sellers' full
   syncs and backfills have mirrored ML into Redis;
2. turn the sandbox's notifier and its activity (every topic, at ``rate`` changes/s) on;
3. inject the fault schedule while the load runs, printing progress;
4. stop the activity, wait for a quiet system (the notifier idle, every consumer group at
   the end of its topics), then run the checks until they hold or ``quiet_s`` is over;
5. print the results; stop everything the run started (also after a failure or Ctrl-C).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from peepers_catalog.app import ITEM_TOPICS
from peepers_common.kafka import caught_up
from peepers_common.topics import PEEPERS_ORDERS, PEEPERS_SELLERS
from peepers_devstack.errors import StepFailed
from peepers_devstack.processes import Supervisor
from peepers_devstack.settings import Settings as DevstackSettings
from peepers_devstack.settings import inherited_environment
from peepers_orders.app import NOTIFICATION_TOPICS
from peepers_proof import checks, faults
from peepers_proof.checks import Check
from peepers_proof.plan import Options, ProofPlan
from peepers_proof.stack import Say, Stack


@dataclass(frozen=True)
class RunOptions:
    stack: Options = field(default_factory=Options)
    faults: tuple[str, ...] | None = None  # None: every fault of the run
    overlapping: bool = True
    hold_s: float = 8.0
    gap_s: float = 4.0
    settle_s: float = 10.0  # load without faults before the first and after the last
    quiet_s: float = 120.0
    sync_timeout_s: float = 900.0
    progress_every_s: float = 10.0
    # Per checkout (not the shared .stack): a run stops the leftovers of an earlier run
    # killed outright here (the pid file), never another checkout's run.
    work_dir: Path = Path(".cache/proof")


@dataclass
class Result:
    checks: list[Check]
    faults: list[str]
    figures: dict[str, Any]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


async def _poll(
    predicate: Callable[[], Awaitable[bool]], *, timeout_s: float, every_s: float = 1.0
) -> bool:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every_s)
    return True


class Runner:
    def __init__(self, options: RunOptions, say: Say) -> None:
        self.options = options
        self.say = say
        self.plan = ProofPlan(options.stack, options.work_dir.resolve())
        self.figures: dict[str, Any] = {}

    async def run(self) -> Result:
        plan = self.plan
        settings = DevstackSettings()
        supervisor = Supervisor(
            plan.run_dir / "logs", plan.work_dir, inherited_environment(), stop_timeout_s=15
        )
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            stack = Stack(plan, settings.kafka, supervisor, session, self.say)
            try:
                return await self._run(stack)
            finally:
                with contextlib.suppress(Exception):
                    await stack.admin.stop_activity()
                await stack.stop()

    async def _run(self, stack: Stack) -> Result:
        o = self.options
        self.say(f"run {self.plan.run_id}: logs in {self.plan.run_dir / 'logs'}")
        await stack.start()
        started = time.monotonic()
        await stack.connect_sellers()
        if not await _poll(lambda: self._converged(stack), timeout_s=o.sync_timeout_s, every_s=3):
            self.say("the initial syncs did not converge in time; checking anyway")
        synced = time.monotonic() - started
        items, orders = await self._mirror_checks(stack)
        self.figures["workers per service"] = self.plan.options.workers
        self.figures["ML latency ms"] = self.plan.options.ml_latency_ms
        self.figures["initial sync s"] = round(synced, 1)
        self.figures["initial sync items/s"] = round(items.checked / synced, 1)
        self.figures["initial sync orders/s"] = round(orders.checked / synced, 1)
        self.say(
            f"{items.checked} items and {orders.checked} orders of every seller mirrored in "
            f"Redis {synced:.1f} s after the first login"
        )
        names = stack.names()
        wanted = list(o.faults) if o.faults is not None else faults.all_faults(names)
        unknown = faults.validate(wanted, names)
        if unknown:
            msg = f"no such fault in this run: {', '.join(unknown)}"
            raise StepFailed(msg)
        steps = faults.schedule(wanted, overlapping=o.overlapping)
        await stack.admin.patch_notifier(enabled=True)
        await stack.admin.start_activity(o.stack.rate, stack.plan.sandbox_config().activity_mix)
        load_started = time.monotonic()
        progress = asyncio.create_task(self._progress(stack, load_started))
        try:
            await asyncio.sleep(o.settle_s)
            injected = await faults.run_schedule(stack, steps, hold_s=o.hold_s, gap_s=o.gap_s)
            await asyncio.sleep(o.settle_s)
        finally:
            progress.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await progress
        activity = await stack.admin.stop_activity()
        load_s = time.monotonic() - load_started
        made = sum(activity.get("done", {}).values())
        self.figures["load s"] = round(load_s, 1)
        self.figures["changes made"] = made
        self.figures["changes/s held"] = round(made / load_s, 1)
        self.say(f"activity stopped: {made} changes in {load_s:.0f} s; quiet period")
        return Result(await self._quiet_checks(stack), injected, self.figures)

    async def _progress(self, stack: Stack, since: float) -> None:
        while True:
            await asyncio.sleep(self.options.progress_every_s)
            # A child that exits on its own (no fault killed it) ends the run.
            stack.supervisor.check()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                n = await stack.admin.notifier_summary()
                self.say(
                    f"t+{time.monotonic() - since:.0f} s: notifications {n['notifications']}, "
                    f"delivered {n['delivered']}, pending {n['pending']}, "
                    f"failed attempts {n['failed_attempts']}"
                )

    async def _states(self, stack: Stack) -> list[dict[str, Any]]:
        states = []
        for seller in self.plan.sellers:
            async with stack.session.get(f"{self.plan.state_url}/state/{seller}") as response:
                response.raise_for_status()
                states.append(await response.json())
        return states

    async def _mirror_checks(self, stack: Stack) -> tuple[Check, Check]:
        client = stack.redis()
        try:
            states = await self._states(stack)
            return await checks.convergence(client, self.plan.scope, states)
        finally:
            await client.aclose()

    async def _converged(self, stack: Stack) -> bool:
        try:
            items, orders = await self._mirror_checks(stack)
        except Exception as exc:  # Redis may be restarting, Kafka rebalancing: poll again
            self.say(f"convergence not readable yet: {exc}")
            return False
        return items.ok and orders.ok

    async def _caught_up(self, stack: Stack) -> bool:
        plan, kafka = self.plan.devstack, stack.kafka
        prefix = self.plan.prefix
        catalog = [prefix + t for t in (*ITEM_TOPICS, PEEPERS_SELLERS)]
        orders = [prefix + t for t in (*NOTIFICATION_TOPICS, PEEPERS_SELLERS)]
        mailer = plan.orders().env["ORDERS_MAIL__APP_ID"]
        return (
            await caught_up(kafka, plan.catalog_group, catalog)
            and await caught_up(kafka, plan.orders_group, orders)
            and await caught_up(kafka, mailer, [prefix + PEEPERS_ORDERS])
        )

    async def _quiet_checks(self, stack: Stack) -> list[Check]:
        o = self.options
        began = time.monotonic()
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            await stack.admin.wait_notifier_idle(within_s=o.quiet_s)
        quiet = await _poll(lambda: self._caught_up(stack), timeout_s=o.quiet_s, every_s=2)
        if not quiet:
            self.say("the consumer groups did not reach the end of their topics in time")
        await _poll(lambda: self._converged(stack), timeout_s=o.quiet_s, every_s=3)
        self.figures["quiet until converged s"] = round(time.monotonic() - began, 1)
        items, orders = await self._mirror_checks(stack)
        async with stack.session.get(f"{self.plan.state_url}/acked") as response:
            acked = (await response.json())["acked"]
        kafka, prefix = stack.kafka, self.plan.prefix
        mail_dir = self.plan.devstack.mail_dir
        doubled, republished = await checks.nothing_doubled(kafka, prefix, mail_dir)
        for topic, count in republished.items():
            self.figures[f"event ids republished on {topic}"] = count
        return [
            items,
            orders,
            await checks.nothing_lost(kafka, prefix, acked),
            *doubled,
            await checks.nothing_dead_lettered(kafka, prefix),
            await checks.no_relogin(kafka, prefix, self.plan.sellers),
            checks.limits_kept(await stack.admin.rate_limit_counters()),
        ]
