"""The pure arithmetic of the catalog benches (no stack, nothing timed)."""

from __future__ import annotations

import math

import pytest

from bench.catalog_latency import PRICE_BASE, Batches, bucket_quantile, seq_of
from bench.catalog_rebuild import resync_bound_s
from bench.catalog_support import percentile
from bench.catalog_sync import minimum_s, multiget_requests, scan_requests
from peepers_devstack.metrics import Scrape


@pytest.mark.parametrize(
    ("items", "pages"), [(0, 1), (1, 2), (100, 2), (101, 3), (10_000, 101), (10_050, 102)]
)
def test_a_scan_reads_every_page_then_the_empty_one_that_ends_it(items: int, pages: int) -> None:
    assert scan_requests(items) == pages


@pytest.mark.parametrize(
    ("items", "chunk", "requests"),
    [(0, 200, 0), (10_000, 200, 500), (10_010, 200, 501), (250, 200, 13), (250, 30, 17)],
)
def test_multigets_are_counted_per_chunk_in_batches_of_twenty(
    items: int, chunk: int, requests: int
) -> None:
    # 250 ids in chunks of 30: eight chunks of 30 (two batches each) and one of 10.
    assert multiget_requests(items, chunk) == requests


def test_the_minimum_spreads_the_requests_evenly_over_the_limit() -> None:
    assert minimum_s(601, 300) == pytest.approx(120.2)
    assert minimum_s(300, 300) == pytest.approx(60.0)


def test_percentiles_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 0.999) == 100.0
    assert percentile([7.0], 0.99) == 7.0
    assert math.isnan(percentile([], 0.5))


def test_a_price_names_the_change_that_set_it_and_nothing_else() -> None:
    assert seq_of(f"{PRICE_BASE + 12}.0", 100) == 12
    assert seq_of(PRICE_BASE + 99.0, 100) == 99
    assert seq_of(PRICE_BASE + 100, 100) is None
    assert seq_of("12.5", 100) is None


def test_a_resync_is_bounded_by_its_scan_and_multigets_at_the_limit() -> None:
    # 20,000 items: 201 scan pages and 1,000 multigets, at 1,200 a minute: 60.05 s.
    assert resync_bound_s(20_000, 200, 1200) == pytest.approx(60.05)
    assert resync_bound_s(100, 200, 60) == pytest.approx(minimum_s(2 + 5, 60))


def test_a_quantile_interpolates_within_its_bucket_as_prometheus_does() -> None:
    buckets = {0.01: 50.0, 0.05: 90.0, 0.1: 100.0, math.inf: 100.0}
    assert bucket_quantile(buckets, 0.5) == pytest.approx(0.01)
    assert bucket_quantile(buckets, 0.7) == pytest.approx(0.03)
    assert bucket_quantile(buckets, 0.99) == pytest.approx(0.095)
    assert math.isnan(bucket_quantile({}, 0.5))


def _batches(batches: int, records: int, under_10ms: int) -> str:
    name = "peepers_consumer_batch"
    labels = 'consumer="catalog",agent="catalog.items"'
    return "\n".join(
        [
            f"# TYPE {name}_records histogram",
            f'{name}_records_bucket{{{labels},le="+Inf"}} {batches}',
            f"{name}_records_count{{{labels}}} {batches}",
            f"{name}_records_sum{{{labels}}} {records}",
            f"# TYPE {name}_seconds histogram",
            f'{name}_seconds_bucket{{{labels},phase="process",le="0.01"}} {under_10ms}',
            f'{name}_seconds_bucket{{{labels},phase="process",le="0.05"}} {batches}',
            f'{name}_seconds_bucket{{{labels},phase="process",le="+Inf"}} {batches}',
            f'{name}_seconds_count{{{labels},phase="process"}} {batches}',
            f'{name}_seconds_sum{{{labels},phase="process"}} {batches * 0.02}',
            f'{name}_seconds_bucket{{{labels},phase="wait",le="0.02"}} {batches - 1}',
            f'{name}_seconds_bucket{{{labels},phase="wait",le="+Inf"}} {batches - 1}',
            f'{name}_seconds_count{{{labels},phase="wait"}} {batches - 1}',
            f'{name}_seconds_sum{{{labels},phase="wait"}} {(batches - 1) * 0.012}',
            "",
        ]
    )


def test_the_batches_of_a_run_are_the_difference_of_two_scrapes() -> None:
    before = Batches.scrape(Scrape.parse(_batches(10, 100, 10)))
    after = Batches.scrape(Scrape.parse(_batches(30, 900, 10)))
    run = after.plus(before, -1.0)
    assert (run.batches, run.records) == (20, 800)
    assert run.process == {0.01: 0.0, 0.05: 20.0, math.inf: 20.0}
    assert run.process_s == pytest.approx(0.4)
    report = run.report(64)
    assert report.startswith("20 batches of 40.0 records on average")
    # Median cycles of 30 ms (between 10 and 50) and 10 ms (under 20): 64 per 40 ms at most.
    assert report.endswith("at most 1,600 records/s with full batches of 64")
