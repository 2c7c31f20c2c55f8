"""`RedisLease`: a key one owner holds at a time, for a while, renewed by taking it again.

For work one replica of a service should do at a time (a cache rebuild, the drift audit):
no fencing token, so the work itself must be safe to overlap briefly (both are
idempotent); the lease only keeps replicas from doubling it.
"""

from __future__ import annotations

from typing import Final
from uuid import uuid4

import redis.asyncio as aioredis

from peepers_common.namespaces import redis_errors

# Take the lease when free, or keep it when ours.
_TAKE: Final = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


class RedisLease:
    def __init__(self, redis: aioredis.Redis, key: str, *, owner: str | None = None) -> None:
        self.key = key
        # One owner per lease by default; a process holding many keys may name itself.
        self.owner = owner or f"replica-{uuid4().hex}"
        self._take = redis.register_script(_TAKE)

    async def take(self, ttl_s: float) -> bool:
        """Hold the lease for ``ttl_s`` from now; False when another owner holds it."""
        with redis_errors(f"taking the lease {self.key}"):
            held = await self._take(keys=[self.key], args=[self.owner, int(ttl_s * 1000)])
        return bool(held)
