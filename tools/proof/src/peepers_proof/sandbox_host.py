"""The ML sandbox as a process of its own, with a port of state for the proof's checks.

``python -m peepers_proof.sandbox_host --config sandbox.json --state-port P``.

The sandbox is the truth the checks compare Peepers against; what it holds for a seller
comes from its admin API (``GET /_admin/sellers/{id}/state``). This process serves
beside it, on a second port, what that API has no route for:

- ``GET /acked``: the ids of the notifications whose delivery ingest acknowledged (200
  within the deadline), from the notifier's attempt log;
- ``POST /expire-tokens``: expire every access token now (ML's 6-hour expiry for every
  seller at once); refresh tokens stay valid.

The huge seller's extra items are made here, in-process, before the notifier is on: a
100,000-item catalog over the admin API would take longer than the rest of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from peepers_sandbox.app import run_sandbox
from peepers_sandbox.config import SandboxConfig
from peepers_sandbox.state import SandboxState

state_key = web.AppKey("state_key", SandboxState)


async def _acked(request: web.Request) -> web.Response:
    log = request.app[state_key].notifier.attempt_log
    acked = sorted({str(a["notification_id"]) for a in log if a["ok"]})
    return web.json_response({"acked": acked, "attempts": len(log)})


async def _expire_tokens(request: web.Request) -> web.Response:
    oauth = request.app[state_key].oauth
    expired = sum(oauth.expire(token) for token in list(oauth.tokens))
    return web.json_response({"expired": expired})


def state_app(state: SandboxState) -> web.Application:
    app = web.Application()
    app[state_key] = state
    app.router.add_get("/acked", _acked)
    app.router.add_post("/expire-tokens", _expire_tokens)
    return app


async def serve(config: SandboxConfig, state_port: int, huge_seller: int | None, huge: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with run_sandbox(config) as sandbox:
        market = sandbox.state.market
        if huge_seller is not None:
            for _ in range(huge - len(market.items_by_seller[huge_seller])):
                market.new_item(huge_seller)
        runner = web.AppRunner(state_app(sandbox.state), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, config.host, state_port).start()
            print(f"ML sandbox listening on {sandbox.url}", flush=True)
            await stop.wait()
        finally:
            await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="peepers_proof.sandbox_host", description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="a SandboxConfig as JSON")
    parser.add_argument("--state-port", type=int, required=True)
    parser.add_argument("--huge-seller", type=int, default=None)
    parser.add_argument("--huge-items", type=int, default=0)
    args = parser.parse_args(argv)
    config = SandboxConfig.model_validate_json(args.config.read_text())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config, args.state_port, args.huge_seller, args.huge_items))


if __name__ == "__main__":
    main()
