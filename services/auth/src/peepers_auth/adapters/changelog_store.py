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
so the topic's last record per seller is the view's. A restore orders a seller's records
by version, then offset (`RedisSellerStore.apply`), so neither a record logged after a
newer one nor a restore running beside live writes brings back an older state.
"""

from __future__ import annotations

import logging
from typing import Final

from peepers_auth.adapters.redis_store import RedisSellerStore, SellerFields
from peepers_auth.crypto import TokenCipher
from peepers_auth.models import SellerRecord
from peepers_common.changelog import Changelog
from peepers_common.errors import PublishError

log = logging.getLogger(__name__)

# The offset a refused record claims in the view until it is logged: above any real one,
# so no restore running meanwhile puts the older logged record back over it.
_UNLOGGED_OFFSET: Final = 2**62


class ChangelogSellerStore:
    """`SellerStore` whose records are durable in the changelog before the view has them."""

    def __init__(self, view: RedisSellerStore, changelog: Changelog) -> None:
        self._view = view
        self._changelog = changelog

    async def get(self, seller_id: int) -> SellerRecord | None:
        await self._changelog.available()
        fields = await self._view.fields(seller_id)
        if fields is None and await self._changelog.verify():
            fields = await self._view.fields(seller_id)  # the view was lost and is back
        if fields is None:
            return None
        if fields.unlogged:
            await self._log_refused(fields)
        return self._view.decode(fields)

    async def _log_refused(self, fields: SellerFields) -> None:
        """Log a record the changelog refused when it was written; PublishError again."""
        logged = await self._changelog.write(str(fields.seller_id), fields.changelog_value())
        if await self._view.mark_logged(
            fields.seller_id, version=fields.version, offset=logged.offset
        ):
            log.info("seller %s: a record Kafka had refused is now logged", fields.seller_id)
        else:
            await self._relog(fields.seller_id)

    async def put(
        self,
        record: SellerRecord,
        *,
        expected_version: int,
        lock_token: str | None = None,
        durable: bool = False,
    ) -> bool:
        # Skipped while the view is being restored (it may not hold the seller yet), and
        # for a durable record: the view may be lost or unreachable right now, and a
        # restore or `catch_up` must find the record in the changelog then.
        if (
            not durable
            and self._changelog.ready
            and not await self._view.may_write(
                record.seller_id, expected_version=expected_version, lock_token=lock_token
            )
        ):
            return False
        fields = self._view.encode(record)
        try:
            logged = await self._changelog.write(str(record.seller_id), fields.changelog_value())
        except PublishError:
            await self._keep_refused(fields, expected_version, lock_token)
            raise
        # Durable now; the compare-and-set needs the whole view back first.
        await self._changelog.available()
        if await self._view.put_fields(
            fields, expected_version=expected_version, lock_token=lock_token, offset=logged.offset
        ):
            return True
        await self._relog(record.seller_id)
        return False

    async def _keep_refused(
        self, fields: SellerFields, expected_version: int, lock_token: str | None
    ) -> None:
        """Keep a record Kafka refused in the view, flagged, rather than lose it.

        After a refresh, ML has already retired the refresh token this record replaces:
        dropping it would lock the seller out. Flagged, it is used by nobody until a read
        has logged it (`get`); the caller of this write still gets the error.
        """
        await self._changelog.available()
        if await self._view.put_fields(
            fields,
            expected_version=expected_version,
            lock_token=lock_token,
            offset=_UNLOGGED_OFFSET,
            unlogged=True,
        ):
            log.warning(
                "seller %s: Kafka refused the record; kept in the view until it is logged",
                fields.seller_id,
            )

    async def _relog(self, seller_id: int) -> None:
        """Append the view's current record: the one that won the race after ours.

        Every append here is followed by a compare-and-set on the view; when that fails,
        a newer record may sit before ours in the topic, and this puts it last again.
        """
        winner = await self._view.fields(seller_id)
        if winner is not None:
            await self._changelog.write(str(seller_id), winner.changelog_value())
            log.info("seller %s: a concurrent write won; its record logged again", seller_id)

    async def catch_up(self, seller_id: int) -> SellerRecord | None:
        """The seller's record after the whole changelog is applied to the view again.

        A record can be durable in the changelog yet missing from the view: its writer's
        compare-and-set found the view lost (flushed, restarted) or Redis did not answer,
        or the writer was killed between the two. The view's apply keeps what is newer.
        """
        replayed = await self._changelog.replay()
        log.info("seller %s: view caught up with the changelog (%d records)", seller_id, replayed)
        return await self.get(seller_id)

    async def clear_outbox(self, seller_id: int, *, version: int) -> None:
        # Logged too: a restore must not publish the record's events a second time.
        current = await self._view.fields(seller_id)
        if current is None or current.version != version or not current.outbox:
            return
        logged = await self._changelog.write(
            str(seller_id), current._replace(outbox=b"").changelog_value()
        )
        if not await self._view.clear_outbox(seller_id, version=version, offset=logged.offset):
            await self._relog(seller_id)

    async def acquire_lock(self, seller_id: int, *, ttl_s: float) -> str | None:
        return await self._view.acquire_lock(seller_id, ttl_s=ttl_s)

    async def release_lock(self, seller_id: int, token: str) -> None:
        await self._view.release_lock(seller_id, token)

    async def wait_for_change(self, seller_id: int, *, version: int, timeout_s: float) -> None:
        await self._view.wait_for_change(seller_id, version=version, timeout_s=timeout_s)

    async def rotate_keys(self, cipher: TokenCipher) -> int:
        """Re-seal every record not sealed with the first key: a new changelog record each.

        Works from the view, restored first if it was lost, so it holds every seller,
        records from before the changelog included. Each re-sealed record goes to the
        changelog, where compaction drops the old one, then to the view by a
        compare-and-set on the record's version and blob. A write that landed meanwhile
        (a refresh, which seals with the first key anyway) wins, and its record is logged
        again so it stays the last. Returns how many records it re-sealed.
        """
        await self._changelog.verify()
        rotated = 0
        for seller_id in await self._view.seller_ids():
            current = await self._view.fields(seller_id)
            if current is None or not current.sealed or not cipher.needs_rotation(current.sealed):
                continue
            resealed = current._replace(sealed=cipher.rotate(current.sealed), unlogged=False)
            logged = await self._changelog.write(str(seller_id), resealed.changelog_value())
            if await self._view.reseal(current, resealed.sealed, offset=logged.offset):
                rotated += 1
            else:
                await self._relog(seller_id)
        return rotated
