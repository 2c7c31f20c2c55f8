"""Paging a search whose entries leave it (`_page_after_last`), on a list as the search."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from peepers_messages.backfill import _Cursor, _page_after_last

SIZE = 5


class Search:
    """Entries oldest first; ``leave`` removes some (answered, closed) between pages."""

    def __init__(self, count: int, *, cap: int = 1000, extra_total: int = 0) -> None:
        self.entries = list(range(1, count + 1))
        self.cap = cap
        self.extra_total = extra_total
        self.asked: list[tuple[int, int]] = []

    async def __call__(self, offset: int, limit: int) -> tuple[Sequence[int], int]:
        assert offset + limit <= self.cap, (offset, limit)
        self.asked.append((offset, limit))
        assert len(self.asked) < 100, "pages without end"
        return self.entries[offset : offset + limit], len(self.entries) + self.extra_total

    def leave(self, *entries: int) -> None:
        self.entries = [e for e in self.entries if e not in entries]


async def read_all(
    search: Search,
    at: _Cursor,
    on_page: Callable[[int], None] = lambda _read: None,
    *,
    pages: int | None = None,
) -> list[int]:
    """The entries read page by page, as the backfill does, to the end or for ``pages``."""
    read: list[int] = []
    while pages is None or pages > 0:
        unread, count, total = await _page_after_last(
            search, lambda e: e, at, size=SIZE, cap=search.cap
        )
        read += unread
        on_page(len(read))
        at.offset += count
        if not count or at.offset >= total:
            break
        pages = None if pages is None else pages - 1
    return read


async def test_entries_leaving_behind_the_pages_hide_none_of_the_rest() -> None:
    search = Search(12)

    def answer_read_ones(read: int) -> None:
        if read == SIZE:  # after the first page: four of the five read leave
            search.leave(1, 2, 3, 5)

    read = await read_all(search, _Cursor(), answer_read_ones)

    assert sorted(set(read)) == list(range(1, 13))


async def test_more_read_entries_leaving_than_are_left_unread_hide_none() -> None:
    # Past the end after the shrink: the page comes back empty, and it steps back.
    search = Search(12)
    at = _Cursor()
    first = await read_all(search, at, pages=2)
    search.leave(*first[:8])

    rest = await read_all(search, at)

    assert sorted(set(first + rest)) == list(range(1, 13))


async def test_a_checkpoint_without_a_last_entry_starts_over_and_ends() -> None:
    search = Search(12)

    read = await read_all(search, _Cursor(offset=7))

    assert read == list(range(1, 13))


async def test_no_page_asks_past_the_cap() -> None:
    search = Search(19, cap=20)

    read = await read_all(search, _Cursor())

    assert read == list(range(1, 20))
    assert all(offset + limit <= 20 for offset, limit in search.asked)


async def test_a_total_larger_than_the_entries_does_not_page_forever() -> None:
    search = Search(7, extra_total=1)

    read = await read_all(search, _Cursor())

    assert read == list(range(1, 8))
