from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from peepers_common.consumer import ConsumerSettings, RetrySettings
from peepers_common.ml.broker_tokens import TokenBrokerSettings
from peepers_common.settings import KafkaSettings, MlApiSettings, RedisSettings

# Every transition a seller can hear about; order.snapshot never sends mail.
MAIL_TRANSITIONS = (
    "created",
    "paid",
    "shipped",
    "delivered",
    "cancelled",
    "refunded",
    "partially_refunded",
    "not_delivered",
)


class BackfillSettings(BaseModel):
    """On seller.connected: the seller's orders of the last `days` days, page by page."""

    days: int = Field(default=30, ge=1, le=3650)
    page_size: int = Field(default=50, ge=1, le=51)


class AuditSettings(BaseModel):
    """The drift auditor (peepers_orders.audit): a share of the ML budget, at most."""

    share: float = Field(default=0.02, ge=0, le=1)  # 0 turns it off
    # And never more than this: a share of a large (or, in a bench, unbounded) limit
    # would compete with the webhooks for the worker's time and the ML connection pool.
    max_calls_per_s: float = Field(default=5.0, gt=0)
    batch: int = Field(default=5, ge=1, le=50)  # orders per sample
    # Orders ML changed this recently are not audited: their webhook is likely in flight.
    grace_s: float = Field(default=30.0, ge=0)


class SmtpSettings(BaseModel):
    """The SMTP server the seller's emails go through (aiosmtplib)."""

    host: str = "127.0.0.1"
    port: int = 25
    # STARTTLS after connecting (port 587), or TLS from the start (port 465); not both.
    starttls: bool = False
    use_tls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    timeout_s: float = Field(default=10.0, gt=0)
    from_address: str = "Peepers <vendas@peepers.local>"
    # Mail to every seller goes here instead of the seller's ML email when set (staging).
    override_to: str | None = None


class MailSettings(BaseModel):
    transitions: list[str] = Field(default_factory=lambda: list(MAIL_TRANSITIONS))
    # pt-BR by default (ML Brasil's sellers); en available.
    locale: str = "pt-BR"
    # The mailer's own consumer group on peepers.orders.v1, in its own process (`python -m
    # peepers_orders mailer`): a slow SMTP server never holds up the order cache. An
    # outage parks mail for longer and longer, for about a day.
    app_id: str = "peepers-orders-mailer"
    retry: RetrySettings = RetrySettings(
        in_place_attempts=2,
        park_delays_s=[10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, *[7200.0] * 10],
    )


class Settings(ConsumerSettings):
    """The orders service's settings, from `ORDERS_*` variables (e.g. `ORDERS_REDIS__URL`).

    The consumer settings (retry, batches, group, session timeout, topic prefix, Redis
    scope) come from `ConsumerSettings`.
    """

    model_config = SettingsConfigDict(env_prefix="ORDERS_", env_nested_delimiter="__")

    http_host: str = "0.0.0.0"  # noqa: S104 - a pod serves on all its interfaces
    http_port: int = 8082
    kafka: KafkaSettings = KafkaSettings(client_id="peepers-orders")
    redis: RedisSettings = RedisSettings(username="orders")
    ml: MlApiSettings = MlApiSettings()
    token_broker: TokenBrokerSettings = TokenBrokerSettings(service="orders")
    app_id: str = "peepers-orders"
    backfill: BackfillSettings = BackfillSettings()
    audit: AuditSettings = AuditSettings()
    smtp: SmtpSettings = SmtpSettings()
    mail: MailSettings = MailSettings()
    # How often a worker checks that its cache was not lost (peepers_orders.rebuild).
    cache_check_every_s: float = Field(default=10.0, gt=0)
    # Analytics days are the seller's days (ML Brasil: Sao Paulo time).
    analytics_timezone: str = "America/Sao_Paulo"
    # Services allowed to call the read API: name -> shared secret (HTTP Basic), as at auth.
    service_credentials: dict[str, SecretStr] = Field(default_factory=dict)
