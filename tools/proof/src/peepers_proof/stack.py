"""The running stack: every child started, watched, killed and restarted.

Through devstack's `Supervisor`: its own session per child, SIGTERM then SIGKILL, newest
first, a pid file for the leftovers of a run that was itself killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from peepers_common.settings import KafkaSettings
from peepers_common.topic_admin import delete_topics_containing, ensure_topics
from peepers_common.topics import TOPICS, TopicSpec, dlq_topic, retry_topic
from peepers_devstack.errors import StepFailed
from peepers_devstack.plan import LOOPBACK, ChildSpec
from peepers_devstack.processes import Child, Probe, Supervisor
from peepers_devstack.state import drop_data_dirs
from peepers_devstack.watch import answers_200
from peepers_proof.broker import STARTED_MARKER
from peepers_proof.plan import WORKER_KINDS, ProofPlan, settings_prefix
from peepers_sandbox.client import SandboxAdmin

Say = Callable[[str], None]


def registry_topics(prefix: str) -> list[TopicSpec]:
    """Every registry topic, with a retry and a dead-letter topic for each, behind ``prefix``."""
    specs: dict[str, TopicSpec] = {}
    for spec in TOPICS.values():
        for name in (spec.name, retry_topic(spec.name), dlq_topic(spec.name)):
            like = TOPICS.get(name, spec)
            specs[name] = TopicSpec(prefix + name, like.partitions, like.description, like.config)
    return list(specs.values())


@dataclass
class Stack:
    plan: ProofPlan
    kafka: KafkaSettings
    supervisor: Supervisor
    session: aiohttp.ClientSession
    say: Say
    specs: dict[str, ChildSpec] = field(default_factory=dict)

    @property
    def admin(self) -> SandboxAdmin:
        return SandboxAdmin(self.plan.devstack.sandbox_url, self.session)

    def redis(self) -> aioredis.Redis:
        """The run's Redis as its default (admin) user."""
        return aioredis.Redis.from_url(self.plan.redis_url)

    def child(self, name: str) -> Child:
        for child in self.supervisor.children:
            if child.name == name:
                return child
        msg = f"no running child named {name}"
        raise KeyError(msg)

    def names(self) -> list[str]:
        return [spec.name for spec in self.plan.children()]

    async def start(self) -> None:
        await self.supervisor.stop_leftovers(self.say)
        for spec in self.plan.children():
            self.specs[spec.name] = spec
        broker = self.plan.broker
        if broker is not None:
            await asyncio.to_thread(broker.format)
            await self.start_child("kafka")
        await ensure_topics(self.kafka, registry_topics(self.plan.prefix))
        self.say(f"topics behind {self.plan.prefix} created")
        workers = [n for n in self.specs if n.partition("-")[0] in WORKER_KINDS]
        for name in self.specs:
            if name not in workers and name != "kafka":  # in order: each needs the ones before
                await self.start_child(name)
        # The workers need only those, not each other: started together.
        await asyncio.gather(*(self.start_child(name) for name in workers))

    async def start_child(self, name: str) -> None:
        spec = self.specs[name]
        child = await self._launch(name)
        took = await self.supervisor.wait_ready(
            child, self._probe(spec), timeout_s=self.plan.options.ready_timeout_s
        )
        self.say(f"{name} ready in {took:.1f} s (pid {child.pid})")

    async def restart_child(self, name: str) -> None:
        """Start a stopped child again, as an orchestrator does after a kill.

        A start that exits (a dependency still down: auth while the run's broker is
        restarting) is retried every 2 s until the ready timeout.
        """
        probe = self._probe(self.specs[name])
        started = time.monotonic()
        deadline = started + self.plan.options.ready_timeout_s
        while True:
            child = await self._launch(name)
            while child.process.returncode is None and not await probe():
                if time.monotonic() > deadline:
                    reason = f"did not become ready within {self.plan.options.ready_timeout_s} s"
                    raise child.failed(reason)
                await asyncio.sleep(0.2)
            if child.process.returncode is None:
                self.say(f"{name} ready in {time.monotonic() - started:.1f} s (pid {child.pid})")
                return
            self.supervisor.children.remove(child)
            reason = f"exited with code {child.process.returncode} while starting"
            if time.monotonic() > deadline:
                raise child.failed(reason)
            self.say(f"{name} {reason}; started again in 2 s")
            await asyncio.sleep(2)

    async def _launch(self, name: str) -> Child:
        # A restarted child's log must not overwrite the one of the process it replaces.
        log = self.supervisor.log_dir / f"{name}.log"
        if log.exists():
            earlier = len(list(self.supervisor.log_dir.glob(f"{name}.*.log")))
            log.rename(log.with_name(f"{name}.{earlier + 1}.log"))
        return await self.supervisor.start(self.specs[name])

    def _probe(self, spec: ChildSpec) -> Probe:
        kind = spec.name.split("-")[0]
        base = self.plan.devstack
        if kind == "redis":
            return self._redis_up
        if kind == "mail":
            return self._smtp_up
        if kind == "kafka":
            log = self.supervisor.log_dir / "kafka.log"

            async def started() -> bool:
                return STARTED_MARKER in await asyncio.to_thread(log.read_bytes)

            return started
        urls = {
            "sandbox": f"{base.sandbox_url}/_admin/health",
            "auth": f"{base.auth_url}/readyz",
            "ingest": f"{base.ingest_url}/readyz",
        }
        url = urls.get(kind)
        if url is None:
            port = spec.env[f"{settings_prefix(kind)}_HTTP_PORT"]
            url = f"http://{LOOPBACK}:{port}/readyz"

        async def ready() -> bool:
            return await answers_200(self.session, url)

        return ready

    async def _redis_up(self) -> bool:
        client = self.redis()
        try:
            return bool(await client.ping())
        except RedisError:
            return False
        finally:
            await client.aclose()

    async def _smtp_up(self) -> bool:
        try:
            _, writer = await asyncio.open_connection(LOOPBACK, self.plan.ports.smtp)
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def kill(self, name: str) -> None:
        """SIGKILL the child's process group, and forget it until `restart_child`."""
        child = self.child(name)
        # Forgotten first: `Supervisor.check` (the progress loop) must not see it exit.
        self.supervisor.children.remove(child)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        await child.process.wait()

    async def stop_child(self, name: str) -> None:
        """A graceful stop (SIGTERM, as the supervisor does), forgotten until `restart_child`."""
        child = self.child(name)
        self.supervisor.children.remove(child)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
        await child.process.wait()

    async def connect_sellers(self, sellers: Sequence[int]) -> None:
        """``sellers`` log in through auth's PKCE flow, as in a browser (devstack's way)."""
        base = self.plan.devstack
        started = time.monotonic()
        for seller in sellers:
            await self.admin.patch_api(auto_approve_user_id=seller)
            jar = aiohttp.CookieJar(unsafe=True)
            async with (
                aiohttp.ClientSession(cookie_jar=jar, timeout=self.session.timeout) as browser,
                browser.get(f"{base.auth_url}/auth/login", params={"site": "MLB"}) as page,
            ):
                body = await page.text()
                landed = urlsplit(str(page.url)).path
                if page.status != 200 or landed != "/auth/dashboard" or str(seller) not in body:
                    msg = f"the login of seller {seller} failed (HTTP {page.status} at {landed})"
                    raise StepFailed(msg)
        took = time.monotonic() - started
        self.say(f"sellers connected through auth's login: {len(sellers)} in {took:.1f} s")

    async def stop(self) -> None:
        # In reverse start order, restarted children included: the services before the
        # broker and Redis they need to shut down cleanly.
        order = {name: i for i, name in enumerate(self.specs)}
        self.supervisor.children.sort(key=lambda child: order.get(child.name, len(order)))
        await self.supervisor.stop_all(self.say)
        # The workers' Faust data directories (in the shared working directory).
        drop_data_dirs(self.supervisor.work_dir, self.plan.scope)
        broker = self.plan.broker
        if broker is not None:
            # The run's broker is stopped with the rest: its topics go with its storage.
            shutil.rmtree(broker.directory, ignore_errors=True)
            self.say("removed the run's broker and its topics")
            return
        deleted = await delete_topics_containing(self.kafka, self.plan.prefix)
        self.say(f"deleted the run's {len(deleted)} topics")
