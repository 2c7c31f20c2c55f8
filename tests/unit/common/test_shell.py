"""The shell commands' shared shape (peepers_common.shell), as catalog's sync and orders'
backfill use it."""

from __future__ import annotations

import pytest
import typer

from peepers_common.errors import InvalidQuery
from peepers_common.shell import counts_line, run_command


async def _answer() -> int:
    return 42


async def _refused() -> int:
    msg = "seller 7 is not connected"
    raise InvalidQuery(msg)


def test_a_command_returns_what_its_coroutine_returns() -> None:
    assert run_command("orders", _answer()) == 42


def test_a_peepers_error_is_one_line_and_exit_status_1(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exit_:
        run_command("orders", _refused())
    assert exit_.value.exit_code == 1
    assert capsys.readouterr().err == "error: InvalidQuery: seller 7 is not connected\n"


def test_counts_read_by_name_and_nothing_is_said_so() -> None:
    assert counts_line({"unchanged": 12, "created": 3}) == "created 3, unchanged 12"
    assert counts_line({}) == "nothing"
