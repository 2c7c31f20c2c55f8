"""What the messages rebuild after a lost mirror costs in ML requests, per seller.

```sh
set -a; . .stack/env; set +a
uv run python -m bench.messages_rebuild   # --sellers 20 --orders 220 --questions 60 --claims 4
uv run python -m bench.messages_rebuild --sellers 5 --messaging-per-minute 500   # timed
```

An in-process sandbox seeded like the whole-stack proof's sellers (`--orders` each, 40%
of them with a conversation; `--questions`, 60% answered; `--claims`), no notifier, every
request counted. Each seller is first backfilled as on `seller.connected` (every order's
pack read: what the rebuild did before the conversations index), half the claims are
closed, the scratch scope is deleted (the mirror lost, and the index's view with it),
then `rebuild_messages` runs over every seller as the worker's cache guard calls it.
Prints, for both, the requests per endpoint family and per seller, the wall time, and
the time the `messages` family alone needs at ML's messaging quota (500 a minute): the
floor when that quota binds, as in the proof. With `--messaging-per-minute` the quota is
kept (the worker's limiter, and the sandbox refusing past it): the wall times are then
the real ones under it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from bench.messages import cleanup_scope
from peepers_common.changelog import RedisViewMarker
from peepers_common.errors import MlUnavailable
from peepers_common.namespaces import Namespace, connect_redis
from peepers_common.rebuild import GuardOptions
from peepers_common.settings import MlApiSettings, MlLimit, StackSettings
from peepers_common.testing import InMemoryEventPublisher
from peepers_messages.adapters import RedisConversations, RedisMirror, RedisTickets
from peepers_messages.backfill import BackfillOptions, RedisBackfillCheckpoints, backfill
from peepers_messages.handlers import Messages
from peepers_messages.rebuild import rebuild_messages
from peepers_messages.settings import Settings
from peepers_sandbox.app import Sandbox, run_sandbox
from peepers_sandbox.config import (
    MarketplaceConfig,
    NotifierConfig,
    RateLimitConfig,
    RateLimitRule,
    SandboxConfig,
)
from tests.integration.messages.harness import NoChangelog, changelog_topics, open_changelog
from tests.support import ml_client, unique

MESSAGING_PER_MINUTE = 500


async def counters(sandbox: Sandbox) -> Counter[str]:
    found: Counter[str] = Counter()
    for counter in await sandbox.admin.rate_limit_counters():
        found[str(counter["family"])] += int(counter["total"])
    return found


async def close_half_the_claims(sandbox: Sandbox) -> int:
    market = sandbox.state.market
    closed = 0
    for seller in market.sellers:
        for claim_id in market.claims_by_seller[seller][::2]:
            await sandbox.admin.event("claim_close", claim_id=claim_id)
            closed += 1
    return closed


async def requests_of(
    sandbox: Sandbox, run: Callable[[], Awaitable[object]]
) -> tuple[Counter[str], float, int]:
    """The ML requests by family ``run`` made, its wall time, and its attempts.

    An attempt that fails (a call whose budget ran out waiting for the limiter) is tried
    again after the cache guard's retry pause, resuming from the checkpoints, as the
    worker's guard (or its consumer's retry) would.
    """
    before = await counters(sandbox)
    began = time.monotonic()
    attempts = 1
    while True:
        try:
            await run()
            break
        except MlUnavailable as exc:
            print(f"attempt {attempts} failed, retried: {exc}", file=sys.stderr)
            attempts += 1
            await asyncio.sleep(GuardOptions().retry_after_s)
    return await counters(sandbox) - before, time.monotonic() - began, attempts


def figures(made: Counter[str], wall_s: float, attempts: int, sellers: int) -> dict[str, Any]:
    messaging = made.get("messages", 0)
    return {
        "attempts": attempts,
        "requests by family": dict(sorted(made.items())),
        "requests per seller by family": {
            family: round(n / sellers, 1) for family, n in sorted(made.items())
        },
        "wall s": round(wall_s, 2),
        "messages family at 500/min, s": round(60 * messaging / MESSAGING_PER_MINUTE, 1),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    quota = args.messaging_per_minute
    rules = [RateLimitRule(family="messages", per_minute=quota)] if quota else []
    # The worker's own limiter keeps the quota, as in production (none: unlimited).
    limits = {"messages": MlLimit(amount=quota, per_s=60)} if quota else {}
    budget = MlApiSettings.model_fields["call_budget_s"].default  # production's, not a test's
    config = SandboxConfig(
        marketplace=MarketplaceConfig(
            sellers=args.sellers,
            items_per_seller=args.items,
            orders_per_seller=args.orders,
            questions_per_seller=args.questions,
            claims_per_seller=args.claims,
            buyers=200,
        ),
        notifier=NotifierConfig(enabled=False),
        rate_limits=RateLimitConfig(rules=rules),
    )
    scope = unique("bench-msg-rebuild")
    kafka = StackSettings().kafka
    async with AsyncExitStack() as stack, run_sandbox(config) as sandbox:
        sellers = list(sandbox.state.market.sellers)
        redis = connect_redis(Settings().redis)
        stack.push_async_callback(cleanup_scope, scope)
        stack.push_async_callback(redis.aclose)
        ml, _tokens = await stack.enter_async_context(
            ml_client(
                sandbox, sellers, limiter_scope=scope, family_limits=limits, call_budget_s=budget
            )
        )
        namespace = Namespace("messages", scope=scope)
        _, _, topic = await changelog_topics(kafka)
        conversations = RedisConversations(redis, namespace)
        marker = RedisViewMarker(redis, namespace, "conversations")
        conversation_log = await open_changelog(stack, kafka, topic, conversations, marker)
        deps = Messages(
            ml=ml,
            mirror=RedisMirror(redis, namespace),
            tickets=RedisTickets(redis, namespace),
            ticket_log=NoChangelog(),
            conversations=conversations,
            conversation_log=conversation_log,
            publisher=InMemoryEventPublisher(),
            events_topic="events",
        )
        checkpoints = RedisBackfillCheckpoints(redis, namespace)

        async def connect_all() -> None:
            for seller in sellers:
                await backfill(seller, deps, checkpoints, BackfillOptions(run_id="connect"))

        async def rebuild() -> None:
            options = BackfillOptions(run_id="unused")
            resync = await rebuild_messages(
                "bench", deps, (conversation_log,), sellers, checkpoints, options
            )
            if resync is not None:
                await resync()

        connected = await requests_of(sandbox, connect_all)
        closed = await close_half_the_claims(sandbox)
        await cleanup_scope(scope)  # the mirror lost, the index's view with it
        rebuilt = await requests_of(sandbox, rebuild)
        market = sandbox.state.market
        claims = [c for s in sellers for c in market.claims_by_seller[s]]
        mirrored = [await deps.mirror.claim(c) for c in claims]
        packs = [p for p, ids in market.messages_by_pack.items() if ids]
        held = [await deps.mirror.conversation(p) for p in packs]
    return {
        "sellers": len(sellers),
        "conversations": len(packs),
        "claims closed before the loss": closed,
        "claims mirrored after": f"{sum(c is not None for c in mirrored)} of {len(claims)}",
        "conversations mirrored after": f"{sum(c is not None for c in held)} of {len(packs)}",
        "first connection (every order's pack)": figures(*connected, len(sellers)),
        "rebuild after the loss": figures(*rebuilt, len(sellers)),
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sellers", type=int, default=20)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--orders", type=int, default=220)
    parser.add_argument("--questions", type=int, default=60)
    parser.add_argument("--claims", type=int, default=4)
    parser.add_argument(
        "--messaging-per-minute",
        type=int,
        default=0,
        help="ML's messaging quota, kept by the sandbox and the worker's limiter (0: none)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(parse())), indent=2))
