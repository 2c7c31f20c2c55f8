"""The checks after the quiet period; each returns what diverged (empty: it holds).

- convergence: every item, order, question, conversation and claim (with its ticket) of
  every seller, as the run's Redis holds it, equals what the sandbox holds now;
- nothing lost: every notification whose delivery ingest acknowledged is on a
  notification topic (its ``ce_id`` header), counted against the notifier's attempt log;
- nothing doubled: no change announced under two event ids on ``peepers.catalog.v1``
  (an item's event type and ML version) or ``peepers.orders.v1`` (an order's
  transition), no mail twice at the SMTP sink. A record repeating an event id already
  on the topic is a republish after a crash (at-least-once: consumers deduplicate on
  ``event_id``, ARCHITECTURE.md); those are counted, not failed;
- nothing dead-lettered: a fault that heals is transient; a record on a ``.dlq`` topic
  is a change no cache will see (shown with its error);
- no manual step: no seller was told to log in again (``seller.reauth_required`` or
  ``seller.disconnected`` on ``peepers.sellers.v1``);
- ML's limits kept: the sandbox's counters show no request refused for exceeding a limit
  (a fault's injected 429s are not counted there).
"""

from __future__ import annotations

import email
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from peepers_catalog.adapters.redis_store import RedisItemStore
from peepers_catalog.domain import snapshot
from peepers_common.consuming import H_ERROR, H_ERROR_DETAIL
from peepers_common.events import CATALOG_EVENT, ORDERS_EVENT, SELLER_EVENT, OrderEvent
from peepers_common.kafka import read_to_end
from peepers_common.ml.models import MlItem, MlOrder, MlShipment
from peepers_common.namespaces import Namespace
from peepers_common.settings import KafkaSettings
from peepers_common.topics import (
    DLQ_SUFFIX,
    ML_TOPICS,
    NOTIFICATIONS_UNROUTED,
    PEEPERS_CATALOG,
    PEEPERS_ORDERS,
    PEEPERS_SELLERS,
    TOPICS,
    notification_topic,
)
from peepers_messages.adapters import RedisMirror, RedisTickets
from peepers_orders import lifecycle
from peepers_orders.adapters.redis_store import RedisOrderStore
from peepers_orders.mail import transition_of

# Shown per check; the rest is counted.
SHOWN = 5


@dataclass
class Check:
    name: str
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    # A failure written down and being fixed (--known-failing): shown, not failing the run.
    known: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        failed = "KNOWN FAILURE" if self.known else "FAILED"
        verdict = "ok" if self.ok else f"{failed} ({len(self.problems)})"
        shown = "".join(f"\n    {p}" for p in self.problems[:SHOWN])
        more = len(self.problems) - SHOWN
        return f"{self.name}: {verdict}, {self.checked} checked{shown}" + (
            f"\n    ... {more} more" if more > 0 else ""
        )


def item_differences(served: dict[str, Any], cached: dict[str, Any], seller: int) -> list[str]:
    """Items whose cached content is not what ML serves (``last_updated`` aside)."""
    wrong = []
    for item_id, body in served.items():
        want = snapshot(MlItem.model_validate(body)).model_dump(exclude={"last_updated"})
        mine = cached.get(item_id)
        if mine is None:
            wrong.append(f"seller {seller} item {item_id}: not cached")
            continue
        got = mine.model_dump(exclude={"last_updated"})
        if got != want:
            diff = {k: (v, want[k]) for k, v in got.items() if v != want.get(k)}
            wrong.append(f"seller {seller} item {item_id}: (cached, ML) {diff}")
    return wrong


def expected_order(order: dict[str, Any], shipment: dict[str, Any]) -> tuple[str, str | None]:
    """What ML's order and shipment map to, and the shipment status Peepers keeps."""
    ml = MlOrder.model_validate(order)
    ship = MlShipment.model_validate(shipment) if lifecycle.needs_shipment(ml) else None
    reached = lifecycle.milestones(ml, ship, now=datetime.now(UTC))
    return lifecycle.state_of(reached).value, ship.status if ship else None


def order_differences(
    orders: list[dict[str, Any]], cached: dict[int, Any], since: datetime | None = None
) -> list[str]:
    """Each cached order must be what ML's data maps to; each order since ``since`` cached.

    An order older than the backfill's window (``since``) that no webhook brought is not
    Peepers' to hold (docs/orders.md, the backfill).
    """
    wrong = []
    for entry in orders:
        order, shipment = entry["order"], entry["shipment"]
        mine = cached.get(order["id"])
        if mine is None:
            if since is None or datetime.fromisoformat(order["date_created"]) >= since:
                wrong.append(f"order {order['id']}: not cached")
            continue
        state, ship_status = expected_order(order, shipment)
        s = mine.summary
        got = (s.state, s.ml_status, s.total_amount)
        want = (state, order["status"], Decimal(str(order["total_amount"])))
        if got != want or (ship_status is not None and s.shipment_status != ship_status):
            wrong.append(f"order {order['id']}: cached {got} {s.shipment_status}, ML {want}")
    return wrong


async def messages_differences(
    mirror: RedisMirror, tickets: RedisTickets, state: dict[str, Any]
) -> list[str]:
    """What the messages mirror holds that differs from ML (the rules of its e2e test)."""
    wrong = []
    for served in state["questions"]:
        cached = await mirror.question(served["id"])
        answer = served["answer"]
        if cached is None:
            if served["status"] == "UNANSWERED":
                wrong.append(f"question {served['id']}: unanswered at ML, not mirrored")
        elif (cached.status, cached.answer_text) != (
            served["status"],
            answer["text"] if answer else None,
        ):
            wrong.append(f"question {served['id']}: {cached.status} vs {served['status']}")
    for served in state["conversations"]:
        pack_id = served["pack_id"]
        conversation = await mirror.conversation(pack_id)
        if conversation is None:
            wrong.append(f"pack {pack_id}: not mirrored")
            continue
        if {m.id for m in conversation.messages} != set(served["message_ids"]):
            wrong.append(f"pack {pack_id}: messages differ")
        if conversation.unread != served["unread"]:
            wrong.append(f"pack {pack_id}: unread {conversation.unread} vs {served['unread']}")
    for claim in state["claims"]:
        mirrored = await mirror.claim(claim["id"])
        ticket = await tickets.get(claim["id"])
        if mirrored is None or ticket is None:
            wrong.append(f"claim {claim['id']}: mirrored {mirrored is not None}, ticket {ticket}")
            continue
        if (mirrored.status, mirrored.stage) != (claim["status"], claim["stage"]):
            wrong.append(f"claim {claim['id']}: {mirrored.status}/{mirrored.stage} vs ML")
        if (ticket.claim_status, ticket.claim_stage) != (claim["status"], claim["stage"]):
            wrong.append(f"ticket {claim['id']}: does not follow its claim")
    return wrong


async def convergence(
    redis: aioredis.Redis,
    scope: str,
    states: Sequence[dict[str, Any]],
    *,
    orders_since: datetime | None = None,
) -> tuple[Check, Check, Check]:
    """Items, orders and the messages mirror against ML's ``states`` (one per seller).

    ``orders_since``: the orders backfill's window start; older orders that are not
    cached are left out (None: every order must be cached, as the proof's backfill
    reaches back over the whole seeded history).
    """
    items = Check("items in Redis = ML")
    orders = Check("orders in Redis = ML")
    messages = Check("questions, conversations, claims and tickets in Redis = ML")
    mirror = RedisMirror(redis, Namespace("messages", scope=scope))
    tickets = RedisTickets(redis, Namespace("messages", scope=scope))
    item_store = RedisItemStore(redis, Namespace("catalog", scope=scope))
    order_store = RedisOrderStore(redis, Namespace("orders", scope=scope))
    for state in states:
        seller = state["seller_id"]
        served = state["items"]
        cached = await item_store.get_many(served)
        items.checked += len(served)
        items.problems += item_differences(served, cached, seller)
        live = await item_store.seller_item_ids(seller)
        if live != set(served):
            items.problems.append(f"seller {seller}: live ids differ by {live ^ set(served)}")
        ids = [entry["order"]["id"] for entry in state["orders"]]
        found = {o.summary.order_id: o for o in await order_store.get_many(ids)}
        orders.checked += len(ids)
        orders.problems += order_differences(state["orders"], found, orders_since)
        messages.checked += len(state["questions"]) + len(state["conversations"])
        messages.checked += len(state["claims"])
        messages.problems += await messages_differences(mirror, tickets, state)
    return items, orders, messages


def notification_topics(prefix: str) -> list[str]:
    return [prefix + notification_topic(t) for t in ML_TOPICS] + [prefix + NOTIFICATIONS_UNROUTED]


async def nothing_lost(kafka: KafkaSettings, prefix: str, acked: Sequence[str]) -> Check:
    check = Check("acked notifications on Kafka", checked=len(acked))
    records = await read_to_end(kafka, notification_topics(prefix), timeout_s=120)
    on_kafka = {value.decode() for r in records for key, value in r.headers or () if key == "ce_id"}
    check.problems += [f"notification {n} acked, not on Kafka" for n in acked if n not in on_kafka]
    return check


def doubled(changes: Sequence[tuple[str, str]]) -> list[str]:
    """The changes announced under more than one event id, from (change, event id) pairs."""
    ids: dict[str, set[str]] = {}
    for change, event_id in changes:
        ids.setdefault(change, set()).add(event_id)
    return [f"{c} announced as {len(i)} events: {sorted(i)}" for c, i in ids.items() if len(i) > 1]


async def nothing_doubled(
    kafka: KafkaSettings, prefix: str, mail_dir: Path
) -> tuple[list[Check], dict[str, int]]:
    """The checks, and per topic the records repeating an event id already on it."""
    catalog = [
        CATALOG_EVENT.validate_json(r.value or b"")
        for r in await read_to_end(kafka, [prefix + PEEPERS_CATALOG], timeout_s=120)
    ]
    orders = [
        ORDERS_EVENT.validate_json(r.value or b"")
        for r in await read_to_end(kafka, [prefix + PEEPERS_ORDERS], timeout_s=120)
    ]
    item_changes = [
        (f"item {e.item_id} {e.type} @{e.last_updated.isoformat()}", str(e.event_id))
        for e in catalog
    ]
    order_changes = [
        (f"order {e.order_id} {transition_of(e)}", str(e.event_id))
        for e in orders
        if isinstance(e, OrderEvent) and e.type != "order.snapshot"
    ]
    checks = []
    republished = {}
    for topic, events, changes in (
        (PEEPERS_CATALOG, catalog, item_changes),
        (PEEPERS_ORDERS, orders, order_changes),
    ):
        republished[topic] = len(events) - len({str(e.event_id) for e in events})
        check = Check(f"one event id per change on {topic}", checked=len(events))
        check.problems += doubled(changes)
        checks.append(check)
    mails = Counter(mail_ids(mail_dir))
    check = Check("one mail per (order, transition)", checked=sum(mails.values()))
    check.problems += [f"mail {m} {n} times" for m, n in mails.items() if n > 1]
    checks.append(check)
    return checks, republished


async def nothing_dead_lettered(kafka: KafkaSettings, prefix: str) -> Check:
    topics = [prefix + name for name in TOPICS if name.endswith(DLQ_SUFFIX)]
    records = await read_to_end(kafka, topics, timeout_s=60)
    check = Check("nothing dead-lettered", checked=len(topics))
    for r in records:
        headers = dict(r.headers or ())
        error = (headers.get(H_ERROR_DETAIL) or headers.get(H_ERROR) or b"?").decode(
            errors="replace"
        )
        check.problems.append(f"{r.topic}: key {(r.key or b'').decode()}: {error[:200]}")
    return check


def mail_ids(mail_dir: Path) -> list[str]:
    """The Message-ID of every mail the sink kept (a Maildir)."""
    found = []
    for path in sorted((mail_dir / "new").glob("*")):
        message = email.message_from_bytes(path.read_bytes())
        found.append(str(message["Message-ID"]))
    return found


async def no_relogin(kafka: KafkaSettings, prefix: str, sellers: Sequence[int]) -> Check:
    records = await read_to_end(kafka, [prefix + PEEPERS_SELLERS], timeout_s=60)
    events = [SELLER_EVENT.validate_json(r.value or b"") for r in records]
    check = Check("no seller had to log in again", checked=len(sellers))
    connected = {e.seller_id for e in events if e.type == "seller.connected"}
    check.problems += [f"seller {s}: no seller.connected" for s in sellers if s not in connected]
    check.problems += [
        f"seller {e.seller_id}: {e.type}"
        for e in events
        if e.type in ("seller.reauth_required", "seller.disconnected")
    ]
    return check


def limits_kept(counters: Sequence[dict[str, Any]]) -> Check:
    check = Check("ML limits kept (sandbox counters)", checked=sum(c["total"] for c in counters))
    check.problems += [
        f"{c['family']} (app {c['app_id']}): {c['limited']} requests over the limit, "
        f"in the minutes {_minutes(c.get('limited_minutes', {}))}"
        for c in counters
        if c["limited"]
    ]
    return check


def _minutes(limited: dict[str, int]) -> str:
    """``{minute's unix start: refused}`` as ``10:42 UTC (12), ...``: when the 429s came."""
    return ", ".join(
        f"{datetime.fromtimestamp(int(start), UTC):%H:%M} UTC ({n})"
        for start, n in sorted(limited.items(), key=lambda kv: int(kv[0]))
    )
