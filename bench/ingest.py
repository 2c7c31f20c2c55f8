"""Benchmark ingest against a bare aiohttp server, in the same run, over loopback.

For each server (the bare one that only answers 200, then the real ingest publishing to the
local Kafka with acks=all, dedup and rate limit in the local Redis):

1. fixed rates (open loop, default 1,000 req/s for 10 s): a Python generator sends each
   request at its scheduled time on keep-alive connections and measures latency from the
   scheduled time (no coordinated omission); every body is a distinct notification;
2. saturation: ``wrk`` (Debian's package) with a Lua script that makes every request a
   distinct notification, for a fixed time, at 32, 128 and 256 connections
   (``--connections``); a server's saturation throughput is the best of them.

Prints a Markdown table. Needs the stack (``scripts/stack up``; source ``.stack/env``)::

    uv run python -m bench.ingest --rates 500,1000,2000 --duration 10 --saturation-s 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peepers_common.settings import KafkaSettings
from peepers_common.topic_admin import delete_topics_containing, ensure_topics
from peepers_common.topics import TOPICS, TopicSpec, notification_topic

APP_ID = 2069392825111111
PATH = "/webhooks/mercadolibre"
HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def body(run: str, n: int) -> bytes:
    return json.dumps(
        {
            "_id": f"bench-{run}-{n}",
            "resource": f"/items/MLB{n % 5000}",
            "user_id": 123456789,
            "topic": "items",
            "application_id": APP_ID,
            "attempts": 1,
            "sent": "2026-01-21T13:44:33.006Z",
            "received": "2026-01-21T13:44:32.984Z",
        },
        separators=(",", ":"),
    ).encode()


# ---------------------------------------------------------------- fixed-rate generator
@dataclass
class RateResult:
    rate: int
    sent: int
    ok: int
    errors: int
    achieved: float
    latencies_ms: list[float]

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self, payload: bytes) -> int:
        self.writer.write(
            b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: "
            + str(len(payload)).encode()
            + b"\r\n\r\n"
            + payload
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        match = re.search(rb"(?i)content-length:\s*(\d+)", head)
        if match:
            await self.reader.readexactly(int(match[1]))
        return status


async def fixed_rate(
    port: int, rate: int, duration_s: float, run: str, max_conns: int = 256
) -> RateResult:
    idle: list[_Connection] = []
    opened = 0
    latencies: list[float] = []
    ok = errors = 0
    tasks: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    total = int(rate * duration_s)
    conn_slots = asyncio.Semaphore(max_conns)

    async def one(n: int, scheduled: float) -> None:
        nonlocal ok, errors, opened
        async with conn_slots:
            if idle:
                conn = idle.pop()
            else:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                opened += 1
                conn = _Connection(reader, writer)
            try:
                status = await conn.request(body(run, n))
            except (OSError, asyncio.IncompleteReadError):
                errors += 1
                return
            latencies.append((loop.time() - scheduled) * 1000)
            if status == 200:
                ok += 1
            else:
                errors += 1
            idle.append(conn)

    start = loop.time() + 0.05
    for n in range(total):
        scheduled = start + n / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(n, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)
    elapsed = loop.time() - start
    for conn in idle:
        conn.writer.close()
    return RateResult(rate, total, ok, errors, total / elapsed, latencies)


# ---------------------------------------------------------------- saturation (wrk)
# wrk's Lua: every request a distinct notification (a random part, so runs never collide).
WRK_BODY = (
    '{"_id":"bench-%s-%d-%d","resource":"/items/MLB%d","user_id":123456789,'
    '"topic":"items","application_id":APPID,"attempts":1,'
    '"sent":"2026-01-21T13:44:33.006Z","received":"2026-01-21T13:44:32.984Z"}'
)
WRK_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  local body = string.format('BODY',
    RUN, math.random(1, 1000000000), counter, counter % 5000)
  return wrk.format("POST", "PATH", {["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d\\n", summary.requests,
    summary.duration, e.status + e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
""".replace("BODY", WRK_BODY)


def saturate(
    port: int, seconds: int, connections: int, run: str, workdir: Path
) -> dict[str, float]:
    script = workdir / f"ingest-{run}.lua"
    script.write_text(
        WRK_SCRIPT.replace("RUN", f'"{run}"').replace("APPID", str(APP_ID)).replace("PATH", PATH)
    )
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk is missing: apt-get install -y wrk")
    out = subprocess.run(  # noqa: S603
        [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}{PATH}",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", out)
    if match is None:
        sys.exit(f"could not read wrk's output:\n{out}")
    requests, duration_us, errors, p50, p99, p999, _max, _mean = (int(g) for g in match.groups())
    return {
        "rps": requests / (duration_us / 1e6),
        "requests": requests,
        "errors": errors,
        "p50_ms": p50 / 1000,
        "p99_ms": p99 / 1000,
        "p999_ms": p999 / 1000,
    }


# ---------------------------------------------------------------- servers
def wait_port(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def start_bare(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, str(HERE / "ingest_bare.py"), str(port)])  # noqa: S603
    wait_port(port)
    return process


def start_ingest(port: int, prefix: str, spool: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "INGEST_HTTP_HOST": "127.0.0.1",
        "INGEST_HTTP_PORT": str(port),
        "INGEST_ALLOWED_CIDRS": '["127.0.0.0/8"]',
        "INGEST_APPLICATION_ID": str(APP_ID),
        "INGEST_SPOOL_DIR": str(spool),
        "INGEST_TOPIC_PREFIX": prefix,
        "INGEST_LOG_LEVEL": "WARNING",
        # The limiter stays on (it is part of the cost), set above the offered load.
        "INGEST_RATE_LIMIT_PER_IP_PER_S": "1000000",
        "INGEST_RATE_LIMIT_TOTAL_PER_S": "1000000",
        # Long enough for the run; the marks of hundreds of thousands of ids then go.
        "INGEST_DEDUP_TTL_S": "120",
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "peepers_ingest"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    wait_port(port)
    return process


def ingest_outcomes(port: int) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
        text = response.read().decode()
    found = {}
    for outcome in ("published", "spooled", "duplicate"):
        match = re.search(
            rf'peepers_ingest_notifications_total{{outcome="{outcome}"}} ([0-9.e+]+)', text
        )
        found[outcome] = float(match[1]) if match else 0.0
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a live process has used, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    server: subprocess.Popen[bytes],
    port: int,
    rates: list[int],
    duration_s: float,
    sat_s: int,
    conns: list[int],
    workdir: Path,
) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    # Warm up (connections, JIT-free Python caches, Kafka metadata).
    await fixed_rate(port, 200, 1.0, run + "w")
    results: dict[str, Any] = {"rates": []}
    for rate in rates:
        results["rates"].append(await fixed_rate(port, rate, duration_s, f"{run}r{rate}"))
    results["saturation"] = []
    for connections in conns:
        cpu_before = cpu_seconds(server.pid)
        saturation = saturate(port, sat_s, connections, f"{run}c{connections}", workdir)
        # The server's own CPU per answered request: steadier than throughput on a
        # shared machine, and what the throughput ratio comes down to.
        used = cpu_seconds(server.pid) - cpu_before
        saturation["cpu_us"] = used / saturation["requests"] * 1e6
        saturation["connections"] = connections
        results["saturation"].append(saturation)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="1000", help="comma-separated fixed rates, req/s")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per fixed rate")
    parser.add_argument("--saturation-s", type=int, default=10)
    # Little's law: requests in flight = throughput x latency. Ingest answers after
    # Kafka's ack (a few ms), so it needs more connections than a server that answers at
    # once before its CPU is the limit: at 32 it waits on acks with CPU to spare, at 128
    # its CPU still idles 5-8% of the time, at 256 it is saturated, and the webhooks of
    # one event-loop turn share more of each batch's Redis and Kafka round trips. The
    # bare server peaks at 32. Both are measured at every count; each keeps its best.
    parser.add_argument(
        "--connections", default="32,128,256", help="comma-separated wrk connection counts"
    )
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    connection_counts = [int(c) for c in args.connections.split(",")]

    kafka = KafkaSettings(
        bootstrap_servers=os.environ.get("PEEPERS_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    )
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    names = [notification_topic("items"), notification_topic("unknown")]
    asyncio.run(
        ensure_topics(
            kafka,
            [
                TopicSpec(prefix + n, TOPICS[n].partitions, TOPICS[n].description, TOPICS[n].config)
                for n in names
            ],
        )
    )
    table: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        bare_port, ingest_port = _free_port(), _free_port()
        bare = start_bare(bare_port)
        try:
            table["bare aiohttp"] = asyncio.run(
                measure(
                    bare,
                    bare_port,
                    rates,
                    args.duration,
                    args.saturation_s,
                    connection_counts,
                    workdir,
                )
            )
        finally:
            bare.terminate()
            bare.wait()
        ingest = start_ingest(ingest_port, prefix, workdir / "spool", workdir / "ingest.log")
        try:
            time.sleep(1.0)  # Kafka connect at startup
            table["ingest"] = asyncio.run(
                measure(
                    ingest,
                    ingest_port,
                    rates,
                    args.duration,
                    args.saturation_s,
                    connection_counts,
                    workdir,
                )
            )
            outcomes = ingest_outcomes(ingest_port)
        finally:
            ingest.terminate()
            ingest.wait()
            log = (workdir / "ingest.log").read_text()
            if "Traceback" in log:
                print(log[-4000:], file=sys.stderr)
            # Hundreds of thousands of records a run: left behind, they slow the broker.
            asyncio.run(delete_topics_containing(kafka, prefix))

    print("| server | load | sent | achieved req/s | non-200 | p50 ms | p99 ms | p99.9 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for name, result in table.items():
        for r in result["rates"]:
            print(
                f"| {name} | fixed {r.rate}/s for {args.duration:g} s | {r.sent} "
                f"| {r.achieved:,.0f} | {r.errors} | {r.pct(0.5):.2f} | {r.pct(0.99):.2f} "
                f"| {r.pct(0.999):.2f} |"
            )
        for s in result["saturation"]:
            print(
                f"| {name} | wrk saturation, {s['connections']} conns, {args.saturation_s} s "
                f"| {s['requests']:,} | **{s['rps']:,.0f}** | {s['errors']} | {s['p50_ms']:.2f} "
                f"| {s['p99_ms']:.2f} | {s['p999_ms']:.2f} |"
            )
    best = {
        name: max(result["saturation"], key=lambda s: s["rps"]) for name, result in table.items()
    }
    ratio = best["ingest"]["rps"] / best["bare aiohttp"]["rps"]
    print(f"\nsaturation ratio ingest / bare (best of each): {ratio:.1%}")
    for name, result in table.items():
        for s in result["saturation"]:
            print(f"{name}, {s['connections']} conns: {s['cpu_us']:.0f} us of CPU per request")
    print(f"ingest outcomes: {json.dumps(outcomes)}")


if __name__ == "__main__":
    main()
