"""`make run`'s default activity reaches every state of FACTS.md §4-§6 within 10 minutes.

The activity runs on a fast clock: each step advances sandbox time by the gap the real
rate would leave (20 changes/s, the devstack's default), without waiting for it. The
states are read from the marketplace at each change it reports.

Shipment statuses are the ones the orders documentation calls "known" (FACTS.md §6);
the rest of ``/shipment_statuses`` (``to_be_agreed``, ``stale_shipped``...) belongs to
shipping modes the sandbox does not simulate.
"""

from __future__ import annotations

from collections import defaultdict

from peepers_common.ml.models import ORDER_STATUSES  # FACTS.md §4.2
from peepers_devstack.orchestrator import Options
from peepers_sandbox import DEMO_SELLER_ID, MarketplaceConfig, SandboxConfig, SandboxState
from peepers_sandbox.market.questions import QUESTION_STATUSES  # FACTS.md §5.1

TEN_MINUTES_S = 600

SHIPMENT_STATUSES = {  # FACTS.md §6, the "known" ones
    "pending",
    "handling",
    "ready_to_ship",
    "shipped",
    "delivered",
    "not_delivered",
    "not_verified",
    "cancelled",
}
CONVERSATION_SUBSTATUSES = {  # FACTS.md §11 (blocked messages)
    "blocked_by_time",
    "blocked_by_buyer",
    "blocked_by_mediation",
    "blocked_by_fulfillment",
}
CLAIM_STAGES = {"claim", "dispute", "recontact", "none", "stale"}  # FACTS.md §5.3


def test_the_default_activity_reaches_every_state_within_ten_minutes() -> None:
    # The devstack's sandbox: one seller, its default items, the default seed.
    config = SandboxConfig(
        marketplace=MarketplaceConfig(sellers=1, items_per_seller=Options().items)
    )
    st = SandboxState.build(config)
    market = st.market
    assert market.sellers == [DEMO_SELLER_ID]
    seen: dict[str, set[str]] = defaultdict(set)

    def conversation(pack_id: int) -> None:
        substatus = market.conversation_status(pack_id)["substatus"]
        if substatus is not None:
            seen["conversation"].add(substatus)

    def record(topic: str, user_id: int, resource: str, actions: list[str] | None) -> None:
        kind, _, key = resource.rpartition("/")
        if topic == "orders_v2":
            order = market.orders[int(key)]
            seen["order"].add(order["status"])
            conversation(order["pack_id"])
        elif topic == "shipments":
            seen["shipment"].add(market.shipments[int(key)]["status"])
        elif topic == "questions":
            seen["question"].add(market.questions[int(key)]["status"])
        elif topic == "post_purchase":
            seen["claim"].add(market.claims[int(key)]["stage"])
        elif topic == "messages" and kind == "/messages":
            conversation(market.message_pack[key])

    market.on_change = record
    rate = Options().activity_rate
    for _ in range(int(rate * TEN_MINUTES_S)):
        st.clock.advance(1 / rate)
        st.activity.step()

    assert seen["order"] >= set(ORDER_STATUSES), set(ORDER_STATUSES) - seen["order"]
    assert seen["shipment"] >= SHIPMENT_STATUSES, SHIPMENT_STATUSES - seen["shipment"]
    assert seen["question"] >= set(QUESTION_STATUSES), set(QUESTION_STATUSES) - seen["question"]
    assert seen["conversation"] >= CONVERSATION_SUBSTATUSES, (
        CONVERSATION_SUBSTATUSES - seen["conversation"]
    )
    assert seen["claim"] >= CLAIM_STAGES, CLAIM_STAGES - seen["claim"]
