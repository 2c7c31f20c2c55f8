"""The live summary's lines: the orders and messages workers' and the web app's figures."""

from __future__ import annotations

from rich.console import Console

from peepers_devstack.display import plain, render
from peepers_devstack.watch import Sales, Summary, WebFigures


def _summary() -> Summary:
    return Summary(
        uptime_s=12,
        orders_by_state={"paid": 3, "confirmed": 1},
        sales_today=Sales(orders=2, revenue={"BRL": "150.00"}),
        emails_sent=2,
        unanswered=5,
        open_tickets=1,
        answered=4,
        time_to_answer_median_s=240.0,
        web=WebFigures(open_pages=2, live_updates=17),
    )


def test_the_plain_line_has_the_orders_and_messages_figures() -> None:
    fields = dict(pair.split("=", 1) for pair in plain(_summary()).split()[1:])
    assert fields["orders"] == "4"
    assert fields["orders_by_state"] == "confirmed:1,paid:3"
    assert (fields["sales_today"], fields["emails_sent"]) == ("2", "2")
    assert (fields["unanswered"], fields["open_tickets"]) == ("5", "1")
    assert fields["time_to_answer_median_s"] == "240.0"
    assert (fields["web_pages"], fields["web_live_updates"]) == ("2", "17")


def test_workers_that_did_not_answer_show_dashes() -> None:
    fields = dict(pair.split("=", 1) for pair in plain(Summary(uptime_s=1)).split()[1:])
    assert (fields["orders"], fields["sales_today"], fields["time_to_answer_median_s"]) == (
        "-",
    ) * 3
    assert "orders_by_state" not in fields
    assert "web_pages" not in fields


def test_the_panel_shows_the_orders_and_messages_tables() -> None:
    console = Console(width=160, record=True)
    console.print(render(_summary(), seller="3000000001", footer=""))
    text = console.export_text()
    assert "today's sales" in text
    assert "2 orders, BRL 150.00" in text
    assert "paid 3, confirmed 1" in text
    assert "4.0 min (median of 4)" in text
    assert "open tickets" in text
    assert "2 pages open, 17 live updates sent to them" in text
