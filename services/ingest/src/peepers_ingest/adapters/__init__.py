"""Adapters behind ingest's ports: Kafka, the SQLite spool, Redis dedup marks, missed_feeds."""

from peepers_ingest.adapters.kafka import ReconnectingPublisher
from peepers_ingest.adapters.ml_missed_feeds import MlMissedFeedsSource
from peepers_ingest.adapters.redis_dedup import RedisDeduplicator
from peepers_ingest.adapters.sqlite_spool import SqliteSpool

__all__ = [
    "MlMissedFeedsSource",
    "ReconnectingPublisher",
    "RedisDeduplicator",
    "SqliteSpool",
]
