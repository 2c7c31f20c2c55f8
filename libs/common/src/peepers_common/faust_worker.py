"""A Faust service's ``worker`` command (the ``faust`` extra, as the consumer kit)."""

from __future__ import annotations

import logging
import signal

import faust

from peepers_common.consumer import ConsumerSettings
from peepers_common.error_tracking import ErrorTrackingSettings, init_error_tracking
from peepers_common.logs import configure_logging
from peepers_common.process import StopDeadline, tune_gc


def run_worker(service: str, app: faust.App, settings: ConsumerSettings) -> None:
    """Run ``app``'s worker until a signal stops it, logging JSON lines as every service.

    A stop asked by SIGTERM or SIGINT ends within ``settings.stop_within_s``
    (`StopDeadline`).
    """
    deadline = StopDeadline(settings.stop_within_s)

    # Named as the services' own class was: its name is in Faust's log lines
    # ("[^_Worker]: Starting..."), which people and tests read.
    class _Worker(faust.Worker):
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            configure_logging(service, logging.getLevelName(level))
            init_error_tracking(service, ErrorTrackingSettings())

        # mode's one entry for both signals' handlers (a private method: pinned by
        # tests/integration/common/test_faust_worker.py, which fails if mode renames it).
        def _schedule_shutdown(self, signum: signal.Signals) -> None:
            deadline.arm(signum.name)
            super()._schedule_shutdown(signum)

    runner = _Worker(app, loglevel=settings.log_level, redirect_stdouts=False)
    tune_gc()
    try:
        runner.execute_from_commandline()
    finally:
        deadline.cancel()
