"""Seller records kept durable: the changelog topic first, then the Redis view.

Seller authorizations are state only Peepers holds (a refresh token is single use: the
one ML gave last is the only one that works), so the system of record is the compacted
topic ``peepers.auth.sellers.changelog``, keyed by seller id, each value the record as
the view stores it (`SellerFields`: tokens only as a Fernet blob). Redis holds the view,
restored from the topic by `peepers_common.changelog.Changelog` when lost.

A write goes: a cheap check that its compare-and-set can still land (one Redis read),
the changelog (``acks=all``), then the compare-and-set on the view, after any restore
running in this process (the view may not hold the seller until it ends). A writer that
loses the race after its record reached the changelog appends the winner's state again,
so the topic's last record per seller is the view's. The view notes the offset of the
record it reflects, so a restore running beside live writes never puts an older record
back (`RedisSellerStore.apply`).
"""

from __future__ import annotations

import logging

from peepers_auth.adapters.redis_store import RedisSellerStore, SellerFields
from peepers_auth.crypto import TokenCipher
from peepers_auth.models import SellerRecord
from peepers_common.changelog import Changelog, ChangelogEntry

log = logging.getLogger(__name__)


class ChangelogSellerStore:
    """`SellerStore` whose records are durable in the changelog before the view has them."""

    def __init__(self, view: RedisSellerStore, changelog: Changelog) -> None:
        self._view = view
        self._changelog = changelog

    async def get(self, seller_id: int) -> SellerRecord | None:
        await self._changelog.available()
        record = await self._view.get(seller_id)
        if record is None and await self._changelog.verify():
            record = await self._view.get(seller_id)  # the view was lost and is back
        return record

    async def put(
        self, record: SellerRecord, *, expected_version: int, lock_token: str | None = None
    ) -> bool:
        # Skipped while the view is being restored: it may not hold the seller yet.
        if self._changelog.ready and not await self._view.may_write(
            record.seller_id, expected_version=expected_version, lock_token=lock_token
        ):
            return False
        fields = self._view.encode(record)
        logged = await self._changelog.write(str(record.seller_id), fields.changelog_value())
        # Durable now; the compare-and-set needs the whole view back first.
        await self._changelog.available()
        if await self._view.put_fields(
            fields, expected_version=expected_version, lock_token=lock_token, offset=logged.offset
        ):
            return True
        await self._relog(record.seller_id)
        return False

    async def _relog(self, seller_id: int) -> None:
        """Append the view's current record: the one that won the race after ours."""
        winner = await self._view.fields(seller_id)
        if winner is not None:
            await self._changelog.write(str(seller_id), winner.changelog_value())
            log.info("seller %s: a concurrent write won; its record logged again", seller_id)

    async def clear_outbox(self, seller_id: int, *, version: int) -> None:
        # Logged too: a restore must not publish the record's events a second time.
        current = await self._view.fields(seller_id)
        if current is None or current.version != version or not current.outbox:
            return
        logged = await self._changelog.write(
            str(seller_id), current._replace(outbox=b"").changelog_value()
        )
        await self._view.clear_outbox(seller_id, version=version, offset=logged.offset)

    async def acquire_lock(self, seller_id: int, *, ttl_s: float) -> str | None:
        return await self._view.acquire_lock(seller_id, ttl_s=ttl_s)

    async def release_lock(self, seller_id: int, token: str) -> None:
        await self._view.release_lock(seller_id, token)

    async def wait_for_change(self, seller_id: int, *, version: int, timeout_s: float) -> None:
        await self._view.wait_for_change(seller_id, version=version, timeout_s=timeout_s)

    async def rotate_keys(self, cipher: TokenCipher) -> int:
        """Re-seal every record not sealed with the first key: a new changelog record each.

        Walks the changelog (the system of record) and the view (records written before
        the changelog existed), writes each re-sealed record to the changelog, where
        compaction drops the old one, then to the view, unless a newer write got there
        first. Returns how many records it re-sealed.
        """
        latest: dict[int, SellerFields] = {}
        for key, value in (await self._changelog.latest()).items():
            fields = SellerFields.from_changelog(key, value)
            latest[fields.seller_id] = fields
        for seller_id in await self._view.seller_ids():
            if seller_id not in latest and (stored := await self._view.fields(seller_id)):
                latest[seller_id] = stored
        rotated = 0
        for seller_id, fields in sorted(latest.items()):
            if not fields.sealed or not cipher.needs_rotation(fields.sealed):
                continue
            value = fields._replace(sealed=cipher.rotate(fields.sealed)).changelog_value()
            written = await self._changelog.write(str(seller_id), value)
            entry = ChangelogEntry(
                str(seller_id).encode(), value, written.partition, written.offset
            )
            await self._view.apply([entry])
            rotated += 1
        return rotated
