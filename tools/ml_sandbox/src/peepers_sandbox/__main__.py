"""``python -m peepers_sandbox``: serve the sandbox until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Sequence

from peepers_sandbox.app import run_sandbox
from peepers_sandbox.config import SandboxConfig

log = logging.getLogger("peepers_sandbox")


def build_config(argv: Sequence[str] | None = None) -> SandboxConfig:
    parser = argparse.ArgumentParser(
        prog="ml-sandbox", description="A local Mercado Livre over HTTP."
    )
    parser.add_argument("--config", help="JSON file with a full SandboxConfig; flags override it")
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--sellers", type=int, default=None)
    parser.add_argument("--items-per-seller", type=int, default=None)
    parser.add_argument("--orders-per-seller", type=int, default=None)
    parser.add_argument(
        "--id-offset", type=int, default=None, help="added to every order, claim, ... id"
    )
    parser.add_argument("--callback-url", default=None, help="callback URL of the default app")
    parser.add_argument(
        "--redirect-uri",
        action="append",
        default=None,
        help="a redirect URI of the default app (repeat for several; replaces the demo one)",
    )
    parser.add_argument("--source-address", default=None, help="local address the notifier binds")
    parser.add_argument("--activity-rate", type=float, default=None, help="changes per second")
    parser.add_argument("--activity-mix", default=None, help='JSON weights, e.g. {"new_order": 1}')
    parser.add_argument(
        "--token-ttl", type=int, default=None, help="access token lifetime in seconds"
    )
    parser.add_argument(
        "--time-compression", type=float, default=None, help="notifier retry speed-up"
    )
    parser.add_argument("--auto-approve", action="store_true", help="skip the consent page")
    parser.add_argument("--no-pkce", action="store_true", help="default app without PKCE")
    parser.add_argument("--access-log", action="store_true")
    args = parser.parse_args(argv)

    data: dict[str, object] = {}
    if args.config:
        with open(args.config, encoding="utf-8") as fh:
            data = json.load(fh)
    config = SandboxConfig.model_validate(data)
    if args.host is not None:
        config.host = args.host
    config.port = args.port if args.port is not None else (config.port or 8090)
    market = config.marketplace
    for name in ("seed", "id_offset", "sellers", "items_per_seller", "orders_per_seller"):
        value = getattr(args, name)
        if value is not None:
            setattr(market, name, value)
    if args.callback_url is not None:
        config.apps[0].callback_url = args.callback_url
    if args.redirect_uri:
        config.apps[0].redirect_uris = list(args.redirect_uri)
    if args.no_pkce:
        config.apps[0].pkce_required = False
    if args.source_address is not None:
        config.notifier.source_address = args.source_address
    if args.time_compression is not None:
        config.notifier.time_compression = args.time_compression
    if args.token_ttl is not None:
        config.api.access_token_ttl_s = args.token_ttl
    if args.auto_approve:
        config.api.auto_approve = True
    if args.activity_rate is not None:
        config.activity_rate = args.activity_rate
    if args.activity_mix is not None:
        config.activity_mix = json.loads(args.activity_mix)
    config.access_log = args.access_log
    return SandboxConfig.model_validate(config.model_dump())


async def serve(config: SandboxConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with run_sandbox(config) as sb:
        app = config.apps[0]
        log.info(
            "ML sandbox on %s (app %s, demo seller %s, %d items)",
            sb.url,
            app.app_id,
            sb.state.market.sellers[0] if sb.state.market.sellers else None,
            len(sb.state.market.items),
        )
        print(f"ML sandbox listening on {sb.url}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve(build_config(argv)))


if __name__ == "__main__":
    main()
