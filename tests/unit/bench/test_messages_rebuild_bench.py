"""The pure parts of the messages rebuild bench (no stack, nothing timed)."""

from __future__ import annotations

from collections import Counter

from bench.messages_rebuild import figures, parse


def test_the_messaging_reads_are_timed_at_mls_quota_and_counted_per_seller() -> None:
    made = Counter({"messages": 1000, "claims": 40, "questions": 20})
    found = figures(made, 12.345, 2, sellers=20)
    assert found["messages family at 500/min, s"] == 120.0
    assert found["requests per seller by family"] == {
        "claims": 2.0,
        "messages": 50.0,
        "questions": 1.0,
    }
    assert (found["attempts"], found["wall s"]) == (2, 12.35)


def test_the_defaults_are_the_medium_proof_runs_sellers_without_a_quota() -> None:
    args = parse([])
    assert (args.sellers, args.orders, args.messaging_per_minute) == (20, 220, 0)
