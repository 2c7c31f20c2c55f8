"""The second safety net: replaying what ML says it failed to deliver.

Entries of GET /missed_feeds go through the same intake as a webhook, deduplicated like
everything else. A round that cannot read missed_feeds (ML down, a refused token) reports
the failure with what it did before, and the next round starts over: nothing is lost,
because an entry stays in missed_feeds for two days and a replayed one is a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from peepers_common.errors import InfrastructureError, PeepersError
from peepers_common.ml.ratelimit import bulk_lane
from peepers_common.notifications import Notification
from peepers_ingest import metrics
from peepers_ingest.handlers import Intake, Outcome, build_record
from peepers_ingest.ports import MissedFeedsSource

__all__ = ["ReconcileReport", "Reconciler"]

log = logging.getLogger(__name__)

# missed_feeds entries describe the failed delivery besides the notification itself.
_DELIVERY_FIELDS = ("request", "response")


@dataclass
class ReconcileReport:
    """What one round did: entries by outcome, and why it stopped early, if it did."""

    outcomes: dict[str, int] = field(default_factory=dict)
    failure: str | None = None

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        metrics.RECONCILED.labels(outcome).inc()

    def as_json(self) -> dict[str, Any]:
        return {"outcomes": self.outcomes, "failure": self.failure}


class Reconciler:
    def __init__(
        self, source: MissedFeedsSource, intake: Intake, *, application_id: int | None
    ) -> None:
        self._source = source
        self._intake = intake
        self._application_id = application_id
        self._trigger = asyncio.Event()
        # One round at a time: an on-demand round waits for the periodic one, then runs.
        self._round = asyncio.Lock()
        self.last_report: ReconcileReport | None = None

    def trigger(self) -> None:
        """Run a round now instead of at the next period."""
        self._trigger.set()

    async def run_once(self) -> ReconcileReport:
        async with self._round:
            report = ReconcileReport()
            try:
                # Its ML requests (the missed_feeds pages) wait behind webhook-driven
                # fetches for the shared budget: a safety net, not a change someone waits on.
                with bulk_lane():
                    async for entry in self._source.missed_notifications():
                        report.count(await self._reconcile(entry))
            except PeepersError as exc:
                report.failure = f"{type(exc).__name__}: {exc}"
                log.warning("missed_feeds round stopped early: %s", report.failure)
            metrics.RECONCILE_ROUNDS.labels("failed" if report.failure else "ok").inc()
            if report.failure is None:
                metrics.RECONCILE_LAST_SUCCESS.set_to_current_time()
            self.last_report = report
            return report

    async def _reconcile(self, entry: dict[str, Any]) -> str:
        body = {k: v for k, v in entry.items() if k not in _DELIVERY_FIELDS}
        try:
            notification = Notification.model_validate(body)
        except ValidationError:
            return "invalid"
        if self._application_id is not None and notification.application_id != self._application_id:
            return "foreign_application"
        record = build_record(
            notification,
            body,
            topic_for=self._intake.topic_for,
            received_at=datetime.now(UTC),
            traceparent=None,
        )
        try:
            outcome: Outcome = await self._intake.accept(record)
        except InfrastructureError as exc:
            log.warning("could not reconcile a missed notification (next round retries): %s", exc)
            return "failed"
        return outcome.value

    async def run_forever(self, interval_s: float) -> None:
        while True:
            try:
                report = await self.run_once()
            except Exception:  # even a bug must not stop the periodic safety net
                log.exception("missed_feeds reconciliation failed")
            else:
                if report.outcomes:
                    log.info("missed_feeds reconciled: %s", report.outcomes)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await self._trigger.wait()
            self._trigger.clear()
