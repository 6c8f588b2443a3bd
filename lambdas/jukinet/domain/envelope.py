"""Field-level envelope encryption of identity facts, given a data key already obtained.

The KMS side (``GenerateDataKey``/``Decrypt``, key reuse limits) lives in
``adapters.kms``; this module only seals and opens with a plaintext AES-256 data key, so it
is tested without AWS.

Sealed form (bytes)::

    version (1 byte, 0x01) | nonce (12 random bytes) | AES-256-GCM ciphertext + 16-byte tag

The GCM associated data is the version byte followed by the caller's AAD. The caller's AAD
is the resident code and the notice id, so a ciphertext copied onto another item (another
resident, or another notice of the same resident) fails to open; binding the version byte
means it cannot be altered either. Any failure to open — flipped bit, wrong AAD, wrong key,
truncation, unknown version — is a ``SealedDataError``.

Random 96-bit nonces are safe for up to 2³² seals under one data key (NIST SP 800-38D
§8.3); ``adapters.kms`` retires a data key after far fewer uses.
"""

from __future__ import annotations

import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import ValidationError
from .facts import IdentityFacts

VERSION = 1
_HEADER = bytes([VERSION])
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
OVERHEAD = len(_HEADER) + NONCE_BYTES + TAG_BYTES


class SealedDataError(ValidationError):
    """A sealed value that cannot be opened: tampered, moved, truncated or under another key.

    A ``ValidationError`` (field ``sealed``) so that boundaries that already handle the
    domain's one error type handle this too; ``rule`` is ``integrity``, ``version`` or
    ``format``.
    """

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__("sealed", rule, detail)


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class Sealer:
    """Seals and opens values under one data key; build one per data key and reuse it."""

    __slots__ = ("_aead",)

    def __init__(self, data_key: bytes) -> None:
        if not isinstance(data_key, bytes | bytearray) or len(data_key) != KEY_BYTES:
            raise ValueError(f"the data key must be {KEY_BYTES} bytes (AES-256)")
        self._aead = AESGCM(bytes(data_key))

    def __repr__(self) -> str:  # never show key material
        return "Sealer(<AES-256-GCM>)"

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return _HEADER + nonce + self._aead.encrypt(nonce, plaintext, _HEADER + aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        if not isinstance(blob, bytes | bytearray) or len(blob) < OVERHEAD:
            raise SealedDataError("format", f"a sealed value is at least {OVERHEAD} bytes")
        if blob[0] != VERSION:
            raise SealedDataError("version", f"unknown sealed-value version {blob[0]}")
        nonce = bytes(blob[1:1 + NONCE_BYTES])
        try:
            return self._aead.decrypt(nonce, bytes(blob[1 + NONCE_BYTES:]), _HEADER + aad)
        except InvalidTag:
            raise SealedDataError(
                "integrity", "sealed value does not open: altered, moved to another item, or another key",
            ) from None

    def seal_facts(self, facts: IdentityFacts, aad: bytes) -> bytes:
        return self.seal(_dumps(facts.to_dict()), aad)

    def open_facts(self, blob: bytes, aad: bytes) -> IdentityFacts:
        plaintext = self.open(blob, aad)
        try:
            raw = json.loads(plaintext)
        except ValueError:
            raise SealedDataError("format", "sealed identity facts are not JSON") from None
        return IdentityFacts.parse(raw)


def seal(data_key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """One-off ``Sealer(data_key).seal``; prefer a ``Sealer`` when sealing many values."""
    return Sealer(data_key).seal(plaintext, aad)


def open_sealed(data_key: bytes, blob: bytes, aad: bytes) -> bytes:
    return Sealer(data_key).open(blob, aad)


def seal_facts(data_key: bytes, facts: IdentityFacts, aad: bytes) -> bytes:
    return Sealer(data_key).seal_facts(facts, aad)


def open_facts(data_key: bytes, blob: bytes, aad: bytes) -> IdentityFacts:
    return Sealer(data_key).open_facts(blob, aad)
