"""Text as the catalog's index sees it: `peepers_common.text`, plus an item's own words.

Folding and word splitting are shared with the messages service's question search
(`peepers_common.text`); only what makes an item's words is the catalog's.
"""

from __future__ import annotations

from peepers_common.text import fold, terms

__all__ = ["fold", "item_terms", "terms"]


def item_terms(title: str, sku: str | None) -> set[str]:
    """Every word a query prefix may match for an item: its title's and its SKU's."""
    return set(terms(title)) | set(terms(sku or ""))
