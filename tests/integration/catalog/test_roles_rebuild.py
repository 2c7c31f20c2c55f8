"""Who rebuilds a lost catalog cache when the roles are split (`CATALOG_ROLE`).

The guard of a process that runs the syncs (`all`, `sync`) rebuilds; an `items` process
only observes (a fresh scope has no epoch marker, as after a loss: it writes none), so
the resync of every seller stays off the webhooks' process.
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
async def test_only_the_role_that_syncs_rebuilds_a_lost_cache(role: str, rebuilds: bool) -> None:
    scope = unique("cat")
    settings = Settings(role=role, redis_scope=scope, topic_prefix=f"{scope}.")
    async with open_wiring(settings) as wiring:
        assert wiring.guard.rebuilds == rebuilds


async def test_an_items_process_finding_the_cache_lost_observes_and_writes_no_epoch(
    catalog_redis: aioredis.Redis,
) -> None:
    scope = unique("cat")
    settings = Settings(role="items", redis_scope=scope, topic_prefix=f"{scope}.")
    async with open_wiring(settings) as wiring:
        await wiring.guard.check("test")  # no marker: as after a loss
        assert wiring.guard.rebuilding  # it says so, and waits for the sync process
    assert await catalog_redis.get(Namespace("catalog", scope=scope).key("epoch")) is None
