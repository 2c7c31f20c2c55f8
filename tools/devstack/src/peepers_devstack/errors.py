"""Why a run stops early.

DevstackError
 ├── PreflightFailed   the stack is not up, a port is taken, ...
 └── ChildFailed       a child exited or did not become ready in time (with its log tail)
StepFailed            a step against a running child failed (login, sync, ...)
"""

from __future__ import annotations

from pathlib import Path

from peepers_common.errors import PeepersError


class DevstackError(PeepersError):
    pass


class PreflightFailed(DevstackError):
    pass


class StepFailed(DevstackError):
    pass


class ChildFailed(DevstackError):
    def __init__(self, name: str, reason: str, log: Path, tail: str) -> None:
        super().__init__(f"{name} {reason}")
        self.name = name
        self.reason = reason
        self.log = log
        self.tail = tail
