"""The exception tree every Peepers package raises from.

::

    PeepersError
    ├── ConfigurationError (ValueError)      settings that cannot work
    ├── UnknownTopicError (KeyError)         a topic name the registry does not hold
    ├── NamespaceViolation (ValueError)      a Redis key outside the service's namespace
    └── InfrastructureError                  Kafka or Redis failed (translated at the adapter)
        ├── PublishError                     Kafka did not acknowledge a record
        └── CacheUnavailable                 Redis did not answer

Adapters translate library errors (aiokafka, redis, aiohttp) into these, so handlers
never catch a library's exception.
"""

from __future__ import annotations


class PeepersError(Exception):
    """Root of every error raised by Peepers code."""


class ConfigurationError(PeepersError, ValueError):
    """Settings that cannot work."""


class UnknownTopicError(PeepersError, KeyError):
    """A topic name that the registry does not hold."""


class NamespaceViolation(PeepersError, ValueError):
    """A Redis key outside the calling service's namespace."""


class InfrastructureError(PeepersError):
    """Kafka or Redis failed; the message says which and why."""


class PublishError(InfrastructureError):
    """Kafka did not acknowledge a record."""


class CacheUnavailable(InfrastructureError):
    """Redis did not answer."""
