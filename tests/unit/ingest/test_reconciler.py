import json
from typing import Any

from peepers_ingest.handlers import Intake, prefixed_topics
from peepers_ingest.reconciler import Reconciler
from tests.unit.ingest.fakes import APP_ID, FakeDedup, FakePublisher, FakeSpool, notification_body


class FakeMissedFeeds:
    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries
        self.calls = 0

    async def missed_notifications(self) -> list[dict[str, Any]]:
        self.calls += 1
        return self.entries


def missed(n: int, **overrides: Any) -> dict[str, Any]:
    # The shape of a missed_feeds entry (FACTS.md 1.7): the notification plus its delivery.
    return {
        **notification_body(n, attempts=8, **overrides),
        "request": {"url": "https://ingest.example/webhooks/mercadolibre", "data": "{}"},
        "response": {"req_time": 498, "http_code": 500},
    }


def setup(entries: list[dict[str, Any]]) -> tuple[Reconciler, FakePublisher, FakeDedup]:
    publisher, dedup = FakePublisher(), FakeDedup()
    intake = Intake(publisher, FakeSpool(), dedup, topic_for=prefixed_topics(""), budget_s=0.1)
    return Reconciler(FakeMissedFeeds(entries), intake, application_id=APP_ID), publisher, dedup


async def test_missed_notifications_are_published_without_their_delivery_details() -> None:
    reconciler, publisher, _ = setup([missed(1), missed(2)])
    report = await reconciler.run_once()
    assert report.outcomes == {"published": 2}
    values = [json.loads(r.value) for r in publisher.acked]
    assert [v["_id"] for v in values] == [notification_body(1)["_id"], notification_body(2)["_id"]]
    assert all("request" not in v and "response" not in v for v in values)


async def test_a_missed_notification_that_was_delivered_after_all_is_a_duplicate() -> None:
    reconciler, publisher, dedup = setup([missed(1)])
    dedup.marked.add(notification_body(1)["_id"])
    assert (await reconciler.run_once()).outcomes == {"duplicate": 1}
    assert publisher.acked == []


async def test_a_second_round_publishes_nothing_again() -> None:
    reconciler, publisher, _ = setup([missed(1)])
    await reconciler.run_once()
    assert (await reconciler.run_once()).outcomes == {"duplicate": 1}
    assert len(publisher.acked) == 1


async def test_invalid_or_foreign_entries_are_counted_not_published() -> None:
    reconciler, publisher, _ = setup([missed(1, user_id="x"), missed(2, application_id=7)])
    assert (await reconciler.run_once()).outcomes == {"invalid": 1, "foreign_application": 1}
    assert publisher.acked == []
