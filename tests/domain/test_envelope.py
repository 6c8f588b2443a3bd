"""Field-level envelope encryption: sealing, opening, and refusing anything altered."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jukinet.domain import envelope
from jukinet.domain.envelope import OVERHEAD, SealedDataError, Sealer
from jukinet.domain.errors import ValidationError

from .strategies import identity_facts

KEY = bytes(range(32))
OTHER_KEY = os.urandom(32)
AAD = b"24727059608|202011-000000000001"


@given(plaintext=st.binary(max_size=2000), aad=st.binary(max_size=64))
def test_sealed_value_opens_to_the_plaintext(plaintext, aad):
    blob = envelope.seal(KEY, plaintext, aad)
    assert len(blob) == len(plaintext) + OVERHEAD
    assert blob[0] == envelope.VERSION
    assert envelope.open_sealed(KEY, blob, aad) == plaintext


def test_sealing_twice_gives_different_ciphertexts():
    assert envelope.seal(KEY, b"same", AAD) != envelope.seal(KEY, b"same", AAD)


@given(facts=identity_facts())
def test_identity_facts_round_trip_through_a_sealer(facts):
    sealer = Sealer(KEY)
    blob = sealer.seal_facts(facts, AAD)
    assert sealer.open_facts(blob, AAD) == facts
    assert envelope.open_facts(KEY, envelope.seal_facts(KEY, facts, AAD), AAD) == facts


@given(facts=identity_facts())
def test_sealed_facts_hide_name_and_address(facts):
    blob = Sealer(KEY).seal_facts(facts, AAD)
    for secret in (facts.name.kana, facts.address, facts.resident_code.value):
        assert secret.encode() not in blob


@given(plaintext=st.binary(min_size=1, max_size=200), data=st.data())
def test_any_flipped_bit_is_detected(plaintext, data):
    blob = bytearray(envelope.seal(KEY, plaintext, AAD))
    bit = data.draw(st.integers(0, len(blob) * 8 - 1))
    blob[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(SealedDataError) as exc:
        envelope.open_sealed(KEY, bytes(blob), AAD)
    assert exc.value.rule in ("integrity", "version")


def test_ciphertext_moved_to_another_resident_or_notice_does_not_open():
    blob = envelope.seal(KEY, b'{"name":"x"}', AAD)
    for other_aad in (b"50000000016|202011-000000000001", b"24727059608|202011-000000000002", b""):
        with pytest.raises(SealedDataError) as exc:
            envelope.open_sealed(KEY, blob, other_aad)
        assert exc.value.rule == "integrity"


def test_ciphertext_under_another_data_key_does_not_open():
    blob = envelope.seal(KEY, b"facts", AAD)
    with pytest.raises(SealedDataError) as exc:
        envelope.open_sealed(OTHER_KEY, blob, AAD)
    assert (exc.value.field, exc.value.rule) == ("sealed", "integrity")


@given(cut=st.integers(0, OVERHEAD - 1))
def test_truncated_value_is_rejected_as_malformed(cut):
    blob = envelope.seal(KEY, b"", AAD)
    with pytest.raises(SealedDataError) as exc:
        envelope.open_sealed(KEY, blob[:cut], AAD)
    assert exc.value.rule == "format"


def test_unknown_version_is_rejected_before_decrypting():
    blob = envelope.seal(KEY, b"facts", AAD)
    with pytest.raises(SealedDataError) as exc:
        envelope.open_sealed(KEY, b"\x02" + blob[1:], AAD)
    assert exc.value.rule == "version"


def test_sealed_data_error_is_a_domain_validation_error():
    with pytest.raises(ValidationError):
        envelope.open_sealed(KEY, b"\x01" + bytes(40), AAD)


def test_sealed_non_json_is_rejected_when_opened_as_facts():
    blob = envelope.seal(KEY, b"\xff not json", AAD)
    with pytest.raises(SealedDataError) as exc:
        envelope.open_facts(KEY, blob, AAD)
    assert exc.value.rule == "format"


@pytest.mark.parametrize("key", [b"", bytes(16), bytes(24), bytes(33), "k" * 32])
def test_only_a_256_bit_data_key_is_accepted(key):
    with pytest.raises(ValueError):
        Sealer(key)  # type: ignore[arg-type]


def test_sealer_repr_shows_no_key_material():
    assert KEY.hex() not in repr(Sealer(KEY)) and "Sealer" in repr(Sealer(KEY))
