from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from peepers_common.consumer import ConsumerSettings
from peepers_common.ml.broker_tokens import TokenBrokerSettings
from peepers_common.rebuild import GuardOptions
from peepers_common.settings import KafkaSettings, MlApiSettings, RedisSettings


class BackfillSettings(BaseModel):
    page_size: int = Field(default=50, ge=1, le=100)
    # Items whose questions are searched at once when a seller has more than ML's
    # search shows (1,000 questions): each is one request.
    item_concurrency: int = Field(default=8, ge=1)
    # Conversations are found through the seller's orders (ML has no conversation search):
    # those created this many days back, or all of them (None, the default: every
    # conversation ML holds is mirrored, one request a pack, in the limiter's bulk lane).
    conversation_days: int | None = Field(default=None, ge=1)


class Settings(ConsumerSettings):
    """The messages service's settings, from `MESSAGES_*` variables (e.g. `MESSAGES_REDIS__URL`).

    The consumer settings (retry, batches, group, session timeout, topic prefix, Redis
    scope) come from `ConsumerSettings`.
    """

    model_config = SettingsConfigDict(env_prefix="MESSAGES_", env_nested_delimiter="__")

    http_host: str = "0.0.0.0"  # noqa: S104 - a pod serves on all its interfaces
    http_port: int = 8084
    kafka: KafkaSettings = KafkaSettings(client_id="peepers-messages")
    redis: RedisSettings = RedisSettings(username="messages")
    ml: MlApiSettings = MlApiSettings()
    token_broker: TokenBrokerSettings = TokenBrokerSettings(service="messages")
    backfill: BackfillSettings = BackfillSettings()
    # How the worker notices a lost mirror and rebuilds it (peepers_common.rebuild).
    rebuild: GuardOptions = GuardOptions()
    app_id: str = "peepers-messages"
    # Services allowed to call the API: name -> shared secret (HTTP Basic), as at auth.
    service_credentials: dict[str, SecretStr] = Field(default_factory=dict)
    # An unanswered question older than this counts as breached (ML ranks slow sellers down).
    answer_breach_after_s: float = Field(default=12 * 3600, gt=0)
    # A ticket whose claim needs the seller's action within this is flagged.
    ticket_due_within_s: float = Field(default=24 * 3600, gt=0)
    # Seller messages longer than this are refused before ML sees them. ML's pages do not
    # state a limit; public clients cap at 350 (FACTS.md 5.2, UNCERTAIN), so does the sandbox.
    message_max_chars: int = Field(default=350, ge=1)
    # How long a repeated submission waits for the first one to finish before a 409.
    submission_wait_s: float = Field(default=10.0, gt=0)
    # How often the changelog views' epoch markers are checked besides a read miss.
    changelog_check_every_s: float = Field(default=10.0, gt=0)
