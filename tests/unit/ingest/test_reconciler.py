import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr, ValidationError

from peepers_common.errors import MlUnauthorized, MlUnavailable, PeepersError
from peepers_common.ml.ratelimit import Lane, current_lane
from peepers_common.settings import MlApiSettings
from peepers_ingest.handlers import Intake, prefixed_topics
from peepers_ingest.keys import reconciler_key
from peepers_ingest.reconciler import Reconciler
from tests.support import wait_until
from tests.unit.ingest.fakes import (
    APP_ID,
    FakeDedup,
    FakePublisher,
    FakeSpool,
    loopback_settings,
    notification_body,
)


class FakeMissedFeeds:
    """Yields its entries, then raises `fail_with` (once, when `fail_once`) if set."""

    def __init__(self, entries: list[dict[str, Any]], fail_with: PeepersError | None = None):
        self.entries = entries
        self.fail_with = fail_with
        self.fail_once = False
        self.calls = 0
        self.lanes: list[Lane] = []  # the limiter's lane at each page read

    async def missed_notifications(self) -> AsyncIterator[dict[str, Any]]:
        self.calls += 1
        for entry in self.entries:
            self.lanes.append(current_lane())
            yield entry
        if self.fail_with is not None:
            error = self.fail_with
            if self.fail_once:
                self.fail_with = None
            raise error


def missed(n: int, **overrides: Any) -> dict[str, Any]:
    # The shape of a missed_feeds entry (FACTS.md 1.7): the notification plus its delivery.
    return {
        **notification_body(n, attempts=8, **overrides),
        "request": {"url": "https://ingest.example/webhooks/mercadolibre", "data": "{}"},
        "response": {"req_time": 498, "http_code": 500},
    }


def setup(
    entries: list[dict[str, Any]], fail_with: PeepersError | None = None
) -> tuple[Reconciler, FakePublisher, FakeDedup]:
    publisher, dedup = FakePublisher(), FakeDedup()
    intake = Intake(publisher, FakeSpool(), dedup, topic_for=prefixed_topics(""), budget_s=0.1)
    source = FakeMissedFeeds(entries, fail_with)
    return Reconciler(source, intake, application_id=APP_ID), publisher, dedup


async def test_missed_notifications_are_published_without_their_delivery_details() -> None:
    reconciler, publisher, _ = setup([missed(1), missed(2)])
    report = await reconciler.run_once()
    assert report.as_json() == {"outcomes": {"published": 2}, "failure": None}
    values = [json.loads(r.value) for r in publisher.acked]
    assert [v["_id"] for v in values] == [notification_body(1)["_id"], notification_body(2)["_id"]]
    assert all("request" not in v and "response" not in v for v in values)


async def test_missed_feeds_are_read_in_the_bulk_lane_behind_webhook_fetches() -> None:
    source = FakeMissedFeeds([missed(1), missed(2)])
    intake = Intake(
        FakePublisher(), FakeSpool(), FakeDedup(), topic_for=prefixed_topics(""), budget_s=0.1
    )
    await Reconciler(source, intake, application_id=APP_ID).run_once()
    assert source.lanes == [Lane.BULK, Lane.BULK]
    assert current_lane() is Lane.LIVE  # only the round's own requests


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


async def test_a_malformed_entry_is_skipped_and_the_entries_after_it_still_land() -> None:
    broken = missed(2)
    del broken["resource"]
    reconciler, publisher, _ = setup([missed(1), broken, missed(3)])
    assert (await reconciler.run_once()).outcomes == {"published": 2, "invalid": 1}
    assert [r.ce_id for r in publisher.acked] == [
        notification_body(1)["_id"],
        notification_body(3)["_id"],
    ]


async def test_an_ml_outage_mid_round_is_reported_with_what_was_done_before_it() -> None:
    reconciler, publisher, _ = setup([missed(1)], MlUnavailable("ML answered 503", status=503))
    report = await reconciler.run_once()
    assert report.outcomes == {"published": 1}
    assert report.failure == "MlUnavailable: ML answered 503"
    assert len(publisher.acked) == 1


async def test_a_refused_token_is_the_rounds_failure_not_a_crash() -> None:
    reconciler, publisher, _ = setup([], MlUnauthorized("401 after a refresh", status=401))
    report = await reconciler.run_once()
    assert report.as_json() == {"outcomes": {}, "failure": "MlUnauthorized: 401 after a refresh"}
    assert publisher.acked == []


async def test_the_periodic_loop_survives_a_failed_round_and_runs_the_next_one() -> None:
    reconciler, publisher, _ = setup([missed(1)], MlUnavailable("ML answered 500", status=500))
    source = reconciler._source
    assert isinstance(source, FakeMissedFeeds)
    source.fail_once = True
    task = asyncio.create_task(reconciler.run_forever(interval_s=3600))
    try:

        async def failed_once() -> bool:
            report = reconciler.last_report
            return report is not None and report.failure is not None

        await wait_until(failed_once)
        reconciler.trigger()

        async def succeeded() -> bool:
            report = reconciler.last_report
            return report is not None and report.failure is None

        await wait_until(succeeded)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert source.calls == 2
    assert reconciler.last_report is not None
    assert reconciler.last_report.outcomes == {"duplicate": 1}
    assert len(publisher.acked) == 1


OPS = ("ops", "ops-secret-0123456789")


async def _startup_round_done(h: Any) -> None:
    reconciler = h.client.app[reconciler_key]

    async def done() -> bool:
        return reconciler.last_report is not None

    await wait_until(done)


class TestReconcileEndpoint:
    async def test_a_caller_without_service_credentials_gets_401(self, harness) -> None:
        source = FakeMissedFeeds([missed(1)])
        credentials = {OPS[0]: SecretStr(OPS[1])}
        async with harness(missed_feeds=source, service_credentials=credentials) as h:
            await _startup_round_done(h)
            anonymous = await h.client.post("/internal/reconcile")
            wrong = await h.client.post(
                "/internal/reconcile",
                headers={"Authorization": aiohttp.encode_basic_auth(OPS[0], "nope")},
            )
            for response in (anonymous, wrong):
                assert response.status == 401
                assert response.headers["WWW-Authenticate"].startswith("Basic")
                assert (await response.json())["error"] == "unauthorized"
        assert source.calls == 1  # the startup round only

    async def test_an_authenticated_caller_gets_the_rounds_report(self, harness) -> None:
        source = FakeMissedFeeds([missed(1), missed(2, application_id=7)])
        credentials = {OPS[0]: SecretStr(OPS[1])}
        auth = {"Authorization": aiohttp.encode_basic_auth(*OPS)}
        async with harness(missed_feeds=source, service_credentials=credentials) as h:
            await _startup_round_done(h)
            response = await h.client.post("/internal/reconcile", headers=auth)
            assert response.status == 200
            assert await response.json() == {
                "outcomes": {"duplicate": 1, "foreign_application": 1},
                "failure": None,
            }
            source.fail_with = MlUnavailable("ML answered 502", status=502)
            failed = await h.client.post("/internal/reconcile", headers=auth)
            assert failed.status == 502
            assert (await failed.json())["failure"] == "MlUnavailable: ML answered 502"
        assert len(h.publisher.acked) == 1

    async def test_without_a_configured_reconciler_the_endpoint_says_it_is_off(
        self, harness
    ) -> None:
        credentials = {OPS[0]: SecretStr(OPS[1])}
        async with harness(service_credentials=credentials) as h:
            response = await h.client.post(
                "/internal/reconcile", headers={"Authorization": aiohttp.encode_basic_auth(*OPS)}
            )
            assert response.status == 503
            assert (await response.json())["error"] == "reconciler_off"


class TestReconcilerSettings:
    def test_the_application_id_is_the_app_the_ml_client_asks_missed_feeds_about(
        self, tmp_path
    ) -> None:
        assert loopback_settings(tmp_path).ml.app_id == APP_ID

    def test_two_different_application_ids_are_refused(self, tmp_path) -> None:
        with pytest.raises(ValidationError, match="different applications"):
            loopback_settings(tmp_path, ml=MlApiSettings(app_id=APP_ID + 1))

    def test_the_reconciler_names_the_settings_it_still_needs(self, tmp_path) -> None:
        settings = loopback_settings(tmp_path, reconcile_seller_ids=[1])
        assert settings.reconciler_missing() == ["INGEST_TOKEN_BROKER__*"]
