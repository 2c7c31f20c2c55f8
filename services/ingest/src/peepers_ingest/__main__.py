"""The composition root: ``python -m peepers_ingest``."""

from __future__ import annotations

import gc

import uvloop
from aiohttp import web

from peepers_common.error_tracking import ErrorTrackingSettings, init_error_tracking
from peepers_common.logs import configure_logging
from peepers_ingest.app import create_app
from peepers_ingest.settings import Settings


def _tune_gc() -> None:
    # Every webhook allocates futures, tasks and dicts; with CPython's default threshold
    # (700) the cyclic collector ran hundreds of times a second and took 10-20% of
    # ingest's CPU at saturation (bench/ingest.py). Objects that live as long as the
    # process (modules, the app) are frozen out of its scans, and collections of the
    # young generation wait for 50,000 allocations: the garbage ingest makes is almost all
    # freed by reference counting, so this delays little memory.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def main() -> None:
    settings = Settings()
    configure_logging("ingest", settings.log_level)
    init_error_tracking("ingest", ErrorTrackingSettings())
    app = create_app(settings)
    _tune_gc()
    web.run_app(
        app,
        host=settings.http_host,
        port=settings.http_port,
        # Finish in-flight requests before the cleanup flushes the producer.
        shutdown_timeout=settings.shutdown_timeout_s,
        access_log=None,
        print=None,
        # libuv's loop roughly halves the CPU the event loop itself costs per request.
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
