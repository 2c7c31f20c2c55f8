"""The messages service's rules: statuses, answers, claims and the ticket workflow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from peepers_common.ml.models import MlClaim, MlClaimDetail, MlQuestion
from peepers_messages.domain import (
    ANSWER_MAX_CHARS,
    IllegalTransition,
    InvalidAnswer,
    InvalidMessage,
    InvalidTicketChange,
    QuestionNotOpen,
    TicketStatus,
    add_note,
    assign_ticket,
    claim_snapshot,
    due_soon,
    follow_claim,
    move_ticket,
    new_ticket,
    question_snapshot,
    seconds_to_answer,
    validate_answer,
    validate_message,
)
from peepers_messages.handlers import claim_events, question_events

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
SELLER = 3000000001


def ml_question(**fields: Any) -> MlQuestion:
    body: dict[str, Any] = {
        "id": 13000000001,
        "seller_id": SELLER,
        "item_id": "MLB4100000001",
        "status": "UNANSWERED",
        "text": "Tem na cor azul?",
        "date_created": T0.isoformat(),
        "last_updated": T0.isoformat(),
        "answer": None,
        "from": {"id": 4000000001},
    }
    body.update(fields)
    return MlQuestion.model_validate(body)


def ml_claim(**fields: Any) -> MlClaim:
    body: dict[str, Any] = {
        "id": 5000000001,
        "resource_id": 2000000001,
        "status": "opened",
        "type": "mediations",
        "stage": "claim",
        "resource": "order",
        "reason_id": "PDD9549",
        "players": [
            {"role": "complainant", "type": "buyer", "user_id": 4000000001},
            {"role": "respondent", "type": "seller", "user_id": SELLER},
        ],
        "date_created": T0.isoformat(),
        "last_updated": T0.isoformat(),
    }
    body.update(fields)
    return MlClaim.model_validate(body)


class TestStatuses:
    @pytest.mark.parametrize(
        "status",
        [
            "UNANSWERED",
            "ANSWERED",
            "CLOSED_UNANSWERED",
            "UNDER_REVIEW",
            "BANNED",
            "DELETED",
            "DISABLED",
            "SOMETHING_NEW",
        ],
    )
    def test_every_question_status_is_kept_as_ml_sent_it(self, status: str) -> None:
        assert question_snapshot(ml_question(status=status)).status == status

    def test_an_unknown_claim_type_and_stage_are_kept_raw(self) -> None:
        claim = claim_snapshot(ml_claim(type="brand_new_type", stage="limbo"), None, SELLER)
        assert (claim.type, claim.stage) == ("brand_new_type", "limbo")
        assert new_ticket(claim, T0).claim_type == "brand_new_type"

    def test_an_answered_question_maps_its_answer_and_time_to_answer(self) -> None:
        answered = T0 + timedelta(minutes=30)
        question = question_snapshot(
            ml_question(
                status="ANSWERED",
                answer={"text": "Sim!", "status": "ACTIVE", "date_created": answered.isoformat()},
                last_updated=answered.isoformat(),
            )
        )
        assert (question.answer_text, question.answer_status) == ("Sim!", "ACTIVE")
        assert question.buyer_id == 4000000001
        assert seconds_to_answer(question) == 1800

    def test_the_claim_detail_gives_the_due_date_and_who_acts(self) -> None:
        detail = MlClaimDetail(due_date=T0 + timedelta(hours=5), action_responsible="seller")
        claim = claim_snapshot(ml_claim(), detail, SELLER)
        assert claim.due_date == T0 + timedelta(hours=5)
        assert claim.action_responsible == "seller"
        assert claim.order_id == 2000000001


class TestAnswerRules:
    def test_an_empty_answer_is_refused_by_the_not_empty_rule(self) -> None:
        with pytest.raises(InvalidAnswer) as refused:
            validate_answer("   \n", None)
        assert refused.value.rule == "not_empty"

    def test_an_answer_of_2001_characters_is_refused_by_the_length_rule(self) -> None:
        validate_answer("a" * ANSWER_MAX_CHARS, None)
        with pytest.raises(InvalidAnswer) as refused:
            validate_answer("a" * (ANSWER_MAX_CHARS + 1), None)
        assert refused.value.rule == "max_length"
        assert "2001" in str(refused.value)

    @pytest.mark.parametrize("status", ["ANSWERED", "UNDER_REVIEW", "DELETED", "NEW_ONE"])
    def test_only_an_unanswered_question_takes_an_answer(self, status: str) -> None:
        with pytest.raises(QuestionNotOpen, match=status):
            validate_answer("Temos sim", question_snapshot(ml_question(status=status)))

    def test_a_message_longer_than_the_limit_is_refused(self) -> None:
        with pytest.raises(InvalidMessage) as refused:
            validate_message("x" * 351, 350)
        assert refused.value.rule == "max_length"


class TestTicketWorkflow:
    def ticket(self, status: TicketStatus = TicketStatus.OPEN) -> Any:
        ticket = new_ticket(claim_snapshot(ml_claim(), None, SELLER), T0)
        return ticket.model_copy(update={"status": status})

    def test_a_ticket_walks_open_in_progress_waiting_resolved_closed(self) -> None:
        ticket = self.ticket()
        for step in ("in_progress", "waiting_buyer", "in_progress", "resolved", "closed"):
            ticket = move_ticket(ticket, step, T0)
            assert ticket.status == step
        assert ticket.version == 6

    @pytest.mark.parametrize(
        ("start", "to"),
        [
            (TicketStatus.OPEN, "resolved"),
            (TicketStatus.OPEN, "closed"),
            (TicketStatus.IN_PROGRESS, "closed"),
            (TicketStatus.CLOSED, "open"),
            (TicketStatus.CLOSED, "in_progress"),
        ],
    )
    def test_an_illegal_transition_gets_a_clear_error(self, start: TicketStatus, to: str) -> None:
        with pytest.raises(IllegalTransition) as refused:
            move_ticket(self.ticket(start), to, T0)
        assert f"from {start.value} to {to}" in str(refused.value)

    def test_an_unknown_status_is_refused(self) -> None:
        with pytest.raises(InvalidTicketChange, match="unknown ticket status"):
            move_ticket(self.ticket(), "escalated", T0)

    def test_notes_and_assignees_accumulate_with_versions(self) -> None:
        ticket = assign_ticket(self.ticket(), "ana", T0)
        ticket = add_note(ticket, "ana", "Pedi fotos", T0 + timedelta(minutes=1))
        assert ticket.assignee == "ana"
        assert [n.text for n in ticket.notes] == ["Pedi fotos"]
        assert ticket.version == 3
        with pytest.raises(InvalidTicketChange):
            add_note(ticket, "ana", "", T0)

    def test_ml_escalating_the_claim_updates_the_ticket_stage(self) -> None:
        ticket = self.ticket(TicketStatus.IN_PROGRESS)
        claim = claim_snapshot(ml_claim(stage="dispute"), None, SELLER)
        moved, changed = follow_claim(ticket, claim, T0)
        assert moved.claim_stage == "dispute"
        assert moved.status == TicketStatus.IN_PROGRESS
        assert changed == ("claim_stage",)

    def test_ml_closing_the_claim_closes_the_ticket_and_recontact_reopens_it(self) -> None:
        closed_claim = claim_snapshot(
            ml_claim(status="closed", resolution={"reason": "payment_refunded"}), None, SELLER
        )
        closed, changed = follow_claim(self.ticket(TicketStatus.WAITING_BUYER), closed_claim, T0)
        assert closed.status == TicketStatus.CLOSED
        assert "status" in changed
        reopened, _ = follow_claim(
            closed, claim_snapshot(ml_claim(stage="recontact"), None, SELLER), T0
        )
        assert reopened.status == TicketStatus.OPEN

    def test_the_same_claim_again_changes_nothing(self) -> None:
        ticket = self.ticket()
        same, changed = follow_claim(ticket, claim_snapshot(ml_claim(), None, SELLER), T0)
        assert (same, changed) == (ticket, ())

    def test_a_ticket_due_within_24_hours_is_flagged_when_the_seller_acts(self) -> None:
        detail = MlClaimDetail(due_date=T0 + timedelta(hours=20), action_responsible="seller")
        ticket = new_ticket(claim_snapshot(ml_claim(), detail, SELLER), T0)
        assert due_soon(ticket, T0, 24 * 3600)
        assert not due_soon(ticket, T0 - timedelta(hours=5), 24 * 3600)
        mediator = ticket.model_copy(update={"action_responsible": "mediator"})
        assert not due_soon(mediator, T0, 24 * 3600)


class TestEvents:
    def test_a_new_question_is_received_once_and_answered_once(self) -> None:
        new = question_snapshot(ml_question())
        (received,) = question_events(None, new, now=T0, rebuild=False)
        assert received.type == "question.received"
        answered = question_snapshot(
            ml_question(status="ANSWERED", answer={"text": "Sim", "status": "ACTIVE"})
        )
        (event,) = question_events(new, answered, now=T0, rebuild=False)
        assert event.type == "question.answered"
        assert question_events(answered, answered, now=T0, rebuild=False) == []
        again = question_events(new, answered, now=T0 + timedelta(hours=1), rebuild=False)
        assert again[0].event_id == event.event_id  # deterministic: consumers deduplicate

    def test_a_rebuild_announces_a_snapshot_not_a_new_question(self) -> None:
        (event,) = question_events(None, question_snapshot(ml_question()), now=T0, rebuild=True)
        assert event.type == "question.snapshot"

    def test_claim_events_follow_its_stage_and_status(self) -> None:
        opened = claim_snapshot(ml_claim(), None, SELLER)
        assert [e.type for e in claim_events(None, opened, now=T0)] == ["claim.opened"]
        later = T0 + timedelta(hours=1)
        disputed = claim_snapshot(
            ml_claim(stage="dispute", last_updated=later.isoformat()), None, SELLER
        )
        assert [e.type for e in claim_events(opened, disputed, now=T0)] == ["claim.escalated"]
        closed = claim_snapshot(
            ml_claim(stage="dispute", status="closed", last_updated=later.isoformat()),
            None,
            SELLER,
        )
        assert [e.type for e in claim_events(disputed, closed, now=T0)] == ["claim.closed"]
