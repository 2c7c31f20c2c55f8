"""ML's messaging quota, shared by every replica, against the real Redis and sandbox."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import redis.asyncio as aioredis

from peepers_common.settings import MlLimit
from peepers_messages.handlers import sync_conversation
from peepers_sandbox.app import run_sandbox
from peepers_sandbox.config import (
    MarketplaceConfig,
    NotifierConfig,
    RateLimitRule,
    SandboxConfig,
)
from tests.integration.messages.harness import wired
from tests.support import ml_client, unique

# A second of ML's messaging quota, scaled down so the test takes seconds, not minutes.
PER_SECOND = 8


class TestMessagingQuota:
    async def test_two_replicas_syncing_conversations_together_stay_within_mls_quota(
        self, redis: aioredis.Redis
    ) -> None:
        config = SandboxConfig(
            marketplace=MarketplaceConfig(
                sellers=1,
                items_per_seller=10,
                orders_per_seller=24,
                questions_per_seller=0,
                claims_per_seller=0,
                buyers=10,
            ),
            notifier=NotifierConfig(enabled=False),
        )
        config.rate_limits.rules = [RateLimitRule(family="messages", per_second=PER_SECOND)]
        # One app: its replicas share the budget; calls wait in it longer than one's budget.
        options = {
            "limiter_scope": unique("ml"),
            "family_limits": {"messages": MlLimit(amount=PER_SECOND, per_s=1)},
            "call_budget_s": 20.0,
        }
        async with run_sandbox(config) as sandbox:
            market = sandbox.state.market
            seller = market.sellers[0]
            packs = sorted({market.orders[o]["pack_id"] for o in market.orders_by_seller[seller]})
            async with (
                ml_client(sandbox, [seller], **options) as (one, _),
                ml_client(sandbox, [seller], **options) as (two, _),
            ):
                first, _ = wired(one, redis)
                second = replace(first, ml=two)
                half = len(packs) // 2
                await asyncio.gather(
                    *(sync_conversation(pack, seller, first) for pack in packs[:half]),
                    *(sync_conversation(pack, seller, second) for pack in packs[half:]),
                )
            counters = await sandbox.admin.rate_limit_counters()
        reads = [c for c in counters if c["family"] == "messages"]
        assert sum(c["total"] for c in reads) >= len(packs) > 2 * PER_SECOND
        assert [c["limited"] for c in reads] == [0] * len(reads)
        assert max(c["max_per_second"] for c in reads) <= PER_SECOND
