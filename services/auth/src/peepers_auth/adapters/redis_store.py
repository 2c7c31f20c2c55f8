"""The auth service's Redis state, all under ``auth:`` (the ACL user may touch nothing else).

Keys (``<ns>`` is ``auth:``, or ``auth:<scope>:`` in tests):

- ``<ns>login:<sha256(state)>``: a pending login (PKCE verifier, site, browser binding),
  TTL ~10 min, taken with GETDEL; ``<ns>login-used:<sha256(state)>`` remembers for the
  same TTL that it was taken, so a replay gets its own clear page.
- ``<ns>session:<sha256(session id)>``: a seller's browser session (TTL).
- ``<ns>seller:<id>``: hash ``version``, ``meta`` (JSON, no secrets), ``sealed`` (Fernet
  blob of the tokens), ``outbox`` (JSON events not yet acknowledged by Kafka), ``offset``
  (where the changelog holds this state; -1 for a record from before the changelog),
  ``unlogged`` (present while the changelog has refused this state: logged on next read).
- ``<ns>seller:<id>:lock``: the refresh lock, a random token with a TTL.
- ``<ns>sellers``: the set of seller ids (key rotation walks it; never KEYS/SCAN).
- ``<ns>changelog:sellers:epoch`` / ``:restoring``: the view's epoch marker
  (``peepers_common.changelog``): the seller hashes are a view of the changelog topic
  ``peepers.auth.sellers.changelog``, restored from it when the marker is gone.

Logins, sessions and locks are cache-only: a lost one means logging in again, or one
more lock round.

Only hashes of the state and the session id are stored, so a dump of Redis yields
neither a usable session cookie nor a token.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Final, NamedTuple

import redis.asyncio as aioredis
from pydantic import BaseModel, TypeAdapter
from redis.exceptions import RedisError

from peepers_auth.crypto import TokenCipher
from peepers_auth.models import LoginState, SellerRecord, Session
from peepers_common.changelog import ChangelogEntry
from peepers_common.errors import CacheUnavailable
from peepers_common.events import SellerEvent
from peepers_common.namespaces import Namespace

log = logging.getLogger(__name__)

_OUTBOX: Final[TypeAdapter[tuple[SellerEvent, ...]]] = TypeAdapter(tuple[SellerEvent, ...])
# While another replica refreshes, poll its progress this often: a refresh is one ML
# round trip (tens of ms), so waiters answer right after it without hammering Redis.
_POLL_S: Final = 0.02

# Write a seller record if the version (and, when given, the lock) is what the writer
# read: the fencing check that keeps a slow or stale writer from undoing a newer state.
# ARGV[8] is the changelog offset the record was logged at (-1: not logged); ARGV[9] '1'
# flags a record the changelog refused (Kafka down), to be logged before it is used.
_PUT_LUA: Final = """
local current = redis.call('HGET', KEYS[1], 'version') or '0'
if current ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'version', ARGV[3], 'meta', ARGV[4], 'offset', ARGV[8])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'sealed', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'outbox', ARGV[6]) end
if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], 'unlogged', ARGV[9]) end
redis.call('SADD', KEYS[3], ARGV[7])
return 1
"""
# Key rotation: swap the blob if the record is still the one re-sealed (version and blob),
# noting where the changelog holds the re-sealed record.
_RESEAL_LUA: Final = """
if redis.call('HGET', KEYS[1], 'version') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'sealed') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'sealed', ARGV[3], 'offset', ARGV[4])
redis.call('HDEL', KEYS[1], 'unlogged')
return 1
"""
_LOGGED_LUA: Final = """
if redis.call('HGET', KEYS[1], 'version') ~= ARGV[1] then return 0 end
if redis.call('HDEL', KEYS[1], 'unlogged') == 0 then return 0 end
redis.call('HSET', KEYS[1], 'offset', ARGV[2])
return 1
"""
_CLEAR_OUTBOX_LUA: Final = """
if redis.call('HGET', KEYS[1], 'version') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'offset', ARGV[2])
  redis.call('HDEL', KEYS[1], 'outbox')
  return 1
end
return 0
"""
_RELEASE_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Restore: apply a changelog record unless the view already holds a later state of the
# seller (live writes land beside a restore). Later means a higher version, or the same
# version logged at a higher offset (an outbox cleared, a blob re-sealed; a key's records
# share a partition, so offsets order them). Versions first: a record logged after a
# newer one (a race's loser, an outbox clear that lost to a refresh) never wins. An
# empty version is a tombstone, ordered by offset alone.
_APPLY_LUA: Final = """
local stored = redis.call('HMGET', KEYS[1], 'version', 'offset')
local stored_version = tonumber(stored[1] or '0')
local stored_offset = tonumber(stored[2] or '-1')
local offset = tonumber(ARGV[6])
if ARGV[2] == '' then
  if stored_offset >= offset then return 0 end
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[1])
  return 1
end
local version = tonumber(ARGV[2])
if stored_version > version then return 0 end
if stored_version == version and stored_offset >= offset then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'meta', ARGV[3], 'offset', ARGV[6])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'sealed', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'outbox', ARGV[5]) end
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

# A taken state is remembered this long (longer than any state lives) to tell a replay
# apart from an unknown or expired state.
_USED_TTL_S: Final = 3600


def _bytes(value: bytes | str) -> bytes:
    # The client is built without decode_responses, so values are bytes; the union is
    # redis-py's typing for both modes.
    return value if isinstance(value, bytes) else value.encode()


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@asynccontextmanager
async def redis_errors() -> AsyncIterator[None]:
    """Translate redis-py errors at this boundary (handlers never see them)."""
    try:
        yield
    except RedisError as exc:
        msg = f"Redis did not answer: {exc.__class__.__name__}"
        raise CacheUnavailable(msg) from exc


class RedisLoginStates:
    def __init__(self, client: aioredis.Redis, ns: Namespace) -> None:
        self._client = client
        self._ns = ns

    async def put(self, state: str, login: LoginState, *, ttl_s: int) -> None:
        body = json.dumps(
            {**login.model_dump(mode="json"), "verifier": login.verifier.get_secret_value()}
        )
        async with redis_errors():
            await self._client.set(self._ns.key("login", _digest(state)), body, ex=ttl_s)

    async def take(self, state: str) -> LoginState | None:
        key = self._ns.key("login", _digest(state))
        async with redis_errors():
            raw = await self._client.getdel(key)
            if raw is None:
                return None
            login = LoginState.model_validate_json(raw)
            await self._client.set(self._ns.key("login-used", _digest(state)), b"1", ex=_USED_TTL_S)
        return login

    async def was_used(self, state: str) -> bool:
        async with redis_errors():
            return bool(await self._client.exists(self._ns.key("login-used", _digest(state))))


class RedisSessions:
    def __init__(self, client: aioredis.Redis, ns: Namespace) -> None:
        self._client = client
        self._ns = ns

    async def create(self, session: Session, *, ttl_s: int) -> str:
        session_id = secrets.token_urlsafe(32)
        body = json.dumps(
            {**session.model_dump(mode="json"), "csrf_token": session.csrf_token.get_secret_value()}
        )
        async with redis_errors():
            await self._client.set(self._ns.key("session", _digest(session_id)), body, ex=ttl_s)
        return session_id

    async def get(self, session_id: str) -> Session | None:
        async with redis_errors():
            raw = await self._client.get(self._ns.key("session", _digest(session_id)))
        return None if raw is None else Session.model_validate_json(raw)

    async def delete(self, session_id: str) -> None:
        async with redis_errors():
            await self._client.delete(self._ns.key("session", _digest(session_id)))


class SellerFields(NamedTuple):
    """A seller record as stored: the view's hash fields, and the changelog's value.

    ``meta`` is JSON without secrets, ``sealed`` the Fernet blob of the tokens and
    ``outbox`` JSON events; the last two are empty when there are none. Nothing here is
    a token in clear.
    """

    seller_id: int
    version: int
    meta: bytes
    sealed: bytes = b""
    outbox: bytes = b""
    # The view's only: the changelog refused this record (never part of its value).
    unlogged: bool = False

    def changelog_value(self) -> bytes:
        return json.dumps(
            {
                "version": self.version,
                "meta": self.meta.decode(),
                "sealed": self.sealed.decode() or None,  # Fernet blobs are ASCII
                "outbox": self.outbox.decode() or None,
            }
        ).encode()

    @classmethod
    def from_changelog(cls, key: bytes, value: bytes) -> SellerFields:
        """Decode a changelog record; ValueError (incl. ValidationError) when malformed."""
        body = _ChangelogValue.model_validate_json(value)
        return cls(
            seller_id=int(key),
            version=body.version,
            meta=body.meta.encode(),
            sealed=(body.sealed or "").encode(),
            outbox=(body.outbox or "").encode(),
        )


class _ChangelogValue(BaseModel):
    version: int
    meta: str
    sealed: str | None
    outbox: str | None


class RedisSellerStore:
    """The sellers' Redis view: compare-and-set writes, the refresh lock, restore."""

    def __init__(self, client: aioredis.Redis, ns: Namespace, cipher: TokenCipher) -> None:
        self._client = client
        self._ns = ns
        self._cipher = cipher
        self._put = client.register_script(_PUT_LUA)
        self._clear_outbox = client.register_script(_CLEAR_OUTBOX_LUA)
        self._release = client.register_script(_RELEASE_LUA)
        self._apply = client.register_script(_APPLY_LUA)
        self._logged = client.register_script(_LOGGED_LUA)
        self._reseal = client.register_script(_RESEAL_LUA)

    def _key(self, seller_id: int) -> str:
        return self._ns.key("seller", seller_id)

    def _lock_key(self, seller_id: int) -> str:
        return self._ns.key("seller", seller_id, "lock")

    def encode(self, record: SellerRecord) -> SellerFields:
        return SellerFields(
            seller_id=record.seller_id,
            version=record.version,
            meta=record.model_dump_json(exclude={"tokens", "outbox", "version"}).encode(),
            sealed=self._cipher.seal(record.tokens) if record.tokens is not None else b"",
            outbox=_OUTBOX.dump_json(record.outbox) if record.outbox else b"",
        )

    def decode(self, fields: SellerFields) -> SellerRecord:
        values = json.loads(fields.meta)
        values["version"] = fields.version
        if fields.sealed:
            values["tokens"] = self._cipher.open(fields.sealed, seller_id=fields.seller_id)
        if fields.outbox:
            values["outbox"] = _OUTBOX.validate_json(fields.outbox)
        return SellerRecord.model_validate(values)

    async def fields(self, seller_id: int) -> SellerFields | None:
        async with redis_errors():
            fetched = await self._client.hgetall(self._key(seller_id))
        raw = {_bytes(k): _bytes(v) for k, v in fetched.items()}
        if not raw:
            return None
        return SellerFields(
            seller_id=seller_id,
            version=int(raw[b"version"]),
            meta=raw[b"meta"],
            sealed=raw.get(b"sealed", b""),
            outbox=raw.get(b"outbox", b""),
            unlogged=b"unlogged" in raw,
        )

    async def get(self, seller_id: int) -> SellerRecord | None:
        fields = await self.fields(seller_id)
        return None if fields is None else self.decode(fields)

    async def put(
        self, record: SellerRecord, *, expected_version: int, lock_token: str | None = None
    ) -> bool:
        return await self.put_fields(
            self.encode(record), expected_version=expected_version, lock_token=lock_token
        )

    async def put_fields(
        self,
        fields: SellerFields,
        *,
        expected_version: int,
        lock_token: str | None = None,
        offset: int = -1,
        unlogged: bool = False,
    ) -> bool:
        """The compare-and-set write; ``offset``: where the changelog holds the record.

        ``unlogged``: the changelog refused it; `ChangelogSellerStore` logs it on its
        next read, before anyone uses it.
        """
        if fields.version <= expected_version:
            msg = "a written record must carry a version above the one it replaces"
            raise ValueError(msg)
        async with redis_errors():
            written = await self._put(
                keys=[
                    self._key(fields.seller_id),
                    self._lock_key(fields.seller_id),
                    self._ns.key("sellers"),
                ],
                args=[
                    str(expected_version),
                    lock_token or "",
                    str(fields.version),
                    fields.meta,
                    fields.sealed,
                    fields.outbox,
                    str(fields.seller_id),
                    str(offset),
                    "1" if unlogged else "",
                ],
            )
        return bool(written)

    async def may_write(
        self, seller_id: int, *, expected_version: int, lock_token: str | None
    ) -> bool:
        """Whether a write on ``expected_version`` (and lock) would land right now."""
        async with redis_errors():
            current = await self._client.hget(self._key(seller_id), "version")
            holder = await self._client.get(self._lock_key(seller_id)) if lock_token else None
        if int(current or 0) != expected_version:
            return False
        return lock_token is None or holder == lock_token.encode()

    async def mark_logged(self, seller_id: int, *, version: int, offset: int) -> bool:
        """Clear the ``unlogged`` flag of ``version`` now that the changelog has it."""
        async with redis_errors():
            done = await self._logged(keys=[self._key(seller_id)], args=[str(version), str(offset)])
        return bool(done)

    async def reseal(self, current: SellerFields, sealed: bytes, *, offset: int) -> bool:
        """Replace ``current``'s blob with ``sealed`` if the view still holds ``current``."""
        async with redis_errors():
            done = await self._reseal(
                keys=[self._key(current.seller_id)],
                args=[str(current.version), current.sealed, sealed, str(offset)],
            )
        return bool(done)

    async def clear_outbox(self, seller_id: int, *, version: int, offset: int = -1) -> bool:
        """Drop the outbox of ``version``; False when the view holds another version."""
        async with redis_errors():
            done = await self._clear_outbox(
                keys=[self._key(seller_id)], args=[str(version), str(offset)]
            )
        return bool(done)

    async def acquire_lock(self, seller_id: int, *, ttl_s: float) -> str | None:
        token = secrets.token_hex(16)
        async with redis_errors():
            taken = await self._client.set(
                self._lock_key(seller_id), token, nx=True, px=int(ttl_s * 1000)
            )
        return token if taken else None

    async def release_lock(self, seller_id: int, token: str) -> None:
        async with redis_errors():
            await self._release(keys=[self._lock_key(seller_id)], args=[token])

    async def wait_for_change(self, seller_id: int, *, version: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            async with redis_errors():
                current = await self._client.hget(self._key(seller_id), "version")
                locked = await self._client.exists(self._lock_key(seller_id))
            if int(current or 0) != version or not locked:
                return
            await asyncio.sleep(_POLL_S)

    async def count_by_status(self) -> Counter[str]:
        """How many sellers the view holds in each status (reads ``meta``: no secrets)."""
        ids = await self.seller_ids()
        async with redis_errors(), self._client.pipeline(transaction=False) as pipe:
            for seller_id in ids:
                pipe.hget(self._key(seller_id), "meta")  # type: ignore[unused-awaitable]
            metas: list[bytes | None] = await pipe.execute()
        return Counter(str(json.loads(meta)["status"]) for meta in metas if meta is not None)

    async def seller_ids(self) -> list[int]:
        async with redis_errors():
            members = await self._client.smembers(self._ns.key("sellers"))
        return sorted(int(m) for m in members)

    async def apply(self, entries: Sequence[ChangelogEntry]) -> None:
        """Apply changelog records (`ChangelogView`): a later state in the view stays.

        A record that does not decode is logged (key and offset, never the value) and
        skipped, so one bad record cannot keep the service from ever becoming ready.
        """
        async with redis_errors(), self._client.pipeline(transaction=False) as pipe:
            for entry in entries:
                args = self._apply_args(entry)
                if args is None:
                    continue
                keys = [self._key(int(args[0])), self._ns.key("sellers")]
                await self._apply(keys=keys, args=args, client=pipe)
            await pipe.execute()

    def _apply_args(self, entry: ChangelogEntry) -> list[str | bytes] | None:
        try:
            if entry.value is None:
                return [str(int(entry.key)), "", "", "", "", str(entry.offset)]
            fields = SellerFields.from_changelog(entry.key, entry.value)
        except ValueError:
            log.error(
                "changelog record at %s/%s (key %r) does not decode; skipped",
                entry.partition,
                entry.offset,
                entry.key[:32],
            )
            return None
        return [
            str(fields.seller_id),
            str(fields.version),
            fields.meta,
            fields.sealed,
            fields.outbox,
            str(entry.offset),
        ]
