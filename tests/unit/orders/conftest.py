from __future__ import annotations

from datetime import timedelta

import pytest

from peepers_common.testing import InMemoryEventPublisher
from peepers_orders.handlers import Orders
from tests.unit.orders.fakes import SELLER, T0, InMemoryOrderStore, InMemorySellers, Market

EVENTS = "peepers.orders.v1"


@pytest.fixture
def market() -> Market:
    return Market()


@pytest.fixture
def sellers() -> InMemorySellers:
    directory = InMemorySellers()
    directory.connections[SELLER] = T0 - timedelta(days=1)
    return directory


@pytest.fixture
def orders(market: Market, sellers: InMemorySellers) -> Orders:
    return Orders(
        ml=market.ml,
        store=InMemoryOrderStore(),
        sellers=sellers,
        publisher=InMemoryEventPublisher(),
        events_topic=EVENTS,
        clock=lambda: (T0 + timedelta(days=3)).timestamp(),
    )
