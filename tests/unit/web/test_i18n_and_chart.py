from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib.resources import files

from peepers_auth.web import chart
from peepers_auth.web.i18n import PT_BR, Locale
from peepers_auth.web.ports import DaySales


class TestLocale:
    def test_money_follows_the_currency_and_the_language(self) -> None:
        pt, en = Locale("pt-BR", "MLB"), Locale("en", "MLB")
        assert pt.money(Decimal("1234567.891")) == "R$ 1.234.567,89"
        assert en.money(Decimal("1234567.891")) == "R$ 1,234,567.89"
        assert pt.money(Decimal("15990"), "CLP") == "$ 15.990"
        assert en.money(Decimal("-3.5"), "USD") == "US$ -3.50"

    def test_dates_are_shown_in_the_sites_time_zone(self) -> None:
        moment = datetime(2026, 12, 7, 2, 30, tzinfo=UTC)
        assert Locale("pt-BR", "MLB").when(moment) == "06/12/2026 23:30"
        assert Locale("en", "MLM").when(moment) == "2026-12-06 20:30"

    def test_every_text_the_templates_use_has_a_portuguese_wording(self) -> None:
        used: set[str] = set()
        for template in (files("peepers_auth.web") / "templates").iterdir():
            used |= set(re.findall(r"""_\(["']([^"']+)["']\)""", template.read_text()))
        assert used
        assert sorted(used - set(PT_BR)) == []


class TestChart:
    def test_thirty_bars_with_empty_days_as_zeros(self) -> None:
        days = [
            DaySales(day=date(2026, 12, 7), orders=4, revenue={"BRL": Decimal(400)}),
            DaySales(day=date(2026, 12, 1), orders=2, revenue={"BRL": Decimal(100)}),
        ]
        drawn = chart.build(days, date(2026, 12, 7), "BRL")
        assert len(drawn.bars) == 30
        assert drawn.bars[-1].orders == 4
        assert drawn.bars[-1].height > drawn.bars[-7].height > 0
        assert drawn.bars[0].height == 0
        assert drawn.max_orders == 4
        assert len(drawn.line.split()) == 30

    def test_no_sales_draws_flat_without_dividing_by_zero(self) -> None:
        drawn = chart.build([], date(2026, 12, 7), "BRL")
        assert all(b.height == 0 for b in drawn.bars)
