import hashlib
import hmac
from collections.abc import Sequence
from ipaddress import ip_address, ip_network

import pytest

from peepers_ingest import security
from peepers_ingest.security import (
    MAX_REMEMBERED_FORWARDED_FOR_CHARS,
    Address,
    Allowlist,
    SourceCheck,
    client_address,
    is_allowed,
    signature_valid,
)
from peepers_ingest.settings import Network, Settings

PROXY = [ip_network("10.0.0.0/8")]
ML = "54.88.218.97"


def test_without_a_trusted_proxy_forwarded_for_is_ignored() -> None:
    assert client_address("203.0.113.9", [ML], []) == ip_address("203.0.113.9")


def test_a_trusted_proxy_vouches_for_the_hop_it_saw() -> None:
    assert client_address("10.1.2.3", [f"198.51.100.1, {ML}"], PROXY) == ip_address(ML)


def test_a_client_cannot_smuggle_an_allowed_address_through_a_proxy() -> None:
    # The proxy appends what it saw (the attacker); the attacker's own entry is left of it.
    assert client_address("10.1.2.3", [f"{ML}, 203.0.113.9"], PROXY) == ip_address("203.0.113.9")


def test_chained_trusted_proxies_are_walked_from_the_right() -> None:
    assert client_address("10.1.2.3", [ML, "10.9.9.9"], PROXY) == ip_address(ML)


def test_a_garbled_hop_from_a_trusted_proxy_identifies_nobody() -> None:
    assert client_address("10.1.2.3", ["not-an-ip"], PROXY) is None


def test_an_ipv4_mapped_peer_is_matched_as_ipv4() -> None:
    address = client_address(f"::ffff:{ML}", [], [])
    assert is_allowed(address, Settings().allowed_cidrs)


def test_the_default_allowlist_is_mls_published_addresses_only() -> None:
    allowed = Settings().allowed_cidrs
    assert len(allowed) == 92
    assert is_allowed(ip_address(ML), allowed)
    assert not is_allowed(ip_address("127.0.0.1"), allowed)
    assert not is_allowed(None, allowed)


def test_a_signature_is_the_hex_hmac_of_the_raw_body() -> None:
    body, secret = b'{"a":1}', b"s3cret"
    good = hmac.new(secret, body, hashlib.sha256).hexdigest()
    assert signature_valid(body, good, secret)
    assert signature_valid(body, "sha256=" + good.upper(), secret)
    assert not signature_valid(body + b" ", good, secret)
    assert not signature_valid(body, None, secret)
    assert not signature_valid(body, "ünïcode", secret)


def test_the_allowlist_matches_single_hosts_and_ranges() -> None:
    allow = Allowlist(
        [ip_network("54.88.218.97/32"), ip_network("10.0.0.0/8"), ip_network("::1/128")]
    )
    assert ip_address("54.88.218.97") in allow
    assert ip_address("10.200.1.1") in allow
    assert ip_address("::1") in allow
    assert ip_address("54.88.218.98") not in allow
    assert None not in allow


def test_the_source_check_admits_through_trusted_proxies_only_and_remembers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check = SourceCheck(Allowlist([ip_network(f"{ML}/32")]), PROXY)
    assert check.admitted(ML, ()) == ML
    assert check.admitted(f"::ffff:{ML}", ()) == ML
    assert check.admitted("10.1.2.3", (f"203.0.113.9, {ML}",)) == ML  # a trusted proxy
    assert check.admitted("203.0.113.9", (ML,)) is None  # spoofed: the peer is no proxy
    assert check.admitted("10.1.2.3", ()) is None  # the proxy itself is not allowed
    assert check.admitted(None, ()) is None
    assert check.admitted("not-an-ip", (ML,)) is None
    walks = count_walks(monkeypatch)
    assert check.admitted("203.0.113.9", (ML,)) is None
    assert check.admitted("10.1.2.3", (f"203.0.113.9, {ML}",)) == ML
    assert walks == []  # both answered from memory


def test_a_long_forwarded_for_is_answered_but_not_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check = SourceCheck(Allowlist([ip_network(f"{ML}/32")]), PROXY)
    walks = count_walks(monkeypatch)
    junk = "203.0.113.9, " * (MAX_REMEMBERED_FORWARDED_FOR_CHARS // 10)
    assert len(junk) > MAX_REMEMBERED_FORWARDED_FOR_CHARS
    for _ in range(2):
        assert check.admitted("10.1.2.3", (junk, ML)) == ML
        assert check.admitted("10.1.2.3", (ML, junk.rstrip(", "))) is None
    assert len(walks) == 4  # every answer was worked out anew
    # Long only together: the headers' lengths add up.
    half = junk[: MAX_REMEMBERED_FORWARDED_FOR_CHARS // 2 + 1]
    for _ in range(2):
        assert check.admitted("10.1.2.3", (half, half, ML)) == ML
    assert len(walks) == 6


def count_walks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """Record every X-Forwarded-For that `SourceCheck` walks (rather than remembers)."""
    walks: list[tuple[str, ...]] = []

    def counting(
        peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[Network]
    ) -> Address | None:
        walks.append(tuple(forwarded_for))
        return client_address(peer, forwarded_for, trusted_proxies)

    monkeypatch.setattr(security, "client_address", counting)
    return walks
