"""Reading the services' Prometheus text and the sandbox notifier's attempt log."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


class Scrape:
    """One ``/metrics`` answer, searchable by sample name and labels."""

    def __init__(self, samples: Iterable[Sample]) -> None:
        self.samples = list(samples)

    @classmethod
    def parse(cls, text: str) -> Scrape:
        return cls(
            Sample(s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        )

    @classmethod
    def empty(cls) -> Scrape:
        return cls(())

    def total(self, name: str, **labels: str) -> float:
        """The sum over every sample of ``name`` whose labels include ``labels``."""
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def by(self, name: str, label: str, **labels: str) -> dict[str, float]:
        """``name`` summed per value of ``label`` (zero values left out)."""
        out: dict[str, float] = {}
        for s in self.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                key = s.labels.get(label, "")
                out[key] = out.get(key, 0.0) + s.value
        return {k: v for k, v in out.items() if v}

    def histogram_quantile(self, name: str, q: float) -> float | None:
        """The ``q`` quantile (0-1) of histogram ``name``, as Prometheus's own function.

        Linear within the bucket that holds it; a quantile in the ``+Inf`` bucket is the
        highest finite bound. None when the histogram is empty.
        """
        buckets: dict[float, float] = {}
        for s in self.samples:
            if s.name == f"{name}_bucket":
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
        count = buckets.get(math.inf, 0.0)
        if not count:
            return None
        rank, lower, below = q * count, 0.0, 0.0
        for le, cumulative in sorted(buckets.items()):
            if cumulative >= rank:
                if math.isinf(le):
                    return lower
                inside = cumulative - below
                return lower + (le - lower) * ((rank - below) / inside if inside else 1.0)
            lower, below = le, cumulative
        return lower


def percentiles(values: Sequence[float], points: Sequence[float]) -> dict[float, float]:
    """Nearest-rank percentiles (``points`` in 0-100); empty input gives nothing."""
    ordered = sorted(values)
    if not ordered:
        return {}
    return {p: ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] for p in points}
