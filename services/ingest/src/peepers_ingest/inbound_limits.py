"""Inbound rate limiting for ingest's webhook (only ingest uses it, so it lives here: STYLE 5.1).

The multi-level check of the original design: *application* (all callers together), then
*user* (one caller: a seller, a service, a source IP), then *endpoint* (one caller on one
route). Each level is a GCRA limiter (a token bucket that stores one timestamp per key),
and a refusal at one level spends nothing at the others. A refusal answers 429 with
``Retry-After`` and a JSON body naming the level.

Two limiters keep that state:

- `RedisRateLimiter`: shared by every replica. All levels are checked and charged by one
  atomic Lua script on Redis time, so replicas disagree on no clock. For limits on a
  caller's use of a service, whichever replica serves it.
- `LocalRateLimiter`: the same rule in the process, per replica, with no round trip. For
  limits that protect a replica's own capacity. Ingest uses it: the Redis round trip cost
  10-20% of a webhook's CPU, and what a flood threatens is each replica's capacity.

Keys live under ``ratelimit:inbound:`` because every service's Redis ACL user may touch
``ratelimit:*`` besides its own namespace.

Use it as a middleware (`InboundRateLimit.middleware`), or call `InboundRateLimit.check`
at the point of a handler's pipeline where the caller is known (ingest does, after its
source-IP check).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import Counter
from redis.exceptions import RedisError

from peepers_common.coalesce import Coalescer
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

# One call checks a batch of requests, in order, on one Redis clock. ARGV[1]: how many
# requests; then for each request: its number of levels n, then n pairs (emission
# interval, burst tolerance) in microseconds; its n keys follow the previous request's in
# KEYS. A request is charged at every level or at none. Returns, per request, {0, 0} when
# admitted, else {i, microseconds until level i admits it}. A key's new value is written
# once per batch, however many of the batch's requests it counted.
_GCRA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat_of = {}
local out = {}
local k = 0
local a = 2
for _ = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[a])
  local new_tats = {}
  local refused, wait = 0, 0
  for i = 1, n do
    local key = KEYS[k + i]
    local tat = tat_of[key] or tonumber(redis.call('GET', key) or now)
    if tat < now then tat = now end
    local new_tat = tat + tonumber(ARGV[a + 2 * i - 1])
    local w = new_tat - tonumber(ARGV[a + 2 * i]) - now
    if w > 0 then
      refused, wait = i, math.ceil(w)
      break
    end
    new_tats[i] = new_tat
  end
  if refused == 0 then
    for i = 1, n do
      tat_of[KEYS[k + i]] = new_tats[i]
    end
  end
  out[#out + 1] = refused
  out[#out + 1] = wait
  k = k + n
  a = a + 2 * n + 1
end
for key, tat in pairs(tat_of) do
  local ttl_ms = math.max(1, math.ceil((tat - now) / 1000))
  redis.call('SET', key, string.format('%.0f', tat), 'PX', ttl_ms)
end
return out
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

    # Cached: read for every level of every request.
    @functools.cached_property
    def interval_us(self) -> int:
        return max(1, round(self.per_s * 1_000_000 / self.requests))

    @functools.cached_property
    def tolerance_us(self) -> int:
        return self.interval_us * (self.burst if self.burst is not None else self.requests)

    @functools.cached_property
    def script_args(self) -> tuple[bytes, bytes]:
        """Emission interval and burst tolerance as the script reads them, encoded once."""
        return str(self.interval_us).encode(), str(self.tolerance_us).encode()


@dataclass(frozen=True)
class Refusal:
    level: str
    retry_after_s: float


Check = tuple[str, str, Rate]


class RateLimiter(Protocol):
    async def hit(self, checks: Sequence[Check]) -> Refusal | None:
        """Charge one request to every ``(level, identity, rate)``; None when all admit it."""
        ...


class LocalRateLimiter:
    """Multi-level GCRA in this process: `RedisRateLimiter`'s rule, per replica.

    ``clock`` is monotonic seconds. Idle callers are forgotten once more than ``max_keys``
    are remembered (an idle key and a missing one admit alike). Not the ``limits``
    library: its in-memory limiters cost 8-17 us a request against ~1 us here, on the
    path of every webhook.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._tats: dict[tuple[str, str], int] = {}

    async def hit(self, checks: Sequence[Check]) -> Refusal | None:
        now = int(self._clock() * 1_000_000)
        charged: list[tuple[tuple[str, str], int]] = []
        for level, identity, rate in checks:
            key = (level, identity)
            new_tat = max(self._tats.get(key, now), now) + rate.interval_us
            wait_us = new_tat - rate.tolerance_us - now
            if wait_us > 0:
                return Refusal(level, wait_us / 1_000_000)
            charged.append((key, new_tat))
        if len(self._tats) >= self._max_keys:
            self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
        self._tats.update(charged)
        return None


_count = functools.lru_cache(maxsize=1024)(lambda n: str(n).encode())


class RedisRateLimiter:
    """Multi-level GCRA over one atomic Redis script.

    The checks of concurrent requests go to Redis together, one script call per event-loop
    turn (`peepers_common.coalesce`), evaluated in arrival order. ``timeout_s`` caps what a
    dead Redis adds to a request (redis-py's own retries take seconds).
    """

    def __init__(
        self, redis: aioredis.Redis, *, prefix: str = INBOUND_PREFIX, timeout_s: float = 0.1
    ) -> None:
        if not prefix.startswith("ratelimit:"):
            msg = f"rate-limit keys must live under 'ratelimit:' (got prefix {prefix!r})"
            raise ConfigurationError(msg)
        self._prefix = prefix
        self._gcra = redis.register_script(_GCRA)
        self._batches: Coalescer[Sequence[Check], Refusal | None] = Coalescer(
            self._hit_batch, timeout_s=timeout_s
        )

    def key(self, level: str, identity: str) -> str:
        if len(identity) > _MAX_IDENTITY:
            identity = "sha256-" + hashlib.sha256(identity.encode()).hexdigest()
        return f"{self._prefix}{level}:{identity}"

    async def hit(self, checks: Sequence[Check]) -> Refusal | None:
        """Charge one request to every ``(level, identity, rate)``; None when all admit it.

        Raises:
            redis.exceptions.RedisError: Redis did not answer.
            TimeoutError: Redis did not answer within ``timeout_s``.
        """
        if not checks:
            return None
        return await self._batches.submit(checks)

    async def _hit_batch(self, requests: list[Sequence[Check]]) -> list[Refusal | None]:
        # Bytes, not ints and str: redis-py then sends them as they are (encoding every
        # argument was a tenth of a webhook's CPU in ingest).
        keys: list[bytes] = []
        args: list[bytes] = [_count(len(requests))]
        for checks in requests:
            args.append(_count(len(checks)))
            for level, identity, rate in checks:
                keys.append(self.key(level, identity).encode())
                args += rate.script_args
        # EVALSHA, loading the script first when Redis does not know it (or restarted).
        flat = await self._gcra(keys, args)
        refusals: list[Refusal | None] = []
        for checks, index, wait_us in zip(requests, flat[::2], flat[1::2], strict=True):
            refused = int(index)
            refusals.append(
                None if refused == 0 else Refusal(checks[refused - 1][0], int(wait_us) / 1e6)
            )
        return refusals


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
    """The check for one service: its levels, in order, over a limiter.

    ``fail_open``: when Redis does not answer (within the limiter's timeout), let requests
    through (and count it) rather than refuse them.
    """

    def __init__(
        self,
        limiter: RateLimiter,
        levels: Sequence[Level],
        *,
        service: str,
        fail_open: bool = True,
        exempt: Callable[[web.Request], bool] = lambda _request: False,
    ) -> None:
        self._limiter = limiter
        self._levels = tuple(levels)
        self._service = service
        self._fail_open = fail_open
        self._exempt = exempt

    async def check(self, request: web.Request) -> web.Response | None:
        """The 429 response when a level refuses the request, else None (it was charged)."""
        if self._exempt(request):
            return None
        checks: list[Check] = []
        for level in self._levels:
            identity = level.identify(request)
            if identity is not None:
                checks.append((level.name, f"{self._service}:{identity}", level.rate))
        try:
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
