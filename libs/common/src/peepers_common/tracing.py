"""W3C trace context (``traceparent``) carried from ML's webhook to every log line.

The current trace lives in a context variable, so asyncio tasks inherit it and log records
pick it up without passing it around.
"""

from __future__ import annotations

import random
import re
from contextvars import ContextVar, Token
from typing import Final, NamedTuple

_TRACEPARENT: Final = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def _random_hex(size: int) -> str:
    # Ids must be unique, not secret: the process's PRNG (as OpenTelemetry's SDK does) is
    # a few hundred ns, where secrets' os.urandom was a syscall on every request of ingest.
    # Never all zeros, which W3C reserves as invalid.
    return "%0*x" % (size * 2, random.getrandbits(size * 8) or 1)  # noqa: UP031 - fastest


class TraceContext(NamedTuple):
    """A trace id and a span id (hex), and whether the trace is sampled.

    A named tuple: two are made on every webhook, and a frozen dataclass costs twice as
    much to build.
    """

    trace_id: str
    span_id: str
    sampled: bool = True

    @classmethod
    def new(cls) -> TraceContext:
        return cls(_random_hex(16), _random_hex(8))

    @classmethod
    def parse(cls, header: str | None) -> TraceContext | None:
        """Parse a ``traceparent`` header; None when absent or malformed (never raises)."""
        if header is None:
            return None
        match = _TRACEPARENT.match(header.strip().lower())
        if match is None or set(match[1]) == {"0"} or set(match[2]) == {"0"}:
            return None
        return cls(match[1], match[2], int(match[3], 16) & 1 == 1)

    def child(self) -> TraceContext:
        """A new span in the same trace (what we send downstream)."""
        return TraceContext(self.trace_id, _random_hex(8), self.sampled)

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


current_trace: ContextVar[TraceContext | None] = ContextVar("current_trace", default=None)


def bind_trace(trace: TraceContext) -> Token[TraceContext | None]:
    return current_trace.set(trace)
