"""The backfill against the real Redis, with ML as `FakeMlApi` (its search caps as ML's)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from peepers_common.errors import MlUnavailable, ReauthRequired, TokenError, TokenUnavailable
from peepers_common.ml.models import MlClaim, MlClaimPage, MlItem, MlQuestion, MlQuestionPage
from peepers_common.ml.ratelimit import Lane, current_lane
from peepers_common.namespaces import connect_redis
from peepers_common.testing import FakeMlApi
from peepers_messages.adapters.redis_views import ConversationRecord
from peepers_messages.backfill import (
    CLAIM_PAGE,
    QUESTION_SEARCH_CAP,
    BackfillOptions,
    BackfillState,
    backfill,
)
from peepers_messages.rebuild import rebuild_messages
from peepers_messages.settings import Settings
from tests.integration.messages.harness import wired

SELLER = 3000000001
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FlakyMl(FakeMlApi):
    """ML whose question search fails once, after ``fail_after`` pages."""

    def __init__(self, fail_after: int) -> None:
        super().__init__()
        self.fail_after = fail_after
        self.pages = 0

    async def search_questions(self, **kwargs: Any) -> MlQuestionPage:
        self.pages += 1
        if self.pages == self.fail_after + 1:
            msg = "ML went away"
            raise MlUnavailable(msg)
        return await super().search_questions(**kwargs)


class NoTokenFor(FakeMlApi):
    """ML as seen with no token for ``refused``'s question search (``error``)."""

    def __init__(self, refused: int, error: type[TokenError]) -> None:
        super().__init__()
        self.refused: int | None = refused
        self.error = error

    async def search_questions(self, **kwargs: Any) -> MlQuestionPage:
        if kwargs.get("seller_id") == self.refused:
            msg = "no token for the seller"
            raise self.error(msg, seller_id=kwargs["seller_id"])
        return await super().search_questions(**kwargs)


def marketplace(questions: int, items: int, claims: int, ml: FakeMlApi | None = None) -> FakeMlApi:
    ml = ml or FakeMlApi()
    for i in range(items):
        item_id = f"MLB{4100000000 + i}"
        ml.items[item_id] = MlItem(
            id=item_id, seller_id=SELLER, title="x", price=1, status="active", last_updated=T0
        )
    for q in range(questions):
        at = (T0 + timedelta(seconds=q)).isoformat()
        ml.questions[13000000000 + q] = MlQuestion.model_validate(
            {
                "id": 13000000000 + q,
                "seller_id": SELLER,
                "item_id": f"MLB{4100000000 + q % items}",
                "status": "UNANSWERED" if q % 10 else "ANSWERED",
                "text": f"Pergunta {q}",
                "date_created": at,
                "last_updated": at,
            }
        )
    for c in range(claims):
        add_claim(ml, 5000000000 + c, "opened")
    return ml


def add_claim(ml: FakeMlApi, claim_id: int, status: str) -> None:
    ml.claims[claim_id] = MlClaim.model_validate(
        {
            "id": claim_id,
            "resource_id": claim_id - 3000000000,
            "status": status,
            "stage": "claim",
            "players": [{"role": "respondent", "user_id": SELLER}],
            "last_updated": T0.isoformat(),
        }
    )


def closed_claims(ml: FakeMlApi, count: int) -> list[int]:
    """``count`` claims closed long ago (ids below the open ones: older in ML's search)."""
    ids = [4000000000 + c for c in range(count)]
    for claim_id in ids:
        add_claim(ml, claim_id, "closed")
    return ids


class LeavingAfterFirstPage(FakeMlApi):
    """ML where the last three of the first page of unanswered questions (the seller's,
    and each item's) are answered, and of open claims closed, once that page was read:
    they leave their search."""

    def __init__(self) -> None:
        super().__init__()
        self.answered: dict[str | None, list[int]] = {}
        self.closed: list[int] = []

    async def search_questions(self, **kwargs: Any) -> MlQuestionPage:
        page = await super().search_questions(**kwargs)
        search = kwargs.get("item_id")
        if search not in self.answered:
            self.answered[search] = []
            for question in page.questions[-3:]:
                self.questions[question.id] = question.model_copy(update={"status": "ANSWERED"})
                self.answered[search].append(question.id)
        return page

    async def search_claims(self, **kwargs: Any) -> MlClaimPage:
        page = await super().search_claims(**kwargs)
        if not self.closed and kwargs.get("status") == "opened":
            for claim in page.data[-3:]:
                self.claims[claim.id] = claim.model_copy(update={"status": "closed"})
                self.closed.append(claim.id)
        return page


class RecordingMl(FakeMlApi):
    """ML that notes in which limiter lane each call was made."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[tuple[str, Lane]] = []

    def _take(self, method: str, key: object) -> None:
        self.made.append((method, current_lane()))
        super()._take(method, key)


class CountingRedis:
    """Counts the round trips of a client's connections (a pipeline is one)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.round_trips = 0
        pool = client.connection_pool
        base = pool.connection_class
        counter = self

        class Counting(base):  # type: ignore[valid-type,misc]  # a class from a variable
            async def send_packed_command(self, *args: Any, **kwargs: Any) -> None:
                counter.round_trips += 1
                await super().send_packed_command(*args, **kwargs)

        pool.connection_class = Counting


class TestBackfill:
    async def test_every_backfill_request_waits_in_the_bulk_lane_behind_webhooks(
        self, redis: aioredis.Redis
    ) -> None:
        ml = RecordingMl()
        marketplace(questions=60, items=3, claims=2, ml=ml)
        deps, checkpoints = wired(ml, redis)
        await backfill(SELLER, deps, checkpoints, BackfillOptions(run_id="lanes"))
        assert {"search_questions", "search_claims", "search_orders"} <= {m for m, _ in ml.made}
        assert {lane for _, lane in ml.made} == {Lane.BULK}
        assert current_lane() is Lane.LIVE  # the webhooks' lane, outside the backfill

    async def test_a_rebuild_backfills_each_seller_under_its_own_run_id(
        self, redis: aioredis.Redis
    ) -> None:
        """No wait of its own: the limiter holds a lost budget's window (docs/ml-client.md)."""
        ml = RecordingMl()
        marketplace(questions=20, items=2, claims=1, ml=ml)
        deps, checkpoints = wired(ml, redis)
        options = BackfillOptions(run_id="unused")
        resync = await rebuild_messages("e1", deps, (), [SELLER], checkpoints, options)
        assert resync is not None
        await resync()
        assert {"search_questions", "search_orders"} <= {m for m, _ in ml.made}
        state = await checkpoints.load(SELLER)
        assert state is not None
        assert (state.run_id, state.phase) == ("rebuild-e1", "done")

    @pytest.mark.parametrize("error", [ReauthRequired, TokenUnavailable])
    async def test_a_rebuild_skips_only_a_seller_gone_for_good(
        self, redis: aioredis.Redis, error: type[TokenError]
    ) -> None:
        # A seller who must log in again is skipped (that login backfills them); one that
        # cannot be read for now fails the attempt, and the guard's retry backfills them.
        ml = NoTokenFor(SELLER, error)
        marketplace(questions=20, items=2, claims=0, ml=ml)
        deps, checkpoints = wired(ml, redis)
        resync = await rebuild_messages(
            "e1", deps, (), [SELLER], checkpoints, BackfillOptions(run_id="unused")
        )
        assert resync is not None
        if error is ReauthRequired:
            await resync()
            assert await checkpoints.load(SELLER) is None
            return
        with pytest.raises(TokenUnavailable):
            await resync()
        ml.refused = None
        await resync()
        state = await checkpoints.load(SELLER)
        assert state is not None
        assert (state.run_id, state.phase) == ("rebuild-e1", "done")

    async def test_a_checkpoint_from_before_the_index_resumes_through_the_orders(
        self, redis: aioredis.Redis
    ) -> None:
        # Saved midway by a run that counted orders: its offset means nothing in the index.
        ml = RecordingMl()
        marketplace(questions=0, items=1, claims=0, ml=ml)
        deps, checkpoints = wired(ml, redis)
        await deps.conversations.put([ConversationRecord(seller_id=SELLER)])
        old = BackfillState(seller_id=SELLER, run_id="r", phase="conversations", offset=50)
        await checkpoints.save(old)
        await backfill(SELLER, deps, checkpoints, BackfillOptions(run_id="r", from_index=True))
        state = await checkpoints.load(SELLER)
        assert state is not None
        assert (state.phase, state.conversations_from) == ("done", "orders")
        assert "search_orders" in {m for m, _ in ml.made}

    async def test_a_run_resumed_from_before_the_index_does_not_mark_the_seller_scanned(
        self, redis: aioredis.Redis
    ) -> None:
        # The orders before its offset were read by code that indexed nothing.
        ml = marketplace(questions=0, items=1, claims=0)
        deps, checkpoints = wired(ml, redis)
        old = BackfillState(seller_id=SELLER, run_id="r", phase="conversations", offset=50)
        await checkpoints.save(old)
        state = await backfill(SELLER, deps, checkpoints, BackfillOptions(run_id="r"))
        assert (state.phase, state.conversations_from) == ("done", "orders")
        assert not await deps.conversations.scanned(SELLER)
        # A run of its own from the first order does.
        await backfill(SELLER, deps, checkpoints, BackfillOptions(run_id="r2"))
        assert await deps.conversations.scanned(SELLER)

    async def test_a_reconnection_rereads_the_open_claims_not_the_closed_history(
        self, redis: aioredis.Redis
    ) -> None:
        ml = RecordingMl()
        marketplace(questions=0, items=1, claims=3, ml=ml)
        deps, checkpoints = wired(ml, redis)
        await backfill(SELLER, deps, checkpoints, BackfillOptions(run_id="first"))
        away = 5000000000
        ml.claims[away] = ml.claims[away].model_copy(update={"status": "closed"})
        history = closed_claims(ml, 50)
        ml.made.clear()
        options = BackfillOptions(run_id="again", claims="reconnected")
        await backfill(SELLER, deps, checkpoints, options)
        held = await deps.mirror.claim(away)
        assert held is not None
        assert held.status == "closed"
        assert [c for c in history if await deps.mirror.claim(c) is not None] == []
        made = [m for m, _ in ml.made]
        # The 2 still open from the search, the one closed meanwhile from its re-read.
        assert (made.count("get_claim"), made.count("get_claim_detail")) == (3, 3)

    async def test_a_rebuild_whose_claims_pass_the_search_cap_keeps_the_open_ones(
        self, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # ML pages claims oldest first: a cap on every status cuts the newest, the open ones.
        monkeypatch.setattr("peepers_messages.backfill.CLAIM_SEARCH_CAP", 300)
        ml = marketplace(questions=0, items=1, claims=5)
        closed_claims(ml, 250)
        deps, checkpoints = wired(ml, redis)
        options = BackfillOptions(run_id="rebuild", claims="every")
        await backfill(SELLER, deps, checkpoints, options)
        for c in range(5):
            assert await deps.mirror.claim(5000000000 + c) is not None
        assert await deps.mirror.claim(4000000000) is not None  # the closed, up to the cap

    async def test_a_page_of_questions_costs_a_few_redis_round_trips_not_ten_each(
        self,
    ) -> None:
        client = connect_redis(Settings().redis)
        counting = CountingRedis(client)
        try:
            ml = marketplace(questions=500, items=5, claims=0)
            deps, checkpoints = wired(ml, client)
            state = await backfill(SELLER, deps, checkpoints, BackfillOptions(run_id="rt"))
            _, total = await deps.mirror.inbox(SELLER, offset=0, limit=1)
        finally:
            await client.aclose()
        assert total == state.counts["questions_created"] == 450
        # Per page of 50: read, watch, write, clear the outboxes, checkpoint.
        assert counting.round_trips <= 10 * 10

    async def test_more_than_1000_unanswered_questions_are_found_item_by_item(
        self, redis: aioredis.Redis
    ) -> None:
        ml = marketplace(questions=1200, items=30, claims=3)
        deps, checkpoints = wired(ml, redis)
        state = await backfill(SELLER, deps, checkpoints, BackfillOptions(run_id="r1"))
        assert state.phase == "done"
        inbox, total = await deps.mirror.inbox(SELLER, offset=0, limit=2000)
        unanswered = [q for q in ml.questions.values() if q.status == "UNANSWERED"]
        assert total == len(unanswered) == 1080
        assert [q.id for q in inbox] == sorted(q.id for q in unanswered)  # oldest first
        assert {c.claim_id for c in await deps.tickets.of_seller(SELLER)} == set(ml.claims)

    async def test_questions_answered_and_claims_closed_mid_backfill_hide_no_other(
        self, redis: aioredis.Redis
    ) -> None:
        # An answered question (a closed claim) leaves its search: the entries after it
        # move back, and paged by offset alone the one across the page boundary was
        # never read.
        ml = LeavingAfterFirstPage()
        marketplace(questions=160, items=5, claims=250, ml=ml)
        deps, checkpoints = wired(ml, redis)
        await backfill(SELLER, deps, checkpoints, BackfillOptions(run_id="r"))
        unanswered = [q.id for q in ml.questions.values() if q.status == "UNANSWERED"]
        still_open = [c for c, claim in ml.claims.items() if claim.status == "opened"]
        assert ml.answered[None]
        assert ml.closed
        assert [q for q in unanswered if await deps.mirror.question(q) is None] == []
        assert [c for c in still_open if await deps.mirror.claim(c) is None] == []
        assert len(unanswered) > 100
        assert len(still_open) > CLAIM_PAGE

    async def test_an_items_questions_answered_mid_read_hide_none_of_its_others(
        self, redis: aioredis.Redis
    ) -> None:
        # Past ML's 1,000 the questions are read item by item: 108 unanswered an item,
        # three pages each, and three of each item's first page answered once it was read.
        ml = LeavingAfterFirstPage()
        marketplace(questions=1200, items=10, claims=0, ml=ml)
        deps, checkpoints = wired(ml, redis)
        state = await backfill(SELLER, deps, checkpoints, BackfillOptions(run_id="r"))
        unanswered = [q.id for q in ml.questions.values() if q.status == "UNANSWERED"]
        assert state.total_questions > QUESTION_SEARCH_CAP
        assert len([item for item in ml.answered if item is not None]) == 10
        assert [q for q in unanswered if await deps.mirror.question(q) is None] == []

    async def test_a_backfill_that_failed_midway_resumes_where_it_stopped(
        self, redis: aioredis.Redis
    ) -> None:
        ml = FlakyMl(fail_after=3)
        marketplace(questions=300, items=5, claims=2, ml=ml)
        deps, checkpoints = wired(ml, redis)
        with pytest.raises(MlUnavailable):
            await backfill(SELLER, deps, checkpoints, BackfillOptions(run_id="r2"))
        saved = await checkpoints.load(SELLER)
        assert saved is not None
        # Each page after the first starts at the last question read: 50 + 49 + 49 read.
        assert (saved.phase, saved.offset) == ("questions", 148)
        unanswered = sorted(q.id for q in ml.questions.values() if q.status == "UNANSWERED")
        assert saved.last_read == unanswered[147]
        state = await backfill(SELLER, deps, checkpoints, BackfillOptions(run_id="r2"))
        assert state.phase == "done"
        # Resumed after the 148th of 270: 3 pages, the failed one, then 3 more (from 147,
        # 196 and 245).
        assert ml.pages == 3 + 1 + 3
        _, total = await deps.mirror.inbox(SELLER, offset=0, limit=500)
        assert total == 270
