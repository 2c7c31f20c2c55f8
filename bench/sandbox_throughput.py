"""Load-test the ML sandbox over loopback while its notifier is busy.

Starts the sandbox in its own process (``python -m peepers_sandbox``) with scripted
activity POSTing notifications to a sink served by this script, then runs aiohttp
clients in worker processes for a fixed time and prints requests per second and
latency percentiles for simple authenticated GETs.

    uv run python bench/sandbox_throughput.py --duration 15 --connections 64 --workers 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import queue
import socket
import statistics
import sys
import time
from typing import Any

import aiohttp
from aiohttp import web

SELLER_ID = 3000000001


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _load(
    base: str, paths: list[str], token: str, connections: int, duration: float
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.perf_counter() + duration
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(base, connector=connector, headers=headers) as session:

        async def worker(offset: int) -> None:
            nonlocal errors
            i = offset
            while time.perf_counter() < deadline:
                path = paths[i % len(paths)]
                i += connections
                started = time.perf_counter()
                try:
                    async with session.get(path) as resp:
                        await resp.read()
                        statuses[resp.status] = statuses.get(resp.status, 0) + 1
                except aiohttp.ClientError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(connections)))
        elapsed = time.perf_counter() - started
    return {"latencies": latencies, "errors": errors, "statuses": statuses, "elapsed": elapsed}


def _client_process(args: tuple[str, list[str], str, int, float], out: Any) -> None:
    out.put(asyncio.run(_load(*args)))


async def _sink(port: int, counter: list[int]) -> web.AppRunner:
    async def receive(request: web.Request) -> web.Response:
        await request.read()
        counter[0] += 1
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/ml/notifications", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def _wait_ready(base: str, within_s: float) -> None:
    deadline = time.perf_counter() + within_s
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"{base}/_admin/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.perf_counter() > deadline:
                msg = "sandbox did not start"
                raise TimeoutError(msg)
            await asyncio.sleep(0.1)


async def main(opts: argparse.Namespace) -> None:
    port, sink_port = _free_port(), _free_port()
    base = f"http://127.0.0.1:{port}"
    delivered = [0]
    sink = await _sink(sink_port, delivered)
    cmd = [
        sys.executable,
        "-m",
        "peepers_sandbox",
        "--port",
        str(port),
        "--sellers",
        str(opts.sellers),
        "--items-per-seller",
        str(opts.items_per_seller),
        "--callback-url",
        f"http://127.0.0.1:{sink_port}/ml/notifications",
        "--activity-rate",
        str(opts.activity_rate),
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await _wait_ready(base, 60)
        async with aiohttp.ClientSession(base) as session:
            async with session.post("/_admin/tokens", json={"user_id": SELLER_ID}) as resp:
                token = (await resp.json())["access_token"]
            async with session.get(
                f"/users/{SELLER_ID}/items/search?limit=100",
                headers={"Authorization": f"Bearer {token}"},
            ) as resp:
                item_ids = (await resp.json())["results"]
        paths = (
            [f"/items/{i}" for i in item_ids] + ["/users/me"] * 10 + [f"/users/{SELLER_ID}"] * 10
        )

        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        per_worker = max(1, opts.connections // opts.workers)
        procs = [
            ctx.Process(
                target=_client_process, args=((base, paths, token, per_worker, opts.duration), out)
            )
            for _ in range(opts.workers)
        ]
        for p in procs:
            p.start()
        # The sink shares this loop; keep serving it while the clients run.
        results: list[dict[str, Any]] = []
        while len(results) < len(procs):
            try:
                results.append(out.get_nowait())
            except queue.Empty:
                await asyncio.sleep(0.05)
        for p in procs:
            p.join()
        async with (
            aiohttp.ClientSession(base) as session,
            session.get("/_admin/notifier") as resp,
        ):
            notifier = await resp.json()
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
        await sink.cleanup()

    latencies = sorted(lat for r in results for lat in r["latencies"])
    total = len(latencies)
    elapsed = max(r["elapsed"] for r in results)
    statuses: dict[str, int] = {}
    for r in results:
        for code, count in r["statuses"].items():
            statuses[str(code)] = statuses.get(str(code), 0) + count

    def pct(p: float) -> float:
        return latencies[min(total - 1, int(p * total))] * 1000 if total else float("nan")

    report = {
        "requests": total,
        "errors": sum(r["errors"] for r in results),
        "statuses": statuses,
        "seconds": round(elapsed, 2),
        "req_per_s": round(total / elapsed, 1),
        "latency_ms": {
            "p50": round(pct(0.50), 2),
            "p90": round(pct(0.90), 2),
            "p99": round(pct(0.99), 2),
            "max": round(latencies[-1] * 1000, 2) if total else None,
            "mean": round(statistics.fmean(latencies) * 1000, 2) if total else None,
        },
        "notifier": notifier,
        "notifications_received_by_sink": delivered[0],
        "config": vars(opts),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of load")
    parser.add_argument(
        "--connections", type=int, default=64, help="concurrent connections in total"
    )
    parser.add_argument("--workers", type=int, default=1, help="client processes")
    parser.add_argument(
        "--activity-rate", type=float, default=200.0, help="marketplace changes per second"
    )
    parser.add_argument("--sellers", type=int, default=3)
    parser.add_argument("--items-per-seller", type=int, default=2000)
    asyncio.run(main(parser.parse_args()))
