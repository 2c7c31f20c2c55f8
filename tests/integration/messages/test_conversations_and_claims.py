"""Conversations, claims and tickets against the real Redis, Kafka changelogs and sandbox."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from peepers_common.events import (
    ClaimEscalated,
    ClaimOpened,
    MessageReceived,
    OrderPaid,
    OrderSummary,
    TicketClosed,
    TicketOpened,
    TicketUpdated,
    order_event_id,
)
from peepers_messages.backfill import BackfillOptions, RedisBackfillCheckpoints, backfill
from peepers_messages.domain import (
    ConversationBlocked,
    IllegalTransition,
    NotFound,
    add_note,
    assign_ticket,
    move_ticket,
)
from peepers_messages.handlers import (
    Outcome,
    change_ticket,
    on_message,
    on_order_event,
    order_timeline,
)
from peepers_messages.rebuild import rebuild_messages
from tests.integration.messages.harness import (
    Stack,
    an_order,
    buyer_message,
    claim_changed,
    notification,
)


def seeded_conversations(messages: Stack) -> dict[int, tuple[set[str], int]]:
    """The sandbox's conversations of the seller: pack -> (message ids, unread)."""
    market = messages.sandbox.state.market
    return {
        pack_id: (set(ids), market.unread.get(messages.seller, {}).get(pack_id, 0))
        for pack_id, ids in market.messages_by_pack.items()
        if ids and market.pack_parties(pack_id)[0] == messages.seller
    }


async def mirrored(messages: Stack, pack_id: int) -> tuple[set[str], int] | None:
    conversation = await messages.deps.mirror.conversation(pack_id)
    if conversation is None:
        return None
    return {m.id for m in conversation.messages}, conversation.unread


class TestConversations:
    async def test_the_backfill_mirrors_every_conversation_ml_holds(self, messages: Stack) -> None:
        seeded = seeded_conversations(messages)
        assert seeded, "the sandbox seeds conversations that ML never notified"
        checkpoints = RedisBackfillCheckpoints(messages.redis, messages.namespace)
        state = await backfill(
            messages.seller, messages.deps, checkpoints, BackfillOptions(run_id="conv")
        )
        assert state.phase == "done"
        assert {p: await mirrored(messages, p) for p in seeded} == seeded
        received = {e.message_id for e in messages.events_of(MessageReceived)}
        assert received == {m for ids, _ in seeded.values() for m in ids}

    async def test_a_rebuild_reads_only_the_packs_holding_a_conversation(
        self, messages: Stack, redis_admin: Any
    ) -> None:
        """The index (a changelog) survives the loss; empty packs cost nothing."""
        checkpoints = RedisBackfillCheckpoints(messages.redis, messages.namespace)
        await backfill(messages.seller, messages.deps, checkpoints, BackfillOptions(run_id="c"))
        # A conversation met after the scan, by webhook: indexed too.
        await buyer_message(messages, int(an_order(messages)["pack_id"]))
        seeded = seeded_conversations(messages)
        orders = len(messages.sandbox.state.market.orders_by_seller[messages.seller])
        assert len(seeded) < orders  # most packs are empty: the scan read each of them
        await lose_the_scope(messages, redis_admin)
        before = await messages.counter("messages")
        await rebuild(messages, checkpoints)
        assert await messages.counter("messages") - before == len(seeded)
        assert {p: await mirrored(messages, p) for p in seeded} == seeded

    async def test_a_rebuild_scans_the_orders_of_a_seller_never_scanned_whole(
        self, messages: Stack, redis_admin: Any
    ) -> None:
        # Conversations mirrored before the index existed, or a backfill of a window only:
        # the index cannot say it holds them all.
        checkpoints = RedisBackfillCheckpoints(messages.redis, messages.namespace)
        window = BackfillOptions(run_id="c", conversation_days=30)
        await backfill(messages.seller, messages.deps, checkpoints, window)
        assert not await messages.deps.conversations.scanned(messages.seller)
        await lose_the_scope(messages, redis_admin)
        before = await messages.counter("messages")
        await rebuild(messages, checkpoints)
        orders = len(messages.sandbox.state.market.orders_by_seller[messages.seller])
        assert await messages.counter("messages") - before == orders
        seeded = seeded_conversations(messages)
        assert {p: await mirrored(messages, p) for p in seeded} == seeded
        assert await messages.deps.conversations.scanned(messages.seller)

    async def test_a_message_webhook_mirrors_the_whole_conversation(self, messages: Stack) -> None:
        market = messages.sandbox.state.market
        pack_id, (before, _) = next(
            (pack, seeded)
            for pack, seeded in seeded_conversations(messages).items()
            if market.conversation_status(pack)["status"] == "active"
        )
        message_id = await buyer_message(messages, pack_id)
        assert await mirrored(messages, pack_id) == seeded_conversations(messages)[pack_id]
        assert (await mirrored(messages, pack_id) or (set(), 0))[0] == {*before, message_id}

    async def test_a_message_of_a_mirrored_conversation_costs_one_request(
        self, messages: Stack
    ) -> None:
        pack_id = int(an_order(messages)["pack_id"])
        await buyer_message(messages, pack_id)  # met first: the whole conversation
        before = await messages.counter("messages")
        second = await buyer_message(messages, pack_id, "E a nota fiscal?")
        assert await messages.counter("messages") - before == 1
        conversation = await messages.deps.mirror.conversation(pack_id)
        assert conversation is not None
        assert second in {m.id for m in conversation.messages}
        assert conversation.unread == 2

    async def test_a_buyer_message_makes_a_conversation_with_one_unread(
        self, messages: Stack
    ) -> None:
        pack_id = int(an_order(messages)["pack_id"])
        message_id = await buyer_message(messages, pack_id)
        again = await on_message(
            notification("messages", message_id, messages.seller, ["created"]), messages.deps
        )
        assert again is Outcome.UNCHANGED
        conversation = await messages.deps.mirror.conversation(pack_id)
        assert conversation is not None
        assert conversation.unread == 1
        assert conversation.status == "active"
        assert [e.message_id for e in messages.events_of(MessageReceived)] == [message_id]

    async def test_sending_twice_with_one_key_posts_one_message(self, messages: Stack) -> None:
        pack_id = int(an_order(messages)["pack_id"])
        await buyer_message(messages, pack_id)
        before = await messages.counter("messages_write")
        first = await messages.send(pack_id, "Já foi despachado!", "send-1")
        second = await messages.send(pack_id, "Já foi despachado!", "send-1")
        assert first == second
        assert await messages.counter("messages_write") == before + 1
        sent = messages.sandbox.state.market.messages[first["message_id"]]
        assert sent["text"] == "Já foi despachado!"

    async def test_a_blocked_conversation_refuses_sending(self, messages: Stack) -> None:
        pack_id = int(an_order(messages)["pack_id"])
        await buyer_message(messages, pack_id)
        await messages.sandbox.admin.event("conversation_block", pack_id=pack_id)
        before = await messages.counter("messages_write")
        with pytest.raises(ConversationBlocked) as refused:
            await messages.send(pack_id, "Olá?", "send-blocked")
        assert refused.value.substatus == "blocked_by_buyer"
        assert await messages.counter("messages_write") == before
        submission = await messages.subs.view.get(f"message:{pack_id}:send-blocked")
        assert submission is not None
        assert submission.state == "failed"
        # ML blocked it without a notification: the refusal brought its status to the
        # mirror (the inbox and the web page no longer show it active), messages kept.
        mirrored = await messages.deps.mirror.conversation(pack_id)
        assert mirrored is not None
        assert (mirrored.status, mirrored.substatus) == ("blocked", "blocked_by_buyer")
        assert mirrored.unread == 1

    async def test_another_sellers_pack_is_not_found(self, messages: Stack) -> None:
        market = messages.sandbox.state.market
        other = market.sellers[1]
        pack_id = int(market.orders[market.orders_by_seller[other][0]]["pack_id"])
        with pytest.raises(NotFound):
            await messages.send(pack_id, "Oi", "k")


class TestClaimsAndTickets:
    async def test_a_claim_escalated_in_the_sandbox_moves_its_ticket(self, messages: Stack) -> None:
        claim = await messages.sandbox.admin.event("claim", order_id=an_order(messages)["id"])
        claim_id = int(claim["id"])
        assert await claim_changed(messages, claim_id) is Outcome.CREATED
        ticket = await messages.deps.tickets.get(claim_id)
        assert ticket is not None
        assert (ticket.status, ticket.claim_stage) == ("open", "claim")
        assert ticket.due_date is not None
        assert ticket.action_responsible == "seller"

        await messages.sandbox.admin.event("claim_dispute", claim_id=claim_id)
        assert await claim_changed(messages, claim_id) is Outcome.UPDATED
        ticket = await messages.deps.tickets.get(claim_id)
        assert ticket is not None
        assert (ticket.status, ticket.claim_stage) == ("open", "dispute")
        assert ticket.action_responsible == "mediator"
        assert [e.claim_id for e in messages.events_of(ClaimOpened)] == [claim_id]
        assert [e.claim_id for e in messages.events_of(ClaimEscalated)] == [claim_id]
        assert len(messages.events_of(TicketOpened)) == 1
        (updated,) = messages.events_of(TicketUpdated)
        assert "claim_stage" in updated.changed

        await messages.sandbox.admin.event("claim_close", claim_id=claim_id)
        await claim_changed(messages, claim_id)
        (closed,) = messages.events_of(TicketClosed)
        assert closed.ticket.status == "closed"
        assert closed.ticket.resolution is not None

    async def test_a_redelivered_claim_changes_nothing(self, messages: Stack) -> None:
        claim = await messages.sandbox.admin.event("claim", order_id=an_order(messages)["id"])
        await claim_changed(messages, int(claim["id"]))
        published = len(messages.publisher.records)
        assert await claim_changed(messages, int(claim["id"])) is Outcome.UNCHANGED
        assert len(messages.publisher.records) == published

    async def test_an_illegal_transition_is_refused_and_changes_nothing(
        self, messages: Stack
    ) -> None:
        claim = await messages.sandbox.admin.event("claim", order_id=an_order(messages)["id"])
        claim_id = int(claim["id"])
        await claim_changed(messages, claim_id)
        with pytest.raises(IllegalTransition, match="from open to closed"):
            await change_ticket(
                claim_id,
                messages.seller,
                lambda t, now: move_ticket(t, "closed", now),
                messages.deps,
            )
        ticket = await messages.deps.tickets.get(claim_id)
        assert ticket is not None
        assert (ticket.status, ticket.version) == ("open", 1)
        with pytest.raises(NotFound):
            await change_ticket(
                claim_id,
                messages.sandbox.state.market.sellers[1],
                lambda t, now: move_ticket(t, "in_progress", now),
                messages.deps,
            )

    async def test_notes_and_assignees_survive_losing_the_view(
        self, messages: Stack, redis_admin: Any
    ) -> None:
        claim = await messages.sandbox.admin.event("claim", order_id=an_order(messages)["id"])
        claim_id = int(claim["id"])
        await claim_changed(messages, claim_id)
        for change in (
            lambda t, now: assign_ticket(t, "ana", now),
            lambda t, now: add_note(t, "ana", "Pedi fotos ao comprador", now),
            lambda t, now: move_ticket(t, "in_progress", now),
        ):
            await change_ticket(claim_id, messages.seller, change, messages.deps)
        await lose_the_scope(messages, redis_admin)
        assert await messages.deps.tickets.get(claim_id) is None
        assert await messages.deps.ticket_log.verify()
        ticket = await messages.deps.tickets.get(claim_id)
        assert ticket is not None
        assert (ticket.status, ticket.assignee) == ("in_progress", "ana")
        assert [n.text for n in ticket.notes] == ["Pedi fotos ao comprador"]

    async def test_a_rebuild_brings_back_every_claim_closed_ones_too(
        self, messages: Stack, redis_admin: Any
    ) -> None:
        """Issue 18's full run: claims closed before a Redis loss stayed unmirrored."""
        market = messages.sandbox.state.market
        claims = list(market.claims_by_seller[messages.seller])
        closed = claims[:2]
        for claim_id in claims:
            await claim_changed(messages, claim_id)
        for claim_id in closed:
            await messages.sandbox.admin.event("claim_close", claim_id=claim_id)
            await claim_changed(messages, claim_id)
        await lose_the_scope(messages, redis_admin)
        await rebuild(messages, RedisBackfillCheckpoints(messages.redis, messages.namespace))
        found = {}
        for claim_id in claims:
            claim = await messages.deps.mirror.claim(claim_id)
            ticket = await messages.deps.tickets.get(claim_id)
            assert claim is not None, f"claim {claim_id} ({market.claims[claim_id]['status']})"
            assert ticket is not None
            found[claim_id] = (claim.status, ticket.claim_status, ticket.status)
        assert found == {
            c: ("closed", "closed", "closed") if c in closed else ("opened", "opened", "open")
            for c in claims
        }

    async def test_a_reconnection_brings_a_claim_closed_meanwhile(self, messages: Stack) -> None:
        claim_id = messages.sandbox.state.market.claims_by_seller[messages.seller][0]
        await claim_changed(messages, claim_id)
        # Closed while the seller was away: its notification never reached Peepers.
        await messages.sandbox.admin.event("claim_close", claim_id=claim_id)
        checkpoints = RedisBackfillCheckpoints(messages.redis, messages.namespace)
        options = BackfillOptions(run_id="reconnected", claims="reconnected")
        await backfill(messages.seller, messages.deps, checkpoints, options)
        claim = await messages.deps.mirror.claim(claim_id)
        ticket = await messages.deps.tickets.get(claim_id)
        assert claim is not None
        assert ticket is not None
        assert (claim.status, ticket.status) == ("closed", "closed")


async def rebuild(messages: Stack, checkpoints: RedisBackfillCheckpoints) -> None:
    """What the cache guard runs after a loss (its changelogs, then the sellers)."""
    deps = messages.deps
    resync = await rebuild_messages(
        "e1",
        deps,
        (deps.ticket_log, deps.conversation_log),
        [messages.seller],
        checkpoints,
        BackfillOptions(run_id="unused"),
    )
    assert resync is not None
    await resync()


async def lose_the_scope(messages: Stack, redis_admin: Any) -> None:
    """Lose every key of this service scope, as a FLUSHALL would (the scope is the test's)."""
    keys = [
        k async for k in redis_admin.scan_iter(match=messages.namespace.prefix + "*", count=20000)
    ]
    assert keys
    await redis_admin.delete(*keys)


class TestOrderTimeline:
    async def test_an_orders_events_messages_and_claims_merge_in_time_order(
        self, messages: Stack
    ) -> None:
        order = an_order(messages)
        order_id, pack_id = int(order["id"]), int(order["pack_id"])
        at = datetime(2020, 1, 1, tzinfo=UTC)
        paid = OrderPaid(
            event_id=order_event_id(order_id, "order.paid"),
            occurred_at=at,
            seller_id=messages.seller,
            order_id=order_id,
            order=OrderSummary(
                order_id=order_id,
                state="paid",
                ml_status="paid",
                buyer_id=int(order["buyer"]["id"]),
                total_amount=Decimal("10"),
                pack_id=pack_id,
                date_created=at,
            ),
            revealed_by="notification:test",
        )
        await on_order_event(paid.model_dump_json().encode(), messages.deps)
        await on_order_event(paid.model_dump_json().encode(), messages.deps)  # redelivered
        renamed = b'{"type": "order.renamed", "seller_id": 1, "order_id": 2}'
        assert await on_order_event(renamed, messages.deps) is Outcome.UNCHANGED
        await buyer_message(messages, pack_id)
        claim = await messages.sandbox.admin.event("claim", order_id=order_id)
        await claim_changed(messages, int(claim["id"]))
        entries = await order_timeline(order_id, messages.deps)
        assert [e.kind for e in entries] == ["order", "message", "claim"]
        assert [e.type for e in entries] == ["order.paid", "message.received", "claim.opened"]
