"""The messages service's Prometheus metrics (module-level: one registry per process)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

APPLIED: Final = Counter(
    "peepers_messages_applied_total",
    "ML versions applied to the mirror, by entity and outcome",
    ["entity", "outcome"],
)
EVENTS: Final = Counter(
    "peepers_messages_events_published_total", "Domain events published, by type", ["type"]
)
TIME_TO_ANSWER: Final = Histogram(
    "peepers_messages_time_to_answer_seconds",
    "From a question to its answer at ML",
    buckets=(60, 300, 900, 1800, 3600, 2 * 3600, 6 * 3600, 12 * 3600, 24 * 3600, 72 * 3600),
)
UNANSWERED: Final = Gauge(
    "peepers_messages_unanswered_questions", "Unanswered questions, by seller", ["seller"]
)
# The name the alert rules and the dashboard use (deploy/prometheus/rules).
BREACHED: Final = Gauge(
    "peepers_messages_questions_overdue",
    "Unanswered questions older than the breach age (default 12 h), by seller",
    ["seller"],
)
OPEN_TICKETS: Final = Gauge(
    "peepers_messages_open_tickets", "Tickets not closed, by seller", ["seller"]
)
DUE_SOON: Final = Gauge(
    "peepers_messages_tickets_due_soon",
    "Open tickets whose claim needs the seller within the due window, by seller",
    ["seller"],
)
SUBMISSIONS: Final = Counter(
    "peepers_messages_submissions_total",
    "Answers and messages submitted through the API, by kind and outcome",
    ["kind", "outcome"],
)
BACKFILL: Final = Counter(
    "peepers_messages_backfill_total",
    "Questions and claims a backfill applied, by seller and entity",
    ["seller", "entity"],
)
BACKFILL_RUNNING: Final = Gauge(
    "peepers_messages_backfill_running", "1 while a backfill of the seller runs", ["seller"]
)
