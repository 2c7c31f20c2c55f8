"""Typed aiohttp state: what create_app puts on the application and the request."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from peepers_ingest.handlers import Intake
from peepers_ingest.inbound_limits import InboundRateLimit
from peepers_ingest.ports import Spool
from peepers_ingest.reconciler import Reconciler
from peepers_ingest.security import SourceCheck
from peepers_ingest.settings import Settings

__all__ = [
    "client_ip_key",
    "intake_key",
    "publisher_state_key",
    "rate_limit_key",
    "reconciler_key",
    "settings_key",
    "source_check_key",
    "spool_key",
]

settings_key = web.AppKey("settings_key", Settings)
intake_key = web.AppKey("intake_key", Intake)
spool_key = web.AppKey[Spool]("spool_key")
rate_limit_key = web.AppKey[InboundRateLimit | None]("rate_limit_key")
# Whether the Kafka producer is connected (for /readyz).
publisher_state_key = web.AppKey[Callable[[], bool]]("publisher_state_key")
source_check_key = web.AppKey("source_check_key", SourceCheck)
# None while the missed_feeds reconciler is off (not configured).
reconciler_key = web.AppKey[Reconciler | None]("reconciler_key")
client_ip_key = web.RequestKey("client_ip_key", str)
