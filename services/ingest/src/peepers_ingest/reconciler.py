"""The second safety net: replaying what ML says it failed to deliver.

Entries of GET /missed_feeds go through the same intake as a webhook, deduplicated like
everything else.

The ML API adapter behind `MissedFeedsSource` comes with the shared ML client (issue 4);
until then the reconciler runs only when a source is passed to `create_app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from peepers_common.errors import InfrastructureError
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
    outcomes: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        metrics.RECONCILED.labels(outcome).inc()


class Reconciler:
    def __init__(
        self, source: MissedFeedsSource, intake: Intake, *, application_id: int | None
    ) -> None:
        self._source = source
        self._intake = intake
        self._application_id = application_id
        self._trigger = asyncio.Event()

    def trigger(self) -> None:
        """Run a round now instead of at the next period."""
        self._trigger.set()

    async def run_once(self) -> ReconcileReport:
        report = ReconcileReport()
        for entry in await self._source.missed_notifications():
            body = {k: v for k, v in entry.items() if k not in _DELIVERY_FIELDS}
            outcome = await self._reconcile(body)
            report.count(outcome)
        return report

    async def _reconcile(self, body: dict[str, Any]) -> str:
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
            except Exception:  # a failing ML API must not stop the periodic safety net
                log.exception("missed_feeds reconciliation failed")
            else:
                if report.outcomes:
                    log.info("missed_feeds reconciled: %s", report.outcomes)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await self._trigger.wait()
            self._trigger.clear()
