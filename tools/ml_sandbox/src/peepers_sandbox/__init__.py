"""A faithful local Mercado Livre: OAuth with PKCE, REST API, rate limits, faults, notifier."""

from peepers_sandbox.app import Sandbox, create_app, run_sandbox
from peepers_sandbox.client import SandboxAdmin, SandboxAdminError
from peepers_sandbox.config import (
    DEMO_APP_ID,
    DEMO_CLIENT_SECRET,
    DEMO_REDIRECT_URI,
    DEMO_SELLER_ID,
    ApiConfig,
    AppConfig,
    ChaosConfig,
    FaultConfig,
    MarketplaceConfig,
    NotifierConfig,
    QuirksConfig,
    RateLimitConfig,
    RateLimitRule,
    SandboxConfig,
)
from peepers_sandbox.oauth import s256
from peepers_sandbox.state import SandboxState

__all__ = [
    "DEMO_APP_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_REDIRECT_URI",
    "DEMO_SELLER_ID",
    "ApiConfig",
    "AppConfig",
    "ChaosConfig",
    "FaultConfig",
    "MarketplaceConfig",
    "NotifierConfig",
    "QuirksConfig",
    "RateLimitConfig",
    "RateLimitRule",
    "Sandbox",
    "SandboxAdmin",
    "SandboxAdminError",
    "SandboxConfig",
    "SandboxState",
    "create_app",
    "run_sandbox",
    "s256",
]
