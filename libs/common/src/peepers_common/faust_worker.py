"""A Faust service's ``worker`` command (the ``faust`` extra, as the consumer kit)."""

from __future__ import annotations

import logging
import os
import signal
import threading

import faust

from peepers_common.consumer import ConsumerSettings
from peepers_common.error_tracking import ErrorTrackingSettings, init_error_tracking
from peepers_common.logs import configure_logging
from peepers_common.process import tune_gc

log = logging.getLogger(__name__)

# What a worker that overstays its stop exits with (sysexits' EX_SOFTWARE): not 0, so a
# supervisor sees that the stop was not clean.
OVERSTAYED_EXIT_CODE = 70


class StopDeadline:
    """Ends the process ``within_s`` after a stop was asked, whether the stop finished or not.

    Faust's graceful stop can hang (a stop that lands mid-rebalance waits on it, and a
    stuck agent is awaited without a bound). Kubernetes ends such a pod with SIGKILL
    after its grace period, but ``make run`` relies on its children stopping on the
    SIGTERM the kernel sends them when the orchestrator dies (PR_SET_PDEATHSIG), and
    nothing follows that SIGTERM up: a hung catalog worker outlived a killed run (CI,
    session 9). The deadline runs on a daemon thread, so a blocked event loop cannot
    hold it back. Records whose offsets were not committed are read again by the next
    worker: at-least-once, as after any crash.
    """

    def __init__(self, within_s: float) -> None:
        self.within_s = within_s
        self._timer: threading.Timer | None = None

    def arm(self, reason: str) -> None:
        """Start the clock (once: a second signal does not extend it)."""
        if self._timer is not None:
            return
        self._timer = threading.Timer(self.within_s, self._expire, args=(reason,))
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        """The stop finished: the interpreter's own exit must not be cut short."""
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self, reason: str) -> None:
        log.error(
            "still stopping %.0f s after %s: exiting without finishing the stop "
            "(uncommitted records will be read again)",
            self.within_s,
            reason,
        )
        logging.shutdown()
        os._exit(OVERSTAYED_EXIT_CODE)


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
