"""Faults on a schedule: one at a time, then two at once.

Each fault injects, holds for ``hold_s`` while the load goes on, and heals (a killed
process is started again and waited on until ready). The shared Kafka broker is never
touched: ``kill:kafka`` exists only when the run has a broker of its own (``--own-broker``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from peepers_proof.stack import Stack

# Kinds of fault; "kill:<child>" is one more per service process.
SANDBOX_FAULTS: dict[str, dict[str, Any]] = {
    "ml-5xx": {"error_rate": 0.3},
    "ml-429": {"error_rate": 0.3, "error_statuses": [429]},
    "ml-slow": {"latency_ms": 800, "latency_jitter_ms": 400},
}
OTHER_FAULTS = ("redis-flushall", "redis-restart", "smtp-stop", "token-expiry")
NOT_KILLED = ("redis", "mail", "sandbox")


@dataclass(frozen=True)
class Fault:
    name: str

    async def run(self, stack: Stack, hold_s: float) -> None:
        await _FAULTS[self.name.partition(":")[0]](stack, self.name, hold_s)


async def _kill(stack: Stack, name: str, hold_s: float) -> None:
    child = name.partition(":")[2]
    await stack.kill(child)
    await asyncio.sleep(hold_s)  # the pause before a restart, as an orchestrator's backoff
    await stack.restart_child(child)


async def _redis_flushall(stack: Stack, name: str, hold_s: float) -> None:
    client = stack.redis()
    try:
        await client.flushall()
    finally:
        await client.aclose()
    await asyncio.sleep(hold_s)


async def _redis_restart(stack: Stack, name: str, hold_s: float) -> None:
    await stack.kill("redis")
    await asyncio.sleep(hold_s)
    await stack.restart_child("redis")


async def _smtp_stop(stack: Stack, name: str, hold_s: float) -> None:
    await stack.stop_child("mail")
    await asyncio.sleep(hold_s)
    await stack.restart_child("mail")


async def _token_expiry(stack: Stack, name: str, hold_s: float) -> None:
    async with stack.session.post(f"{stack.plan.state_url}/expire-tokens") as response:
        response.raise_for_status()
    await asyncio.sleep(hold_s)


async def _sandbox(stack: Stack, name: str, hold_s: float) -> None:
    base = stack.plan.sandbox_config().faults
    await stack.admin.set_faults(**{**base.model_dump(), **SANDBOX_FAULTS[name]})
    try:
        await asyncio.sleep(hold_s)
    finally:
        # Back to the run's own setting (its ML latency), not to none.
        await stack.admin.set_faults(**base.model_dump())


_FAULTS: dict[str, Callable[[Stack, str, float], Awaitable[None]]] = {
    "kill": _kill,
    "redis-flushall": _redis_flushall,
    "redis-restart": _redis_restart,
    "smtp-stop": _smtp_stop,
    "token-expiry": _token_expiry,
    **dict.fromkeys(SANDBOX_FAULTS, _sandbox),
}


def all_faults(children: list[str]) -> list[str]:
    kills = [f"kill:{name}" for name in children if name not in NOT_KILLED]
    return [*kills, *OTHER_FAULTS, *SANDBOX_FAULTS]


def schedule(names: list[str], *, overlapping: bool) -> list[list[Fault]]:
    """Each fault alone, then (``overlapping``) pairs of them at once, in order.

    A pair never holds two faults on the same child or two sandbox fault settings (the
    sandbox has one fault configuration at a time).
    """
    steps = [[Fault(n)] for n in names]
    if overlapping:
        alone = [n for n in names if n not in SANDBOX_FAULTS]
        sandbox = [n for n in names if n in SANDBOX_FAULTS]
        for i, name in enumerate(alone):
            other = sandbox[i % len(sandbox)] if sandbox and i % 2 == 0 else None
            if other is None and i + 1 < len(alone):
                other = alone[(i + len(alone) // 2) % len(alone)]
            if other is not None and other != name:
                steps.append([Fault(name), Fault(other)])
    return steps


def validate(names: list[str], children: list[str]) -> list[str]:
    """The names that are no fault of this run (empty when all are known)."""
    known = set(all_faults(children))
    return [n for n in names if n not in known]


async def run_schedule(
    stack: Stack, steps: list[list[Fault]], *, hold_s: float, gap_s: float
) -> list[str]:
    """Inject every step; returns a line per step (what, how long until healed)."""
    done: list[str] = []
    for i, step in enumerate(steps, 1):
        what = " + ".join(f.name for f in step)
        stack.say(f"fault {i}/{len(steps)}: {what}")
        started = time.monotonic()
        await asyncio.gather(*(fault.run(stack, hold_s) for fault in step))
        done.append(f"{what} ({time.monotonic() - started:.1f} s)")
        await asyncio.sleep(gap_s)
    return done
