"""The composition root: ``python -m peepers_ingest``."""

from __future__ import annotations

import uvloop
from aiohttp import web

from peepers_common.error_tracking import ErrorTrackingSettings, init_error_tracking
from peepers_common.logs import configure_logging
from peepers_common.process import tune_gc
from peepers_ingest.app import create_app
from peepers_ingest.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging("ingest", settings.log_level)
    init_error_tracking("ingest", ErrorTrackingSettings())
    app = create_app(settings)
    tune_gc()
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
