"""`MissedFeedsSource` over the shared ML client: every page of ``/missed_feeds``.

missed_feeds lists what ML failed to deliver to the *application*; a seller's token only
authenticates the call (FACTS.md 1.7). So one seller's token is enough, and the others
configured stand in, in order, when ML or the token broker refuses it (the seller
disconnected, or must log in again).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from peepers_common.errors import MlForbidden, MlUnauthorized, ReauthRequired

__all__ = ["MissedFeedsApi", "MlMissedFeedsSource"]

log = logging.getLogger(__name__)

# A refused seller: try the next one. Anything else (5xx, timeouts) fails the round.
_SELLER_REFUSED = (ReauthRequired, MlUnauthorized, MlForbidden)


class MissedFeedsApi(Protocol):
    """The one call of `peepers_common.ml.MlApi` this adapter needs (every topic at once)."""

    async def missed_feeds(
        self, *, seller_id: int, offset: int, limit: int
    ) -> list[dict[str, Any]]: ...


class MlMissedFeedsSource:
    """Pages through ``/missed_feeds`` (offset/limit) until a page comes back short."""

    def __init__(self, api: MissedFeedsApi, seller_ids: Sequence[int], *, page_size: int) -> None:
        if not seller_ids:
            msg = "missed_feeds needs at least one seller whose token may ask"
            raise ValueError(msg)
        self._api = api
        self._sellers = list(seller_ids)
        self._page_size = page_size

    async def missed_notifications(self) -> AsyncIterator[dict[str, Any]]:
        offset = 0
        seen: set[str] = set()
        while True:
            page = await self._page(offset)
            fresh = 0
            for entry in page:
                identity = json.dumps(entry, sort_keys=True, default=str)
                if identity not in seen:
                    seen.add(identity)
                    fresh += 1
                    yield entry
            if len(page) < self._page_size:
                return
            if not fresh:
                # A full page of entries already seen: offset is being ignored, and asking
                # on would loop forever.
                log.warning("missed_feeds repeated a page at offset %d; stopping the round", offset)
                return
            offset += len(page)

    async def _page(self, offset: int) -> list[dict[str, Any]]:
        for attempt, seller_id in enumerate(list(self._sellers)):
            try:
                page = await self._api.missed_feeds(
                    seller_id=seller_id, offset=offset, limit=self._page_size
                )
            except _SELLER_REFUSED as exc:
                if attempt == len(self._sellers) - 1:
                    raise
                log.warning("missed_feeds refused seller %d's token: %s", seller_id, exc)
                continue
            if attempt:
                # The seller that worked asks first from now on.
                self._sellers.remove(seller_id)
                self._sellers.insert(0, seller_id)
            return page
        msg = "unreachable: the last seller's failure is raised"
        raise AssertionError(msg)
