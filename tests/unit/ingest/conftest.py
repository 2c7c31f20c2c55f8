from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from peepers_ingest.app import create_app
from peepers_ingest.ports import MissedFeedsSource
from tests.unit.ingest.fakes import FakeDedup, FakePublisher, FakeSpool, loopback_settings

AppFactory = Callable[..., Any]


class Harness:
    def __init__(
        self,
        client: TestClient[Any, Any],
        publisher: FakePublisher,
        spool: FakeSpool,
        dedup: FakeDedup,
    ):
        self.client = client
        self.publisher = publisher
        self.spool = spool
        self.dedup = dedup


@pytest.fixture
def harness(tmp_path: Path):
    """An ingest over fakes (no servers), loopback allowed; settings overridable."""

    @asynccontextmanager
    async def start(
        *, missed_feeds: MissedFeedsSource | None = None, **overrides: Any
    ) -> AsyncIterator[Harness]:
        publisher, spool, dedup = FakePublisher(), FakeSpool(), FakeDedup()
        app = create_app(
            loopback_settings(tmp_path, **overrides),
            publisher=publisher,
            spool=spool,
            dedup=dedup,
            missed_feeds=missed_feeds,
        )
        async with TestClient(TestServer(app)) as client:
            yield Harness(client, publisher, spool, dedup)

    return start
