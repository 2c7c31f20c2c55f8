"""PKCE (RFC 7636) and the other random values of a login.

The verifier is 32 bytes from the OS CSPRNG, base64url without padding: 43 characters,
the shortest RFC 7636 allows and exactly 256 bits of entropy. Only S256 is offered;
``plain`` would hand the verifier to anyone who sees the authorization URL.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Final

_VERIFIER: Final = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
METHOD: Final = "S256"


def random_urlsafe(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def code_verifier() -> str:
    return random_urlsafe(32)


def code_challenge(verifier: str) -> str:
    """The S256 challenge: BASE64URL(SHA256(ASCII(verifier))) without padding."""
    if not _VERIFIER.match(verifier):
        msg = "a code verifier is 43-128 characters of [A-Za-z0-9-._~] (RFC 7636 4.1)"
        raise ValueError(msg)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str
    method: str = METHOD

    @classmethod
    def new(cls) -> Pkce:
        verifier = code_verifier()
        return cls(verifier, code_challenge(verifier))
