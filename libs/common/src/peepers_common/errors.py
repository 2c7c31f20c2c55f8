"""The exception tree every Peepers package raises from.

::

    PeepersError
    ├── ConfigurationError (ValueError)      settings that cannot work
    ├── UnknownTopicError (KeyError)         a topic name the registry does not hold
    ├── NamespaceViolation (ValueError)      a Redis key outside the service's namespace
    ├── InvalidQuery (ValueError)            a read API's parameters cannot be answered (400)
    ├── ServiceUnauthorized                  an internal API called without valid service
    │                                        credentials (401)
    ├── ResourceBusy                         another worker holds it (e.g. a seller's sync);
    │                                        retry later
    ├── InfrastructureError                  Kafka or Redis failed (translated at the adapter)
    │   ├── PublishError                     Kafka did not acknowledge a record
    │   └── CacheUnavailable                 Redis did not answer
    ├── MlApiError                           Mercado Libre answered with an error, or not at all
    │   ├── MlBadRequest (400)               our request was wrong; no retry
    │   ├── MlUnauthorized (401)             still 401 after one token refresh
    │   ├── MlForbidden (403)                the seller or app may not see it; no retry
    │   ├── MlNotFound (404)                 no such resource; no retry
    │   ├── MlRateLimited (429)              still limited when the call's budget ran out
    │   └── MlUnavailable                    5xx, dropped connections, timeouts past the budget
    └── TokenError                           no usable access token for a seller
        ├── ReauthRequired                   ML refused the refresh (invalid_grant): the seller
        │                                    must log in again
        └── TokenUnavailable                 the token source failed (retryable)

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


class InvalidQuery(PeepersError, ValueError):
    """A read API's parameters cannot be answered: a bad filter, sort, limit or cursor."""


class ServiceUnauthorized(PeepersError):
    """An internal API was called without valid service credentials (HTTP Basic)."""


class ResourceBusy(PeepersError):
    """Another worker holds the resource right now; retrying later may work."""


class InfrastructureError(PeepersError):
    """Kafka or Redis failed; the message says which and why."""


class PublishError(InfrastructureError):
    """Kafka did not acknowledge a record."""


class CacheUnavailable(InfrastructureError):
    """Redis did not answer."""


class MlApiError(PeepersError):
    """Mercado Libre answered with an error, or not at all.

    Attributes:
        status: the HTTP status (0 when ML never answered).
        error: ML's ``error`` code, when its body had one.
        path: the resource requested, without query string.
    """

    def __init__(
        self, message: str, *, status: int = 0, error: str | None = None, path: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.path = path


class MlBadRequest(MlApiError):
    """400: the request was wrong; retrying cannot help."""


class MlUnauthorized(MlApiError):
    """401 even after one token refresh."""


class MlForbidden(MlApiError):
    """403: another seller's resource, a revoked app, missing scopes."""


class MlNotFound(MlApiError):
    """404: no such resource."""


class MlRateLimited(MlApiError):
    """429 until the call's budget ran out."""

    def __init__(self, message: str, *, retry_after_s: float | None = None, path: str = "") -> None:
        super().__init__(message, status=429, error="local_rate_limited", path=path)
        self.retry_after_s = retry_after_s


class MlUnavailable(MlApiError):
    """5xx, dropped connections or timeouts until the call's budget ran out."""


class TokenError(PeepersError):
    """No usable access token for a seller."""

    def __init__(self, message: str, *, seller_id: int) -> None:
        super().__init__(message)
        self.seller_id = seller_id


class ReauthRequired(TokenError):
    """ML refused the refresh (``invalid_grant``): the seller must log in again."""


class TokenUnavailable(TokenError):
    """The token source failed for now; retrying later may work."""
