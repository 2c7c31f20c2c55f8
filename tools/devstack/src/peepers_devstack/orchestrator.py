"""``make run``: the services against the ML sandbox, a real login, a full sync, live numbers.

Steps, each bounded in time; a child that exits or is not ready in time stops the run
with its log tail:

1. start the sandbox (notifier aimed at ingest's webhook, auth's callback registered,
   consent auto-approved), auth and the seller web app, each ready on its probe;
2. log the sandbox's demo seller in through auth's PKCE flow over HTTP (redirects
   followed with a cookie jar, as a browser would) until the web app's overview shows
   that seller, then start ingest, the catalog
   worker, the SMTP sink, the orders and the messages workers; the workers' state is
   this run's own, fresh (`peepers_devstack.state`), and the previous run's is dropped
   first;
3. follow the full sync the worker runs on the ``seller.connected`` (or
   ``seller.reconnected``) event auth publishes, from the worker's sync metrics and the
   line it logs when done. The sync is not started a second time from here:
   ``python -m peepers_catalog sync`` would begin another run beside the worker's;
4. turn on the sandbox's scripted activity;
5. refresh a summary every ``refresh_s`` until interrupted (or ``exit_after_s``), with
   the alerts Prometheus (started last, when installed) has firing, and the dashboard's
   link (`Plan.dashboard_url`: one click through the sandbox's consent page, logged in).

Children are stopped in reverse start order by whoever owns the `Orchestrator`
(``shutdown``), also after a failure.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from aiokafka import AIOKafkaConsumer
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from peepers_catalog.settings import Settings as CatalogSettings
from peepers_common.errors import CacheUnavailable, InfrastructureError
from peepers_common.kafka import end_offsets
from peepers_common.settings import KafkaSettings
from peepers_common.topics import PEEPERS_ORDERS, PEEPERS_SELLERS, notification_topic, retry_topic
from peepers_devstack import prometheus
from peepers_devstack.display import plain, render
from peepers_devstack.errors import PreflightFailed, StepFailed
from peepers_devstack.lock import RunLock
from peepers_devstack.plan import LOOPBACK, ChildSpec, Plan, Ports, Secrets
from peepers_devstack.processes import Child, Supervisor
from peepers_devstack.settings import Settings, inherited_environment, missing_stack_vars
from peepers_devstack.state import drop_data_dirs, drop_scope, swap_scope
from peepers_devstack.watch import (
    SummaryCollector,
    SyncProgress,
    SyncWatcher,
    accepts,
    answers_200,
)
from peepers_messages.app import CONSUMED as MESSAGES_SOURCES
from peepers_messages.settings import Settings as MessagesSettings
from peepers_orders.app import NOTIFICATION_TOPICS as ORDERS_NOTIFICATIONS
from peepers_orders.settings import Settings as OrdersSettings
from peepers_sandbox.client import SandboxAdmin, SandboxAdminError

# What the catalog's processes consume (peepers_catalog.app, by CATALOG_ROLE): a run's
# own consumer groups start at these topics' current end, not at their first record.
CATALOG_SOURCES = (notification_topic("items"), notification_topic("items_prices"))
CATALOG_SYNC_SOURCES = (PEEPERS_SELLERS,)
ORDERS_SOURCES = (*ORDERS_NOTIFICATIONS, PEEPERS_SELLERS, PEEPERS_ORDERS)
READY_PATHS = {
    "sandbox": "/_admin/health",
    "auth": "/readyz",
    "ingest": "/readyz",
    "catalog": "/readyz",
    "catalog-sync": "/readyz",
    "orders": "/readyz",
    "mailer": "/readyz",
    "messages": "/readyz",
    "web": "/readyz",
    "prometheus": "/-/ready",
}
DASHBOARD = "dashboard (logs the demo seller in through the sandbox's consent page): "
# A seller event is picked up within seconds; much longer means it never came.
SYNC_START_TIMEOUT_S = 60.0
# A child killed under a live run is started again this many times at most (_heal).
MAX_RESTARTS = 5


@dataclass(frozen=True)
class Options:
    port_base: int = 18080
    items: int = 2000
    activity_rate: float = 20.0
    refresh_s: float = 1.0
    ready_timeout_s: float = 90.0
    sync_timeout_s: float = 600.0
    exit_after_s: float | None = None
    ml_requests_per_minute: int = 6000
    log_dir: Path | None = None
    work_dir: Path | None = None


class Orchestrator:
    def __init__(self, options: Options, settings: Settings, console: Console) -> None:
        self.options = options
        self.settings = settings
        self.console = console
        # Absolute paths: the children run with the work dir as their cwd, so a relative
        # `.stack/run/...` handed to them (Prometheus's config, ingest's spool) would resolve
        # under the work dir a second time.
        stack = settings.stack_dir.resolve()
        self.log_dir = (options.log_dir or stack / "logs").resolve()
        work_dir = (options.work_dir or stack / "run").resolve()
        self.plan = Plan(
            ports=Ports.from_base(options.port_base),
            secrets=Secrets.load_or_create(stack / "secrets" / "devstack.json"),
            spool_dir=work_dir / "ingest-spool",
            items=options.items,
            ml_requests_per_minute=options.ml_requests_per_minute,
            prometheus_binary=prometheus.installed(),
            prometheus_dir=work_dir / "prometheus",
            web_app=True,
        )
        self.work_dir = work_dir
        # One run per stack (peepers_devstack.lock says why).
        self.lock = RunLock(stack / "run.lock")
        self.supervisor = Supervisor(self.log_dir, work_dir, inherited_environment())
        self.restarts: Counter[str] = Counter()
        self.started = time.monotonic()

    def say(self, message: str) -> None:
        self.console.print(f"[bold cyan]run:[/] {message}", highlight=False)

    def out(self, line: str) -> None:
        """A plain line (piped output: progress and summary lines)."""
        self.console.out(line, highlight=False)

    async def run(self) -> None:
        missing = missing_stack_vars()
        if missing:
            msg = (
                f"the stack's variables are not set ({', '.join(missing[:3])}, ...): "
                "start it with scripts/stack up and source .stack/env (make run does both)"
            )
            raise PreflightFailed(msg)
        self.lock.acquire(self.work_dir)
        await self.supervisor.stop_leftovers(self.say)
        taken = self.plan.ports.taken()
        if taken:
            msg = (
                f"port(s) {', '.join(map(str, taken))} on 127.0.0.1 already in use "
                "(another make run?); stop it or pick other ports with --port-base"
            )
            raise PreflightFailed(msg)
        await self._fresh_state()
        if self.plan.prometheus_binary is None:
            self.say("prometheus is not installed (scripts/install-prometheus): running without it")
        else:
            prometheus.write_config(self.plan)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            started: dict[str, Child] = {}
            ready_at: dict[str, float] = {}
            # The login once the page it lands on answers.
            login_after = "web" if self.plan.web_app else "auth"
            for spec in self.plan.children():
                started[spec.name] = await self._start(session, spec)
                ready_at[spec.name] = time.monotonic()
                if spec.name == login_after:
                    # The login before anything reads ML with the seller's token: auth may
                    # still hold the authorization an earlier run's login left (its Redis
                    # outlives a run; each run's sandbox is new and refuses its refresh
                    # token), and a worker or ingest's reconciler using it would meet
                    # ReauthRequired and dead-letter the records. The workers' consumer
                    # groups start at the topics' end before the login, so the
                    # seller.connected event it publishes still reaches them.
                    await self._connect(session)
            # The sync starts once its process is ready, often before the others are: the
            # time is counted from then, not from when this begins to follow it.
            await self._follow_sync(session, started["catalog-sync"], ready_at["catalog-sync"])
            admin = SandboxAdmin(self.plan.sandbox_url, session)
            await admin.start_activity(self.options.activity_rate)
            self.say(f"sandbox activity on: {self.options.activity_rate:g} changes/s")
            await self._summarise(session, admin)

    async def _fresh_state(self) -> None:
        """This run's workers' state starts empty; the previous run's is dropped."""
        plan = self.plan
        previous = swap_scope(self.work_dir, plan.isolation)
        if previous is not None:
            redis = {
                "catalog": CatalogSettings().redis,
                "orders": OrdersSettings().redis,
                "messages": MessagesSettings().redis,
            }
            dropped = {}
            try:
                for service, settings in redis.items():
                    dropped[service] = await drop_scope(settings, service, previous)
            except CacheUnavailable as exc:
                raise PreflightFailed(str(exc)) from exc
            counts = ", ".join(f"{service} {n}" for service, n in dropped.items())
            data_dirs = drop_data_dirs(self.work_dir, previous)
            self.say(
                f"dropped the previous run's state ({previous}: {counts} keys; "
                f"{data_dirs} worker data directories)"
            )
        groups = {
            plan.catalog_group: _with_retries(CATALOG_SOURCES),
            plan.catalog_sync_group: _with_retries(CATALOG_SYNC_SOURCES),
            plan.orders_group: _with_retries(ORDERS_SOURCES),
            # The orders mailer's two loops: each its own group (peepers_orders.mailer).
            plan.mailer_group: [PEEPERS_ORDERS],
            f"{plan.mailer_group}-retry": [retry_topic(PEEPERS_ORDERS)],
            plan.messages_group: _with_retries(MESSAGES_SOURCES),
        }
        for group, topics in groups.items():
            await start_group_at_end(self.settings.kafka, group, topics)
        self.say(
            "this run's catalog, orders and messages state: Redis scope and consumer groups "
            f"{plan.isolation}"
        )

    async def shutdown(self) -> None:
        if self.supervisor.children:
            self.say("stopping the children, newest first")
        await self.supervisor.stop_all(self.say)
        self.lock.release()

    def _url(self, name: str) -> str:
        if name == "mail":
            return f"smtp://{LOOPBACK}:{self.plan.ports.smtp}"
        urls = {
            "sandbox": self.plan.sandbox_url,
            "auth": self.plan.auth_url,
            "ingest": self.plan.ingest_url,
            "catalog": self.plan.catalog_url,
            "catalog-sync": self.plan.catalog_sync_url,
            "orders": self.plan.orders_url,
            "mailer": self.plan.mailer_url,
            "messages": self.plan.messages_url,
            "web": self.plan.web_url,
            "prometheus": self.plan.prometheus_url,
        }
        return urls[name]

    async def _ready(
        self, session: aiohttp.ClientSession, child: Child, *, starting: bool = False
    ) -> float:
        """Waits until ``child`` answers its readiness probe; returns the seconds it took.

        ``starting`` (the run's start): any child that exits meanwhile ends the run at
        once, naming it. Once the run is up, another child's exit is `_heal`'s to handle.
        """
        name = child.name

        async def ready() -> bool:
            if starting:
                self.supervisor.check()
            if name == "mail":  # an SMTP server: ready once it accepts a connection
                return await accepts(LOOPBACK, self.plan.ports.smtp)
            return await answers_200(session, self._url(name) + READY_PATHS[name])

        return await self.supervisor.wait_ready(
            child, ready, timeout_s=self.options.ready_timeout_s
        )

    async def _start(self, session: aiohttp.ClientSession, spec: ChildSpec) -> Child:
        child = await self.supervisor.start(spec)
        took = await self._ready(session, child, starting=True)
        url = self._url(spec.name)
        self.say(f"{spec.name} ready on {url} in {took:.1f} s (pid {child.pid}, log {child.log})")
        return child

    async def _heal(self, session: aiohttp.ClientSession) -> None:
        """Start again a child that died once the run is up, as Kubernetes restarts a pod.

        So a developer can kill -9 a worker (or auth, or ingest) under a live run and
        watch Peepers recover. The sandbox is the exception: its marketplace lives in its
        memory, and a new one would be another world. A child that keeps dying (more
        than ``MAX_RESTARTS`` times) or does not come back ends the run.
        """
        for child in self.supervisor.exited():
            code = child.process.returncode
            restarts = self.restarts[child.name] + 1
            if child.name == "sandbox" or restarts > MAX_RESTARTS:
                reason = f"exited with code {code}"
                raise child.failed(reason)
            self.restarts[child.name] = restarts
            self.say(
                f"{child.name} (pid {child.pid}) exited with code {code}: starting it again "
                f"(restart {restarts} of at most {MAX_RESTARTS})"
            )
            fresh = await self.supervisor.restart(child)
            took = await self._ready(session, fresh)
            self.say(f"{child.name} ready again in {took:.1f} s (pid {fresh.pid})")

    async def _connect(self, session: aiohttp.ClientSession) -> None:
        """The seller's login as a browser does it: auth -> ML consent -> auth's callback.

        It must land on `Plan.landing_url` showing the seller: the web app's overview read
        the session auth wrote.
        """
        seller = self.plan.seller_id
        landing = urlsplit(self.plan.landing_url)
        # unsafe: keep cookies for an IP host (127.0.0.1), as a browser does.
        jar = aiohttp.CookieJar(unsafe=True)
        async with (
            aiohttp.ClientSession(cookie_jar=jar, timeout=session.timeout) as browser,
            browser.get(f"{self.plan.auth_url}/auth/login", params={"site": "MLB"}) as page,
        ):
            body = await page.text()
            landed = urlsplit(str(page.url))
            where = (landed.netloc, landed.path)
            if (
                page.status != 200
                or where != (landing.netloc, landing.path)
                or (str(seller) not in body)
            ):
                msg = (
                    f"the login of seller {seller} did not reach {self.plan.landing_url} "
                    f"(HTTP {page.status} at {landed.geturl()}); see {self.log_dir}/auth.log"
                )
                raise StepFailed(msg)
        self.say(
            f"seller {seller} connected through auth's PKCE login "
            f"(landed on {self.plan.landing_url})"
        )

    async def _follow_sync(
        self, session: aiohttp.ClientSession, worker: Child, started: float
    ) -> None:
        watcher = SyncWatcher(self.plan, session, worker.log)
        if self.console.is_terminal:
            columns = (
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=self.console) as bar:
                task = bar.add_task("waiting for the worker's full sync", total=None)

                def show(p: SyncProgress) -> None:
                    if p.expected:
                        bar.update(task, description="syncing items", total=p.expected,
                                   completed=min(p.processed, p.expected))  # fmt: skip
                    elif p.running:
                        bar.update(task, description="scanning item ids")

                progress = await self._wait_sync(watcher, started, show)
        else:
            last = [""]

            def show(p: SyncProgress) -> None:
                line = f"sync: {p.processed}/{p.expected or '?'} items"
                if line != last[0]:
                    last[0] = line
                    self.out(line)

            progress = await self._wait_sync(watcher, started, show)
        took = time.monotonic() - started
        counts = _sync_counts(progress.finished_line)
        self.say(
            f"full sync of seller {self.plan.seller_id} done by the catalog's sync process: "
            f"{progress.expected or progress.processed} items within {took:.1f} s of its "
            f"start{counts}"
        )

    async def _wait_sync(
        self, watcher: SyncWatcher, started: float, show: Callable[[SyncProgress], None]
    ) -> SyncProgress:
        seen_start = False
        while True:
            self.supervisor.check()
            progress = await watcher.poll()
            show(progress)
            if progress.done:
                show(progress)
                return progress
            seen_start = seen_start or progress.running or progress.expected > 0
            waited = time.monotonic() - started
            catalog_log = self.log_dir / "catalog-sync.log"
            if not seen_start and waited > SYNC_START_TIMEOUT_S:
                msg = (
                    f"the catalog's sync process started no sync within {SYNC_START_TIMEOUT_S:.0f} "
                    f"s of the login; see {catalog_log} and {self.log_dir / 'auth.log'}"
                )
                raise StepFailed(msg)
            if waited > self.options.sync_timeout_s:
                msg = (
                    f"the full sync did not finish within {self.options.sync_timeout_s:.0f} s; "
                    f"see {catalog_log}"
                )
                raise StepFailed(msg)
            await asyncio.sleep(0.25)

    async def _summarise(self, session: aiohttp.ClientSession, admin: SandboxAdmin) -> None:
        collector = SummaryCollector(self.plan, session, admin, self.started)
        logs = ", ".join(str(c.log) for c in self.supervisor.children)
        footer = (
            f"logs: {logs}\nCtrl-C stops the services; Kafka and Redis stay up "
            "(scripts/stack down stops them)"
        )
        if self.plan.prometheus_binary is not None:
            footer = f"Prometheus: {self.plan.prometheus_url}/alerts\n{footer}"
        if self.plan.web_app:
            footer = f"{DASHBOARD}{self.plan.dashboard_url}\n{footer}"
        seller = str(self.plan.seller_id)
        began = time.monotonic()
        live = Live(console=self.console, auto_refresh=False) if self.console.is_terminal else None
        if self.plan.web_app:
            self.say(f"{DASHBOARD}{self.plan.dashboard_url}")
        if live is None:
            self.say(f"logs: {logs}")
        try:
            if live is not None:
                live.start()
            while True:
                await self._heal(session)
                try:
                    summary = await collector.collect()
                except (aiohttp.ClientError, TimeoutError, SandboxAdminError, KeyError):
                    summary = None  # a child too busy to answer: the next frame catches up
                if summary is not None:
                    if live is not None:
                        live.update(render(summary, seller=seller, footer=footer), refresh=True)
                    else:
                        self.out(plain(summary))
                exit_after = self.options.exit_after_s
                if exit_after is not None and time.monotonic() - began >= exit_after:
                    self.say(f"--exit-after {exit_after:g} s reached")
                    return
                await asyncio.sleep(self.options.refresh_s)
        finally:
            if live is not None:
                live.stop()


def _sync_counts(line: str | None) -> str:
    if line is None:
        return ""
    try:
        message = str(json.loads(line)["message"])
    except (ValueError, KeyError, TypeError):
        return ""
    return f" ({message.partition(': ')[2]})" if ": " in message else ""


def _with_retries(sources: tuple[str, ...]) -> list[str]:
    """A consumer kit's topics: its sources and their ``.retry`` topics."""
    return [*sources, *(retry_topic(t) for t in sources)]


async def start_group_at_end(kafka: KafkaSettings, group: str, topics: list[str]) -> None:
    """Commit the current end of every topic in ``topics``, before ``group`` first joins."""
    try:
        ends = await end_offsets(kafka, topics)
    except InfrastructureError as exc:
        raise PreflightFailed(str(exc)) from exc
    committer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await committer.start()
    try:
        committer.assign(list(ends))
        await committer.commit(dict(ends))
    finally:
        await committer.stop()
