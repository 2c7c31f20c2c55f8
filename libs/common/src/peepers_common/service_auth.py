"""HTTP Basic authentication of the services that call another service's internal API."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from typing import Final

from pydantic import SecretStr

from peepers_common.errors import ServiceUnauthorized

# Compared against when the caller names an unknown service, so a wrong name costs the
# same time as a wrong secret.
_DUMMY_SECRET: Final = b"\x00" * 32


def authenticate_service(credentials: Mapping[str, SecretStr], authorization: str | None) -> str:
    """The calling service's name from an ``Authorization: Basic`` header.

    Args:
        credentials: the services allowed in, name -> shared secret.
        authorization: the request's ``Authorization`` header, if any.

    Raises:
        ServiceUnauthorized: no header, not Basic, garbage, unknown name or wrong secret.
    """
    msg = "this internal API needs valid service credentials (HTTP Basic)"
    if authorization is None or not authorization.startswith("Basic "):
        raise ServiceUnauthorized(msg)
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ServiceUnauthorized(msg) from None
    name, sep, secret = decoded.partition(":")
    expected = credentials.get(name)
    wanted = expected.get_secret_value().encode() if expected is not None else _DUMMY_SECRET
    matches = hmac.compare_digest(wanted, secret.encode())
    if not sep or expected is None or not matches or not secret:
        raise ServiceUnauthorized(msg)
    return name
