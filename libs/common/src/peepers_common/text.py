"""Text as Peepers' search indexes see it: case- and accent-free words (pure, no I/O).

The catalog's item search and the messages service's question search both go through
`terms`, so "Café", "CAFE" and "cafe" are one word, as are "Ação"/"acao" and
"Niño"/"nino". Words are runs of letters and digits; anything else separates them
("guarda-chuva" is "guarda" and "chuva", "ABC-123" is "abc" and "123").
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

__all__ = ["fold", "terms"]

_WORD: Final = re.compile(r"[^\W_]+")


def fold(text: str) -> str:
    """Lower case without accents: NFKD, drop the combining marks, casefold."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def terms(text: str) -> list[str]:
    """The folded words of ``text`` in order, repeats included."""
    return _WORD.findall(fold(text))
