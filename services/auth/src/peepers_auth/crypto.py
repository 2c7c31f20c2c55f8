"""Tokens at rest: Fernet (AES-128-CBC + HMAC-SHA256) with key rotation by MultiFernet.

The first key encrypts; every key decrypts. Rotating means prepending a new key, running
``rotate`` over the records (``python -m peepers_auth rotate-keys``), then dropping the
old key. The plaintext carries the seller id and is checked on the way out, so a sealed
blob copied onto another seller's record does not decrypt as theirs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from peepers_auth.models import SealedTokens
from peepers_common.errors import ConfigurationError, PeepersError


class TokenDecryptionFailed(PeepersError):
    """A sealed record that no configured key opens (or that belongs to another seller)."""


class TokenCipher:
    def __init__(self, keys: Sequence[SecretStr]) -> None:
        if not keys:
            msg = "AUTH_TOKEN_KEYS is empty: set at least one Fernet key (see docs/auth.md)"
            raise ConfigurationError(msg)
        try:
            fernets = [Fernet(key.get_secret_value().encode()) for key in keys]
        except ValueError:
            msg = "AUTH_TOKEN_KEYS holds a value that is not a Fernet key (32 bytes, base64url)"
            raise ConfigurationError(msg) from None
        self._fernet = MultiFernet(fernets)
        self._primary = fernets[0]

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    def seal(self, tokens: SealedTokens) -> bytes:
        plain = json.dumps(
            {
                "seller_id": tokens.seller_id,
                "access_token": tokens.access_token.get_secret_value(),
                "refresh_token": tokens.refresh_token.get_secret_value(),
            }
        ).encode()
        return self._fernet.encrypt(plain)

    def open(self, blob: bytes, *, seller_id: int) -> SealedTokens:
        try:
            plain = json.loads(self._fernet.decrypt(blob))
        except (InvalidToken, ValueError):
            msg = f"the tokens of seller {seller_id} do not decrypt with any configured key"
            raise TokenDecryptionFailed(msg) from None
        tokens = SealedTokens.model_validate(plain)
        if tokens.seller_id != seller_id:
            msg = f"the sealed tokens stored for seller {seller_id} belong to another seller"
            raise TokenDecryptionFailed(msg)
        return tokens

    def needs_rotation(self, blob: bytes) -> bool:
        """True when the blob was not sealed with the current (first) key."""
        try:
            self._primary.decrypt(blob)
        except InvalidToken:
            return True
        return False

    def rotate(self, blob: bytes) -> bytes:
        try:
            return self._fernet.rotate(blob)
        except InvalidToken:
            msg = "a sealed record does not decrypt with any configured key"
            raise TokenDecryptionFailed(msg) from None
