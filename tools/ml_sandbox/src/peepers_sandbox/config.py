"""The sandbox's configuration: one pydantic model, built by the CLI or by a test.

Every behaviour that FACTS.md marks UNCERTAIN has a field here, so a test can pin the
variant it cares about. The README lists each choice and why it is the default.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEMO_APP_ID = 5503910054141466
# A documented demo credential, not a secret.
DEMO_CLIENT_SECRET = "sandbox-demo-secret"  # noqa: S105
DEMO_REDIRECT_URI = "http://localhost:8080/auth/callback"
DEMO_SELLER_ID = 3000000001

ALL_TOPICS: tuple[str, ...] = (
    "orders_v2",
    "payments",
    "shipments",
    "items",
    "items_prices",
    "questions",
    "messages",
    "post_purchase",
)


class AppConfig(BaseModel):
    """An application registered in the sandbox's DevCenter."""

    model_config = ConfigDict(extra="forbid")

    app_id: int = DEMO_APP_ID
    client_secret: str = DEMO_CLIENT_SECRET
    redirect_uris: list[str] = Field(default_factory=lambda: [DEMO_REDIRECT_URI])
    pkce_required: bool = True
    callback_url: str | None = None
    topics: list[str] = Field(default_factory=lambda: list(ALL_TOPICS))
    name: str = "Peepers Demo"


class RateLimitRule(BaseModel):
    """A fixed-window limit for one endpoint family (``*`` = every family) of one app.

    ML says limits apply "per Client ID (application) ... and per endpoint"; each rule is
    counted separately for every application unless ``app_id`` narrows it to one.
    """

    model_config = ConfigDict(extra="forbid")

    family: str = "*"
    app_id: int | None = None
    per_second: int | None = None
    per_minute: int | None = None


def _default_rate_limits() -> list[RateLimitRule]:
    # Messaging is the one family with a published quota: 500 rpm for GETs, 500 for writes.
    return [
        RateLimitRule(family="messages", per_minute=500),
        RateLimitRule(family="messages_write", per_minute=500),
    ]


class RateLimitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[RateLimitRule] = Field(default_factory=_default_rate_limits)
    body_style: Literal["local_rate_limited", "claims"] = "local_rate_limited"
    retry_after_s: int | None = None


class FaultConfig(BaseModel):
    """Injected failures on the REST API (never on the admin API)."""

    model_config = ConfigDict(extra="forbid")

    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    error_statuses: list[int] = Field(default_factory=lambda: [500, 502, 503, 504])
    latency_ms: int = Field(default=0, ge=0)
    latency_jitter_ms: int = Field(default=0, ge=0)
    drop_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    families: list[str] | None = None
    force_401_user_ids: list[int] = Field(default_factory=list)


class QuirksConfig(BaseModel):
    """Notification quirks seen in ML's samples; each can be switched off."""

    model_config = ConfigDict(extra="forbid")

    string_user_id_topics: list[str] = Field(default_factory=lambda: ["questions", "messages"])
    messages_resource_bare_id: bool = True
    claims_resource_leading_slash: bool = True
    orders_v2_omit_id: bool = False
    subtopic_id_key: Literal["_id", "id"] = "_id"
    id_style: Literal["uuid", "objectid"] = "uuid"
    claims_topic: str = "post_purchase"
    items_prices_resource: Literal["item", "prices"] = "prices"


def _default_retry_gaps() -> list[float]:
    # 8 attempts whose gaps double and add up to one hour ("eighth attempt (1 hour)").
    return [30.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1710.0]


class ChaosConfig(BaseModel):
    """Notification chaos (FACTS.md §1.1, §11), off by default.

    Real ML sends several identical notifications per change and notifications for
    changes a client cannot see; deliveries also overtake each other. Each effect is
    recorded in the attempt log (``chaos``, ``held_ms``) so a test can count it.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    duplicate_rate: float = Field(default=0.3, ge=0.0, le=1.0)
    duplicates: int = Field(default=2, ge=1, le=10)
    new_id_share: float = Field(default=0.5, ge=0.0, le=1.0)
    noop_rate: float = Field(default=0.1, ge=0.0, le=1.0)
    reorder_window_ms: int = Field(default=0, ge=0, le=60_000)
    seed: int = 0xC4A05


class NotifierConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    deadline_ms: int = 500
    request_timeout_ms: int = 5000
    retry_gaps_s: list[float] = Field(default_factory=_default_retry_gaps)
    time_compression: float = Field(default=1.0, gt=0.0)
    concurrency: int = Field(default=32, ge=1)
    source_address: str | None = None
    missed_feeds_retention_s: int = 2 * 24 * 3600
    attempt_log_size: int = 200_000
    require_grant: bool = False
    quirks: QuirksConfig = Field(default_factory=QuirksConfig)
    chaos: ChaosConfig = Field(default_factory=ChaosConfig)


class MarketplaceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = 42
    # Added to the first id of every order, pack, shipment, payment, question and claim.
    # ML never gives an id twice; two sandboxes with one seed would. Peepers keeps state
    # of its own by those ids (the orders' email ledger, tickets, answer submissions) in
    # Kafka, across runs: `make run` gives each run's marketplace an offset of its own, so
    # a new world's order 1 is not mistaken for the last world's (mailed already).
    id_offset: int = Field(default=0, ge=0, le=10**13)
    sellers: int = 3
    items_per_seller: int = 2000
    orders_per_seller: int = 120
    questions_per_seller: int = 60
    claims_per_seller: int = 4
    buyers: int = 200
    site_id: str = "MLB"


class ApiConfig(BaseModel):
    """Knobs for REST behaviours whose exact rules ML does not publish."""

    model_config = ConfigDict(extra="forbid")

    access_token_ttl_s: int = Field(default=21600, ge=1)
    refresh_token_ttl_s: int = 182 * 24 * 3600
    auth_code_ttl_s: int = Field(default=600, ge=1)
    auto_approve: bool = False
    auto_approve_user_id: int = DEMO_SELLER_ID
    scroll_ttl_s: int = Field(default=300, ge=1)
    scroll_ttl_sliding: bool = True
    items_search_max_offset: int = 1000
    orders_search_max_limit: int = 51
    questions_search_max_offset: int = 1000
    orders_search_hide_cancelled: bool = True
    message_text_max_len: int = 350
    message_by_id_shape: Literal["envelope", "bare"] = "envelope"
    # GET /shipments/{id} without ``x-format-new: true``: the legacy superset, or a 400.
    shipments_legacy_format: Literal["legacy", "error"] = "legacy"


class SandboxConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = 0
    apps: list[AppConfig] = Field(default_factory=lambda: [AppConfig()])
    marketplace: MarketplaceConfig = Field(default_factory=MarketplaceConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    rate_limits: RateLimitConfig = Field(default_factory=RateLimitConfig)
    faults: FaultConfig = Field(default_factory=FaultConfig)
    notifier: NotifierConfig = Field(default_factory=NotifierConfig)
    activity_rate: float = 0.0
    activity_mix: dict[str, float] | None = None
    access_log: bool = False
