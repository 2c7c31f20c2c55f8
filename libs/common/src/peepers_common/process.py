"""Process-wide tuning shared by the long-running services (ingest, the consumers)."""

from __future__ import annotations

import gc

__all__ = ["tune_gc"]


def tune_gc() -> None:
    """Freeze what exists now out of the cyclic GC's scans; collect young objects rarely.

    Call it once the app is built. Every webhook or record allocates futures, tasks and
    dicts; with CPython's default threshold (700) the cyclic collector ran hundreds of
    times a second and took 10-20% of ingest's CPU at saturation (bench/ingest.py), and
    its full collections paused the catalog worker. Objects that live as long as the
    process (modules, the app) are frozen out of its scans, and collections of the young
    generation wait for 50,000 allocations: the garbage a service makes is almost all
    freed by reference counting, so this delays little memory.
    """
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
