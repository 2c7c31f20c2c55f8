from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from peepers_common.metrics import http_metrics_middleware, metrics_view


async def _hello(_request: web.Request) -> web.Response:
    return web.Response(text="hi")


def _sample(text: str, name: str, labels: dict[str, str]) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


async def test_requests_are_counted_by_route_template_and_exposed_on_metrics() -> None:
    app = web.Application(middlewares=[http_metrics_middleware("metrics-test")])
    app.router.add_get("/items/{item_id}", _hello)
    app.router.add_get("/metrics", metrics_view)
    async with TestClient(TestServer(app)) as client:
        before = _sample(
            await (await client.get("/metrics")).text(),
            "peepers_http_requests_total",
            {"service": "metrics-test", "route": "/items/{item_id}", "status": "200"},
        )
        for item in ("MLB1", "MLB2"):
            assert (await client.get(f"/items/{item}")).status == 200
        assert (await client.get("/nope")).status == 404
        response = await client.get("/metrics")
        text = await response.text()
    assert response.content_type == "text/plain"
    labels = {"service": "metrics-test", "route": "/items/{item_id}", "status": "200"}
    assert _sample(text, "peepers_http_requests_total", labels) == before + 2
    assert (
        _sample(text, "peepers_http_requests_total", {"service": "metrics-test", "status": "404"})
        >= 1
    )
    assert "MLB1" not in text
