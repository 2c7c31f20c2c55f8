"""Inbound rate limiting for Peepers' own HTTP APIs, shared by every replica.

The multi-level check of the original design: *application* (all callers together), then
*user* (one caller: a seller, a service, a source IP), then *endpoint* (one caller on one
route). Each level is a GCRA limiter (a token bucket that stores one timestamp per key) and
all levels are checked and charged by one atomic Lua script on Redis time, so replicas
share the state, disagree on no clock, and a refusal at one level spends nothing at the
others. A refusal answers 429 with ``Retry-After`` and a JSON body naming the level.

Keys live under ``ratelimit:inbound:`` because every service's Redis ACL user may touch
``ratelimit:*`` besides its own namespace.

Use it as a middleware (`InboundRateLimit.middleware`), or call `InboundRateLimit.check`
at the point of a handler's pipeline where the caller is known (ingest does, after its
source-IP check).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import Counter
from redis.exceptions import NoScriptError, RedisError

from peepers_common.errors import ConfigurationError

log = logging.getLogger(__name__)

INBOUND_PREFIX: Final = "ratelimit:inbound:"
APPLICATION: Final = "application"
USER: Final = "user"
ENDPOINT: Final = "endpoint"
_MAX_IDENTITY: Final = 128

RATE_LIMITED: Final = Counter(
    "peepers_inbound_rate_limited_total",
    "Requests refused with 429 by the inbound rate limiter, by service and level",
    ["service", "level"],
)
LIMITER_ERRORS: Final = Counter(
    "peepers_inbound_rate_limiter_errors_total",
    "Inbound rate-limit checks that could not reach Redis (the request was let through)",
    ["service"],
)

# KEYS[i]: one key per level, in order. ARGV[2i-1], ARGV[2i]: that level's emission
# interval and burst tolerance, in microseconds. Returns {0, 0} when every level admits
# the request (and charges all of them), else {i, microseconds until level i admits it}.
_GCRA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local wait = new_tat - tolerance - now
  if wait > 0 then
    return {i, math.ceil(wait)}
  end
  tats[i] = new_tat
end
for i = 1, #KEYS do
  local ttl_ms = math.max(1, math.ceil((tats[i] - now) / 1000))
  redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', ttl_ms)
end
return {0, 0}
"""


@dataclass(frozen=True)
class Rate:
    """``requests`` per ``per_s`` seconds, with bursts of up to ``burst`` (default: requests)."""

    requests: int
    per_s: float = 1.0
    burst: int | None = None

    def __post_init__(self) -> None:
        if self.requests < 1 or self.per_s <= 0 or (self.burst is not None and self.burst < 1):
            msg = f"a rate needs requests >= 1, per_s > 0 and burst >= 1 (got {self})"
            raise ConfigurationError(msg)

    @property
    def interval_us(self) -> int:
        return max(1, round(self.per_s * 1_000_000 / self.requests))

    @property
    def tolerance_us(self) -> int:
        return self.interval_us * (self.burst if self.burst is not None else self.requests)


@dataclass(frozen=True)
class Refusal:
    level: str
    retry_after_s: float


Execute = Callable[..., Awaitable[Any]]


class RedisRateLimiter:
    """Multi-level GCRA over one atomic Redis script.

    ``execute`` sends one raw command (default: the client's ``execute_command``); a
    service may pass one that pipelines concurrent commands together.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str = INBOUND_PREFIX,
        execute: Execute | None = None,
    ) -> None:
        if not prefix.startswith("ratelimit:"):
            msg = f"rate-limit keys must live under 'ratelimit:' (got prefix {prefix!r})"
            raise ConfigurationError(msg)
        self._prefix = prefix
        self._execute: Execute = execute or redis.execute_command
        self._sha = hashlib.sha1(_GCRA.encode(), usedforsecurity=False).hexdigest()

    def key(self, level: str, identity: str) -> str:
        if len(identity) > _MAX_IDENTITY:
            identity = "sha256-" + hashlib.sha256(identity.encode()).hexdigest()
        return f"{self._prefix}{level}:{identity}"

    async def hit(self, checks: Sequence[tuple[str, str, Rate]]) -> Refusal | None:
        """Charge one request to every ``(level, identity, rate)``; None when all admit it.

        Raises:
            redis.exceptions.RedisError: Redis did not answer.
        """
        if not checks:
            return None
        keys = [self.key(level, identity) for level, identity, _ in checks]
        args: list[int] = []
        for _, _, rate in checks:
            args += [rate.interval_us, rate.tolerance_us]
        try:
            index, wait_us = await self._execute("EVALSHA", self._sha, len(keys), *keys, *args)
        except NoScriptError:
            # First use on this Redis (or it restarted): EVAL caches the script by its sha.
            index, wait_us = await self._execute("EVAL", _GCRA, len(keys), *keys, *args)
        if int(index) == 0:
            return None
        return Refusal(checks[int(index) - 1][0], int(wait_us) / 1_000_000)


Identify = Callable[[web.Request], str | None]


@dataclass(frozen=True)
class Level:
    """One level of the check: its name, its rate, and who a request counts against.

    ``identify`` returns None when the level does not apply to a request (for example a
    user level on an anonymous route).
    """

    name: str
    rate: Rate
    identify: Identify


def application_level(rate: Rate, name: str = "all") -> Level:
    return Level(APPLICATION, rate, lambda _request: name)


def user_level(rate: Rate, identify: Identify) -> Level:
    return Level(USER, rate, identify)


def endpoint_level(rate: Rate, identify: Identify) -> Level:
    """Per user, per route template (``/orders/{id}``, never the raw path)."""

    def per_route(request: web.Request) -> str | None:
        user = identify(request)
        if user is None:
            return None
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        return f"{user}|{request.method}|{route}"

    return Level(ENDPOINT, rate, per_route)


def too_many_requests(refusal: Refusal) -> web.Response:
    retry_after = max(1, math.ceil(refusal.retry_after_s))
    return web.json_response(
        {
            "error": "rate_limited",
            "level": refusal.level,
            "retry_after_s": round(refusal.retry_after_s, 3),
            "detail": f"too many requests at the {refusal.level} level",
        },
        status=429,
        headers={"Retry-After": str(retry_after)},
    )


class InboundRateLimit:
    """The check for one service: its levels, in order, over a shared limiter.

    ``fail_open``: when Redis does not answer within ``timeout_s``, let requests through
    (and count it) rather than refuse them; for ingest a refused ML notification is worse
    than a burst. The timeout also caps what a dead Redis adds to a request (redis-py's own
    retries take seconds).
    """

    def __init__(
        self,
        limiter: RedisRateLimiter,
        levels: Sequence[Level],
        *,
        service: str,
        fail_open: bool = True,
        timeout_s: float = 0.1,
        exempt: Callable[[web.Request], bool] = lambda _request: False,
    ) -> None:
        self._limiter = limiter
        self._levels = tuple(levels)
        self._service = service
        self._fail_open = fail_open
        self._timeout_s = timeout_s
        self._exempt = exempt

    async def check(self, request: web.Request) -> web.Response | None:
        """The 429 response when a level refuses the request, else None (it was charged)."""
        if self._exempt(request):
            return None
        checks: list[tuple[str, str, Rate]] = []
        for level in self._levels:
            identity = level.identify(request)
            if identity is not None:
                checks.append((level.name, f"{self._service}:{identity}", level.rate))
        try:
            async with asyncio.timeout(self._timeout_s):
                refusal = await self._limiter.hit(checks)
        except (RedisError, TimeoutError) as exc:
            LIMITER_ERRORS.labels(self._service).inc()
            if self._fail_open:
                log.warning("inbound rate limiter unavailable, letting a request through: %r", exc)
                return None
            return web.json_response(
                {"error": "rate_limiter_unavailable", "detail": "try again shortly"},
                status=503,
                headers={"Retry-After": "1"},
            )
        if refusal is None:
            return None
        RATE_LIMITED.labels(self._service, refusal.level).inc()
        return too_many_requests(refusal)

    @property
    def middleware(self) -> Middleware:
        @web.middleware
        async def inbound_rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
            refused = await self.check(request)
            if refused is not None:
                return refused
            return await handler(request)

        return inbound_rate_limit
