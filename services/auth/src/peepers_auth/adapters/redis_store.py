"""The auth service's Redis state, all under ``auth:`` (the ACL user may touch nothing else).

Keys (``<ns>`` is ``auth:``, or ``auth:<scope>:`` in tests):

- ``<ns>login:<sha256(state)>``: a pending login (PKCE verifier, site, browser binding),
  TTL ~10 min, taken with GETDEL; ``<ns>login-used:<sha256(state)>`` remembers for the
  same TTL that it was taken, so a replay gets its own clear page.
- ``<ns>session:<sha256(session id)>``: a seller's browser session (TTL).
- ``<ns>seller:<id>``: hash ``version``, ``meta`` (JSON, no secrets), ``sealed`` (Fernet
  blob of the tokens), ``outbox`` (JSON events not yet acknowledged by Kafka).
- ``<ns>seller:<id>:lock``: the refresh lock, a random token with a TTL.
- ``<ns>sellers``: the set of seller ids (key rotation walks it; never KEYS/SCAN).

Only hashes of the state and the session id are stored, so a dump of Redis yields
neither a usable session cookie nor a token.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import redis.asyncio as aioredis
from pydantic import TypeAdapter
from redis.exceptions import RedisError

from peepers_auth.crypto import TokenCipher
from peepers_auth.models import LoginState, SellerRecord, Session
from peepers_common.errors import CacheUnavailable
from peepers_common.events import SellerEvent
from peepers_common.namespaces import Namespace

_OUTBOX: Final[TypeAdapter[tuple[SellerEvent, ...]]] = TypeAdapter(tuple[SellerEvent, ...])
# While another replica refreshes, poll its progress this often: a refresh is one ML
# round trip (tens of ms), so waiters answer right after it without hammering Redis.
_POLL_S: Final = 0.02

# Write a seller record if the version (and, when given, the lock) is what the writer
# read: the fencing check that keeps a slow or stale writer from undoing a newer state.
_PUT_LUA: Final = """
local current = redis.call('HGET', KEYS[1], 'version') or '0'
if current ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'version', ARGV[3], 'meta', ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'sealed', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'outbox', ARGV[6]) end
redis.call('SADD', KEYS[3], ARGV[7])
return 1
"""
_CLEAR_OUTBOX_LUA: Final = """
if redis.call('HGET', KEYS[1], 'version') == ARGV[1] then
  return redis.call('HDEL', KEYS[1], 'outbox')
end
return 0
"""
_RELEASE_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RESEAL_LUA: Final = """
if redis.call('HGET', KEYS[1], 'sealed') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'sealed', ARGV[2])
  return 1
end
return 0
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


class RedisSellerStore:
    def __init__(self, client: aioredis.Redis, ns: Namespace, cipher: TokenCipher) -> None:
        self._client = client
        self._ns = ns
        self._cipher = cipher
        self._put = client.register_script(_PUT_LUA)
        self._clear_outbox = client.register_script(_CLEAR_OUTBOX_LUA)
        self._release = client.register_script(_RELEASE_LUA)
        self._reseal = client.register_script(_RESEAL_LUA)

    def _key(self, seller_id: int) -> str:
        return self._ns.key("seller", seller_id)

    def _lock_key(self, seller_id: int) -> str:
        return self._ns.key("seller", seller_id, "lock")

    async def get(self, seller_id: int) -> SellerRecord | None:
        async with redis_errors():
            fetched = await self._client.hgetall(self._key(seller_id))
        raw = {_bytes(k): _bytes(v) for k, v in fetched.items()}
        if not raw:
            return None
        fields = json.loads(raw[b"meta"])
        fields["version"] = int(raw[b"version"])
        if b"sealed" in raw:
            fields["tokens"] = self._cipher.open(raw[b"sealed"], seller_id=seller_id)
        if b"outbox" in raw:
            fields["outbox"] = _OUTBOX.validate_json(raw[b"outbox"])
        return SellerRecord.model_validate(fields)

    async def put(
        self, record: SellerRecord, *, expected_version: int, lock_token: str | None = None
    ) -> bool:
        if record.version <= expected_version:
            msg = "a written record must carry a version above the one it replaces"
            raise ValueError(msg)
        meta = record.model_dump_json(exclude={"tokens", "outbox", "version"})
        sealed = self._cipher.seal(record.tokens) if record.tokens is not None else b""
        outbox = _OUTBOX.dump_json(record.outbox) if record.outbox else b""
        async with redis_errors():
            written = await self._put(
                keys=[
                    self._key(record.seller_id),
                    self._lock_key(record.seller_id),
                    self._ns.key("sellers"),
                ],
                args=[
                    str(expected_version),
                    lock_token or "",
                    str(record.version),
                    meta,
                    sealed,
                    outbox,
                    str(record.seller_id),
                ],
            )
        return bool(written)

    async def clear_outbox(self, seller_id: int, *, version: int) -> None:
        async with redis_errors():
            await self._clear_outbox(keys=[self._key(seller_id)], args=[str(version)])

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

    async def rotate_keys(self) -> int:
        """Re-seal every record not sealed with the current key; returns how many."""
        rotated = 0
        async with redis_errors():
            members = await self._client.smembers(self._ns.key("sellers"))
            for member in sorted(int(m) for m in members):
                key = self._key(member)
                stored = await self._client.hget(key, "sealed")
                if stored is None:
                    continue
                sealed = _bytes(stored)
                if not self._cipher.needs_rotation(sealed):
                    continue
                # Compare-and-set on the blob itself: a refresh that wrote meanwhile
                # already sealed with the new key.
                if await self._reseal(keys=[key], args=[sealed, self._cipher.rotate(sealed)]):
                    rotated += 1
        return rotated
