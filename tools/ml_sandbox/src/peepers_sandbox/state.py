"""Everything one sandbox holds in memory, wired together."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from peepers_sandbox.activity import Activity
from peepers_sandbox.clock import Clock
from peepers_sandbox.config import SandboxConfig
from peepers_sandbox.limits import RateLimiter
from peepers_sandbox.marketplace import Marketplace
from peepers_sandbox.notifier import Notifier
from peepers_sandbox.oauth import OAuthServer


@dataclass
class Scroll:
    seller_id: int
    ids: list[str]
    position: int
    expires_at: float


@dataclass
class SandboxState:
    config: SandboxConfig
    clock: Clock
    market: Marketplace
    oauth: OAuthServer
    limiter: RateLimiter
    notifier: Notifier
    activity: Activity
    fault_rng: random.Random
    scrolls: dict[str, Scroll] = field(default_factory=dict)

    @classmethod
    def build(cls, config: SandboxConfig) -> SandboxState:
        clock = Clock()
        market = Marketplace(config.marketplace, clock)
        oauth = OAuthServer(config.apps, config.api, clock)
        notifier = Notifier(config.notifier, oauth.apps, clock)
        notifier.has_grant = oauth.has_grant
        market.on_change = notifier.notify
        return cls(
            config=config,
            clock=clock,
            market=market,
            oauth=oauth,
            limiter=RateLimiter(config.rate_limits),
            notifier=notifier,
            activity=Activity(market, config.marketplace.seed),
            fault_rng=random.Random(config.marketplace.seed ^ 0xFA17),  # noqa: S311
        )
