import pytest
from pydantic import SecretStr

from peepers_auth.crypto import TokenCipher, TokenDecryptionFailed
from peepers_auth.models import SealedTokens
from peepers_common.errors import ConfigurationError

ACCESS = "APP_USR-5503910054141466-010101-0123456789abcdef0123456789abcdef-3000000001"
REFRESH = "TG-0123456789abcdef01234567-3000000001"


def _tokens(seller_id: int = 3000000001) -> SealedTokens:
    return SealedTokens(
        seller_id=seller_id, access_token=SecretStr(ACCESS), refresh_token=SecretStr(REFRESH)
    )


def _key() -> SecretStr:
    return SecretStr(TokenCipher.generate_key())


def test_sealed_tokens_open_to_the_same_tokens_and_show_none_of_them() -> None:
    cipher = TokenCipher([_key()])
    blob = cipher.seal(_tokens())
    assert ACCESS.encode() not in blob
    assert REFRESH.encode() not in blob
    opened = cipher.open(blob, seller_id=3000000001)
    assert opened.access_token.get_secret_value() == ACCESS
    assert opened.refresh_token.get_secret_value() == REFRESH


def test_an_old_key_still_opens_records_after_a_new_key_is_prepended() -> None:
    old, new = _key(), _key()
    blob = TokenCipher([old]).seal(_tokens())
    rotated_cipher = TokenCipher([new, old])
    assert rotated_cipher.needs_rotation(blob)
    assert rotated_cipher.open(blob, seller_id=3000000001).access_token.get_secret_value() == ACCESS


def test_rotation_reseals_with_the_new_key_so_the_old_key_can_be_dropped() -> None:
    old, new = _key(), _key()
    blob = TokenCipher([old]).seal(_tokens())
    resealed = TokenCipher([new, old]).rotate(blob)
    assert not TokenCipher([new, old]).needs_rotation(resealed)
    assert (
        TokenCipher([new]).open(resealed, seller_id=3000000001).refresh_token.get_secret_value()
        == REFRESH
    )
    with pytest.raises(TokenDecryptionFailed):
        TokenCipher([old]).open(resealed, seller_id=3000000001)


def test_a_record_copied_onto_another_seller_does_not_open_as_theirs() -> None:
    cipher = TokenCipher([_key()])
    blob = cipher.seal(_tokens(seller_id=1))
    with pytest.raises(TokenDecryptionFailed, match="another seller"):
        cipher.open(blob, seller_id=2)


def test_a_tampered_record_does_not_open() -> None:
    cipher = TokenCipher([_key()])
    blob = bytearray(cipher.seal(_tokens()))
    blob[40] ^= 1
    with pytest.raises(TokenDecryptionFailed):
        cipher.open(bytes(blob), seller_id=3000000001)


@pytest.mark.parametrize("keys", [[], [SecretStr("not-a-fernet-key")]])
def test_missing_or_malformed_keys_are_a_configuration_error(keys: list[SecretStr]) -> None:
    with pytest.raises(ConfigurationError, match="AUTH_TOKEN_KEYS"):
        TokenCipher(keys)
