import asyncio
import sqlite3
from pathlib import Path

import pytest

from peepers_ingest.adapters import SqliteSpool
from peepers_ingest.errors import SpoolUnavailable
from peepers_ingest.ports import OutboundRecord


def record(n: int, key: bytes = b"1:/items/A") -> OutboundRecord:
    return OutboundRecord(
        f"id-{n}", "topic", key, f'{{"n":{n}}}'.encode(), (("ce_id", f"id-{n}".encode()),)
    )


async def test_records_survive_closing_and_reopening_in_order(tmp_path: Path) -> None:
    async with SqliteSpool(tmp_path) as spool:
        for n in range(5):
            await spool.append(record(n))
    async with SqliteSpool(tmp_path) as spool:
        assert spool.depth == 5
        assert spool.holds_key(b"1:/items/A")
        assert [s.record for s in await spool.head(10)] == [record(n) for n in range(5)]


async def test_concurrent_appends_keep_call_order_and_share_commits(tmp_path: Path) -> None:
    async with SqliteSpool(tmp_path) as spool:
        await asyncio.gather(*(spool.append(record(n)) for n in range(200)))
        head = await spool.head(500)
    assert [s.record.notification_id for s in head] == [f"id-{n}" for n in range(200)]
    assert [s.seq for s in head] == sorted(s.seq for s in head)


async def test_removed_records_are_gone_and_their_key_is_released(tmp_path: Path) -> None:
    async with SqliteSpool(tmp_path) as spool:
        await spool.append(record(1, b"k1"))
        await spool.append(record(2, b"k2"))
        first, second = await spool.head(10)
        await spool.remove([first])
        assert not spool.holds_key(b"k1")
        assert spool.holds_key(b"k2")
        assert spool.depth == 1
        assert spool.oldest_spooled_at == second.spooled_at
        await spool.remove([second])
        emptied: tuple[int, float | None] = (spool.depth, spool.oldest_spooled_at)
        assert emptied == (0, None)
    async with SqliteSpool(tmp_path) as spool:
        assert spool.depth == 0


async def test_sequence_numbers_never_go_back_after_a_removal(tmp_path: Path) -> None:
    async with SqliteSpool(tmp_path) as spool:
        await spool.append(record(1))
        [first] = await spool.head(1)
        await spool.remove([first])
        await spool.append(record(2))
        [second] = await spool.head(1)
    assert second.seq > first.seq


async def test_the_database_is_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    async with SqliteSpool(tmp_path) as spool:
        await spool.append(record(1))
        db = sqlite3.connect(spool.path)
        try:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert db.execute("SELECT COUNT(*) FROM spool").fetchone() == (1,)
        finally:
            db.close()


async def test_a_second_process_cannot_open_the_same_spool(tmp_path: Path) -> None:
    async with SqliteSpool(tmp_path):
        with pytest.raises(SpoolUnavailable, match="another process"):
            await SqliteSpool(tmp_path).start()


async def test_an_unwritable_spool_refuses_appends(tmp_path: Path) -> None:
    spool = SqliteSpool(tmp_path)
    await spool.start()
    await spool.aclose()
    assert not spool.writable
    with pytest.raises(SpoolUnavailable):
        await spool.append(record(1))
