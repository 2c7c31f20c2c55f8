from __future__ import annotations

import pytest

from peepers_catalog.handlers import Catalog
from peepers_common.testing import InMemoryEventPublisher
from tests.unit.catalog.fakes import FakeItemSource, InMemoryItemStore

EVENTS_TOPIC = "peepers.catalog.v1"


@pytest.fixture
def store() -> InMemoryItemStore:
    return InMemoryItemStore()


@pytest.fixture
def publisher() -> InMemoryEventPublisher:
    return InMemoryEventPublisher()


@pytest.fixture
def catalog(
    ml: FakeItemSource, store: InMemoryItemStore, publisher: InMemoryEventPublisher
) -> Catalog:
    """The handlers' ports over fakes; each module defines the ``ml`` it needs."""
    return Catalog(
        ml=ml, store=store, publisher=publisher, events_topic=EVENTS_TOPIC, clock=lambda: 0
    )
