"""The children: each in its own session, logging to a file, stopped in reverse order.

A child runs in a new session, so a Ctrl-C at the terminal reaches only the
orchestrator, which then stops the children one by one, newest first (the catalog
worker before the auth service it gets tokens from, the sandbox last).

Children never outlive the orchestrator, however it ends. Each is started through
`peepers_devstack.child`, which asks the kernel for SIGTERM when its parent dies
(``prctl(PR_SET_PDEATHSIG)``) and then execs the child's command, so a SIGKILL of the
orchestrator (or a crash) stops them too, within the seconds their own shutdown takes.
Their pids are also kept in a file, which a run killed outright leaves behind: the next
run stops any leftover named there before it starts anything (a child that ignored the
signal).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from peepers_devstack.child import bound
from peepers_devstack.errors import ChildFailed
from peepers_devstack.plan import STOP_TIMEOUT_S, ChildSpec

Probe = Callable[[], Awaitable[bool]]


@dataclass
class Child:
    spec: ChildSpec
    log: Path
    process: asyncio.subprocess.Process

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def failed(self, reason: str) -> ChildFailed:
        return ChildFailed(self.name, reason, self.log, self.tail())


@dataclass
class Supervisor:
    log_dir: Path
    work_dir: Path
    base_env: dict[str, str]
    stop_timeout_s: float = STOP_TIMEOUT_S
    children: list[Child] = field(default_factory=list)

    @property
    def pid_file(self) -> Path:
        return self.work_dir / "children.pids"

    async def start(self, spec: ChildSpec) -> Child:
        child = await self._spawn(spec, "wb")
        self.children.append(child)
        self._write_pids()
        return child

    def exited(self) -> list[Child]:
        return [child for child in self.children if child.process.returncode is not None]

    async def restart(self, child: Child) -> Child:
        """Start ``child``'s command again, in its place (the stop order is unchanged).

        Its log goes on in the same file, after the lines that tell how it ended.
        """
        _signal_group(child.pid, signal.SIGKILL)  # anything it started that outlived it
        fresh = await self._spawn(child.spec, "ab")
        self.children[self.children.index(child)] = fresh
        self._write_pids()
        return fresh

    async def _spawn(self, spec: ChildSpec, mode: Literal["wb", "ab"]) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{spec.name}.log"
        with log.open(mode) as out:
            process = await asyncio.create_subprocess_exec(
                # Through the launcher that binds the child to our life.
                *bound(spec.argv),
                env={**self.base_env, **spec.env},
                # The catalog worker's Faust keeps a data directory in its cwd.
                cwd=self.work_dir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        return Child(spec, log, process)

    def check(self) -> None:
        """Raise if a child has exited: nothing here is meant to stop on its own."""
        for child in self.exited():
            reason = f"exited with code {child.process.returncode}"
            raise child.failed(reason)

    async def wait_ready(self, child: Child, probe: Probe, *, timeout_s: float) -> float:
        """Poll ``probe`` until it answers true; returns the seconds it took.

        Only ``child`` exiting fails the wait: another child that dies meanwhile is its
        caller's to handle (a live run starts it again; a worker killed while another
        was coming back ended the whole run).
        """
        started = time.monotonic()
        while True:
            if child.process.returncode is not None:
                reason = f"exited with code {child.process.returncode}"
                raise child.failed(reason)
            if await probe():
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                reason = f"did not become ready within {timeout_s:.0f} s"
                raise child.failed(reason)
            await asyncio.sleep(0.2)

    async def stop_all(self, report: Callable[[str], None]) -> None:
        for child in reversed(self.children):
            await self._stop(child, report)
        self.children.clear()
        self.pid_file.unlink(missing_ok=True)

    async def kill_all(self) -> None:
        """A second interrupt: no more waiting."""
        for child in self.children:
            _signal_group(child.pid, signal.SIGKILL)

    async def _stop(self, child: Child, report: Callable[[str], None]) -> None:
        process = child.process
        if process.returncode is None:
            started = time.monotonic()
            _signal_group(child.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self.stop_timeout_s)
                took = time.monotonic() - started
                code = process.returncode
                # Neither 0 nor ended by the SIGTERM itself (a child without a handler, as
                # the mail sink; 143, as a JVM such as the proof's Kafka exits on it): its
                # stop did not finish (70: it overstayed and ended itself).
                clean = code in (0, -signal.SIGTERM, 128 + signal.SIGTERM)
                how = "" if clean else f" with exit code {code}, see {child.log}"
                report(f"stopped {child.name} (pid {child.pid}) in {took:.1f} s{how}")
            except TimeoutError:
                _signal_group(child.pid, signal.SIGKILL)
                await process.wait()
                waited = f"{self.stop_timeout_s:.0f} s"
                report(
                    f"killed {child.name} (pid {child.pid}): still running {waited} after SIGTERM"
                )
        else:
            report(f"{child.name} (pid {child.pid}) had already exited ({process.returncode})")
        # Anything the child itself started shares its process group.
        _signal_group(child.pid, signal.SIGKILL)

    def _write_pids(self) -> None:
        self.pid_file.write_text("".join(f"{c.pid} {c.name}\n" for c in self.children))

    async def stop_leftovers(self, report: Callable[[str], None]) -> None:
        """Stop the children of a previous run that was killed before it could."""
        if not self.pid_file.exists():
            return
        for line in self.pid_file.read_text().splitlines():
            pid_text, _, name = line.partition(" ")
            pid = int(pid_text)
            if _is_ours(pid):
                report(f"stopping {name} (pid {pid}) left by a previous run")
                _signal_group(pid, signal.SIGTERM)
                for _ in range(int(self.stop_timeout_s * 10)):
                    if not _is_ours(pid):
                        break
                    await asyncio.sleep(0.1)
                _signal_group(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # The child leads its own session and process group (start_new_session), so its
    # pgid is its pid, even after it has exited while others of its group live on.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _is_ours(pid: int) -> bool:
    """A live process (not a zombie) whose command line is one of our children's."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and b"peepers_" in cmdline
