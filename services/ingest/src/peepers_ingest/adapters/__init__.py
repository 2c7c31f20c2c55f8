"""Adapters behind ingest's ports: Kafka, the SQLite spool, Redis dedup marks."""

from peepers_ingest.adapters.kafka import ReconnectingPublisher
from peepers_ingest.adapters.redis_batch import RedisBatcher
from peepers_ingest.adapters.redis_dedup import RedisDeduplicator
from peepers_ingest.adapters.sqlite_spool import SqliteSpool

__all__ = ["ReconnectingPublisher", "RedisBatcher", "RedisDeduplicator", "SqliteSpool"]
