"""The small ports the auth handlers need. Adapters: ``adapters/``; fakes: tests."""

from __future__ import annotations

from typing import Protocol

from peepers_auth.models import LoginState, SellerRecord, Session
from peepers_common.ml import TokenSet
from peepers_common.ml.models import MlUser


class MlOAuth(Protocol):
    """ML's token endpoint and ``/users/me``.

    Raises ``ReauthRequired`` when ML refuses a code or refresh token (invalid_grant),
    ``TokenUnavailable`` when it cannot be reached or fails, ``MlApiError`` otherwise.
    """

    async def exchange_code(self, *, code: str, verifier: str, redirect_uri: str) -> TokenSet: ...

    async def refresh(self, refresh_token: str, *, seller_id: int) -> TokenSet: ...

    async def me(self, access_token: str) -> MlUser: ...


class LoginStates(Protocol):
    async def put(self, state: str, login: LoginState, *, ttl_s: int) -> None: ...

    async def take(self, state: str) -> LoginState | None:
        """Atomically read and delete: only one caller ever gets a given state."""
        ...

    async def was_used(self, state: str) -> bool: ...


class Sessions(Protocol):
    async def create(self, session: Session, *, ttl_s: int) -> str:
        """Store the session and return the new random session id (the cookie value)."""
        ...

    async def get(self, session_id: str) -> Session | None: ...

    async def delete(self, session_id: str) -> None: ...


class SellerStore(Protocol):
    """Seller records with compare-and-set on ``version`` and a per-seller refresh lock."""

    async def get(self, seller_id: int) -> SellerRecord | None: ...

    async def put(
        self,
        record: SellerRecord,
        *,
        expected_version: int,
        lock_token: str | None = None,
        durable: bool = False,
    ) -> bool:
        """Write ``record`` if the stored version is still ``expected_version``.

        The version is 0 when no record exists. With ``lock_token``, the write also needs
        that refresh lock to be still held. ``durable``: the record holds the only tokens
        that work (ML retired the ones it replaces), so it is kept where `catch_up` and a
        restore find it even when this write does not land (False is still answered).
        """
        ...

    async def catch_up(self, seller_id: int) -> SellerRecord | None:
        """The record after every durable write that missed the store is applied to it."""
        ...

    async def clear_outbox(self, seller_id: int, *, version: int) -> None: ...

    async def acquire_lock(self, seller_id: int, *, ttl_s: float) -> str | None:
        """The refresh lock's random token, or None when another holder has it."""
        ...

    async def release_lock(self, seller_id: int, token: str) -> None: ...

    async def wait_for_change(self, seller_id: int, *, version: int, timeout_s: float) -> None:
        """Return once the version moved past ``version``, the lock is free, or time is up.

        The caller re-reads the record whichever happened.
        """
        ...
