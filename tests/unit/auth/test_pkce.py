import re

import pytest

from peepers_auth.pkce import Pkce, code_challenge, code_verifier

# RFC 7636 Appendix B.
RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_s256_challenge_matches_the_rfc_7636_appendix_b_vector() -> None:
    assert code_challenge(RFC_VERIFIER) == RFC_CHALLENGE


def test_a_verifier_is_43_to_128_unreserved_characters() -> None:
    verifier = code_verifier()
    assert re.fullmatch(r"[A-Za-z0-9\-._~]{43,128}", verifier)


def test_verifiers_never_repeat() -> None:
    assert len({code_verifier() for _ in range(1000)}) == 1000


def test_a_new_pkce_pair_uses_s256_over_its_own_verifier() -> None:
    pkce = Pkce.new()
    assert pkce.method == "S256"
    assert pkce.challenge == code_challenge(pkce.verifier)
    assert "=" not in pkce.challenge


@pytest.mark.parametrize("verifier", ["short", "x" * 129, "a" * 42 + " ", "ä" * 43])
def test_a_verifier_outside_the_rfc_grammar_is_refused(verifier: str) -> None:
    with pytest.raises(ValueError, match="RFC 7636"):
        code_challenge(verifier)
