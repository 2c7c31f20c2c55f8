"""The Mercado Libre API client: typed, rate-limited across replicas, self-healing."""

from peepers_common.ml.client import HttpMlApi, MlApi, Multiget, endpoint_family, ml_session
from peepers_common.ml.ratelimit import OutboundLimiter
from peepers_common.ml.tokens import MlOAuthClient, OAuthTokenProvider, TokenProvider, TokenSet

__all__ = [
    "HttpMlApi",
    "MlApi",
    "MlOAuthClient",
    "Multiget",
    "OAuthTokenProvider",
    "OutboundLimiter",
    "TokenProvider",
    "TokenSet",
    "endpoint_family",
    "ml_session",
]
