"""Who rebuilds a lost catalog cache when the roles are split (`CATALOG_ROLE`).

A fresh scope has no epoch marker, as after a loss. The guard of a process that runs the
syncs (`all`, `sync`) writes a new epoch and rebuilds; an `items` process only observes,
so the resync of every seller stays off the webhooks' process.
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from peepers_catalog.app import open_wiring
from peepers_catalog.settings import Settings
from peepers_common.namespaces import Namespace
from tests.support import unique

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("role", "rebuilds"), [("all", True), ("sync", True), ("items", False)])
async def test_only_the_role_that_syncs_rebuilds_a_lost_cache(
    catalog_redis: aioredis.Redis, role: str, rebuilds: bool
) -> None:
    scope = unique("cat")
    settings = Settings(role=role, redis_scope=scope, topic_prefix=f"{scope}.")
    marker = Namespace("catalog", scope=scope).key("epoch")
    async with open_wiring(settings) as wiring:
        await wiring.guard.check("test")
        written = await catalog_redis.get(marker)
        rebuilding = wiring.guard.rebuilding
    assert (written is not None) == rebuilds
    assert rebuilding  # the rebuilder's epoch is new; an observer waits for the marker
