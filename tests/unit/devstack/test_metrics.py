"""Reading a histogram's quantile from a service's Prometheus text."""

from __future__ import annotations

import pytest

from peepers_devstack.metrics import Scrape

NAME = "peepers_messages_time_to_answer_seconds"


def _histogram(*buckets: tuple[str, float]) -> Scrape:
    lines = [f"# TYPE {NAME} histogram"]
    lines += [f'{NAME}_bucket{{le="{le}"}} {n}' for le, n in buckets]
    return Scrape.parse("\n".join(lines) + "\n")


def test_the_median_is_interpolated_within_its_bucket_as_prometheus_does() -> None:
    # 10 answers: 2 within a minute, 6 more within 5 min, 2 answered months late.
    scrape = _histogram(("60.0", 2), ("300.0", 8), ("900.0", 8), ("+Inf", 10))
    # Rank 5 is the 3rd of the 6 in (60, 300]: 60 + 240 * 3/6.
    assert scrape.histogram_quantile(NAME, 0.5) == pytest.approx(180.0)
    assert scrape.histogram_quantile(NAME, 0.1) == pytest.approx(30.0)


def test_a_quantile_past_the_last_bound_is_that_bound_and_none_is_said_of_nothing() -> None:
    assert _histogram(("60.0", 0), ("+Inf", 3)).histogram_quantile(NAME, 0.5) == 60.0
    assert _histogram(("60.0", 0), ("+Inf", 0)).histogram_quantile(NAME, 0.5) is None
    assert Scrape.empty().histogram_quantile(NAME, 0.5) is None
