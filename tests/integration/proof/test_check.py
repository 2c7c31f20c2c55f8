"""`make check` says which backfill has not finished when Peepers differs (real Redis)."""

from __future__ import annotations

from datetime import UTC, datetime

import redis.asyncio as aioredis

from peepers_common.namespaces import Namespace
from peepers_messages.backfill import BackfillState as MessagesBackfill
from peepers_messages.backfill import RedisBackfillCheckpoints
from peepers_orders.adapters.redis_store import RedisSellerDirectory
from peepers_orders.ports import BackfillState as OrdersBackfill
from peepers_proof.check import unfinished_backfills
from tests.support import unique

SELLER = 3000000001
DONE = 3000000002


async def test_a_running_backfill_is_named_and_a_done_one_is_not(
    redis_admin: aioredis.Redis,
) -> None:
    scope = unique("check")
    orders = RedisSellerDirectory(redis_admin, Namespace("orders", scope=scope))
    messages = RedisBackfillCheckpoints(redis_admin, Namespace("messages", scope=scope))
    since = datetime(2026, 11, 1, tzinfo=UTC)
    await orders.save(OrdersBackfill(SELLER, "r", since, offset=100, total=250))
    await orders.save(OrdersBackfill(DONE, "r", since, phase="done", offset=9, total=9))
    await messages.save(MessagesBackfill(SELLER, "r", phase="conversations", offset=50))
    await messages.save(MessagesBackfill(DONE, "r", phase="done"))

    lines = await unfinished_backfills(redis_admin, scope, [SELLER, DONE, 3000000003])

    assert lines == [
        f"the orders backfill of seller {SELLER} has not finished (100 of 250 orders)",
        f"the messages backfill of seller {SELLER} has not finished "
        "(phase conversations, offset 50)",
    ]
