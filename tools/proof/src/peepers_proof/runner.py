"""One proof run, start to end.

1. start the stack (`Stack.start`), log every seller in, wait until the sellers' full
   syncs and backfills have mirrored ML into Redis (with ``fairness``: the ordinary
   sellers first, probes, then the huge seller with probes during its sync,
   `peepers_proof.fairness`);
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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr

from peepers_catalog.app import ITEM_TOPICS
from peepers_catalog.settings import SyncSettings
from peepers_common.kafka import caught_up, lag
from peepers_common.ml.broker_tokens import BrokerTokenProvider, TokenBrokerSettings
from peepers_common.topics import PEEPERS_ORDERS, PEEPERS_SELLERS
from peepers_devstack.errors import StepFailed
from peepers_devstack.processes import Supervisor
from peepers_devstack.settings import Settings as DevstackSettings
from peepers_devstack.settings import inherited_environment
from peepers_messages.app import CONSUMED as MESSAGES_CONSUMED
from peepers_orders.app import NOTIFICATION_TOPICS
from peepers_proof import baseline, checks, fairness, faults
from peepers_proof.checks import Check
from peepers_proof.plan import WORKER_KINDS, Options, ProofPlan
from peepers_proof.stack import Say, Stack

# The scale-out's yardstick figure (`peepers_proof.baseline`).
BASELINE = "plain aiokafka loop, the catalog's fetches: records, records/s"
# The scale-out's figures of one consumer's drain besides its rate (`drain_figure`).
READY = "after every worker was ready"
CPU = "machine CPU busy %"


def drain_figure(kind: str, measure: str = "") -> str:
    """The name of a consumer's drain figure: its rate, or ``READY``'s, or ``CPU``."""
    if measure == CPU:
        return f"drain {kind}: {CPU}"
    return f"drain {kind}{' ' + measure if measure else ''}: records, records/s"


def machine_cpu() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine since boot, in ticks (/proc/stat)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = ticks[3] + ticks[4]  # idle and iowait; guest time is in user already
    return sum(ticks) - idle, sum(ticks)


@dataclass(frozen=True)
class Drain:
    """One consumer's drain of its backlog in a scale-out run (None: not measured)."""

    rate: float | None
    left_at_ready: int = 0  # records still to drain once every worker was ready
    rate_after_ready: float | None = None
    cpu_busy_pct: int | None = None  # of all the machine's cores, over the drain


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
    # Checks whose name contains one of these: reported, not failing the run.
    known_failing: tuple[str, ...] = ()
    # Latency probes with no sync going, then probes during the huge seller's sync (0: none).
    fairness: int = 0
    # Scale-out: seconds of activity while every worker is stopped, then the backlog is
    # drained by all of them started at once (0: the fault run instead).
    drain_s: float = 0.0
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
        return all(c.ok or c.known for c in self.checks)


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
        self._said_left = 0.0

    async def run(self) -> Result:
        plan = self.plan
        settings = DevstackSettings()
        supervisor = Supervisor(
            plan.run_dir / "logs", plan.work_dir, inherited_environment(), stop_timeout_s=15
        )
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            broker = plan.broker
            kafka = (
                settings.kafka
                if broker is None
                else settings.kafka.model_copy(update={"bootstrap_servers": broker.bootstrap})
            )
            stack = Stack(plan, kafka, supervisor, session, self.say)
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
        # With fairness, the probes without a sync are not sync time.
        probing_s = await self._fairness(stack) if o.fairness else 0.0
        if not o.fairness:
            await stack.connect_sellers(self.plan.sellers)
        if not await _poll(
            lambda: self._converged(stack, initial=True), timeout_s=o.sync_timeout_s, every_s=3
        ):
            self.say("the initial syncs did not converge in time; checking anyway")
        synced = time.monotonic() - started - probing_s
        items, orders, _ = await self._mirror_checks(stack)
        self.figures["workers per service"] = self.plan.options.workers
        self.figures["ML latency ms"] = self.plan.options.ml_latency_ms
        self.figures["initial sync s"] = round(synced, 1)
        self.figures["initial sync items/s"] = round(items.checked / synced, 1)
        self.figures["initial sync orders/s"] = round(orders.checked / synced, 1)
        self.say(
            f"{items.checked} items and {orders.checked} orders of every seller mirrored in "
            f"Redis {synced:.1f} s after the first login"
        )
        if o.drain_s:
            return Result(await self._drain(stack), [], self.figures)
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

    async def _probe_items(self, stack: Stack) -> dict[int, list[str]]:
        """Up to 20 items of each ordinary seller."""
        states = await self._states(stack, self.plan.sellers[1:])
        return {s["seller_id"]: list(s["items"])[:20] for s in states}

    async def _fairness(self, stack: Stack) -> float:
        """The fairness window (`peepers_proof.fairness`); the seconds of probes without a sync.

        The ordinary sellers log in and their syncs and backfills finish; ``fairness``
        probes run then, with no sync; then the huge seller logs in, and probes run while
        its catalog sync runs, until its checkpoint says done.
        """
        o, plan = self.options, self.plan
        huge, others = plan.huge_seller, plan.sellers[1:]
        await stack.connect_sellers(others)
        if not await _poll(
            lambda: self._converged(stack, initial=True, sellers=others),
            timeout_s=o.sync_timeout_s,
            every_s=3,
        ):
            msg = "the ordinary sellers' initial syncs did not converge in time"
            raise StepFailed(msg)
        await stack.admin.patch_notifier(enabled=True)
        items = await self._probe_items(stack)
        began = time.monotonic()
        without = await fairness.probe(stack, items, count=o.fairness)
        probing_s = time.monotonic() - began
        self.say(f"{len(without)} probes without a sync; the huge seller logs in")
        requests_before, login = await fairness.ml_requests(stack), time.monotonic()
        await stack.connect_sellers([huge])
        done = asyncio.Event()
        during = asyncio.create_task(fairness.probe(stack, items, until=done))
        try:
            state = await fairness.sync_done(stack, huge, timeout_s=o.sync_timeout_s)
        except BaseException:
            during.cancel()
            raise
        finally:
            done.set()
        latencies = await during
        # What the others (probes' webhooks, the huge seller's backfills) asked of ML
        # while it synced: the budget left to the sync is what they did not take.
        huge_items = max(plan.options.huge_items, plan.options.items)
        chunk = SyncSettings().chunk
        asked = await fairness.ml_requests(stack) - requests_before
        asked -= fairness.sync_requests(huge_items, chunk)
        others_per_minute = max(asked, 0) / (time.monotonic() - login) * fairness.WINDOW_S
        sync_s = None
        if state is None or state.finished_at is None:
            self.say("the huge seller's sync was not done in time: no sync figure")
        else:
            sync_s = state.finished_at - state.started_at
        per_minute = plan.options.ml_requests_per_minute
        bound = fairness.sync_bound_s(huge_items, chunk, per_minute, others_per_minute)
        found = fairness.figures(without, latencies, sync_s, bound, others_per_minute)
        self.say("fairness: " + "; ".join(f"{name}: {value}" for name, value in found.items()))
        self.figures.update(found)
        return probing_s

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

    async def _states(
        self, stack: Stack, sellers: Sequence[int] | None = None
    ) -> list[dict[str, Any]]:
        return [
            await stack.admin.seller_state(seller)
            for seller in (self.plan.sellers if sellers is None else sellers)
        ]

    async def _mirror_checks(
        self, stack: Stack, sellers: Sequence[int] | None = None
    ) -> tuple[Check, Check, Check]:
        client = stack.redis()
        try:
            states = await self._states(stack, sellers)
            return await checks.convergence(client, self.plan.scope, states)
        finally:
            await client.aclose()

    async def _converged(
        self, stack: Stack, *, initial: bool = False, sellers: Sequence[int] | None = None
    ) -> bool:
        """Whether the mirrors of ``sellers`` (all) equal ML.

        ``initial``: only the syncs' and backfills' (items, orders).

        The messages backfill mirrors what a seller must act on, not every old question
        or conversation: its mirror is checked once the load has touched them.
        """
        try:
            mirrors = await self._mirror_checks(stack, sellers)
        except Exception as exc:  # Redis may be restarting, Kafka rebalancing: poll again
            self.say(f"convergence not readable yet: {exc}")
            return False
        left = [c for c in (mirrors[:2] if initial else mirrors) if not c.ok and not self._known(c)]
        now = time.monotonic()
        if left and now - self._said_left > 15:
            self._said_left = now
            self.say("not converged yet: " + "; ".join(f"{c.name}: {c.problems[0]}" for c in left))
        return not left

    def _groups(self) -> dict[str, tuple[str, list[str]]]:
        """Each consumer of the run: its group and the topics it consumes."""
        plan, prefix = self.plan.devstack, self.plan.prefix
        return {
            "catalog": (plan.catalog_group, [prefix + t for t in ITEM_TOPICS]),
            "catalog sync": (plan.catalog_sync_group, [prefix + PEEPERS_SELLERS]),
            "orders": (
                plan.orders_group,
                [prefix + t for t in (*NOTIFICATION_TOPICS, PEEPERS_SELLERS)],
            ),
            "messages": (plan.messages_group, [prefix + t for t in MESSAGES_CONSUMED]),
            "orders mailer": (plan.orders().env["ORDERS_MAIL__APP_ID"], [prefix + PEEPERS_ORDERS]),
        }

    async def _caught_up(self, stack: Stack) -> bool:
        for group, topics in self._groups().values():
            if not await caught_up(stack.kafka, group, topics):
                return False
        return True

    async def _drain(self, stack: Stack) -> list[Check]:
        """Scale-out: a backlog made while no worker runs, drained by all of them at once.

        Each consumer's rate is the records it drained over the time from its group's
        first commit to the end of its topics (its processes' start is not counted), and
        again from when every worker was ready; and how busy the machine's cores were
        meanwhile (a drain that keeps them busy shows what more processes cannot add on
        this machine). The workers start together, so their groups rebalance while they
        drain; the checks afterwards show whether that lost or doubled anything.
        """
        o = self.options
        workers = [n for n in stack.names() if n.partition("-")[0] in WORKER_KINDS]
        for name in workers:
            await stack.kill(name)
        await stack.admin.patch_notifier(enabled=True)
        await stack.admin.start_activity(o.stack.rate, stack.plan.sandbox_config().activity_mix)
        await asyncio.sleep(o.drain_s)
        activity = await stack.admin.stop_activity()
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            await stack.admin.wait_notifier_idle(within_s=o.quiet_s)
        self.figures["changes made while no worker ran"] = sum(activity.get("done", {}).values())
        groups = {kind: g for kind, g in self._groups().items() if kind in WORKER_KINDS}
        backlog = {kind: await lag(stack.kafka, *g) for kind, g in groups.items()}
        self.say(f"backlog: {backlog}; starting {len(workers)} workers at once")
        all_ready = asyncio.Event()

        async def start_all() -> None:
            await asyncio.gather(*(stack.restart_child(name) for name in workers))
            all_ready.set()

        starting = asyncio.ensure_future(start_all())
        drains = await asyncio.gather(
            *(
                self._drain_rate(stack, kind, *g, backlog[kind], all_ready)
                for kind, g in groups.items()
            )
        )
        await starting
        for kind, drain in zip(groups, drains, strict=True):
            self.figures[drain_figure(kind)] = (backlog[kind], drain.rate)
            self.figures[drain_figure(kind, READY)] = (drain.left_at_ready, drain.rate_after_ready)
            self.figures[drain_figure(kind, CPU)] = drain.cpu_busy_pct
        if self.plan.options.workers == 1:
            await self._baseline(stack)
        return await self._quiet_checks(stack)

    async def _baseline(self, stack: Stack) -> None:
        """The catalog's backlog again, through a plain aiokafka loop's fetches only."""
        plan = self.plan.devstack
        broker = TokenBrokerSettings(
            url=plan.auth_url, service="catalog", secret=SecretStr(plan.secrets.catalog_broker)
        )
        tokens = BrokerTokenProvider(stack.session, broker)
        topics = [self.plan.prefix + t for t in ITEM_TOPICS]
        records, rate = await baseline.plain_loop(
            stack.kafka, topics, plan.sandbox_url, tokens, stack.session
        )
        self.figures[BASELINE] = (records, rate)

    async def _drain_rate(
        self,
        stack: Stack,
        kind: str,
        group: str,
        topics: list[str],
        backlog: int,
        all_ready: asyncio.Event,
    ) -> Drain:
        """How fast ``group`` drained ``backlog``, two ways.

        From the last look before its first commit to its last one, and from the first
        look after every worker was ready. The processes' start is not counted in the
        first; the first batch's work is (the group commits a batch once it is done), and
        up to one look (0.25 s) more. The second leaves out the other processes' start
        too, which shares the machine's cores with the drain, and the rebalances as they
        join.
        """
        deadline = time.monotonic() + self.options.quiet_s + self.options.stack.ready_timeout_s
        idle, cpu_at_idle = time.monotonic(), machine_cpu()
        at_ready: tuple[int, float] | None = None
        while time.monotonic() < deadline:
            left = await lag(stack.kafka, group, topics)
            now = time.monotonic()
            if left >= backlog:
                idle, cpu_at_idle = now, machine_cpu()
            if at_ready is None and all_ready.is_set():
                at_ready = (left, now)
            if left == 0:
                busy, total = (a - b for a, b in zip(machine_cpu(), cpu_at_idle, strict=True))
                left_at_ready, ready_at = at_ready if at_ready is not None else (0, now)
                return Drain(
                    rate=round(backlog / (now - idle), 1),
                    left_at_ready=left_at_ready,
                    rate_after_ready=(
                        round(left_at_ready / (now - ready_at), 1) if left_at_ready else None
                    ),
                    cpu_busy_pct=round(100 * busy / total) if total else None,
                )
            await asyncio.sleep(0.25)
        self.say(f"{kind} did not drain its backlog in time")
        return Drain(rate=None, left_at_ready=at_ready[0] if at_ready else 0)

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
        mirrors = await self._mirror_checks(stack)
        async with stack.session.get(f"{self.plan.state_url}/acked") as response:
            acked = (await response.json())["acked"]
        kafka, prefix = stack.kafka, self.plan.prefix
        mail_dir = self.plan.devstack.mail_dir
        doubled, republished = await checks.nothing_doubled(kafka, prefix, mail_dir)
        for topic, count in republished.items():
            self.figures[f"event ids republished on {topic}"] = count
        found = [
            *mirrors,
            await checks.nothing_lost(kafka, prefix, acked),
            *doubled,
            await checks.nothing_dead_lettered(kafka, prefix),
            await checks.no_relogin(kafka, prefix, self.plan.sellers),
            checks.limits_kept(await stack.admin.rate_limit_counters()),
        ]
        for check in found:
            check.known = self._known(check)
        return found

    def _known(self, check: Check) -> bool:
        """A failure written down (``--known-failing``): reported, waited for by nobody."""
        return any(words in check.name for words in self.options.known_failing)
