"""The proof's fairness window: which probes count, in which phase, and its figures."""

from __future__ import annotations

import asyncio
import itertools
import math

import pytest

from peepers_proof.fairness import (
    DURING,
    WITHOUT,
    figures,
    run_probes,
    sync_bound_s,
    targets,
)


class TestProbes:
    async def test_a_count_ends_the_probes(self):
        seen: list[str] = []

        async def one(item_id: str) -> float:
            seen.append(item_id)
            return 1.0

        assert await run_probes(iter("abcdef"), one, count=3) == [1.0, 1.0, 1.0]
        assert seen == ["a", "b", "c"]

    async def test_probes_run_until_the_sync_is_done_and_the_one_under_way_counts(self):
        done = asyncio.Event()

        async def one(item_id: str) -> float:
            if item_id == "c":  # the sync finishes while this probe waits for its price
                done.set()
            return float(ord(item_id))

        latencies = await run_probes(itertools.cycle("abcdef"), one, until=done)
        assert latencies == [97.0, 98.0, 99.0]

    async def test_no_probe_starts_once_the_sync_is_done(self):
        done = asyncio.Event()
        done.set()

        async def one(item_id: str) -> float:
            raise AssertionError(item_id)

        assert await run_probes(itertools.cycle("a"), one, until=done) == []

    def test_targets_go_round_the_sellers_then_to_their_next_items(self):
        ids = targets({2: ["b1", "b2"], 1: ["a1", "a2", "a3"]})
        assert list(itertools.islice(ids, 8)) == ["a1", "b1", "a2", "b2", "a3", "b1", "a1", "b2"]


class TestFigures:
    def test_both_phases_their_p99_ratio_and_the_sync_against_its_bound(self):
        without = [float(v) for v in range(1, 101)]  # p50 50, p99 99
        during = [2 * v for v in without]
        found = figures(without, during, 30.0, 20.0, 1_234.4)
        assert found[f"webhook->cache ms {WITHOUT} (n, p50, p99)"] == (100, 50, 99)
        assert found[f"webhook->cache ms {DURING} (n, p50, p99)"] == (100, 100, 198)
        assert found["webhook->cache p99 ratio during/without (target <= 2)"] == 2.0
        key = "huge sync s, bound s at the budget left to it, ratio (target <= 1.2)"
        assert found[key] == (30.0, 20.0, 1.5)
        assert found["ML requests/min of the others during the huge sync"] == 1_234

    def test_a_sync_done_before_any_probe_gives_no_ratio(self):
        found = figures([10.0, 20.0], [], None, 1.0, 0.0)
        assert list(found) == [
            f"webhook->cache ms {WITHOUT} (n, p50, p99)",
            "ML requests/min of the others during the huge sync",
        ]

    def test_the_bound_spreads_the_syncs_requests_over_what_bulk_leases_may_take(self):
        # 5,000 items: 51 scan pages and 250 multigets. Bulk leases keep 5% for webhooks,
        # and the budget counts each lease for 62 s (the minute, the margin, the ttl).
        assert sync_bound_s(5_000, 200, 30_000) == pytest.approx(301 / (28_500 / 62))
        assert sync_bound_s(100_000, 200, 6_000) == pytest.approx(6_001 / (5_700 / 62))

    def test_what_the_others_take_of_the_budget_is_not_left_to_the_sync(self):
        # 100,000 items: 1,001 scan pages and 5,000 multigets. The reserve stays free
        # above the others' use, whatever they take.
        left_per_s = 2_280 / 62 - 1_600 / 60
        assert sync_bound_s(100_000, 200, 2_400, 1_600) == pytest.approx(6_001 / left_per_s)
        assert sync_bound_s(100_000, 200, 2_400, 50) == pytest.approx(
            6_001 / (2_280 / 62 - 50 / 60)
        )
        assert sync_bound_s(5_000, 200, 2_400, 2_400) == math.inf
