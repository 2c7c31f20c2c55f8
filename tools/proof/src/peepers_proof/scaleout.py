"""``python -m peepers_proof.scaleout``: each consumer's throughput with 1, 2 and 4 processes.

One proof run per process count (``python -m peepers_proof --drain``), with every ML
call slowed to ``--ml-latency-ms`` (50 by default, so that ML round trips dominate as in
production) and no faults: while every worker is stopped, the sandbox's activity builds a
backlog on Kafka; then all the workers start at once and each consumer group drains it,
rebalancing as its processes join. A consumer's rate is the records it drained over the
time from its group's first commit to the end of its topics. Each run's checks (nothing
lost, nothing doubled, the mirrors equal ML) still apply. With one process, a plain
aiokafka loop then reads the catalog's backlog again doing only its fetches
(`peepers_proof.baseline`): the worker's rate against it is what Faust and the kit cost.

Any other argument goes to ``python -m peepers_proof`` for every run, e.g.::

    uv run python -m peepers_proof.scaleout --processes 1,2,4 --sellers 10 --items 100
        --huge-items 100 --orders 10 --rate 40 --drain 60
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Sequence

from peepers_proof.__main__ import parse, report, say
from peepers_proof.plan import WORKER_KINDS
from peepers_proof.runner import BASELINE, CPU, READY, Result, Runner, drain_figure

TARGET = 3.5  # issue 18: 4 processes against 1


def _rates(results: dict[int, Result], kind: str, measure: str = "") -> list[str]:
    """One consumer's cells: its rate per count, each with its ratio to the first count."""
    counts = sorted(results)
    cells = []
    base: float | None = None
    for n in counts:
        records, rate = results[n].figures.get(drain_figure(kind, measure), (0, None))
        if n == counts[0]:
            base = rate
        ratio = f" ({rate / base:.2f}x)" if rate and base and n != counts[0] else ""
        cpu = results[n].figures.get(drain_figure(kind, CPU)) if not measure else None
        busy = f", CPU {cpu}%" if cpu is not None else ""
        cells.append(f"{rate} of {records}{ratio}{busy}" if rate else f"- of {records}")
    return cells


def table(results: dict[int, Result]) -> str:
    counts = sorted(results)
    header = "| consumer | " + " | ".join(f"{n} proc." for n in counts) + " |"
    lines = ["", "== scale-out (records/s; ratio to 1 process; the machine's CPU busy)"]
    lines += [header, "|---|" + "---|" * len(counts)]
    lines += [f"| {kind} | " + " | ".join(_rates(results, kind)) + " |" for kind in WORKER_KINDS]
    lines += ["", f"== the same, {READY} (records left then, and their rate)"]
    lines += [header, "|---|" + "---|" * len(counts)]
    lines += [
        f"| {kind} | " + " | ".join(_rates(results, kind, READY)) + " |" for kind in WORKER_KINDS
    ]
    checks = ", ".join(f"{n}: {'PASSED' if results[n].ok else 'FAILED'}" for n in counts)
    lines.append(f"checks (lost, doubled, converged) per count: {checks}")
    for n in counts:
        plain = results[n].figures.get(BASELINE)
        if plain is not None:
            lines.append(f"plain aiokafka loop, the catalog's fetches: {plain[1]} of {plain[0]}")
    lines.append(f"target: {max(counts)} processes >= {TARGET}x one")
    return "\n".join(lines)


async def run(counts: list[int], rest: list[str]) -> int:
    results: dict[int, Result] = {}
    for n in counts:
        options, _ = parse([*rest, "--workers", str(n), "--faults", "none"])
        if not options.drain_s:
            options = dataclasses.replace(options, drain_s=60.0)
        if "--ml-latency-ms" not in rest:
            options = dataclasses.replace(
                options, stack=dataclasses.replace(options.stack, ml_latency_ms=50)
            )
        say(f"== {n} process(es) of each worker")
        results[n] = await Runner(options, say).run()
        print(report(results[n]), flush=True)
    print(table(results), flush=True)
    return 0 if all(r.ok for r in results.values()) else 1


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="peepers_proof.scaleout", description=__doc__)
    parser.add_argument("--processes", default="1,2,4", help="process counts (1,2,4)")
    args, rest = parser.parse_known_args(argv)
    counts = [int(n) for n in args.processes.split(",")]
    sys.exit(asyncio.run(run(counts, rest)))


if __name__ == "__main__":
    main()
