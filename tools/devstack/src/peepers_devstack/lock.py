"""One ``make run`` per stack at a time: a second one is refused with a clear message.

Two runs against one Kafka and one Redis would not be two demos side by side. Their
sandboxes both serve the demo seller (3000000001); their ingests publish to the same
``ml.notifications.*`` topics, so each run's workers would read the other's
notifications and fetch them from their own sandbox; each login publishes
``seller.connected`` on the one ``peepers.sellers.v1``, which starts a full sync in the
other run's catalog worker; and auth keeps the seller's authorization in its one
``auth:`` namespace, so the second login replaces the tokens the first run's workers use
with tokens the first run's sandbox never issued (ReauthRequired, dead letters). Two
runs in one work directory would even stop each other's children (`stop_leftovers`).

Giving each run its own topic prefix and auth state would need a topic prefix and a
Redis scope in auth's and the web app's settings, topics created per run, and a seller
id per sandbox; refusing is the honest, cheap answer. The lock is an advisory ``flock``
on ``<stack dir>/run.lock``, held for the run's life: the kernel releases it when the
process ends, however it ends, so a killed run never leaves a stale lock. The file keeps
who holds it, for the message.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from peepers_devstack.errors import PreflightFailed


class RunLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def acquire(self, work_dir: Path) -> None:
        """Hold the lock, or raise `PreflightFailed` naming the run that holds it."""
        if self._file is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # "a+": opening must not truncate what the holder wrote.
        file = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = _describe(file.read())
            file.close()
            msg = (
                f"another make run ({holder}) uses this stack's Kafka and Redis: two runs "
                "would share the topics and auth's seller state and break each other "
                "(docs: tools/devstack, peepers_devstack.lock). Stop it (Ctrl-C) first"
            )
            raise PreflightFailed(msg) from None
        file.seek(0)
        file.truncate()
        started = datetime.now(UTC).isoformat(timespec="seconds")
        file.write(json.dumps({"pid": os.getpid(), "work_dir": str(work_dir), "since": started}))
        file.flush()
        self._file = file

    def release(self) -> None:
        if self._file is None:
            return
        # The file stays: removing it could race with a run opening it right now.
        with contextlib.suppress(OSError):
            fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None


def _describe(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"pid {holder['pid']}, work dir {holder['work_dir']}, since {holder['since']}"
    except (ValueError, KeyError, TypeError):
        return "pid unknown"
