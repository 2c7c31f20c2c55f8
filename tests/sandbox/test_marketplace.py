from __future__ import annotations

import aiohttp
import pytest

from peepers_sandbox import DEMO_REDIRECT_URI, DEMO_SELLER_ID, Sandbox
from peepers_sandbox.__main__ import build_config
from peepers_sandbox.client import SandboxAdminError
from tests.sandbox.support import SmallSandbox, bearer


class TestAdminEvents:
    async def test_an_order_walks_from_confirmed_to_delivered_with_later_stamps(
        self, small_sandbox: SmallSandbox
    ):
        sb: Sandbox = await small_sandbox()
        token = (await sb.admin.mint_token(DEMO_SELLER_ID))["access_token"]
        order = await sb.admin.event("new_order", seller_id=DEMO_SELLER_ID)
        assert order["status"] == "confirmed"
        stamps = [order["last_updated"]]
        async with aiohttp.ClientSession(sb.url, headers=bearer(token)) as http:
            for kind, shipment_status in (
                ("payment", "ready_to_ship"),
                ("shipment", "shipped"),
                ("delivery", "delivered"),
            ):
                await sb.admin.event(kind, order_id=order["id"])
                async with http.get(f"/shipments/{order['shipping']['id']}") as resp:
                    assert (await resp.json())["status"] == shipment_status
                async with http.get(f"/orders/{order['id']}") as resp:
                    stamps.append((await resp.json())["last_updated"])
        assert stamps[1] > stamps[0]
        assert stamps[-1] >= stamps[1]

    async def test_an_event_on_an_object_in_the_wrong_state_is_refused(
        self, small_sandbox: SmallSandbox
    ):
        sb: Sandbox = await small_sandbox()
        order = await sb.admin.event("new_order", seller_id=DEMO_SELLER_ID)
        async with (
            aiohttp.ClientSession(sb.url) as http,
            http.post("/_admin/events/delivery", json={"order_id": order["id"]}) as resp,
        ):
            assert resp.status == 400

    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("/_admin/events/new_order", {"seller_id": DEMO_SELLER_ID, "quantity": "two"}),
            ("/_admin/events/silent_change", {"order_id": [1]}),
            ("/_admin/events/payment", {"order_id": 1, "colour": "red"}),
            ("/_admin/clock/advance", {"seconds": "soon"}),
        ],
    )
    async def test_a_bad_parameter_is_a_400_with_ml_body(
        self, small_sandbox: SmallSandbox, path: str, body: dict[str, object]
    ):
        sb: Sandbox = await small_sandbox()
        async with aiohttp.ClientSession(sb.url) as http, http.post(path, json=body) as resp:
            assert resp.status == 400
            answer = await resp.json()
        assert answer == {**answer, "error": "bad_request", "status": 400, "cause": []}

    async def test_stock_to_zero_pauses_and_stock_back_reactivates(
        self, small_sandbox: SmallSandbox
    ):
        sb: Sandbox = await small_sandbox()
        item_id = next(
            i
            for i in sb.state.market.items_by_seller[DEMO_SELLER_ID]
            if sb.state.market.items[i]["status"] == "active"
        )
        paused = await sb.admin.event("stock_change", item_id=item_id, available_quantity=0)
        assert (paused["status"], paused["sub_status"]) == ("paused", ["out_of_stock"])
        active = await sb.admin.event("stock_change", item_id=item_id, available_quantity=9)
        assert (active["status"], active["available_quantity"]) == ("active", 9)
        closed = await sb.admin.event("close", item_id=item_id)
        assert closed["status"] == "closed"


class TestCommandLine:
    def test_flags_build_the_config(self):
        config = build_config(
            [
                "--port",
                "9123",
                "--seed",
                "7",
                "--sellers",
                "4",
                "--items-per-seller",
                "300",
                "--callback-url",
                "http://127.0.0.1:9999/ml",
                "--activity-rate",
                "500",
                "--token-ttl",
                "30",
                "--auto-approve",
            ]
        )
        assert config.port == 9123
        assert (config.marketplace.seed, config.marketplace.sellers) == (7, 4)
        assert config.marketplace.items_per_seller == 300
        assert config.apps[0].callback_url == "http://127.0.0.1:9999/ml"
        assert config.activity_rate == 500
        assert config.api.access_token_ttl_s == 30
        assert config.api.auto_approve is True

    def test_redirect_uri_flags_replace_the_demo_apps_redirect_uris(self):
        config = build_config(
            [
                "--redirect-uri",
                "http://localhost:8081/auth/callback",
                "--redirect-uri",
                "http://127.0.0.1:18081/auth/callback",
            ]
        )
        assert config.apps[0].redirect_uris == [
            "http://localhost:8081/auth/callback",
            "http://127.0.0.1:18081/auth/callback",
        ]

    def test_without_redirect_uri_flags_the_demo_redirect_uri_stays(self):
        assert build_config([]).apps[0].redirect_uris == [DEMO_REDIRECT_URI]


async def test_an_id_offset_shifts_every_new_id_but_the_items(small_sandbox: SmallSandbox) -> None:
    """ML never gives an id twice: a run of `make run` asks for ids no earlier run used."""
    plain: Sandbox = await small_sandbox()
    shifted: Sandbox = await small_sandbox(marketplace={"id_offset": 7_000_000})
    base, moved = plain.state.market, shifted.state.market
    assert min(moved.orders) == min(base.orders) + 7_000_000
    assert min(moved.packs) == min(base.packs) + 7_000_000
    assert min(moved.shipments) == min(base.shipments) + 7_000_000
    assert min(moved.questions) == min(base.questions) + 7_000_000
    assert min(moved.claims) == min(base.claims) + 7_000_000
    assert sorted(moved.items) == sorted(base.items)
    # Live activity too: the same seed makes the same order, its id moved by the offset.
    made = await plain.admin.event("new_order", seller_id=DEMO_SELLER_ID)
    order = await shifted.admin.event("new_order", seller_id=DEMO_SELLER_ID)
    assert order["id"] == made["id"] + 7_000_000


class TestSellerState:
    """``GET /_admin/sellers/{id}/state``: what `make check` compares a mirror with."""

    async def test_it_is_what_the_seller_sees_and_follows_each_change(
        self, small_sandbox: SmallSandbox
    ):
        sb: Sandbox = await small_sandbox()
        token = (await sb.admin.mint_token(DEMO_SELLER_ID))["access_token"]
        before = await sb.admin.seller_state(DEMO_SELLER_ID)
        order = await sb.admin.event("new_order", seller_id=DEMO_SELLER_ID)
        await sb.admin.event("payment", order_id=order["id"])
        after = await sb.admin.seller_state(DEMO_SELLER_ID)
        item_id = next(iter(after["items"]))
        async with aiohttp.ClientSession(sb.url, headers=bearer(token)) as http:
            async with http.get(f"/items/{item_id}") as resp:
                assert after["items"][item_id] == await resp.json()
            async with http.get(f"/orders/{order['id']}") as resp:
                served = await resp.json()
        orders = {entry["order"]["id"]: entry for entry in after["orders"]}
        assert len(orders) == len(before["orders"]) + 1
        assert orders[order["id"]]["order"]["status"] == served["status"] == "paid"
        assert orders[order["id"]]["shipment"]["status"] == "ready_to_ship"
        assert len(after["items"]) == 40
        assert {"questions", "conversations", "claims"} <= after.keys()

    async def test_an_unknown_seller_is_a_404_that_says_so(self, small_sandbox: SmallSandbox):
        sb: Sandbox = await small_sandbox()
        with pytest.raises(SandboxAdminError, match="404.*no seller 999"):
            await sb.admin.seller_state(999)
