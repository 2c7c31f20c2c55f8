"""The pure parts of bench.fairness (no stack, nothing timed)."""

from __future__ import annotations

import math

import pytest

from bench.fairness import Probes, p99_ratio, round_robin


def test_probes_are_timed_per_phase_and_an_overtaken_one_ends_with_its_successor() -> None:
    probes = Probes()
    # A pool of 2 items: probes 0 and 2 change the same item, as do 1 and 3.
    for seq, phase in enumerate(["without", "without", "during", "during"]):
        probes.sent_at[seq] = 10.0 + seq
        probes.phase[seq] = phase
    probes.read_at = {1: 11.5, 2: 13.0, 3: 13.25}  # 0 never read: 2 overtook it
    assert sorted(probes.latencies_ms("without", pool=2)) == [500.0, 3000.0]
    assert sorted(probes.latencies_ms("during", pool=2)) == [250.0, 1000.0]
    assert probes.unread() == 1


def test_the_ratio_compares_p99s_and_is_nan_without_probes() -> None:
    assert p99_ratio([10.0, 200.0], [5.0, 100.0]) == pytest.approx(2.0)
    assert math.isnan(p99_ratio([10.0], []))


def test_round_robin_alternates_the_sellers() -> None:
    pool = [(1, "a1"), (1, "a2"), (2, "b1"), (2, "b2")]
    assert round_robin(pool, [1, 2]) == [(1, "a1"), (2, "b1"), (1, "a2"), (2, "b2")]
