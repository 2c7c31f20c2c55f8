"""The order cache in Redis: orders, per-seller indexes, packs, the outbox, seller facts.

Keys (under ``orders:``, or ``orders:<scope>:`` in tests)::

    order:{order_id}                     hash: version, data (CachedOrder JSON), pending
    seller:{seller_id}:orders            zset of the seller's orders, by creation time (ms)
    seller:{seller_id}:state:{state}     zset, the same, for one lifecycle state
    seller:{seller_id}:buyer:{buyer_id}  zset, the same, for one buyer
    seller:{seller_id}:item:{item_id}    zset, the same, for one item
    shipment:{shipment_id}               zset of the orders that share the shipment
    pack:{pack_id}                       JSON: the pack's order ids and shipment
    seller:{seller_id}:connected_at      ISO time of the seller's first connection
    seller:{seller_id}:profile           JSON: nickname and email (for mail)
    backfill:{seller_id}                 JSON: the seller's backfill checkpoint
    backfill:{seller_id}:lease           the run backfilling the seller now
    epoch                                JSON: this cache's epoch, "rebuilding" or "ready",
                                         since when (gone after a loss; peepers_common.rebuild)
    epoch:lease                          the lease of the replica rebuilding it

An order is written with its index entries and its pending events by one Lua script
(``lua/put_order.lua``), a compare-and-set on the record's version. Lists page by a cursor
over the chosen index (``<score>:<order_id>``), newest first; filters the index does not
cover are applied to the orders read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from importlib.resources import files
from typing import Final, cast

import redis.asyncio as aioredis

from peepers_common.errors import ConfigurationError, InvalidQuery
from peepers_common.lease import RedisLease
from peepers_common.namespaces import Namespace, redis_errors
from peepers_common.rebuild import epoch_began
from peepers_orders.lifecycle import LIFECYCLE
from peepers_orders.ports import (
    BackfillState,
    CachedOrder,
    OrderPage,
    OrderQuery,
    PackLink,
    SellerProfile,
    StoredOrder,
)

_LUA: Final = files("peepers_orders.adapters") / "lua"
_MAX_LIMIT: Final = 200
_SCAN_FACTOR: Final = 4  # index entries read per wanted order when filters remain


def lua(name: str) -> str:
    return (_LUA / name).read_text()


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisOrderStore:
    """`OrderStore` over one Redis, keys under ``namespace`` (``orders:``).

    Raises:
        CacheUnavailable: from every method, when Redis fails.
        InvalidQuery: from `search`, for a cursor it did not make.
    """

    def __init__(self, redis: aioredis.Redis, namespace: Namespace) -> None:
        if namespace.service != "orders":
            msg = f"the order store lives under orders:, not {namespace.prefix!r}"
            raise ConfigurationError(msg)
        self._redis = redis
        self._ns = namespace
        self._put = redis.register_script(lua("put_order.lua"))
        self._clear = redis.register_script(lua("clear_pending.lua"))

    def _order_key(self, order_id: int) -> str:
        return self._ns.key("order", order_id)

    def _seller_index(self, seller_id: int, *parts: str | int) -> str:
        return self._ns.key("seller", seller_id, *parts)

    async def load(self, order_id: int) -> StoredOrder:
        with redis_errors("reading an order"):
            version, data, pending = cast(
                "list[bytes | None]",
                await self._redis.hmget(self._order_key(order_id), ["version", "data", "pending"]),
            )
        if data is None:
            return StoredOrder(order=None, version=int(version or 0), pending=pending)
        return StoredOrder(
            order=CachedOrder.model_validate_json(data), version=int(version or 0), pending=pending
        )

    async def put(
        self, order: CachedOrder, *, expected_version: int, pending: bytes | None
    ) -> bool:
        summary = order.summary
        seller = order.seller_id
        member_of = [
            self._seller_index(seller, "state", summary.state),
            self._seller_index(seller, "orders"),
            self._seller_index(seller, "buyer", summary.buyer_id),
            *(
                self._seller_index(seller, "item", line.item_id)
                for line in summary.lines
                if line.item_id
            ),
        ]
        if summary.shipment_id is not None:
            member_of.append(self._ns.key("shipment", summary.shipment_id))
        leaves = [
            self._seller_index(seller, "state", state.value)
            for state in LIFECYCLE
            if state.value != summary.state
        ]
        with redis_errors("writing an order"):
            done = await self._put(
                keys=[self._order_key(summary.order_id), *member_of, *leaves],
                args=[
                    expected_version,
                    order.model_dump_json(),
                    pending or b"",
                    _ms(summary.date_created),
                    summary.order_id,
                    len(member_of),
                ],
            )
        return bool(done)

    async def clear_pending(self, order_id: int, pending: bytes) -> None:
        with redis_errors("clearing published events"):
            await self._clear(keys=[self._order_key(order_id)], args=[pending])

    async def orders_of_shipment(self, shipment_id: int) -> list[int]:
        with redis_errors("reading a shipment's orders"):
            members = cast(
                "list[bytes]",
                await self._redis.zrange(self._ns.key("shipment", shipment_id), 0, -1),
            )
        return sorted(int(member) for member in members)

    async def link_pack(self, pack: PackLink) -> None:
        body = json.dumps({"order_ids": list(pack.order_ids), "shipment_id": pack.shipment_id})
        with redis_errors("linking a pack"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self._ns.key("pack", pack.pack_id), body)  # type: ignore[unused-awaitable]
                if pack.shipment_id is not None:
                    pipe.zadd(  # type: ignore[unused-awaitable]
                        self._ns.key("shipment", pack.shipment_id),
                        dict.fromkeys(map(str, pack.order_ids), 0),
                    )
                await pipe.execute()

    async def pack(self, pack_id: int) -> PackLink | None:
        with redis_errors("reading a pack"):
            raw = await self._redis.get(self._ns.key("pack", pack_id))
        if raw is None:
            return None
        body = json.loads(raw)
        return PackLink(
            pack_id=pack_id, order_ids=tuple(body["order_ids"]), shipment_id=body["shipment_id"]
        )

    async def get_many(self, order_ids: Sequence[int]) -> list[CachedOrder]:
        if not order_ids:
            return []
        with redis_errors("reading orders"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for order_id in order_ids:
                    pipe.hget(self._order_key(order_id), "data")  # type: ignore[unused-awaitable]
                found = await pipe.execute()
        return [CachedOrder.model_validate_json(raw) for raw in found if raw is not None]

    async def count_by_state(self, seller_id: int) -> dict[str, int]:
        with redis_errors("counting orders"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for state in LIFECYCLE:
                    pipe.zcard(  # type: ignore[unused-awaitable]
                        self._seller_index(seller_id, "state", state.value)
                    )
                counts = await pipe.execute()
        return {state.value: int(n) for state, n in zip(LIFECYCLE, counts, strict=True) if n}

    async def sample_order_ids(self, seller_id: int, count: int) -> list[int]:
        with redis_errors("sampling a seller's orders"):
            found = await self._redis.zrandmember(self._seller_index(seller_id, "orders"), count)
        return [int(_text(order_id)) for order_id in cast("list[bytes]", found or [])]

    async def search(self, query: OrderQuery) -> OrderPage:
        """The seller's orders newest first, from the most selective index the query has."""
        if not 1 <= query.limit <= _MAX_LIMIT:
            msg = f"limit must be between 1 and {_MAX_LIMIT}"
            raise InvalidQuery(msg)
        if query.state is not None:
            index = self._seller_index(query.seller_id, "state", query.state)
        elif query.buyer_id is not None:
            index = self._seller_index(query.seller_id, "buyer", query.buyer_id)
        elif query.item_id is not None:
            index = self._seller_index(query.seller_id, "item", query.item_id)
        else:
            index = self._seller_index(query.seller_id, "orders")
        top, after = _cursor(query.cursor)
        if query.created_to is not None:
            top = min(top, _ms(query.created_to))
        bottom = _ms(query.created_from) if query.created_from is not None else -math.inf
        found: list[CachedOrder] = []
        while len(found) < query.limit:
            batch = query.limit * _SCAN_FACTOR
            with redis_errors("listing orders"):
                entries = cast(
                    "list[tuple[bytes, float]]",
                    await self._redis.zrange(
                        index,
                        top,
                        bottom,
                        byscore=True,
                        desc=True,
                        offset=0,
                        num=batch,
                        withscores=True,
                    ),
                )
            fresh = [
                (int(member), int(score))
                for member, score in entries
                if not (int(score) == top and after is not None and _text(member) >= after)
            ]
            if not fresh:
                break
            for order in await self.get_many([order_id for order_id, _ in fresh]):
                if _matches(order, query):
                    found.append(order)
            top, after = fresh[-1][1], str(fresh[-1][0])
            if len(entries) < batch:
                break
        page = found[: query.limit]
        more = len(found) > query.limit or (len(page) == query.limit and after is not None)
        next_cursor = None
        if more and page:
            last = page[-1].summary
            next_cursor = f"{_ms(last.date_created)}:{last.order_id}"
        return OrderPage(orders=page, next_cursor=next_cursor)


def _cursor(cursor: str | None) -> tuple[float, str | None]:
    if cursor is None:
        return math.inf, None
    score, sep, member = cursor.partition(":")
    if not sep or not score.isdigit() or not member.isdigit():
        msg = f"cursor {cursor!r} is not one this API made"
        raise InvalidQuery(msg)
    return int(score), member


def _matches(order: CachedOrder, query: OrderQuery) -> bool:
    summary = order.summary
    return (
        order.seller_id == query.seller_id
        and (query.state is None or summary.state == query.state)
        and (query.buyer_id is None or summary.buyer_id == query.buyer_id)
        and (query.item_id is None or any(line.item_id == query.item_id for line in summary.lines))
    )


class RedisSellerDirectory:
    """`SellerDirectory` and `BackfillCheckpoints` in the orders namespace."""

    def __init__(self, redis: aioredis.Redis, namespace: Namespace) -> None:
        self._redis = redis
        self._ns = namespace

    async def connected(self, seller_id: int, at: datetime) -> None:
        with redis_errors("noting a seller's connection"):
            await self._redis.set(
                self._ns.key("seller", seller_id, "connected_at"), at.isoformat(), nx=True
            )

    async def connected_at(self, seller_id: int) -> datetime | None:
        with redis_errors("reading a seller's connection"):
            raw = await self._redis.get(self._ns.key("seller", seller_id, "connected_at"))
        return None if raw is None else datetime.fromisoformat(_text(raw))

    async def epoch_started_at(self) -> datetime:
        """The epoch marker of `peepers_common.rebuild`: a lost one begins now."""
        return datetime.fromtimestamp(await epoch_began(self._redis, self._ns), UTC)

    async def profile(self, seller_id: int) -> SellerProfile | None:
        with redis_errors("reading a seller's profile"):
            raw = await self._redis.get(self._ns.key("seller", seller_id, "profile"))
        return None if raw is None else SellerProfile(**json.loads(raw))

    async def save_profile(self, profile: SellerProfile) -> None:
        with redis_errors("saving a seller's profile"):
            await self._redis.set(
                self._ns.key("seller", profile.seller_id, "profile"), json.dumps(asdict(profile))
            )

    async def load(self, seller_id: int) -> BackfillState | None:
        with redis_errors("reading a backfill checkpoint"):
            raw = await self._redis.get(self._ns.key("backfill", seller_id))
        if raw is None:
            return None
        body = json.loads(raw)
        body["created_from"] = datetime.fromisoformat(body["created_from"])
        if body.get("finished_at") is not None:
            body["finished_at"] = datetime.fromisoformat(body["finished_at"])
        return BackfillState(**body)

    async def save(self, state: BackfillState) -> None:
        finished = state.finished_at.isoformat() if state.finished_at else None
        body = {
            **asdict(state),
            "created_from": state.created_from.isoformat(),
            "finished_at": finished,
        }
        with redis_errors("saving a backfill checkpoint"):
            await self._redis.set(self._ns.key("backfill", state.seller_id), json.dumps(body))

    async def claim(self, seller_id: int, owner: str, ttl_s: float) -> bool:
        lease = RedisLease(self._redis, self._ns.key("backfill", seller_id, "lease"), owner=owner)
        return await lease.take(ttl_s)

    async def release(self, seller_id: int, owner: str) -> None:
        await self.claim(seller_id, owner, ttl_s=0.001)  # the owner's, for 1 ms more
