"""Questions against the real Redis, Kafka changelogs and the sandbox."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from peepers_common.events import QuestionAnswered, QuestionReceived
from peepers_messages.adapters.redis_views import Submission
from peepers_messages.domain import IdempotencyConflict, InvalidAnswer, NotFound, QuestionNotOpen
from peepers_messages.handlers import Outcome, on_question
from tests.integration.messages.harness import Stack, new_question, notification


class TestQuestions:
    async def test_a_question_lands_in_the_inbox_and_is_announced_once(
        self, messages: Stack
    ) -> None:
        question_id = await new_question(messages)
        again = await on_question(
            notification("questions", f"/questions/{question_id}", messages.seller), messages.deps
        )
        assert again is Outcome.UNCHANGED
        inbox, total = await messages.deps.mirror.inbox(messages.seller, offset=0, limit=500)
        assert question_id in [q.id for q in inbox]
        assert total == len(inbox)
        dates = [q.date_created for q in inbox]
        assert dates == sorted(dates)  # oldest first
        assert [e.question_id for e in messages.events_of(QuestionReceived)] == [question_id]

    async def test_questions_are_found_without_accents_or_case(self, messages: Stack) -> None:
        question_id = await new_question(messages, "Qual a voltagem do AQUECEDOR elétrico?")
        found = await messages.deps.mirror.search_questions(
            messages.seller, q="eletrico aquecedor", status=None, item_id=None, limit=10
        )
        assert [q.id for q in found] == [question_id]

    async def test_answering_posts_exactly_one_answer_under_20_concurrent_double_submits(
        self, messages: Stack
    ) -> None:
        question_id = await new_question(messages)
        before = await messages.counter("answers")
        results = await asyncio.gather(
            *(messages.answer(question_id, "Temos sim!", "click-1") for _ in range(20))
        )
        assert await messages.counter("answers") == before + 1
        assert all(result == results[0] for result in results)
        assert results[0]["answer"] == "Temos sim!"
        question = messages.sandbox.state.market.questions[question_id]
        assert question["answer"]["text"] == "Temos sim!"
        with pytest.raises(QuestionNotOpen):
            await messages.answer(question_id, "Outra", "click-2")
        with pytest.raises(IdempotencyConflict):
            await messages.answer(question_id, "Texto novo", "click-1")
        assert await messages.counter("answers") == before + 1

    async def test_the_mirror_converges_from_mls_notification_with_time_to_answer(
        self, messages: Stack
    ) -> None:
        question_id = await new_question(messages)
        await messages.answer(question_id, "Sim", "k")
        cached = await messages.deps.mirror.question(question_id)
        assert cached is not None
        assert cached.status == "UNANSWERED"  # until ML says so
        await on_question(
            notification("questions", f"/questions/{question_id}", messages.seller), messages.deps
        )
        cached = await messages.deps.mirror.question(question_id)
        assert cached is not None
        assert cached.status == "ANSWERED"
        (answered,) = messages.events_of(QuestionAnswered)
        assert answered.seconds_to_answer is not None
        inbox, _ = await messages.deps.mirror.inbox(messages.seller, offset=0, limit=500)
        assert question_id not in [q.id for q in inbox]

    async def test_a_refused_answer_changes_nothing_and_says_which_rule(
        self, messages: Stack
    ) -> None:
        question_id = await new_question(messages)
        before = await messages.counter("answers")
        with pytest.raises(InvalidAnswer) as refused:
            await messages.answer(question_id, "x" * 2001, "k1")
        assert refused.value.rule == "max_length"
        assert await messages.subs.view.get(f"answer:{question_id}") is None
        assert await messages.counter("answers") == before

    async def test_another_sellers_question_is_not_found(self, messages: Stack) -> None:
        other = messages.sandbox.state.market.sellers[1]
        question_id = messages.sandbox.state.market.questions_by_seller[other][0]
        with pytest.raises(NotFound):
            await messages.answer(question_id, "Oi", "k")


class TestAbandonedSubmissions:
    async def test_a_submission_left_pending_by_a_crash_is_taken_over_and_posted_once(
        self, messages: Stack
    ) -> None:
        question_id = await new_question(messages)
        crashed = Submission(
            id=f"answer:{question_id}",
            seller_id=messages.seller,
            key="lost-client",
            body_sha256="0" * 64,
            state="pending",
            submitted_at=datetime.now(UTC) - timedelta(minutes=5),
        )
        assert await messages.subs.view.claim(crashed) is None
        before = await messages.counter("answers")
        result = await messages.answer(question_id, "Temos sim!", "new-client")
        assert result["answer"] == "Temos sim!"
        assert await messages.counter("answers") == before + 1
        again = await messages.answer(question_id, "Temos sim!", "new-client")
        assert again == result
        assert await messages.counter("answers") == before + 1

    async def test_a_resumed_submission_whose_answer_landed_is_not_posted_again(
        self, messages: Stack
    ) -> None:
        question_id = await new_question(messages)
        # The answer reached ML, then the process died before recording it.
        await messages.sandbox.admin.event(
            "answer", question_id=question_id, text="Sim!", seller_id=messages.seller
        )
        crashed = Submission(
            id=f"answer:{question_id}",
            seller_id=messages.seller,
            key="k",
            body_sha256=hashlib.sha256(b"Sim!").hexdigest(),
            state="pending",
            submitted_at=datetime.now(UTC) - timedelta(minutes=5),
        )
        assert await messages.subs.view.claim(crashed) is None
        before = await messages.counter("answers")
        result = await messages.answer(question_id, "Sim!", "k")
        assert result["answer"] == "Sim!"
        assert await messages.counter("answers") == before
