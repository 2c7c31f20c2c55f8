"""Drive the seller-facing flow through the app like a browser and ML would."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.unit.auth.fakes import FakeMlOAuth

Client = TestClient[web.Request, web.Application]
SERVICE_SECRET = "catalog-secret-0123456789"  # noqa: S105 - a test credential


class Clock:
    """The auth app's wall clock, moved by tests instead of waiting."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def start(client: Client, site: str = "MLB") -> dict[str, str]:
    response = await client.get(f"/auth/login?site={site}", allow_redirects=False)
    assert response.status == 302, await response.text()
    location = response.headers["Location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()} | {
        "_base": location.split("/authorization")[0]
    }


async def login(client: Client, ml: FakeMlOAuth) -> str:
    """A complete login; returns the dashboard HTML."""
    query = await start(client)
    code = ml.issue_code(query["code_challenge"])
    response = await client.get(
        "/auth/callback", params={"code": code, "state": query["state"]}, allow_redirects=False
    )
    assert response.status == 303, await response.text()
    assert response.headers["Location"] == "/auth/dashboard"
    dashboard = await client.get("/auth/dashboard")
    assert dashboard.status == 200
    return await dashboard.text()
