"""End to end: ML changes items without notifying; the catalog's drift audit repairs them.

The sandbox's admin event ``silent_change`` changes an item (price, stock, version) and
sends no notification, as a webhook ML gave up on would look. Only the audit can see it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis

from peepers_common.events import ItemPriceChanged
from peepers_common.settings import KafkaSettings
from tests.e2e.catalog.harness import deployment
from tests.integration.catalog.worker import ready_worker
from tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

# 3000 calls a minute (the harness's limit) x 0.2: 10 multigets of 20 items a second;
# a silent change is audited once a second old (a webhook would have come by then).
AUDIT = {"CATALOG_AUDIT__SHARE": "0.2", "CATALOG_AUDIT__GRACE_S": "1"}


async def test_items_changed_without_a_notification_are_found_counted_and_repaired(
    kafka: KafkaSettings, catalog_redis: aioredis.Redis, tmp_path: Path
) -> None:
    async with (
        deployment(kafka, catalog_redis, tmp_path, items=60, extra_env=AUDIT) as d,
        ready_worker(d.run),
    ):
        await d.connect()
        await d.wait_converged()
        before = await d.run.metric('peepers_catalog_drift_total{field="price"}')
        changed = [d.items.item_ids()[n] for n in (3, 17, 42)]
        for item_id in changed:
            result = await d.auth.sandbox.admin.event("silent_change", item_id=item_id)
            assert "price" in result["changed"]
            d.items.record(item_id)
        await d.wait_converged(timeout_s=60)  # only the audit can bring them back

        async def counted() -> bool:
            found = await d.run.metric('peepers_catalog_drift_total{field="price"}')
            return found >= before + len(changed)

        await wait_until(counted, timeout_s=10)
        repaired = {e.item_id for e in await d.events() if isinstance(e, ItemPriceChanged)}
    assert set(changed) <= repaired
