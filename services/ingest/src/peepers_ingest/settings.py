from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Final

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from peepers_common.errors import ConfigurationError
from peepers_common.ml.broker_tokens import TokenBrokerSettings
from peepers_common.settings import KafkaSettings, MlApiSettings, RedisSettings

# The addresses ML sends notifications from (FACTS.md 1.5, ML's page of 14/09/2026).
ML_NOTIFIER_IPS: Final = """
44.212.211.213 52.1.149.176 52.44.99.39 52.2.210.204 52.6.145.31 54.205.100.116
184.73.213.131 52.6.10.186 52.73.233.211 3.223.169.202 34.206.9.12 34.238.55.98
3.227.34.138 3.229.206.80 34.238.221.21 13.223.211.78 44.215.49.123 54.159.49.50
13.223.10.233 13.223.33.60 3.93.112.28 13.223.124.243 3.233.174.68 50.16.251.125
50.16.65.64 54.81.195.49 54.82.205.180 3.94.30.241 54.242.75.139 98.82.195.215
34.196.28.113 44.208.170.246 52.23.122.60 13.223.232.16 13.223.236.125 44.193.180.190
13.223.107.11 3.219.157.78 3.230.160.247 13.223.154.1 44.214.161.82 54.196.88.69
100.24.130.185 3.230.190.19 35.172.55.95 23.22.202.234 3.95.35.84 54.146.232.68
13.223.135.7 52.71.11.70 54.173.9.186 100.29.255.54 34.203.95.8 52.7.171.45
3.225.202.17 34.204.236.214 52.200.170.172 34.197.223.209 50.17.138.96 54.84.11.70
3.88.83.19 52.86.119.98 54.88.119.105 13.223.210.67 54.160.66.146 54.236.191.153
13.223.210.140 44.212.229.114 52.204.14.181 34.192.190.219 44.207.104.38 52.200.84.58
35.221.4.79 34.86.252.100 34.145.201.132 34.21.78.254 34.86.6.77 35.245.10.147
35.236.212.3 136.107.43.234 34.48.38.213 35.221.39.135 34.48.138.13 35.221.12.66
54.88.218.97 18.215.140.160 18.213.114.129 18.206.34.84 35.236.253.169 35.245.91.34
35.245.20.104 35.186.182.146
""".split()  # noqa: SIM905 - laid out like ML's page, so a new list diffs line by line

Network = IPv4Network | IPv6Network


def _ml_networks() -> list[Network]:
    return [ip_network(ip) for ip in ML_NOTIFIER_IPS]


class Settings(BaseSettings):
    """The ingest service's settings, from `INGEST_*` variables (e.g. `INGEST_REDIS__URL`)."""

    model_config = SettingsConfigDict(env_prefix="INGEST_", env_nested_delimiter="__")

    http_host: str = "0.0.0.0"  # noqa: S104 - ML reaches ingest from outside the pod
    http_port: int = 8080
    log_level: str = "INFO"
    kafka: KafkaSettings = KafkaSettings(client_id="peepers-ingest")
    redis: RedisSettings = RedisSettings(username="ingest")

    # Our ML application: notifications for any other application_id are refused (403).
    # Unset, the check is off (local development only; a warning says so at startup).
    application_id: int | None = None
    # A secret last path segment (/webhooks/mercadolibre/<token>): ML does not sign its
    # notifications, so a callback URL nobody can guess is a cheap second defence. When
    # set, the paths without it answer 404.
    webhook_path_token: SecretStr | None = None
    # Optional HMAC-SHA256 of the raw body, hex, in `hmac_header` (ML does not sign).
    hmac_secret: SecretStr | None = None
    hmac_header: str = "X-Peepers-Signature"

    # A notification is a few hundred bytes; anything much bigger is not from ML.
    max_body_bytes: int = Field(default=8 * 1024, ge=512, le=1024 * 1024)
    # Source addresses allowed to post notifications (ML's published list by default).
    allowed_cidrs: list[Network] = Field(default_factory=_ml_networks)
    # Load balancers whose X-Forwarded-For is believed, for the hops they vouch for.
    trusted_proxies: list[Network] = Field(default_factory=list)

    # How long a notification waits for Kafka's ack before it goes to the spool instead;
    # ML wants our 200 within 500 ms.
    publish_budget_ms: int = Field(default=250, ge=10, le=450)
    # At startup, wait this long for Kafka before answering from the spool alone.
    kafka_connect_wait_s: float = Field(default=5.0, ge=0)
    # The durable spool (SQLite in WAL mode, fsync'd on every commit).
    spool_dir: Path = Path("/var/lib/peepers/ingest")
    spool_drain_batch: int = Field(default=500, ge=1, le=10_000)
    # Kafka topics get this prefix (shared clusters, tests); empty in production.
    topic_prefix: str = ""
    # A redelivery of an already accepted notification id is not published again.
    dedup_ttl_s: int = Field(default=24 * 3600, ge=60)

    # Inbound rate limit per source IP and for all sources together (shared via Redis).
    rate_limit_enabled: bool = True
    rate_limit_per_ip_per_s: int = Field(default=500, ge=1)
    rate_limit_total_per_s: int = Field(default=5000, ge=1)

    # The missed_feeds reconciler: on when the broker, the sellers and application_id are
    # set. missed_feeds lists the whole application's losses, whichever seller's token
    # asks, so one seller is enough; the next ones stand in when its token is refused.
    ml: MlApiSettings = MlApiSettings()
    token_broker: TokenBrokerSettings | None = None
    reconcile_seller_ids: list[int] = Field(default_factory=list)
    reconcile_interval_s: float = Field(default=300.0, gt=0)
    reconcile_page_size: int = Field(default=50, ge=1, le=1000)
    # Services allowed to call /internal/* (HTTP Basic): name -> shared secret.
    service_credentials: dict[str, SecretStr] = Field(default_factory=dict)
    # In-flight requests get this long to finish at shutdown.
    shutdown_timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _one_application(self) -> Settings:
        # The application is named once: INGEST_APPLICATION_ID is also the app_id the
        # reconciler asks missed_feeds about.
        if self.application_id is not None:
            if self.ml.app_id not in (0, self.application_id):
                msg = "INGEST_ML__APP_ID and INGEST_APPLICATION_ID name different applications"
                raise ConfigurationError(msg)
            self.ml = self.ml.model_copy(update={"app_id": self.application_id})
        return self

    def reconciler_missing(self) -> list[str]:
        """The settings the missed_feeds reconciler still needs (empty: it can run)."""
        needed = {
            "INGEST_APPLICATION_ID": self.application_id is not None,
            "INGEST_TOKEN_BROKER__*": self.token_broker is not None,
            "INGEST_RECONCILE_SELLER_IDS": bool(self.reconcile_seller_ids),
        }
        return [name for name, present in needed.items() if not present]
