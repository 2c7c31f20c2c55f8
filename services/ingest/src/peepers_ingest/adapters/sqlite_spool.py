"""The durable spool: SQLite in WAL mode with ``synchronous=FULL`` (fsync on every commit).

Writes are group-committed: appends that arrive while a commit is running wait for the
next one, so a burst costs one fsync per batch instead of one per record, and the order of
``append`` calls is the order of sequence numbers (``AUTOINCREMENT`` never reuses one).
All SQLite work runs on one dedicated thread, so the event loop never blocks on the disk.
An exclusive ``flock`` on the directory keeps a second process off the same spool.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Final, ParamSpec, TypeVar

from peepers_common.lifecycle import AsyncResource
from peepers_ingest.errors import SpoolUnavailable
from peepers_ingest.ports import OutboundRecord, SpooledRecord

__all__ = ["SqliteSpool"]

_P = ParamSpec("_P")
_T = TypeVar("_T")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    headers TEXT NOT NULL,
    spooled_at REAL NOT NULL
)
"""
_INSERT: Final = (
    "INSERT INTO spool (notification_id, topic, key, value, headers, spooled_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


def _encode_headers(headers: Sequence[tuple[str, bytes]]) -> str:
    return json.dumps([[name, value.hex()] for name, value in headers])


def _decode_headers(text: str) -> tuple[tuple[str, bytes], ...]:
    return tuple((name, bytes.fromhex(value)) for name, value in json.loads(text))


class SqliteSpool(AsyncResource):
    """`Spool` on a SQLite file under ``directory``. Use as ``async with``."""

    def __init__(self, directory: Path, *, filename: str = "spool.sqlite3") -> None:
        self._directory = directory
        self._path = directory / filename
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-spool")
        self._db: sqlite3.Connection | None = None
        self._lock_file: IO[bytes] | None = None
        self._keys: Counter[bytes] = Counter()
        self._depth = 0
        self._oldest: float | None = None
        self._writable = False
        self._closed = False
        self._pending: list[tuple[OutboundRecord, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        try:
            await self._run(self._open_sync)
        except BaseException:
            self._closed = True
            self._executor.shutdown(wait=False)
            raise
        self._writable = True

    def _open_sync(self) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        lock_file = (self._directory / "spool.lock").open("ab")
        try:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            msg = f"another process holds the spool in {self._directory}"
            raise SpoolUnavailable(msg) from None
        self._lock_file = lock_file
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: the WAL is fsync'd at every commit, so an acked record survives kill -9
        # and power loss alike.
        db.execute("PRAGMA synchronous=FULL")
        db.execute(_SCHEMA)
        self._keys = Counter(
            {
                bytes(key): count
                for key, count in db.execute("SELECT key, COUNT(*) FROM spool GROUP BY key")
            }
        )
        self._depth = sum(self._keys.values())
        row = db.execute("SELECT spooled_at FROM spool ORDER BY seq LIMIT 1").fetchone()
        self._oldest = row[0] if row else None
        self._db = db

    async def aclose(self) -> None:
        """Finish pending writes, then close. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            await asyncio.shield(self._writer)
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        self._executor.shutdown(wait=True)

    # ------------------------------------------------------------------ state
    @property
    def depth(self) -> int:
        return self._depth

    @property
    def oldest_spooled_at(self) -> float | None:
        return self._oldest

    @property
    def writable(self) -> bool:
        return self._writable and not self._closed

    @property
    def path(self) -> Path:
        return self._path

    def holds_key(self, key: bytes) -> bool:
        return self._keys[key] > 0

    # ------------------------------------------------------------------ writes
    async def append(self, record: OutboundRecord) -> None:
        if self._closed or self._db is None:
            msg = "the spool is closed"
            raise SpoolUnavailable(msg)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Counted before the write, so a later notification of the same key already
        # queues behind this one while the commit is running.
        self._keys[record.key] += 1
        self._pending.append((record, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending())
        await future

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            now = time.time()
            try:
                await self._run(self._insert_sync, [record for record, _ in batch], now)
            except (sqlite3.Error, OSError) as exc:
                self._writable = False
                for record, future in batch:
                    self._forget_key(record.key)
                    if not future.done():
                        future.set_exception(SpoolUnavailable(f"spool write failed: {exc!r}"))
                continue
            self._writable = True
            self._depth += len(batch)
            if self._oldest is None:
                self._oldest = now
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    def _insert_sync(self, records: list[OutboundRecord], now: float) -> None:
        db = self._require_db()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                _INSERT,
                [
                    (r.notification_id, r.topic, r.key, r.value, _encode_headers(r.headers), now)
                    for r in records
                ],
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    async def head(self, limit: int) -> Sequence[SpooledRecord]:
        return await self._run(self._head_sync, limit)

    def _head_sync(self, limit: int) -> list[SpooledRecord]:
        rows = self._require_db().execute(
            "SELECT seq, spooled_at, notification_id, topic, key, value, headers "
            "FROM spool ORDER BY seq LIMIT ?",
            (limit,),
        )
        return [
            SpooledRecord(
                seq,
                spooled_at,
                OutboundRecord(nid, topic, bytes(key), bytes(value), _decode_headers(headers)),
            )
            for seq, spooled_at, nid, topic, key, value, headers in rows
        ]

    async def remove(self, records: Sequence[SpooledRecord]) -> None:
        if not records:
            return
        oldest = await self._run(self._remove_sync, [r.seq for r in records])
        for spooled in records:
            self._forget_key(spooled.record.key)
        self._depth = max(0, self._depth - len(records))
        self._oldest = oldest

    def _remove_sync(self, seqs: list[int]) -> float | None:
        db = self._require_db()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("DELETE FROM spool WHERE seq = ?", [(seq,) for seq in seqs])
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        row = db.execute("SELECT spooled_at FROM spool ORDER BY seq LIMIT 1").fetchone()
        return row[0] if row else None

    # ------------------------------------------------------------------ helpers
    def _forget_key(self, key: bytes) -> None:
        self._keys[key] -= 1
        if self._keys[key] <= 0:
            del self._keys[key]

    def _require_db(self) -> sqlite3.Connection:
        if self._db is None:
            msg = "the spool is not open"
            raise SpoolUnavailable(msg)
        return self._db

    async def _run(self, func: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(func, *args, **kwargs))
