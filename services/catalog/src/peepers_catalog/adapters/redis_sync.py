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
_CLAIM: Final = "sync:{seller_id}:claim"
# Claim (or extend) when free or already ours; otherwise answer the holder.
_CLAIM_SCRIPT: Final = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return holder end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
_RELEASE_SCRIPT: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisSyncCheckpoints:
    def __init__(self, redis: aioredis.Redis, namespace: Namespace) -> None:
        self._redis = redis
        self._ns = namespace
        self._claim = redis.register_script(_CLAIM_SCRIPT)
        self._release = redis.register_script(_RELEASE_SCRIPT)

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

    async def claim(self, seller_id: int, owner: str, ttl_s: float) -> str | None:
        key = self._ns.key(_CLAIM.format(seller_id=seller_id))
        with redis_errors("claiming a seller's sync"):
            holder = await self._claim(keys=[key], args=[owner, int(ttl_s * 1000)])
        if holder is None:
            return None
        return holder.decode() if isinstance(holder, bytes) else str(holder)

    async def release(self, seller_id: int, owner: str) -> None:
        key = self._ns.key(_CLAIM.format(seller_id=seller_id))
        with redis_errors("releasing a seller's sync"):
            await self._release(keys=[key], args=[owner])
