"""``python -m peepers_proof``: the whole stack under load and faults, then the checks.

Every service runs as its own process (the sandbox with many sellers, one huge; its own
Redis; auth; ingest; ``--workers`` processes each of catalog and orders; an SMTP sink),
on topics, consumer groups and a Redis server of the run's own. Faults come one at a
time, then two at once; after a quiet period the checks run. Exit status: 0 when every
check holds, 1 when one failed (what diverged is printed), 2 when the run could not
get that far. Ctrl-C (or SIGTERM) stops every child the run started, newest first.
The shared Kafka broker is never faulted; ``--own-broker`` runs one to kill. ``--drain``
measures scale-out instead of faults (``python -m peepers_proof.scaleout`` runs it for 1,
2 and 4 processes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from peepers_devstack.errors import ChildFailed, DevstackError
from peepers_proof.plan import Options
from peepers_proof.runner import Result, Runner, RunOptions
from peepers_sandbox.activity import DEFAULT_MIX

STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[proof {time.monotonic() - STARTED:7.1f} s] {message}", flush=True)


def parse(argv: Sequence[str] | None = None) -> tuple[RunOptions, Path | None]:
    parser = argparse.ArgumentParser(
        prog="peepers_proof", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add = parser.add_argument
    add("--sellers", type=int, default=20, help="sellers in the sandbox (20)")
    add("--items", type=int, default=200, help="items of each ordinary seller (200)")
    add("--huge-items", type=int, default=100_000, help="items of the huge seller (100000)")
    add("--orders", type=int, default=30, help="seeded orders per seller (30)")
    add("--workers", type=int, default=2, choices=[1, 2, 3, 4],
        help="processes each of catalog and orders (2)")  # fmt: skip
    add("--rate", type=float, default=50.0, help="sandbox changes/s, every topic (50)")
    add(
        "--ml-latency-ms",
        type=int,
        default=0,
        help="every ML call this slow, as production round trips (0; 50 for scale-out)",
    )
    add("--ml-requests-per-minute", type=int, default=60_000,
        help="Peepers' outbound ML budget, every service (60000)")  # fmt: skip
    add(
        "--enforce-ml-limit",
        action="store_true",
        help="the sandbox refuses calls over that budget (429s the limits check counts)",
    )
    add(
        "--without", default="", help="comma-separated activity kinds left out of the sandbox's mix"
    )
    add(
        "--known-failing",
        default="",
        help="comma-separated words: a check whose name holds one is reported, not failed",
    )
    add("--fairness", type=int, default=0,
        help="the other sellers synced first, N webhook->cache probes on them with no\n"
        "sync, then probes during the huge seller's sync until it is done (0: none)")  # fmt: skip
    add("--faults", default="all",
        help="comma-separated: kill:<child> (kill:kafka with --own-broker),\n"
        "redis-flushall, redis-restart, smtp-stop, token-expiry, ml-5xx, ml-429,\n"
        "ml-slow; 'all' (default) or 'none'")  # fmt: skip
    add("--no-overlap", action="store_true", help="only one fault at a time")
    add("--drain", type=float, default=0.0,
        help="scale-out instead of faults: this many seconds of activity with every\n"
        "worker stopped, then the backlog drained by all of them at once (0: off)")  # fmt: skip
    add("--own-broker", action="store_true",
        help="a Kafka broker of the run's own, killed by the fault kill:kafka\n"
        "(the shared broker is never faulted)")  # fmt: skip
    add("--hold", type=float, default=8.0, help="seconds each fault lasts (8)")
    add("--gap", type=float, default=4.0, help="seconds between faults (4)")
    add("--settle", type=float, default=10.0, help="load without faults around them (10)")
    add("--quiet", type=float, default=120.0, help="seconds the system may take to settle")
    add("--sync-timeout", type=float, default=900.0, help="seconds for the initial syncs")
    add("--work-dir", type=Path, default=Path(".cache/proof"),
        help="<run id>/ holds each run's logs, mail, spool (.cache/proof)")  # fmt: skip
    add("--json", type=Path, default=None, help="write the results here as JSON too")
    args = parser.parse_args(argv)
    without = tuple(k.strip() for k in args.without.split(",") if k.strip())
    unknown = [k for k in without if k not in DEFAULT_MIX]
    if unknown:
        parser.error(f"--without: no such activity kind: {', '.join(unknown)}")
    names = None
    if args.faults == "none":
        names = ()
    elif args.faults != "all":
        names = tuple(n.strip() for n in args.faults.split(",") if n.strip())
    return RunOptions(
        stack=Options(
            sellers=args.sellers,
            items=args.items,
            huge_items=args.huge_items,
            orders=args.orders,
            workers=args.workers,
            rate=args.rate,
            ml_latency_ms=args.ml_latency_ms,
            ml_requests_per_minute=args.ml_requests_per_minute,
            enforce_ml_limit=args.enforce_ml_limit,
            without=without,
            own_broker=args.own_broker,
        ),
        faults=names,
        fairness=args.fairness,
        drain_s=args.drain,
        known_failing=tuple(w.strip() for w in args.known_failing.split(",") if w.strip()),
        overlapping=not args.no_overlap,
        hold_s=args.hold,
        gap_s=args.gap,
        settle_s=args.settle,
        quiet_s=args.quiet,
        sync_timeout_s=args.sync_timeout,
        work_dir=args.work_dir,
    ), args.json


def report(result: Result) -> str:
    lines = ["", "== results"]
    lines += [f"  {name}: {value}" for name, value in result.figures.items()]
    lines.append(f"  faults injected ({len(result.faults)}):")
    lines += [f"    {f}" for f in result.faults]
    lines += [f"  {c.line()}" for c in result.checks]
    lines.append("PASSED" if result.ok else "FAILED")
    return "\n".join(lines)


async def run(options: RunOptions, json_path: Path | None) -> int:
    runner = Runner(options, say)
    task = asyncio.create_task(runner.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        result = await task
    except asyncio.CancelledError:
        say("interrupted: everything the run started has been stopped")
        return 130
    except ChildFailed as exc:
        say(f"error: {exc} (log {exc.log}); its last lines:\n{exc.tail}")
        return 2
    except DevstackError as exc:
        say(f"error: {exc}")
        return 2
    print(report(result), flush=True)
    if json_path is not None:
        await asyncio.to_thread(
            json_path.write_text,
            json.dumps(
                {
                    "figures": result.figures,
                    "faults": result.faults,
                    "checks": [
                        {"name": c.name, "checked": c.checked, "problems": c.problems}
                        for c in result.checks
                    ],
                },
                indent=2,
            ),
        )
    return 0 if result.ok else 1


def main(argv: Sequence[str] | None = None) -> None:
    options, json_path = parse(argv)
    sys.exit(asyncio.run(run(options, json_path)))


if __name__ == "__main__":
    main()
