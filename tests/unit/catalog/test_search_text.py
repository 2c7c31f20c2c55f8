from __future__ import annotations

import pytest

from peepers_catalog.search_text import fold, item_terms, terms


@pytest.mark.parametrize(
    ("text", "folded"),
    [("Café", "cafe"), ("AÇÃO", "acao"), ("Niño", "nino"), ("Pingüino", "pinguino"), ("Ñu", "nu")],
)
def test_folding_drops_case_and_accents(text: str, folded: str) -> None:
    assert fold(text) == folded


def test_words_split_on_anything_but_letters_and_digits() -> None:
    assert terms("Guarda-chuva 3x_4 (Azul), 500ml") == [
        "guarda",
        "chuva",
        "3x",
        "4",
        "azul",
        "500ml",
    ]


def test_an_items_terms_include_its_sku_words() -> None:
    assert item_terms("Café Café", "TRA-0012") == {"cafe", "tra", "0012"}
