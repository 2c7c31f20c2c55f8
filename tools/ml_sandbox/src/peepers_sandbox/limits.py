"""Rate limiting and request accounting per (application, endpoint family).

Fixed one-second and one-minute windows: integrators report that ML's window "lasts
seconds, not milliseconds", and fixed windows make a test's arithmetic exact. Every
request is counted, including the ones answered 429, and the busiest window seen is
kept so a test can assert that a client never went over a limit; the minutes in which
requests were refused are kept too (``limited_minutes``), so a long run tells *when*.

A request is counted when the API middleware runs, as soon as aiohttp has parsed it:
real ML counts at its edge, and while the sandbox's event loop keeps up the two are the
same moment. A sandbox starved of CPU reads requests late and counts them late. The
consent page and its form are not counted: they are ML's website, not API calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peepers_sandbox.config import RateLimitConfig, RateLimitRule


@dataclass
class Counter:
    total: int = 0
    limited: int = 0
    second: int = -1
    second_count: int = 0
    minute: int = -1
    minute_count: int = 0
    max_per_second: int = 0
    max_per_minute: int = 0
    # Requests refused (429) in each calendar minute that had any, by the minute's index.
    limited_minutes: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "limited": self.limited,
            "max_per_second": self.max_per_second,
            "max_per_minute": self.max_per_minute,
            # The minute's start (Unix seconds) -> requests refused in it.
            "limited_minutes": {str(m * 60): n for m, n in self.limited_minutes.items()},
        }


class RateLimiter:
    def __init__(self, cfg: RateLimitConfig) -> None:
        self.cfg = cfg
        self.counters: dict[tuple[int, str], Counter] = {}
        self._rules_cache: dict[tuple[int, str], list[tuple[RateLimitRule, Counter]]] = {}
        # Rules with family "*" share one counter per app across every family.
        self._shared: dict[tuple[int, str], Counter] = {}

    def set_config(self, cfg: RateLimitConfig) -> None:
        self.cfg = cfg
        self._rules_cache.clear()
        self._shared.clear()

    def reset(self) -> None:
        self.counters.clear()
        self._rules_cache.clear()
        self._shared.clear()

    def _rules(self, app_id: int, family: str) -> list[tuple[RateLimitRule, Counter]]:
        key = (app_id, family)
        found = self._rules_cache.get(key)
        if found is None:
            found = []
            for rule in self.cfg.rules:
                if rule.app_id is not None and rule.app_id != app_id:
                    continue
                if rule.family == family:
                    found.append((rule, self._counter(app_id, family)))
                elif rule.family == "*":
                    found.append((rule, self._shared.setdefault((app_id, "*"), Counter())))
            self._rules_cache[key] = found
        return found

    def _counter(self, app_id: int, family: str) -> Counter:
        counter = self.counters.get((app_id, family))
        if counter is None:
            counter = self.counters[(app_id, family)] = Counter()
        return counter

    @staticmethod
    def _count(counter: Counter, sec: int, minute: int) -> None:
        if counter.second != sec:
            counter.second, counter.second_count = sec, 0
        if counter.minute != minute:
            counter.minute, counter.minute_count = minute, 0
        counter.second_count += 1
        counter.minute_count += 1
        counter.max_per_second = max(counter.max_per_second, counter.second_count)
        counter.max_per_minute = max(counter.max_per_minute, counter.minute_count)

    def hit(self, app_id: int, family: str, now: float) -> bool:
        """Count one request; True when it is within every limit that applies."""
        sec = int(now)
        minute = sec // 60
        counter = self._counter(app_id, family)
        counter.total += 1
        self._count(counter, sec, minute)
        allowed = True
        counted = [counter]
        for rule, rule_counter in self._rules(app_id, family):
            if not any(rule_counter is c for c in counted):
                self._count(rule_counter, sec, minute)
                counted.append(rule_counter)
            if rule.per_second is not None and rule_counter.second_count > rule.per_second:
                allowed = False
            if rule.per_minute is not None and rule_counter.minute_count > rule.per_minute:
                allowed = False
        if not allowed:
            counter.limited += 1
            counter.limited_minutes[minute] = counter.limited_minutes.get(minute, 0) + 1
        return allowed

    def snapshot(self) -> dict[str, Any]:
        return {
            "rules": [rule.model_dump() for rule in self.cfg.rules],
            "counters": [
                {"app_id": app_id, "family": family, **counter.as_dict()}
                for (app_id, family), counter in sorted(self.counters.items())
            ],
        }

    def body(self) -> dict[str, Any]:
        if self.cfg.body_style == "claims":
            return {
                "message": "Too Many Requests",
                "error": "too_many_requests",
                "status": 429,
                "cause": [],
            }
        return {"message": "local_rate_limited"}
