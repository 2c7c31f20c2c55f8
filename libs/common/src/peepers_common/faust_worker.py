"""A Faust service's ``worker`` command (the ``faust`` extra, as the consumer kit)."""

from __future__ import annotations

import logging

import faust

from peepers_common.error_tracking import ErrorTrackingSettings, init_error_tracking
from peepers_common.logs import configure_logging
from peepers_common.process import tune_gc


def run_worker(service: str, app: faust.App, log_level: str) -> None:
    """Run ``app``'s worker until a signal stops it, logging JSON lines as every service."""

    # Named as the services' own class was: its name is in Faust's log lines
    # ("[^_Worker]: Starting..."), which people and tests read.
    class _Worker(faust.Worker):
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            configure_logging(service, logging.getLevelName(level))
            init_error_tracking(service, ErrorTrackingSettings())

    runner = _Worker(app, loglevel=log_level, redirect_stdouts=False)
    tune_gc()
    runner.execute_from_commandline()
