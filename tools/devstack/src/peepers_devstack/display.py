"""The live summary: a rich panel on a terminal, one ``key=value`` line per refresh otherwise."""

from __future__ import annotations

import os
import sys

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from peepers_devstack.watch import Summary


class RunConsole(Console):
    """A console that outlives its reader.

    ``make run | tee run.log`` and Ctrl-C: the terminal interrupts ``tee`` too, so the
    next line the orchestrator writes (``stopping the children``) meets a broken pipe.
    Rich then sends stdout to /dev/null, as Python's docs advise, and exits; here only the
    output stops, and the shutdown that follows runs to its end.
    """

    def on_broken_pipe(self) -> None:
        self.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _n(value: float | None) -> str:
    return "-" if value is None else f"{int(value):,}"


def _ms(summary: Summary, point: float) -> str:
    value = summary.latency_ms.get(point)
    return "-" if value is None else f"{value:.1f} ms"


def render(summary: Summary, *, seller: str, footer: str) -> RenderableType:
    ml = Table(title="ML notifier -> ingest", title_justify="left", show_header=False, box=None)
    ml.add_column(style="dim")
    ml.add_column(justify="right")
    ml.add_row("changes made (activity)", f"{_n(summary.changes)} at {summary.activity_rate:g}/s")
    ml.add_row("notifications sent", _n(summary.notifications))
    ml.add_row("acked 200 by ingest", _n(summary.delivered))
    ml.add_row(
        "failed attempts / pending", f"{_n(summary.failed_attempts)} / {_n(summary.pending)}"
    )
    ml.add_row(
        f"ack latency p50 / p95 (last {summary.latency_sample:,})",
        f"{_ms(summary, 50.0)} / {_ms(summary, 95.0)}",
    )
    ml.add_row("ack latency p99 / max", f"{_ms(summary, 99.0)} / {_ms(summary, 100.0)}")
    outcomes = ", ".join(f"{k} {_n(v)}" for k, v in sorted(summary.ingest.items())) or "-"
    ml.add_row("ingest: accepted", outcomes)
    ml.add_row(
        "ingest: rejected / spooled now", f"{_n(summary.rejected)} / {_n(summary.spool_depth)}"
    )

    catalog = Table(title="catalog", title_justify="left", show_header=False, box=None)
    catalog.add_column(style="dim")
    catalog.add_column(justify="right")
    catalog.add_row("items cached (live)", _n(summary.items_cached))
    catalog.add_row("item versions applied", _n(sum(summary.applied.values())))
    catalog.add_row("events published", _n(summary.events_total))
    catalog.add_row("parked / dead-lettered", f"{_n(summary.parked)} / {_n(summary.dead_lettered)}")

    tables = Table.grid(padding=(0, 6))
    tables.add_row(ml, catalog)
    tables.add_row(_orders(summary), _messages(summary))
    applied = ", ".join(f"{k} {_n(v)}" for k, v in sorted(summary.applied.items())) or "-"
    top = sorted(summary.events.items(), key=lambda kv: -kv[1])
    events = ", ".join(f"{k} {_n(v)}" for k, v in top) or "-"
    breakdown = Text.assemble(
        ("applied ", "bold"), applied, "\n", ("events ", "bold"), events, "\n",
        ("orders by state ", "bold"), _by_state(summary), style="dim",
    )  # fmt: skip
    search = summary.search
    if search is None:
        line = Text("search: waiting for cached items", style="dim")
    else:
        titles = "; ".join(search.titles) or "no match"
        line = Text.assemble(
            ("search ", "bold"),
            f"q={search.query!r}: {search.total:,} matches in {search.took_ms:.1f} ms",
            (f"  {titles}", "dim"),
        )
    title = f"Peepers: seller {seller} connected, up {int(summary.uptime_s)} s"
    body = Group(
        tables, Text(""), breakdown, line, _web(summary), _alerts(summary),
        Text(footer, style="dim"),
    )  # fmt: skip
    return Panel(body, title=title)


def _table(title: str) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None)
    table.add_column(style="dim")
    table.add_column(justify="right")
    return table


def _by_state(summary: Summary) -> str:
    states = summary.orders_by_state
    if states is None:
        return "-"
    return ", ".join(f"{k} {_n(v)}" for k, v in sorted(states.items(), key=lambda kv: -kv[1]))


def _sales(summary: Summary) -> str:
    sales = summary.sales_today
    if sales is None:
        return "-"
    revenue = ", ".join(f"{currency} {amount}" for currency, amount in sales.revenue.items())
    return f"{_n(sales.orders)} orders" + (f", {revenue}" if revenue else "")


def _orders(summary: Summary) -> Table:
    table = _table("orders")
    states = summary.orders_by_state
    table.add_row("orders cached", _n(None if states is None else sum(states.values())))
    table.add_row("today's sales", _sales(summary))
    table.add_row("emails sent", _n(summary.emails_sent))
    table.add_row("dead-lettered", _n(summary.orders_dead_lettered))
    return table


def _answer_time(summary: Summary) -> str:
    took = summary.time_to_answer_median_s
    if took is None:
        return "-"
    shown = f"{took / 3600:.1f} h" if took >= 3600 else f"{took / 60:.1f} min"
    return f"{shown} (median of {_n(summary.answered)})"


def _messages(summary: Summary) -> Table:
    table = _table("messages")
    table.add_row("unanswered questions", _n(summary.unanswered))
    table.add_row("open tickets", _n(summary.open_tickets))
    table.add_row("time to answer", _answer_time(summary))
    table.add_row("dead-lettered", _n(summary.messages_dead_lettered))
    return table


def _web(summary: Summary) -> Text:
    web = summary.web
    if web is None:
        return Text("web app: not running", style="dim")
    return Text.assemble(
        ("web app ", "bold"),
        f"{_n(web.open_pages)} pages open, {_n(web.live_updates)} live updates sent to them",
    )


def _alerts(summary: Summary) -> Text:
    alerts = summary.alerts
    if alerts is None:
        return Text("alerts: no Prometheus", style="dim")
    pending = f" ({alerts.pending} pending)" if alerts.pending else ""
    if not alerts.firing:
        return Text.assemble(("alerts ", "bold"), ("none firing", "green"), pending)
    return Text.assemble(("alerts ", "bold"), (", ".join(alerts.firing), "bold red"), pending)


def plain(summary: Summary) -> str:
    """One summary frame as ``key=value`` pairs (logs, tests, a non-terminal stdout)."""
    fields: dict[str, object] = {
        "uptime_s": int(summary.uptime_s),
        "changes": summary.changes,
        "notifications": summary.notifications,
        "acked": summary.delivered,
        "failed_attempts": summary.failed_attempts,
        "pending": summary.pending,
        "p50_ms": _num(summary.latency_ms.get(50.0)),
        "p95_ms": _num(summary.latency_ms.get(95.0)),
        "p99_ms": _num(summary.latency_ms.get(99.0)),
        "max_ms": _num(summary.latency_ms.get(100.0)),
        "ingest_published": int(summary.ingest.get("published", 0)),
        "ingest_spooled": int(summary.ingest.get("spooled", 0)),
        "ingest_rejected": int(summary.rejected),
        "items_cached": summary.items_cached if summary.items_cached is not None else "-",
        "items_applied": int(sum(summary.applied.values())),
        "events": summary.events_total,
        "dead_lettered": int(summary.dead_lettered),
        "orders": "-" if summary.orders_by_state is None else sum(summary.orders_by_state.values()),
        "sales_today": "-" if summary.sales_today is None else summary.sales_today.orders,
        "emails_sent": int(summary.emails_sent),
        "orders_dead_lettered": int(summary.orders_dead_lettered),
        "unanswered": int(summary.unanswered),
        "open_tickets": int(summary.open_tickets),
        "time_to_answer_median_s": _num(summary.time_to_answer_median_s),
        "messages_dead_lettered": int(summary.messages_dead_lettered),
    }
    if summary.orders_by_state:
        fields["orders_by_state"] = ",".join(
            f"{k}:{v}" for k, v in sorted(summary.orders_by_state.items())
        )
    if summary.web is not None:
        fields["web_pages"] = int(summary.web.open_pages)
        fields["web_live_updates"] = int(summary.web.live_updates)
    if summary.alerts is not None:
        fields["alerts_firing"] = ",".join(summary.alerts.firing) or "none"
    if summary.search is not None:
        fields["search_q"] = summary.search.query
        fields["search_hits"] = summary.search.total
        fields["search_ms"] = _num(summary.search.took_ms)
    return "summary " + " ".join(f"{k}={v}" for k, v in fields.items())


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
