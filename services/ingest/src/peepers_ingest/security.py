"""Who is calling, and may they: source-IP allowlist with trusted proxies, HMAC, path token."""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address

from peepers_ingest.settings import Network

__all__ = ["Allowlist", "SourceCheck", "client_address", "is_allowed", "signature_valid"]

Address = IPv4Address | IPv6Address

# The longest X-Forwarded-For (all its headers' characters together) whose answer
# `SourceCheck` remembers: room for a few proxy hops even as full IPv6 text (up to 45
# characters each, plus ", "). Real chains are that short; a remembered key holds the
# headers themselves, and answers are remembered before the allowlist is asked, so without
# a bound any caller sending ~1 MB of headers could pin 4096 of them (4 GB). Longer ones
# are answered, just not remembered.
MAX_REMEMBERED_FORWARDED_FOR_CHARS = 256


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[::1]:port" forms some proxies write
        text = text[1 : text.index("]")]
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: Address, networks: Iterable[Network]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[Network]
) -> Address | None:
    """The address a request really comes from, or None when it cannot be told.

    ``X-Forwarded-For`` is read only when the direct peer is a trusted proxy, and then
    from the right: each hop is believed only while the hop that reported it is trusted,
    so a client cannot smuggle an allowed address in by writing the header itself.
    """
    address = _parse(peer) if peer else None
    if address is None:
        return None
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    while _within(address, trusted_proxies) and hops:
        reported = _parse(hops.pop())
        if reported is None:
            return None
        address = reported
    return address


def is_allowed(address: Address | None, allowed: Sequence[Network]) -> bool:
    return address is not None and _within(address, allowed)


class Allowlist:
    """`is_allowed` for one fixed list, in O(1) for single addresses (ML's list is 92 /32s)."""

    def __init__(self, networks: Sequence[Network]) -> None:
        self._hosts = frozenset(n.network_address for n in networks if n.num_addresses == 1)
        self._ranges = tuple(n for n in networks if n.num_addresses > 1)
        # Notifications come from few addresses: a range is scanned once per address.
        self._in_ranges = functools.lru_cache(maxsize=4096)(self._scan_ranges)

    def __contains__(self, address: Address | None) -> bool:
        if address is None:
            return False
        return address in self._hosts or self._in_ranges(address)

    def _scan_ranges(self, address: Address) -> bool:
        return _within(address, self._ranges)


class SourceCheck:
    """The address a request comes from, as text, when the allowlist admits it; else None.

    Cached by what the request says (its peer and its ``X-Forwarded-For`` headers): ML
    posts from a few dozen addresses, and parsing, walking the proxies and hashing the
    address object cost every webhook a few microseconds. A caller that varies its
    headers only churns the bounded cache, and only short headers are remembered (see
    `MAX_REMEMBERED_FORWARDED_FOR_CHARS`), so the cache's size is bounded in bytes too.
    """

    def __init__(self, allowlist: Allowlist, trusted_proxies: Sequence[Network]) -> None:
        self._allowlist = allowlist
        self._trusted_proxies = tuple(trusted_proxies)
        self._remembered = functools.lru_cache(maxsize=4096)(self._admitted)

    def admitted(self, peer: str | None, forwarded_for: tuple[str, ...]) -> str | None:
        if sum(map(len, forwarded_for)) > MAX_REMEMBERED_FORWARDED_FOR_CHARS:
            return self._admitted(peer, forwarded_for)
        return self._remembered(peer, forwarded_for)

    def _admitted(self, peer: str | None, forwarded_for: tuple[str, ...]) -> str | None:
        address = client_address(peer, forwarded_for, self._trusted_proxies)
        return str(address) if address in self._allowlist else None


def signature_valid(body: bytes, header: str | None, secret: bytes) -> bool:
    """Hex HMAC-SHA256 of the raw body (``sha256=`` prefix optional), compared in constant time."""
    if header is None:
        return False
    given = header.strip().removeprefix("sha256=").lower()
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(given.encode("ascii", "replace"), expected.encode())
