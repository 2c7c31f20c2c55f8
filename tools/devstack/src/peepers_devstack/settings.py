"""What the orchestrator reads from the environment: where the local stack is.

``scripts/run`` sources ``.stack/env`` (written by ``scripts/stack up``) before starting
the orchestrator; the children inherit that environment, plus what the orchestrator
generates for each of them.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from peepers_common.settings import KafkaSettings

# The stack variables each child needs from .stack/env (Kafka, its Redis ACL user).
REQUIRED_STACK_VARS = tuple(
    f"{service}_{name}"
    for service in ("INGEST", "AUTH", "CATALOG")
    for name in ("KAFKA__BOOTSTRAP_SERVERS", "REDIS__URL", "REDIS__USERNAME", "REDIS__PASSWORD")
)


class Settings(BaseSettings):
    """``PEEPERS_*`` variables, as ``scripts/stack`` writes them."""

    model_config = SettingsConfigDict(
        env_prefix="PEEPERS_", env_nested_delimiter="__", extra="ignore"
    )

    stack_dir: Path = Path(".stack")
    kafka: KafkaSettings = KafkaSettings()


def inherited_environment() -> dict[str, str]:
    """The environment the children start from (PATH, the stack's variables, ...)."""
    return dict(os.environ)


def missing_stack_vars() -> list[str]:
    return [name for name in REQUIRED_STACK_VARS if not os.environ.get(name)]
