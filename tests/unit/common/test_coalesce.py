"""`Coalescer`: one flush per event-loop turn, results in order, failures per batch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import pytest

from peepers_common.coalesce import Coalescer


class Boom(Exception):
    pass


class Recorder:
    """A flush that records every batch it receives and answers ``item * 10`` per item.

    ``gate``, when given, holds every flush until it is set; ``fail_if`` makes a flush raise
    when it gets an item the predicate accepts.
    """

    def __init__(
        self,
        *,
        gate: asyncio.Event | None = None,
        fail_if: Callable[[int], bool] = lambda _item: False,
        answer: Callable[[list[int]], Sequence[int]] | None = None,
    ) -> None:
        self.batches: list[list[int]] = []
        self.started = asyncio.Event()
        self._gate = gate
        self._fail_if = fail_if
        self._answer = answer or (lambda items: [item * 10 for item in items])

    async def __call__(self, items: list[int]) -> Sequence[int]:
        self.batches.append(list(items))
        self.started.set()
        if self._gate is not None:
            await self._gate.wait()
        if any(self._fail_if(item) for item in items):
            msg = f"flush failed for {items}"
            raise Boom(msg)
        return self._answer(items)


async def submit_all(coalescer: Coalescer[int, int], items: Sequence[int]) -> list[int]:
    """Submit ``items`` concurrently, all in one event-loop turn (a caller left hanging fails)."""
    async with asyncio.timeout(2):
        return list(await asyncio.gather(*(coalescer.submit(item) for item in items)))


async def outcomes_of(
    coalescer: Coalescer[int, int], items: Sequence[int]
) -> list[int | BaseException]:
    """Like `submit_all`, but each caller's exception is its outcome."""
    async with asyncio.timeout(2):
        return list(
            await asyncio.gather(*(coalescer.submit(i) for i in items), return_exceptions=True)
        )


async def turns_until(done: Callable[[], bool], limit: int) -> int:
    """How many bare event-loop turns (no timers) pass before ``done()``; fails at ``limit``."""
    for turn in range(limit):
        if done():
            return turn
        await asyncio.sleep(0)
    msg = f"not done after {limit} event-loop turns"
    raise AssertionError(msg)


async def test_concurrent_submits_of_one_turn_are_flushed_as_one_batch_in_order() -> None:
    flush = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(flush)
    results = await submit_all(coalescer, [3, 1, 4, 1, 5, 9, 2, 6])
    assert flush.batches == [[3, 1, 4, 1, 5, 9, 2, 6]]
    assert results == [30, 10, 40, 10, 50, 90, 20, 60]


async def test_each_caller_gets_the_result_at_its_own_position() -> None:
    # Results that are not a function of the item alone: only the position tells them apart.
    flush = Recorder(answer=lambda items: list(range(100, 100 + len(items))))
    coalescer: Coalescer[int, int] = Coalescer(flush)
    results = await submit_all(coalescer, [7, 7, 7, 7])
    assert results == [100, 101, 102, 103]


async def test_submits_of_later_turns_go_to_later_flushes() -> None:
    gate = asyncio.Event()
    flush = Recorder(gate=gate)
    coalescer: Coalescer[int, int] = Coalescer(flush)
    first = asyncio.gather(*(coalescer.submit(i) for i in (1, 2)))
    await asyncio.wait_for(flush.started.wait(), 1)
    # The first flush is still running: these wait neither for it nor for each other's turn.
    second = asyncio.gather(*(coalescer.submit(i) for i in (3, 4, 5)))
    await turns_until(lambda: len(flush.batches) == 2, limit=20)
    gate.set()
    async with asyncio.timeout(2):
        assert await first == [10, 20]
        assert await second == [30, 40, 50]
    assert flush.batches == [[1, 2], [3, 4, 5]]
    assert await coalescer.submit(6) == 60
    assert flush.batches[-1] == [6]


async def test_a_lone_caller_is_answered_without_waiting_for_a_batch_to_fill() -> None:
    flush = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(flush, max_batch=512)
    caller = asyncio.ensure_future(coalescer.submit(42))
    # A handful of bare loop turns, no timer: nothing waits for more callers to show up.
    await turns_until(caller.done, limit=10)
    assert caller.result() == 420
    assert flush.batches == [[42]]


async def test_the_flush_starts_on_the_turn_after_the_first_submit() -> None:
    flush = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(flush)
    caller = asyncio.ensure_future(coalescer.submit(1))
    # The caller submits on the first turn; the flush must begin on the next one (a
    # callback that only then created the flush task cost a turn more per batch).
    assert await turns_until(lambda: bool(flush.batches), limit=10) == 2
    await caller


async def test_when_the_flush_raises_every_caller_of_the_batch_gets_the_exception() -> None:
    flush = Recorder(fail_if=lambda item: item == 2)
    coalescer: Coalescer[int, int] = Coalescer(flush)
    outcomes = await outcomes_of(coalescer, (1, 2, 3))
    assert flush.batches == [[1, 2, 3]]
    assert len(outcomes) == 3
    for outcome in outcomes:
        assert isinstance(outcome, Boom)
        assert str(outcome) == "flush failed for [1, 2, 3]"
    # The failure belonged to that batch only: the next one is served normally.
    assert await submit_all(coalescer, [4, 5]) == [40, 50]


async def test_a_flush_past_its_timeout_fails_every_caller_with_timeout_error() -> None:
    cancelled = asyncio.Event()

    async def stuck(items: list[int]) -> list[int]:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return items

    coalescer: Coalescer[int, int] = Coalescer(stuck, timeout_s=0.05)
    started = time.monotonic()
    outcomes = await outcomes_of(coalescer, list(range(4)))
    assert time.monotonic() - started < 1
    assert len(outcomes) == 4
    assert all(isinstance(outcome, TimeoutError) for outcome in outcomes), outcomes
    assert cancelled.is_set()  # the slow flush itself was stopped


@pytest.mark.parametrize("when", ["before the flush starts", "while the flush runs"])
async def test_a_cancelled_caller_only_loses_its_own_result(when: str) -> None:
    gate = asyncio.Event()
    flush = Recorder(gate=gate)
    coalescer: Coalescer[int, int] = Coalescer(flush)
    callers = [asyncio.ensure_future(coalescer.submit(i)) for i in (1, 2, 3)]
    await asyncio.sleep(0)  # every caller has submitted; the flush is due next turn
    if when == "while the flush runs":
        await asyncio.wait_for(flush.started.wait(), 1)
    else:
        assert flush.batches == []
    callers[1].cancel()
    gate.set()
    await asyncio.wait(callers, timeout=1)
    assert all(caller.done() for caller in callers)
    assert callers[1].cancelled()
    assert callers[0].result() == 10
    assert callers[2].result() == 30
    assert len(flush.batches) == 1
    # The coalescer still works for whoever comes next.
    assert await submit_all(coalescer, [4]) == [40]


@pytest.mark.parametrize(
    ("count", "sizes"),
    [(2, [2]), (3, [2, 1]), (4, [2, 2]), (5, [2, 2, 1])],
)
async def test_more_than_max_batch_items_are_split_into_several_flushes(
    count: int, sizes: list[int]
) -> None:
    flush = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(flush, max_batch=2)
    items = list(range(1, count + 1))
    assert await submit_all(coalescer, items) == [item * 10 for item in items]
    assert [len(batch) for batch in flush.batches] == sizes
    assert [item for batch in flush.batches for item in batch] == items


async def test_a_failing_chunk_fails_only_its_own_callers() -> None:
    flush = Recorder(fail_if=lambda item: item == 3)
    coalescer: Coalescer[int, int] = Coalescer(flush, max_batch=2)
    outcomes = await outcomes_of(coalescer, list(range(1, 6)))
    assert flush.batches == [[1, 2], [3, 4], [5]]
    assert outcomes[0] == 10
    assert outcomes[1] == 20
    assert isinstance(outcomes[2], Boom)
    assert isinstance(outcomes[3], Boom)
    assert outcomes[4] == 50


@pytest.mark.parametrize(
    "answer",
    [lambda items: [0] * (len(items) - 1), lambda items: [0] * (len(items) + 1), lambda _: []],
    ids=["one too few", "one too many", "none"],
)
async def test_a_flush_with_the_wrong_number_of_results_fails_every_caller(
    answer: Callable[[list[int]], Sequence[int]],
) -> None:
    flush = Recorder(answer=answer)
    coalescer: Coalescer[int, int] = Coalescer(flush)
    outcomes = await outcomes_of(coalescer, (1, 2, 3))
    assert len(outcomes) == 3
    for outcome in outcomes:
        assert isinstance(outcome, RuntimeError)
        assert "for 3 items" in str(outcome)


async def test_a_lone_callers_flush_failure_reaches_it() -> None:
    async def broken(_items: list[int]) -> list[int]:
        msg = "no"
        raise Boom(msg)

    coalescer: Coalescer[int, int] = Coalescer(broken)
    with pytest.raises(Boom, match="no"):
        async with asyncio.timeout(2):
            await coalescer.submit(1)


async def test_a_flush_cancelled_before_it_starts_cancels_its_callers_and_not_later_ones() -> None:
    flush = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(flush)
    callers = [asyncio.ensure_future(coalescer.submit(i)) for i in (1, 2)]
    await asyncio.sleep(0)  # every caller has submitted; the flush is due next turn
    [flush_task] = coalescer._inflight
    flush_task.cancel()  # as at shutdown: its first step never runs
    await asyncio.wait(callers, timeout=1)
    assert all(caller.cancelled() for caller in callers)
    assert flush.batches == []
    # The batch was dropped with its flush: the next submits get a flush of their own.
    assert await submit_all(coalescer, [3, 4]) == [30, 40]
    assert flush.batches == [[3, 4]]
