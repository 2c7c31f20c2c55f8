"""Questions against the real Redis, Kafka changelogs and the sandbox."""

from __future__ import annotations

import asyncio

import pytest

from peepers_messages import commands
from peepers_messages.domain import IdempotencyConflict, InvalidAnswer, NotFound, QuestionNotOpen
from peepers_messages.handlers import Outcome, on_question
from tests.integration.messages.harness import Stack, notification


async def new_question(stack: Stack, text: str = "Tem na cor azul?") -> int:
    created = await stack.sandbox.admin.event("question", seller_id=stack.seller, text=text)
    question_id = int(created["id"])
    outcome = await on_question(
        notification("questions", f"/questions/{question_id}", stack.seller), stack.deps
    )
    assert outcome is Outcome.CREATED
    return question_id


class TestQuestions:
    async def test_a_question_lands_in_the_inbox_and_is_announced_once(
        self, messages: Stack
    ) -> None:
        stack = messages
        question_id = await new_question(stack)
        again = await on_question(
            notification("questions", f"/questions/{question_id}", stack.seller), stack.deps
        )
        assert again is Outcome.UNCHANGED
        inbox, total = await stack.deps.mirror.inbox(stack.seller, offset=0, limit=500)
        assert question_id in [q.id for q in inbox]
        assert total == len(inbox)
        dates = [q.date_created for q in inbox]
        assert dates == sorted(dates)  # oldest first
        assert [e.question_id for e in stack.events("question.received")] == [question_id]

    async def test_questions_are_found_without_accents_or_case(self, messages: Stack) -> None:
        stack = messages
        question_id = await new_question(stack, "Qual a voltagem do AQUECEDOR elétrico?")
        found = await stack.deps.mirror.search_questions(
            stack.seller, q="eletrico aquecedor", status=None, item_id=None, limit=10
        )
        assert [q.id for q in found] == [question_id]

    async def test_answering_posts_exactly_one_answer_under_20_concurrent_double_submits(
        self, messages: Stack
    ) -> None:
        stack = messages
        question_id = await new_question(stack)
        before = await stack.counter("answers")
        results = await asyncio.gather(
            *(
                commands.answer(
                    stack.seller, question_id, "Temos sim!", "click-1", stack.deps, stack.subs
                )
                for _ in range(20)
            )
        )
        assert await stack.counter("answers") == before + 1
        assert all(result == results[0] for result in results)
        assert results[0]["answer"] == "Temos sim!"
        question = stack.sandbox.state.market.questions[question_id]
        assert question["answer"]["text"] == "Temos sim!"
        with pytest.raises(QuestionNotOpen):
            await commands.answer(
                stack.seller, question_id, "Outra", "click-2", stack.deps, stack.subs
            )
        with pytest.raises(IdempotencyConflict):
            await commands.answer(
                stack.seller, question_id, "Texto novo", "click-1", stack.deps, stack.subs
            )
        assert await stack.counter("answers") == before + 1

    async def test_the_mirror_converges_from_mls_notification_with_time_to_answer(
        self, messages: Stack
    ) -> None:
        stack = messages
        question_id = await new_question(stack)
        await commands.answer(stack.seller, question_id, "Sim", "k", stack.deps, stack.subs)
        cached = await stack.deps.mirror.question(question_id)
        assert cached is not None and cached.status == "UNANSWERED"  # until ML says so
        await on_question(
            notification("questions", f"/questions/{question_id}", stack.seller), stack.deps
        )
        cached = await stack.deps.mirror.question(question_id)
        assert cached is not None and cached.status == "ANSWERED"
        (answered,) = stack.events("question.answered")
        assert answered.seconds_to_answer is not None
        inbox, _ = await stack.deps.mirror.inbox(stack.seller, offset=0, limit=500)
        assert question_id not in [q.id for q in inbox]

    async def test_a_refused_answer_changes_nothing_and_says_which_rule(
        self, messages: Stack
    ) -> None:
        stack = messages
        question_id = await new_question(stack)
        before = await stack.counter("answers")
        with pytest.raises(InvalidAnswer) as refused:
            await commands.answer(
                stack.seller, question_id, "x" * 2001, "k1", stack.deps, stack.subs
            )
        assert refused.value.rule == "max_length"
        assert await stack.subs.view.get(f"answer:{question_id}") is None
        assert await stack.counter("answers") == before

    async def test_another_sellers_question_is_not_found(self, messages: Stack) -> None:
        stack = messages
        other = stack.sandbox.state.market.sellers[1]
        question_id = stack.sandbox.state.market.questions_by_seller[other][0]
        with pytest.raises(NotFound):
            await commands.answer(stack.seller, question_id, "Oi", "k", stack.deps, stack.subs)
