"""The Mercado Libre REST client every service uses: `MlApi` and its aiohttp adapter.

Error classification follows the original design: 401 → one token refresh, then retry
once; 400/403/404 → a typed error, no retry; 429 → back off (exponential with jitter,
``Retry-After`` honoured) and retry; 5xx, dropped connections and timeouts → retry with
backoff. Every retry stays inside the call's budget; past it the last typed error is
raised, so no call hangs. Outbound limits are taken before each attempt leaves, once
the attempt holds one of the client's connection slots, so that no permit waits for a
connection (`HttpMlApi`).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol, TypeVar

import aiohttp
from prometheus_client import Counter, Histogram
from pydantic import BaseModel, TypeAdapter, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential_jitter,
)

from peepers_common.errors import (
    MlApiError,
    MlBadRequest,
    MlForbidden,
    MlNotFound,
    MlRateLimited,
    MlUnauthorized,
    MlUnavailable,
)
from peepers_common.metrics import LATENCY_BUCKETS_S
from peepers_common.ml.models import (
    MlClaim,
    MlClaimDetail,
    MlClaimPage,
    MlItem,
    MlMessage,
    MlMessagePage,
    MlMissedFeedsPage,
    MlOrder,
    MlOrderPage,
    MlPack,
    MlPayment,
    MlQuestion,
    MlQuestionPage,
    MlShipment,
    MlShipmentStep,
    MlUser,
)
from peepers_common.ml.ratelimit import Lane, OutboundLimiter, current_lane
from peepers_common.ml.tokens import TokenProvider
from peepers_common.settings import MlApiSettings

MULTIGET_MAX_IDS: Final = 20
# A call reports a refused token at most this often: the stale one it held, then the
# current one the token source handed back if ML refuses that too (see `_call`).
_REFRESHES_PER_CALL: Final = 2
SCAN_PAGE_SIZE: Final = 100

ML_REQUESTS: Final = Counter(
    "peepers_ml_requests_total",
    "Requests sent to ML, by endpoint family and outcome",
    ["family", "outcome"],
)
ML_LATENCY: Final = Histogram(
    "peepers_ml_request_duration_seconds",
    "ML request latency, by endpoint family",
    ["family"],
    buckets=LATENCY_BUCKETS_S,
)
ML_RETRIES: Final = Counter(
    "peepers_ml_retries_total",
    "Retries of ML calls, by endpoint family and reason",
    ["family", "reason"],
)
ML_LIMITER_WAIT: Final = Counter(
    "peepers_ml_limiter_wait_seconds_total",
    "Time spent waiting on our own outbound rate limiter, by endpoint family",
    ["family"],
)

_FAMILIES: Final = {
    "users": "users",
    "items": "items",
    "orders": "orders",
    "packs": "orders",
    "collections": "payments",
    "shipments": "shipments",
    "questions": "questions",
    "answers": "answers",
    "messages": "messages",
    "post-purchase": "claims",
    "missed_feeds": "missed_feeds",
    "myfeeds": "missed_feeds",
}

# Each metric series looked up once (a family, an outcome): `labels` costs more than `inc`.
_requests: Final = functools.cache(ML_REQUESTS.labels)
_latency: Final = functools.cache(ML_LATENCY.labels)
_limiter_wait: Final = functools.cache(ML_LIMITER_WAIT.labels)

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def endpoint_family(path: str, method: str = "GET") -> str:
    """The rate-limit family of a path: its first segment (``/post-purchase`` → claims).

    A seller's item search (``/users/{id}/items/search``) is its own family, as at ML.
    Messaging counts reads and writes apart (500 rpm each, FACTS.md 5.2): a POST or PUT
    under ``/messages`` is ``messages_write``.
    """
    parts = path.split("?", 1)[0].strip("/").split("/")
    if len(parts) == 4 and parts[0] == "users" and parts[2:] == ["items", "search"]:
        return "items_search"
    family = _FAMILIES.get(parts[0], parts[0] or "root")
    if family == "messages" and method.upper() in ("POST", "PUT"):
        return "messages_write"
    return family


@dataclass(frozen=True)
class Multiget:
    items: list[MlItem]
    missing: list[str] = field(default_factory=list)


class MlApi(Protocol):
    """Mercado Libre's REST API as the services see it. Every call acts for one seller."""

    async def get_me(self, *, seller_id: int) -> MlUser: ...
    async def get_item(self, item_id: str, *, seller_id: int) -> MlItem: ...
    async def multiget_items(self, ids: Sequence[str], *, seller_id: int) -> Multiget: ...
    def iter_item_ids(self, *, seller_id: int, status: str | None = None) -> AsyncIterator[str]: ...
    async def get_order(self, order_id: int, *, seller_id: int) -> MlOrder: ...
    async def search_orders(
        self,
        *,
        seller_id: int,
        offset: int = 0,
        limit: int = 50,
        sort: str = "date_desc",
        created_from: datetime | None = None,
        closed_from: datetime | None = None,
        statuses: Sequence[str] = (),
    ) -> MlOrderPage: ...
    async def get_shipment(self, shipment_id: int, *, seller_id: int) -> MlShipment: ...
    async def get_shipment_history(
        self, shipment_id: int, *, seller_id: int
    ) -> list[MlShipmentStep]: ...
    async def get_pack(self, pack_id: int, *, seller_id: int) -> MlPack: ...
    async def get_payment(self, payment_id: int, *, seller_id: int) -> MlPayment: ...
    async def get_question(self, question_id: int, *, seller_id: int) -> MlQuestion: ...
    async def answer_question(
        self, question_id: int, text: str, *, seller_id: int
    ) -> MlQuestion: ...
    async def get_pack_messages(
        self, pack_id: int, *, seller_id: int, offset: int = 0, limit: int = 10
    ) -> MlMessagePage: ...
    async def get_claim(self, claim_id: int, *, seller_id: int) -> MlClaim: ...
    async def missed_feeds(
        self,
        *,
        seller_id: int,
        topic: str | None = None,
        site_id: str | None = None,
        offset: int = 0,
        limit: int = 10,
    ) -> list[dict[str, Any]]: ...

    # -- questions, post-sale messages and claims (the messages service) --
    async def search_questions(
        self,
        *,
        seller_id: int,
        status: str | None = None,
        item_id: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> MlQuestionPage: ...
    async def get_message(self, message_id: str, *, seller_id: int) -> MlMessagePage: ...
    async def send_message(
        self, pack_id: int, text: str, *, seller_id: int, buyer_id: int
    ) -> MlMessage: ...
    async def get_claim_detail(self, claim_id: int, *, seller_id: int) -> MlClaimDetail: ...
    async def search_claims(
        self, *, seller_id: int, status: str | None = "opened", offset: int = 0, limit: int = 30
    ) -> MlClaimPage: ...


def ml_session(settings: MlApiSettings) -> aiohttp.ClientSession:
    """The one ClientSession a process uses for ML; its lifecycle hook closes it.

    Its connector has no limit of its own: `HttpMlApi` bounds its requests in flight at
    ``max_connections`` *before* they take a permit. A connector limit queued requests
    that held a permit already, to land at ML later than the budget counts them.
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(
            connect=settings.connect_timeout_s, sock_read=settings.read_timeout_s
        ),
        headers={"accept": "application/json"},
        raise_for_status=False,
    )


class _MlErrorBody(BaseModel):
    message: str | None = None
    error: str | None = None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


def _classify(status: int, body: bytes, headers: Mapping[str, str], path: str) -> MlApiError:
    try:
        parsed = _MlErrorBody.model_validate_json(body)
    except ValidationError:
        parsed = _MlErrorBody()
    detail = parsed.message or parsed.error or body[:200].decode("utf-8", "replace")
    msg = f"ML answered {status} for {path}: {detail}"
    kwargs: dict[str, Any] = {"status": status, "error": parsed.error, "path": path}
    if status == 429:
        return MlRateLimited(msg, retry_after_s=_retry_after(headers), path=path)
    if status >= 500:
        return MlUnavailable(msg, **kwargs)
    return {400: MlBadRequest, 401: MlUnauthorized, 403: MlForbidden, 404: MlNotFound}.get(
        status, MlApiError
    )(msg, **kwargs)


class HttpMlApi:
    """`MlApi` over one shared aiohttp session, the outbound limiter and a token provider.

    An attempt takes a connection slot (``max_connections`` of them) *before* its permit
    and sends as soon as the permit comes: the budget counts a permit for the window, the
    margin and the lease ttl from its grant (`peepers_common.ml.leases`), which holds
    only if the request reaches ML within the margin of spending it. Permits taken before
    waiting for a connection (aiohttp's connector queue) could wait there for as long as
    ML was slow, then land together in ML's next window beside that window's own permits
    (docs/ml-client.md, "Connection slots before permits"). Bulk attempts hold at most
    half of the slots, so a sync waiting on the budget never keeps a webhook's fetch from
    reaching the limiter, where live requests go first.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: MlApiSettings,
        tokens: TokenProvider,
        limiter: OutboundLimiter,
    ) -> None:
        self._session = session
        self._settings = settings
        self._tokens = tokens
        self._limiter = limiter
        self._base = settings.base_url.rstrip("/")
        self._slots = asyncio.Semaphore(settings.max_connections)
        self._bulk_slots = asyncio.Semaphore(max(1, settings.max_connections // 2))
        self._backoff = wait_exponential_jitter(
            multiplier=settings.backoff_initial_s,
            max=settings.backoff_max_s,
            jitter=settings.backoff_initial_s,
        )

    # ------------------------------------------------------------------ core

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, MlRateLimited) and error.retry_after_s is not None:
            return min(error.retry_after_s, self._settings.backoff_max_s)
        return float(self._backoff(state))

    async def _call(
        self,
        method: str,
        path: str,
        *,
        seller_id: int,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        family = endpoint_family(path, method)
        deadline = time.monotonic() + self._settings.call_budget_s
        token = await self._tokens.access_token(seller_id)
        refreshes = 0

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            reason = "rate_limited" if isinstance(error, MlRateLimited) else "unavailable"
            ML_RETRIES.labels(family, reason).inc()

        async def once() -> bytes:
            nonlocal token, refreshes
            while True:
                try:
                    return await self._attempt(
                        method,
                        path,
                        family,
                        token,
                        seller_id,
                        deadline,
                        params=params,
                        json=json,
                        headers=headers,
                    )
                except MlUnauthorized:
                    if refreshes == _REFRESHES_PER_CALL:
                        raise
                    # ML said the token is no longer valid. The token source refreshes
                    # only if it is its current one; an older one gets the current one
                    # back, which ML may refuse too (every token expired at once): that
                    # one is reported in turn, and then refreshed.
                    token = await self._tokens.refresh(seller_id, token)
                    refreshes += 1

        # Almost every call succeeds at once: tenacity's machinery is built only after a
        # transient failure, which it then treats as its own first attempt's.
        try:
            return await once()
        except (MlRateLimited, MlUnavailable) as exc:
            failed: Exception | None = exc
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((MlRateLimited, MlUnavailable)),
            wait=self._wait,
            # The call's own deadline, not tenacity's clock (which starts at the first
            # failure, after the first attempt's waits): no retry sleeps past it.
            stop=lambda state: time.monotonic() + (state.upcoming_sleep or 0.0) >= deadline,
            before_sleep=before_sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if failed is not None:
                    error, failed = failed, None
                    raise error
                return await once()
        msg = "unreachable: tenacity either returns or raises"
        raise AssertionError(msg)

    @asynccontextmanager
    async def _slot(self, deadline: float, path: str) -> AsyncIterator[None]:
        """A connection slot (and a bulk one in the bulk lane), waited for by the deadline."""
        gates = [self._bulk_slots, self._slots] if current_lane() is Lane.BULK else [self._slots]
        taken: list[asyncio.Semaphore] = []
        try:
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                    for gate in gates:
                        await gate.acquire()
                        taken.append(gate)
            except TimeoutError:
                msg = f"the call's budget ran out waiting for a connection ({path})"
                raise MlUnavailable(msg, path=path) from None
            yield
        finally:
            for gate in reversed(taken):
                gate.release()

    async def _attempt(
        self,
        method: str,
        path: str,
        family: str,
        token: str,
        seller_id: int,
        deadline: float,
        *,
        params: Mapping[str, str | int] | None,
        json: Any,
        headers: Mapping[str, str] | None,
    ) -> bytes:
        if time.monotonic() >= deadline:  # a 401's refresh, or a retry, used it up
            msg = f"the call's budget ran out ({path})"
            raise MlUnavailable(msg, path=path)
        # The slot first, then the permit, then the request at once (the class's doc).
        async with self._slot(deadline, path):
            _limiter_wait(family).inc(await self._limiter.acquire(family, seller_id))
            # A permit held is a request ML will count: it is spent on the request, which
            # gets at least its read timeout even when the wait used up the call's budget
            # (a lost budget holds every permit for a full window, longer than the
            # budget). Failing here wasted the permit and failed the record for a retry
            # that took another. The budget still ends the call's retries.
            remaining = max(deadline - time.monotonic(), self._settings.read_timeout_s)
            start = time.monotonic()
            try:
                async with self._session.request(
                    method,
                    self._base + path,
                    params=params,
                    json=json,
                    headers={"Authorization": f"Bearer {token}", **(headers or {})},
                    timeout=aiohttp.ClientTimeout(
                        total=remaining,
                        connect=self._settings.connect_timeout_s,
                        sock_read=self._settings.read_timeout_s,
                    ),
                ) as response:
                    body = await response.read()
                    status, response_headers = response.status, response.headers
            except (aiohttp.ClientError, TimeoutError) as exc:
                _requests(family, "connection_error").inc()
                msg = f"ML did not answer {path}: {exc!r}"
                raise MlUnavailable(msg, path=path) from exc
            finally:
                _latency(family).observe(time.monotonic() - start)
            _requests(family, str(status)).inc()
            if status < 300:
                return body
            raise _classify(status, body, response_headers, path)

    async def _model(
        self, model: type[M], path: str, *, seller_id: int, method: str = "GET", **kwargs: Any
    ) -> M:
        body = await self._call(method, path, seller_id=seller_id, **kwargs)
        return _validated(path, f"a {model.__name__}", lambda: model.model_validate_json(body))

    # ------------------------------------------------------------------ endpoints

    async def get_me(self, *, seller_id: int) -> MlUser:
        return await self._model(MlUser, "/users/me", seller_id=seller_id)

    async def get_item(self, item_id: str, *, seller_id: int) -> MlItem:
        return await self._model(MlItem, f"/items/{item_id}", seller_id=seller_id)

    async def multiget_items(self, ids: Sequence[str], *, seller_id: int) -> Multiget:
        """Items by id, in batches of at most 20 (ML's cap), several batches at once."""
        unique_ids = list(dict.fromkeys(ids))
        batches = [
            unique_ids[i : i + MULTIGET_MAX_IDS]
            for i in range(0, len(unique_ids), MULTIGET_MAX_IDS)
        ]
        gate = asyncio.Semaphore(self._settings.multiget_concurrency)

        async def one(batch: list[str]) -> Multiget:
            async with gate:
                body = await self._call(
                    "GET", "/items", seller_id=seller_id, params={"ids": ",".join(batch)}
                )
            items = _validated(
                "/items",
                "a multiget answer",
                lambda: [
                    MlItem.model_validate(e.body)
                    for e in _MULTIGET.validate_json(body)
                    if e.code == 200
                ],
            )
            found = {item.id for item in items}
            return Multiget(items, [i for i in batch if i not in found])

        results = await asyncio.gather(*(one(batch) for batch in batches))
        return Multiget(
            [item for r in results for item in r.items], [i for r in results for i in r.missing]
        )

    async def iter_item_ids(
        self, *, seller_id: int, status: str | None = None
    ) -> AsyncIterator[str]:
        """Every item id of the seller, each exactly once (``search_type=scan``).

        A scroll that expires midway (ML keeps one for 5 minutes) is restarted from the
        beginning, skipping the ids already yielded.
        """
        seen: set[str] = set()
        path = f"/users/{seller_id}/items/search"
        base: dict[str, str | int] = {"search_type": "scan", "limit": SCAN_PAGE_SIZE}
        if status is not None:
            base["status"] = status
        scroll_id: str | None = None
        while True:
            params = dict(base) if scroll_id is None else {**base, "scroll_id": scroll_id}
            try:
                page = await self._model(_ScanPage, path, seller_id=seller_id, params=params)
            except (MlBadRequest, MlNotFound):
                if scroll_id is None:
                    raise
                scroll_id = None  # the scroll expired: start a new one
                continue
            if not page.results:
                return
            for item_id in page.results:
                if item_id not in seen:
                    seen.add(item_id)
                    yield item_id
            scroll_id = page.scroll_id

    async def get_order(self, order_id: int, *, seller_id: int) -> MlOrder:
        return await self._model(MlOrder, f"/orders/{order_id}", seller_id=seller_id)

    async def search_orders(
        self,
        *,
        seller_id: int,
        offset: int = 0,
        limit: int = 50,
        sort: str = "date_desc",
        created_from: datetime | None = None,
        closed_from: datetime | None = None,
        statuses: Sequence[str] = (),
    ) -> MlOrderPage:
        """One page of the seller's orders; ML hides cancelled ones unless ``statuses`` asks.

        ``created_from`` filters on ``order.date_created.from``, ``closed_from`` on
        ``order.date_closed.from`` (ML's own format, with milliseconds and an offset:
        FACTS.md 4.3). A seller's search sorts by ``date_closed`` (FACTS.md 4.3).
        """
        params: dict[str, str | int] = {
            "seller": seller_id,
            "offset": offset,
            "limit": limit,
            "sort": sort,
        }
        if created_from is not None:
            params["order.date_created.from"] = created_from.isoformat(timespec="milliseconds")
        if closed_from is not None:
            params["order.date_closed.from"] = closed_from.isoformat(timespec="milliseconds")
        if statuses:
            params["order.status"] = ",".join(statuses)
        return await self._model(MlOrderPage, "/orders/search", seller_id=seller_id, params=params)

    async def get_shipment(self, shipment_id: int, *, seller_id: int) -> MlShipment:
        # The new shipment format is mandatory since October 2025 (FACTS.md 6).
        return await self._model(
            MlShipment,
            f"/shipments/{shipment_id}",
            seller_id=seller_id,
            headers={"x-format-new": "true"},
        )

    async def get_shipment_history(
        self, shipment_id: int, *, seller_id: int
    ) -> list[MlShipmentStep]:
        """The shipment's statuses with their dates, oldest first."""
        path = f"/shipments/{shipment_id}/history"
        body = await self._call("GET", path, seller_id=seller_id)
        return _validated(path, "a shipment history", lambda: _HISTORY.validate_json(body))

    async def get_pack(self, pack_id: int, *, seller_id: int) -> MlPack:
        return await self._model(MlPack, f"/packs/{pack_id}", seller_id=seller_id)

    async def get_payment(self, payment_id: int, *, seller_id: int) -> MlPayment:
        """A payment (``/collections/{id}``, the resource of ``payments`` notifications)."""
        envelope = await self._model(_Collection, f"/collections/{payment_id}", seller_id=seller_id)
        return envelope.collection

    async def get_question(self, question_id: int, *, seller_id: int) -> MlQuestion:
        return await self._model(
            MlQuestion,
            f"/questions/{question_id}",
            seller_id=seller_id,
            params={"api_version": 4},
        )

    async def answer_question(self, question_id: int, text: str, *, seller_id: int) -> MlQuestion:
        return await self._model(
            MlQuestion,
            "/answers",
            seller_id=seller_id,
            method="POST",
            json={"question_id": question_id, "text": text},
        )

    async def get_pack_messages(
        self, pack_id: int, *, seller_id: int, offset: int = 0, limit: int = 10
    ) -> MlMessagePage:
        """A page of a pack's conversation, never marking it read (``mark_as_read=false``)."""
        return await self._model(
            MlMessagePage,
            f"/messages/packs/{pack_id}/sellers/{seller_id}",
            seller_id=seller_id,
            params={
                "tag": "post_sale",
                "mark_as_read": "false",
                "offset": offset,
                "limit": limit,
            },
        )

    async def get_claim(self, claim_id: int, *, seller_id: int) -> MlClaim:
        return await self._model(
            MlClaim, f"/post-purchase/v1/claims/{claim_id}", seller_id=seller_id
        )

    async def missed_feeds(
        self,
        *,
        seller_id: int,
        topic: str | None = None,
        site_id: str | None = None,
        offset: int = 0,
        limit: int = 10,
    ) -> list[dict[str, Any]]:
        """One page of what ML failed to deliver to this application, entries as ML sent them."""
        params: dict[str, str | int] = {
            "app_id": self._settings.app_id,
            "offset": offset,
            "limit": limit,
        }
        if topic is not None:
            params["topic"] = topic
        if site_id is not None:
            params["site_id"] = site_id
        page = await self._model(
            MlMissedFeedsPage, "/missed_feeds", seller_id=seller_id, params=params
        )
        return page.messages

    # ------------------------------------------------ questions, messages, claims

    async def search_questions(
        self,
        *,
        seller_id: int,
        status: str | None = None,
        item_id: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> MlQuestionPage:
        """A page of the seller's questions (or one item's), oldest first.

        ML refuses ``offset + limit`` past 1,000 (FACTS.md 5.1): callers that need more
        search item by item.
        """
        params: dict[str, str | int] = {
            "api_version": 4,
            "sort_fields": "date_created",
            "sort_types": "ASC",
            "offset": offset,
            "limit": limit,
        }
        if item_id is not None:
            params["item"] = item_id
        else:
            params["seller_id"] = seller_id
        if status is not None:
            params["status"] = status
        return await self._model(
            MlQuestionPage, "/questions/search", seller_id=seller_id, params=params
        )

    async def get_message(self, message_id: str, *, seller_id: int) -> MlMessagePage:
        """``/messages/{id}`` (a ``messages`` notification's resource), not marking it read."""
        return await self._model(
            MlMessagePage,
            f"/messages/{message_id}",
            seller_id=seller_id,
            params={"tag": "post_sale", "mark_as_read": "false"},
        )

    async def send_message(
        self, pack_id: int, text: str, *, seller_id: int, buyer_id: int
    ) -> MlMessage:
        """A seller's message into a pack's conversation (201 with the message)."""
        return await self._model(
            MlMessage,
            f"/messages/packs/{pack_id}/sellers/{seller_id}",
            seller_id=seller_id,
            method="POST",
            params={"tag": "post_sale"},
            json={"from": {"user_id": str(seller_id)}, "to": {"user_id": buyer_id}, "text": text},
        )

    async def get_claim_detail(self, claim_id: int, *, seller_id: int) -> MlClaimDetail:
        return await self._model(
            MlClaimDetail, f"/post-purchase/v1/claims/{claim_id}/detail", seller_id=seller_id
        )

    async def search_claims(
        self, *, seller_id: int, status: str | None = "opened", offset: int = 0, limit: int = 30
    ) -> MlClaimPage:
        """A page of the claims where the seller responds, oldest first.

        ML caps ``offset + limit`` below 10,000 and ``limit`` at 100 (FACTS.md 5.3).
        """
        params: dict[str, str | int] = {
            "players.user_id": seller_id,
            "players.role": "respondent",
            "sort": "date_created:asc",
            "offset": offset,
            "limit": limit,
        }
        if status is not None:
            params["status"] = status
        return await self._model(
            MlClaimPage, "/post-purchase/v1/claims/search", seller_id=seller_id, params=params
        )


class _MultigetEntry(BaseModel):
    code: int
    body: Any = None


_MULTIGET: Final = TypeAdapter(list[_MultigetEntry])
_HISTORY: Final = TypeAdapter(list[MlShipmentStep])


def _validated(path: str, what: str, parse: Callable[[], T]) -> T:
    """Run `parse`; a body ML should never send becomes an `MlApiError`, not a crash."""
    try:
        return parse()
    except ValidationError as exc:
        msg = f"ML answered {path} with a body that is not {what}: {exc}"
        raise MlApiError(msg, status=200, path=path) from exc


class _Collection(BaseModel):
    collection: MlPayment


class _ScanPage(BaseModel):
    results: list[str]
    scroll_id: str | None = None
