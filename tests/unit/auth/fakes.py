"""In-memory stand-ins for the auth service's ports (fakes, not mocks: they behave)."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field

from pydantic import SecretStr

from peepers_auth.models import LoginState, SellerRecord, Session
from peepers_auth.pkce import code_challenge
from peepers_common.errors import ReauthRequired
from peepers_common.ml import TokenSet
from peepers_common.ml.models import MlUser


class InMemoryLoginStates:
    def __init__(self) -> None:
        self.states: dict[str, LoginState] = {}
        self.used: set[str] = set()

    async def put(self, state: str, login: LoginState, *, ttl_s: int) -> None:
        self.states[state] = login

    async def take(self, state: str) -> LoginState | None:
        login = self.states.pop(state, None)
        if login is not None:
            self.used.add(state)
        return login

    async def was_used(self, state: str) -> bool:
        return state in self.used


class InMemorySessions:
    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}

    async def create(self, session: Session, *, ttl_s: int) -> str:
        session_id = secrets.token_urlsafe(16)
        self.sessions[session_id] = session
        return session_id

    async def get(self, session_id: str) -> Session | None:
        return self.sessions.get(session_id)

    async def delete(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)


class InMemorySellerStore:
    def __init__(self) -> None:
        self.records: dict[int, SellerRecord] = {}
        # What a changelog would hold of the durable writes (the view may miss them).
        self.durable: dict[int, SellerRecord] = {}
        self.locks: dict[int, str] = {}
        self._changed = asyncio.Event()

    async def get(self, seller_id: int) -> SellerRecord | None:
        return self.records.get(seller_id)

    async def put(
        self,
        record: SellerRecord,
        *,
        expected_version: int,
        lock_token: str | None = None,
        durable: bool = False,
    ) -> bool:
        if durable:
            self.durable[record.seller_id] = record
        current = self.records.get(record.seller_id)
        if (current.version if current else 0) != expected_version:
            return False
        if lock_token is not None and self.locks.get(record.seller_id) != lock_token:
            return False
        self.records[record.seller_id] = record
        return True

    async def catch_up(self, seller_id: int) -> SellerRecord | None:
        logged = self.durable.get(seller_id)
        current = self.records.get(seller_id)
        if logged is not None and (current is None or current.version < logged.version):
            self.records[seller_id] = logged
        return self.records.get(seller_id)

    async def clear_outbox(self, seller_id: int, *, version: int) -> None:
        current = self.records.get(seller_id)
        if current is not None and current.version == version:
            self.records[seller_id] = current.model_copy(update={"outbox": ()})

    async def acquire_lock(self, seller_id: int, *, ttl_s: float) -> str | None:
        if seller_id in self.locks:
            return None
        self.locks[seller_id] = token = secrets.token_hex(8)
        return token

    async def release_lock(self, seller_id: int, token: str) -> None:
        if self.locks.get(seller_id) == token:
            del self.locks[seller_id]

    async def wait_for_change(self, seller_id: int, *, version: int, timeout_s: float) -> None:
        await asyncio.sleep(0.001)


@dataclass
class FakeMlOAuth:
    """ML's token endpoint in miniature: single-use codes and rotating refresh tokens."""

    user: MlUser = field(
        default_factory=lambda: MlUser(id=3000000001, nickname="LOJA_TESTE", site_id="MLB")
    )
    codes: dict[str, str] = field(default_factory=dict)  # code -> its S256 challenge
    refresh_token: str = ""
    access_token: str = ""
    refresh_calls: int = 0
    revoked: bool = False
    expires_in: int = 21600
    gate: asyncio.Event | None = None  # when set, refreshes wait for it (to pile callers up)

    def issue_code(self, challenge: str) -> str:
        """What ML's consent page does: remember the challenge and hand out a code."""
        code = f"TG-{secrets.token_hex(12)}-{self.user.id}"
        self.codes[code] = challenge
        return code

    def _pair(self) -> TokenSet:
        self.access_token = f"APP_USR-1-010101-{secrets.token_hex(16)}-{self.user.id}"
        self.refresh_token = f"TG-{secrets.token_hex(12)}-{self.user.id}"
        return TokenSet(
            access_token=SecretStr(self.access_token),
            refresh_token=SecretStr(self.refresh_token),
            expires_in=self.expires_in,
            user_id=self.user.id,
            scope="offline_access read write",
        )

    async def exchange_code(self, *, code: str, verifier: str, redirect_uri: str) -> TokenSet:
        challenge = self.codes.pop(code, None)
        if challenge is None or code_challenge(verifier) != challenge:
            msg = "invalid_grant"
            raise ReauthRequired(msg, seller_id=0)
        return self._pair()

    async def refresh(self, refresh_token: str, *, seller_id: int) -> TokenSet:
        self.refresh_calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.revoked or refresh_token != self.refresh_token:
            msg = "invalid_grant"
            raise ReauthRequired(msg, seller_id=seller_id)
        return self._pair()

    async def me(self, access_token: str) -> MlUser:
        return self.user
