"""The auth service's records.

Token strings are ``SecretStr`` everywhere, so a repr, a log line or a traceback never
shows one; only the broker's response and the cipher unwrap them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from peepers_common.events import SellerEvent

SellerStatus = Literal["connected", "reauth_required", "disconnected"]


class SealedTokens(BaseModel):
    """The secret half of a seller record; stored only encrypted, bound to the seller id."""

    model_config = ConfigDict(frozen=True)

    seller_id: int
    access_token: SecretStr
    refresh_token: SecretStr


class SellerRecord(BaseModel):
    """One seller's connection.

    ``version`` grows on every write and fences concurrent writers: a write lands only on
    the version its writer read.
    """

    model_config = ConfigDict(frozen=True)

    seller_id: int
    version: int
    status: SellerStatus
    nickname: str
    site_id: str
    scope: str = ""
    tokens: SealedTokens | None = None
    expires_at: float = 0.0
    connected_at: float
    updated_at: float
    refreshes: int = 0
    # Events of transitions written but not yet acknowledged by Kafka (a tiny outbox).
    outbox: tuple[SellerEvent, ...] = ()


class LoginState(BaseModel):
    """What ``/auth/login`` leaves for ``/auth/callback`` under the random state."""

    model_config = ConfigDict(frozen=True)

    verifier: SecretStr
    site_id: str
    # sha256 of a nonce kept in the browser's login cookie: ties the callback to the
    # browser that started the login (defeats login CSRF with a stolen callback URL).
    browser_binding: str
    created_at: float


class Session(BaseModel):
    model_config = ConfigDict(frozen=True)

    seller_id: int
    csrf_token: SecretStr
    created_at: float = Field(ge=0)
