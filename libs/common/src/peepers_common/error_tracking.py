"""Error tracking (the original design's ErrorTracker): Sentry, off unless a DSN is set.

Each service's ``__main__`` calls `init_error_tracking` with `ErrorTrackingSettings`
(``PEEPERS_SENTRY_DSN``, ``PEEPERS_SENTRY_ENVIRONMENT``, ``PEEPERS_SENTRY_RELEASE``: one
DSN for every service, told apart by the ``service`` tag). Without a DSN nothing is
imported or sent. With one, unhandled exceptions and ERROR log records become events,
tagged with the service, the trace id (`peepers_common.tracing`) and the seller the work
was for (`bind_seller`; consumers bind it from each record's key).

Nothing secret leaves the process:

- no frame locals (a handler's locals hold tokens), no user, cookies, request headers,
  bodies or query strings (``data_collection``: all off);
- every value under a key that names a secret (Sentry's own denylist plus ours:
  ``access_token``, ``refresh_token``, ``client_secret``, ``code_verifier``, ...) is
  replaced, at any depth (``before_send``: the SDK ignores its ``EventScrubber`` once
  ``data_collection`` is set);
- every string left anywhere in the event (messages, exception values, breadcrumbs, tags)
  has ML tokens, bearer tokens and credentials in URLs masked (`scrub_text`).

Performance tracing stays off: traces go through ``traceparent`` and the logs.
"""

from __future__ import annotations

import functools
import re
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, Final, cast

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from peepers_common.logs import redact
from peepers_common.tracing import current_trace

if TYPE_CHECKING:
    from sentry_sdk.transport import Transport
    from sentry_sdk.types import Breadcrumb, BreadcrumbHint, Event, Hint

current_seller: ContextVar[int | None] = ContextVar("current_seller", default=None)

# Keys whose values never leave the process (compared lower-cased, "-" as "_"), with
# the keys of Sentry's DEFAULT_DENYLIST.
SECRET_KEYS: Final = (
    "access_token",
    "refresh_token",
    "client_secret",
    "code_verifier",
    "code",
    "token_keys",
    "hmac_secret",
    "webhook_path_token",
    "service_credentials",
    "dsn",
    "x-hub-signature",
)
FILTERED: Final = "[Filtered]"
_BEARER: Final = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}")
_URL_CREDENTIALS: Final = re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+@")


class ErrorTrackingSettings(BaseSettings):
    """``PEEPERS_SENTRY_*``: shared by every service."""

    model_config = SettingsConfigDict(env_prefix="PEEPERS_SENTRY_", extra="ignore")

    dsn: SecretStr | None = None
    environment: str = "production"
    release: str | None = None


def bind_seller(seller_id: int | None) -> Token[int | None]:
    return current_seller.set(seller_id)


def seller_of_key(key: bytes | None) -> int | None:
    """The seller of a record keyed by the seller's id, alone or before ``:<resource>``.

    Notifications are keyed ``<user_id>:<resource>``, domain events by the seller's id;
    ``None`` for any other key.
    """
    if not key:
        return None
    head = key.split(b":", 1)[0]
    return int(head) if head.isdigit() and len(head) <= 20 else None


def scrub_text(text: str) -> str:
    """Mask ML tokens, bearer/basic credentials and passwords in URLs."""
    return _URL_CREDENTIALS.sub("***@", _BEARER.sub(lambda m: f"{m[1]} ***", redact(text)))


def _secret_key(key: object, denied: frozenset[str]) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_") in denied


def _scrub(value: Any, denied: frozenset[str]) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {
            key: FILTERED if _secret_key(key, denied) else _scrub(item, denied)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(item, denied) for item in value]
    return value


@functools.cache
def _denied() -> frozenset[str]:
    from sentry_sdk.scrubber import DEFAULT_DENYLIST

    return frozenset(key.lower().replace("-", "_") for key in (*DEFAULT_DENYLIST, *SECRET_KEYS))


def before_send(event: Event, _hint: Hint) -> Event | None:
    """Tag the event with the trace and the seller, then scrub it."""
    tags = event.setdefault("tags", {})
    trace = current_trace.get()
    if trace is not None:
        tags["trace_id"] = trace.trace_id
    seller = current_seller.get()
    if seller is not None:
        tags["seller_id"] = str(seller)
    return cast("Event", _scrub(event, _denied()))


def before_breadcrumb(crumb: Breadcrumb, _hint: BreadcrumbHint) -> Breadcrumb | None:
    return cast("Breadcrumb", _scrub(crumb, _denied()))


def init_error_tracking(
    service: str, settings: ErrorTrackingSettings, *, transport: Transport | None = None
) -> bool:
    """Start sending errors to Sentry when a DSN is set; returns whether it did.

    ``transport`` replaces the HTTP one (tests capture events with it).
    """
    if settings.dsn is None:
        return False
    # Imported only when used: a service without a DSN never loads the SDK.
    import sentry_sdk

    sentry_sdk.init(
        dsn=settings.dsn.get_secret_value(),
        environment=settings.environment,
        release=settings.release,
        data_collection={
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_headers": {"request": {"mode": "off"}},
            "http_bodies": [],
            "url_query_params": {"mode": "off"},
            "stack_frame_variables": False,
        },
        before_send=before_send,
        before_breadcrumb=before_breadcrumb,
        traces_sample_rate=0.0,
        transport=transport,
    )
    sentry_sdk.set_tag("service", service)
    return True
