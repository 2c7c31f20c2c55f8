from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from peepers_auth.models import Session
from peepers_auth.web.app import create_web_app
from peepers_auth.web.ports import DaySales, Question, Readers, Ticket
from peepers_auth.web.settings import WebSettings
from tests.unit.auth.fakes import InMemorySessions
from tests.unit.web.fakes import (
    NOW,
    OTHER,
    SELLER,
    FakeCatalog,
    FakeMessages,
    FakeOrders,
    conversation,
    item,
    order,
)

CSRF = "csrf-of-the-session"


@pytest.fixture
def settings() -> WebSettings:
    return WebSettings(
        public_base_url="http://localhost:8082", auth_base_url="http://localhost:8081"
    )


@pytest.fixture
def orders() -> FakeOrders:
    return FakeOrders(
        orders=[order(2000000001), order(2000000002, state="shipped"), order(2000000099, OTHER)],
        days=[
            DaySales(day=(NOW - timedelta(days=n)).date(), orders=n % 4, revenue={"BRL": n * 10})
            for n in range(30)
        ],
    )


@pytest.fixture
def messages() -> FakeMessages:
    return FakeMessages(
        questions=[
            Question(
                question_id=5001,
                seller_id=SELLER,
                item_id="MLB1",
                text="Tem em azul?",
                date_created=NOW - timedelta(hours=2),
            ),
            Question(
                question_id=5000,
                seller_id=SELLER,
                item_id="MLB2",
                text="Entrega amanhã?",
                date_created=NOW - timedelta(hours=5),
            ),
            Question(
                question_id=5099,
                seller_id=OTHER,
                item_id="MLB9",
                text="outro vendedor",
                date_created=NOW,
            ),
        ],
        tickets_=[
            Ticket(
                claim_id=7001,
                seller_id=SELLER,
                claim_type="mediations",
                claim_status="opened",
                status="open",
                order_id=2000000001,
                due_date=NOW + timedelta(days=1),
            ),
            Ticket(claim_id=7009, seller_id=OTHER, status="open"),
        ],
        conversations_=[
            conversation(4001, texts=("Olá, quando chega?", "Pode enviar hoje?")),
            conversation(4002, status="blocked", texts=("Obrigado!",)),
            conversation(4099, OTHER, texts=("de outro vendedor",)),
        ],
    )


@pytest.fixture
def catalog() -> FakeCatalog:
    return FakeCatalog(items=[item("MLB1"), item("MLB2", status="paused"), item("MLB9", OTHER)])


@pytest.fixture
def sessions() -> InMemorySessions:
    store = InMemorySessions()
    store.sessions["session-1"] = Session(
        seller_id=SELLER, csrf_token=SecretStr(CSRF), created_at=0
    )
    return store


@pytest.fixture
async def client(
    settings: WebSettings,
    sessions: InMemorySessions,
    orders: FakeOrders,
    messages: FakeMessages,
    catalog: FakeCatalog,
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = create_web_app(
        settings,
        sessions=sessions,
        readers=Readers(
            catalog=catalog, orders=orders, messages=messages, ready={"catalog": catalog}
        ),
        follow_kafka=False,
    )
    async with TestClient(TestServer(app)) as test_client:
        test_client.session.cookie_jar.update_cookies({"peepers_session": "session-1"})
        yield test_client
