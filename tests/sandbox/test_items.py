from __future__ import annotations

import aiohttp

from peepers_sandbox import DEMO_SELLER_ID, Sandbox
from tests.sandbox.support import OTHER_SELLER_ID, bearer

SEARCH = f"/users/{DEMO_SELLER_ID}/items/search"


class TestItemsSearch:
    async def test_scan_pages_through_every_item_once(self, sandbox: Sandbox, http, seller_token):
        expected = set(sandbox.state.market.items_by_seller[DEMO_SELLER_ID])
        assert len(expected) >= 5000
        seen: list[str] = []
        params = {"search_type": "scan", "limit": "100"}
        async with http.get(SEARCH, params=params, headers=bearer(seller_token)) as resp:
            body = await resp.json()
        scroll_id = body["scroll_id"]
        assert body["paging"]["total"] == len(expected)
        while body["results"]:
            seen.extend(body["results"])
            params = {"search_type": "scan", "scroll_id": scroll_id, "limit": "100"}
            async with http.get(SEARCH, params=params, headers=bearer(seller_token)) as resp:
                assert resp.status == 200
                body = await resp.json()
        assert len(seen) == len(set(seen)), "a scan returned an item twice"
        assert set(seen) == expected

    async def test_scroll_id_expires_after_five_minutes_idle(self, small_sandbox):
        sb: Sandbox = await small_sandbox()
        token = (await sb.admin.mint_token(DEMO_SELLER_ID))["access_token"]
        async with aiohttp.ClientSession(sb.url) as http:
            params = {"search_type": "scan", "limit": "5"}
            async with http.get(SEARCH, params=params, headers=bearer(token)) as resp:
                scroll_id = (await resp.json())["scroll_id"]
            params = {"search_type": "scan", "scroll_id": scroll_id}
            await sb.admin.advance_clock(299)
            async with http.get(SEARCH, params=params, headers=bearer(token)) as resp:
                assert resp.status == 200
            await sb.admin.advance_clock(301)
            async with http.get(SEARCH, params=params, headers=bearer(token)) as resp:
                assert resp.status == 400
                assert (await resp.json())["error"] == "invalid_scroll_id"

    async def test_offset_paging_stops_at_one_thousand_results(self, http, seller_token):
        ok = {"offset": "950", "limit": "50"}
        async with http.get(SEARCH, params=ok, headers=bearer(seller_token)) as resp:
            assert resp.status == 200
            assert len((await resp.json())["results"]) == 50
        past = {"offset": "1000", "limit": "50"}
        async with http.get(SEARCH, params=past, headers=bearer(seller_token)) as resp:
            assert resp.status == 400
            body = await resp.json()
        assert set(body) == {"message", "error", "status", "cause"}

    async def test_limit_above_one_hundred_is_rejected(self, http, seller_token):
        async with http.get(SEARCH, params={"limit": "101"}, headers=bearer(seller_token)) as resp:
            assert resp.status == 400

    async def test_status_filter_returns_only_that_status(self, sandbox, http, seller_token):
        items = sandbox.state.market.items
        params = {"status": "paused", "limit": "100"}
        async with http.get(SEARCH, params=params, headers=bearer(seller_token)) as resp:
            body = await resp.json()
        assert body["results"]
        assert all(items[i]["status"] == "paused" for i in body["results"])
        assert body["seller_id"] == str(DEMO_SELLER_ID)

    async def test_another_sellers_catalog_is_forbidden(self, http, other_token):
        async with http.get(SEARCH, headers=bearer(other_token)) as resp:
            assert resp.status == 403


class TestItems:
    async def test_owner_sees_exact_stock_and_others_see_mls_bucket(
        self, sandbox: Sandbox, http, seller_token, other_token
    ):
        market = sandbox.state.market
        item_id = next(
            i
            for i in market.items_by_seller[DEMO_SELLER_ID]
            if market.items[i]["available_quantity"] == 75
        )
        async with http.get(f"/items/{item_id}", headers=bearer(seller_token)) as resp:
            mine = await resp.json()
        async with http.get(f"/items/{item_id}", headers=bearer(other_token)) as resp:
            theirs = await resp.json()
        assert mine["available_quantity"] == 75
        assert "sold_quantity" in mine
        assert theirs["available_quantity"] == 50
        assert "sold_quantity" not in theirs
        assert mine["currency_id"] == "BRL"
        assert mine["id"].startswith("MLB")

    async def test_multiget_answers_each_id_with_code_and_body(self, sandbox, http, seller_token):
        ids = sandbox.state.market.items_by_seller[DEMO_SELLER_ID][:3]
        query = ",".join([*ids, "MLB1"])
        async with http.get(f"/items?ids={query}", headers=bearer(seller_token)) as resp:
            body = await resp.json()
        assert [entry["code"] for entry in body] == [200, 200, 200, 404]
        assert [entry["body"]["id"] for entry in body[:3]] == ids
        assert body[3]["body"]["error"] == "not_found"

    async def test_multiget_accepts_twenty_ids_and_refuses_twenty_one(
        self, sandbox, http, seller_token
    ):
        ids = sandbox.state.market.items_by_seller[DEMO_SELLER_ID][:21]
        async with http.get(f"/items?ids={','.join(ids[:20])}", headers=bearer(seller_token)) as r:
            assert r.status == 200
            assert len(await r.json()) == 20
        async with http.get(f"/items?ids={','.join(ids)}", headers=bearer(seller_token)) as r:
            assert r.status == 400

    async def test_multiget_selects_attributes(self, sandbox, http, seller_token):
        item_id = sandbox.state.market.items_by_seller[DEMO_SELLER_ID][0]
        url = f"/items?ids={item_id}&attributes=id,price"
        async with http.get(url, headers=bearer(seller_token)) as resp:
            assert set((await resp.json())[0]["body"]) == {"id", "price"}

    async def test_bulk_uses_status_code_and_body_prefixed_attributes(
        self, sandbox, http, seller_token
    ):
        item_id = sandbox.state.market.items_by_seller[DEMO_SELLER_ID][0]
        url = f"/items/bulk?ids={item_id},MLB1&attributes=body.id,body.title"
        async with http.get(url, headers=bearer(seller_token)) as resp:
            body = await resp.json()
        assert body[0] == {
            "id": item_id,
            "status_code": 200,
            "body": {"id": item_id, "title": sandbox.state.market.items[item_id]["title"]},
        }
        assert body[1]["status_code"] == 404

    async def test_unknown_item_is_an_ml_404(self, http):
        async with http.get("/items/MLB0") as resp:
            assert resp.status == 404
            assert await resp.json() == {
                "message": "Item with id MLB0 not found",
                "error": "not_found",
                "status": 404,
                "cause": [],
            }

    async def test_seeded_catalog_is_deterministic_and_portuguese(self, sandbox: Sandbox):
        from peepers_sandbox.clock import Clock
        from peepers_sandbox.marketplace import Marketplace

        cfg = sandbox.state.config.marketplace.model_copy(update={"items_per_seller": 50})
        first = Marketplace(cfg, Clock())
        second = Marketplace(cfg, Clock())
        assert first.items == second.items
        assert first.orders == second.orders
        titles = " ".join(i["title"] for i in first.items.values())
        assert any(word in titles for word in ("Camiseta", "Tênis", "Garrafa", "Panelas"))
        assert any(i["variations"] for i in first.items.values())
        assert all(i["seller_custom_field"].startswith("SKU-") for i in first.items.values())


class TestUsers:
    async def test_users_me_is_the_tokens_user(self, http, seller_token):
        async with http.get("/users/me", headers=bearer(seller_token)) as resp:
            body = await resp.json()
        assert body["id"] == DEMO_SELLER_ID
        assert body["nickname"] == "LOJA_DEMO"
        assert "email" in body

    async def test_public_user_hides_private_fields(self, http, other_token):
        async with http.get(f"/users/{DEMO_SELLER_ID}", headers=bearer(other_token)) as resp:
            body = await resp.json()
        assert body["id"] == DEMO_SELLER_ID
        assert "email" not in body
        assert body["seller_reputation"]["level_id"] == "5_green"

    async def test_users_me_without_token_is_401(self, http):
        async with http.get("/users/me") as resp:
            assert resp.status == 401

    async def test_unknown_token_is_401_even_on_public_resources(self, http):
        headers = bearer(f"APP_USR-1-010101-{'0' * 32}-{OTHER_SELLER_ID}")
        async with http.get(f"/users/{DEMO_SELLER_ID}", headers=headers) as resp:
            assert resp.status == 401
