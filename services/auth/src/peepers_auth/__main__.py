"""Composition root of the auth service.

``python -m peepers_auth`` serves; ``generate-key`` and ``rotate-keys`` help operators with
the token encryption keys (docs/auth.md). ``web`` runs the seller web app, a process of
its own with none of the auth process's secrets (docs/web.md).
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

from peepers_auth.adapters.changelog_store import ChangelogSellerStore
from peepers_auth.adapters.redis_store import RedisSellerStore
from peepers_auth.app import create_app
from peepers_auth.crypto import TokenCipher
from peepers_auth.settings import Settings
from peepers_auth.web.app import create_web_app
from peepers_auth.web.settings import WebSettings
from peepers_common.changelog import Changelog, RedisViewMarker
from peepers_common.error_tracking import ErrorTrackingSettings, init_error_tracking
from peepers_common.logs import configure_logging
from peepers_common.namespaces import Namespace, connect_redis
from peepers_common.topics import AUTH_SELLERS_CHANGELOG


async def _rotate_keys(settings: Settings) -> int:
    cipher = TokenCipher(settings.token_keys)
    namespace = Namespace("auth")
    redis = connect_redis(settings.redis)
    try:
        view = RedisSellerStore(redis, namespace, cipher)
        marker = RedisViewMarker(redis, namespace, "sellers")
        async with Changelog(
            settings.kafka, AUTH_SELLERS_CHANGELOG, view=view, marker=marker
        ) as changelog:
            return await ChangelogSellerStore(view, changelog).rotate_keys(cipher)
    finally:
        await redis.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="peepers_auth", description=__doc__)
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "web", "generate-key", "rotate-keys"],
    )
    args = parser.parse_args(argv)
    if args.command == "generate-key":
        print(TokenCipher.generate_key())
        return
    if args.command == "web":
        _run_web()
        return
    settings = Settings()
    configure_logging("auth", settings.log_level)
    init_error_tracking("auth", ErrorTrackingSettings())
    if args.command == "rotate-keys":
        count = asyncio.run(_rotate_keys(settings))
        print(f"re-sealed {count} seller record(s) with the first key (changelog and view)")
        return
    web.run_app(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        access_log=None,
    )


def _run_web() -> None:
    # Only the web settings are read: AUTH_TOKEN_KEYS and the ML secret stay unread here.
    settings = WebSettings()
    configure_logging("auth-web", settings.log_level)
    web.run_app(
        create_web_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        access_log=None,
    )


if __name__ == "__main__":
    main()
