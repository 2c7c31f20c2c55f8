"""`SyncCheckpoints` in Redis: the state as one JSON string, the scanned ids as a list."""

from __future__ import annotations

import dataclasses
import json
from typing import Final

import redis.asyncio as aioredis

from peepers_catalog.ports import SyncState
from peepers_common.namespaces import Namespace, redis_errors

_STATE: Final = "sync:{seller_id}"
_IDS: Final = "sync:{seller_id}:ids"


class RedisSyncCheckpoints:
    def __init__(self, redis: aioredis.Redis, namespace: Namespace) -> None:
        self._redis = redis
        self._ns = namespace

    def _state_key(self, seller_id: int) -> str:
        return self._ns.key(_STATE.format(seller_id=seller_id))

    def _ids_key(self, seller_id: int) -> str:
        return self._ns.key(_IDS.format(seller_id=seller_id))

    async def load(self, seller_id: int) -> SyncState | None:
        with redis_errors("loading a sync checkpoint"):
            raw = await self._redis.get(self._state_key(seller_id))
        return None if raw is None else SyncState(**json.loads(raw))

    async def save(self, state: SyncState) -> None:
        value = json.dumps(dataclasses.asdict(state))
        with redis_errors("saving a sync checkpoint"):
            await self._redis.set(self._state_key(state.seller_id), value)

    async def reset_ids(self, seller_id: int) -> None:
        with redis_errors("resetting scanned ids"):
            await self._redis.delete(self._ids_key(seller_id))

    async def append_ids(self, seller_id: int, item_ids: list[str]) -> None:
        if not item_ids:
            return
        with redis_errors("appending scanned ids"):
            await self._redis.rpush(self._ids_key(seller_id), *item_ids)

    async def ids(self, seller_id: int, start: int, stop: int) -> list[str]:
        if stop <= start:
            return []
        with redis_errors("reading scanned ids"):
            raw = await self._redis.lrange(self._ids_key(seller_id), start, stop - 1)
        return [value.decode() if isinstance(value, bytes) else value for value in raw]
