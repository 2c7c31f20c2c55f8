"""The overview's chart as plain geometry: bars for orders per day, a line for revenue.

The template draws it as inline SVG (no script, no library): numbers in, shapes out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from peepers_auth.web.ports import DaySales

WIDTH = 720
HEIGHT = 220
_PAD_X = 8
_PAD_TOP = 12
_PAD_BOTTOM = 24


@dataclass(frozen=True)
class Bar:
    day: date
    x: float
    y: float
    width: float
    height: float
    orders: int
    revenue: Decimal


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    line: str  # an SVG polyline's points
    max_orders: int
    max_revenue: Decimal
    labels: list[tuple[float, date]]  # x and day of every 7th bar
    width: int = WIDTH
    height: int = HEIGHT
    baseline: float = HEIGHT - _PAD_BOTTOM


def build(days: list[DaySales], last: date, currency: str, count: int = 30) -> Chart:
    """``count`` days ending with ``last``; days without sales are zeros, not gaps."""
    by_day = {d.day: d for d in days}
    span = [last - timedelta(days=count - 1 - i) for i in range(count)]
    orders = [by_day[d].orders if d in by_day else 0 for d in span]
    revenue = [
        by_day[d].revenue.get(currency, Decimal(0)) if d in by_day else Decimal(0) for d in span
    ]
    top_orders = max(max(orders), 1)
    top_revenue = max(max(revenue), Decimal(1))
    plot_h = HEIGHT - _PAD_TOP - _PAD_BOTTOM
    step = (WIDTH - 2 * _PAD_X) / count
    bars: list[Bar] = []
    points: list[str] = []
    for i, day in enumerate(span):
        x = _PAD_X + i * step
        h = plot_h * orders[i] / top_orders
        bars.append(
            Bar(
                day,
                round(x + 1, 1),
                round(_PAD_TOP + plot_h - h, 1),
                round(step - 2, 1),
                round(h, 1),
                orders[i],
                revenue[i],
            )
        )
        ry = _PAD_TOP + plot_h - float(Decimal(plot_h) * revenue[i] / top_revenue)
        points.append(f"{x + step / 2:.1f},{ry:.1f}")
    labels = [(b.x, b.day) for b in bars[::7]]
    return Chart(bars, " ".join(points), top_orders, top_revenue, labels)
