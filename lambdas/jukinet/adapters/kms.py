"""KMS: signing (per message), public keys (cached), data keys (reused across a batch).

Budget: the pipeline must stay under 30 KMS requests per 1,000 notices end to end, so
nothing here is called per notice. ``Signer.sign`` is called once per SQS message;
``PublicKeys.get`` once per sender per hour; ``DataKeys.current`` once per
``DATA_KEY_MAX_AGE_S`` or ``DATA_KEY_MAX_USES`` seals; ``DataKeys.unwrap`` once per
distinct wrapped key per cold start.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import load_der_public_key

from ..domain.message import ALGORITHM, Payload, SignedMessage, payload_digest
from . import aws

DATA_KEY_MAX_AGE_S = 300.0
DATA_KEY_MAX_USES = 100_000
PUBLIC_KEY_TTL_S = 3600.0  # revocation reaches warm functions within an hour; KMS calls stay per sender-hour


class UnknownSender(LookupError):
    """No signing key exists for the claimed sender: the message can never be verified."""


@dataclass
class Signer:
    key_id: str
    sender: str

    def sign(self, payload: Payload) -> SignedMessage:
        data = payload.to_bytes()
        response = aws.client("kms").sign(
            KeyId=self.key_id, Message=payload_digest(data), MessageType="RAW", SigningAlgorithm=ALGORITHM,
        )
        return SignedMessage(sender=self.sender, key_id=self.key_id, payload=data, signature=response["Signature"])


class PublicKeys:
    """Public keys of senders, by alias ``<prefix><sender code>``, cached for
    ``PUBLIC_KEY_TTL_S``: a key that operators disable or re-point stops being trusted by warm
    functions within that time."""

    def __init__(self, alias_prefix: str) -> None:
        self.alias_prefix = alias_prefix
        self._cache: dict[str, tuple[float, PublicKeyTypes]] = {}
        self._lock = threading.Lock()

    def get(self, sender: str) -> PublicKeyTypes:
        cached = self._cache.get(sender)
        if cached is not None and time.monotonic() - cached[0] < PUBLIC_KEY_TTL_S:
            return cached[1]
        try:
            response = aws.client("kms").get_public_key(KeyId=self.alias_prefix + sender)
        except Exception as exc:
            if aws.error_code(exc) in ("NotFoundException", "InvalidArnException", "DisabledException"):
                raise UnknownSender(f"no signing key for sender {sender}") from exc
            raise
        if response.get("KeyUsage") != "SIGN_VERIFY" or ALGORITHM not in response.get("SigningAlgorithms", []):
            raise UnknownSender(f"key for sender {sender} is not an {ALGORITHM} signing key")
        key = load_der_public_key(response["PublicKey"])
        with self._lock:
            self._cache[sender] = (time.monotonic(), key)
        return key


@dataclass
class _DataKey:
    plaintext: bytes
    wrapped: bytes
    created: float
    uses: int = 0


class DataKeys:
    """Envelope-encryption data keys from one KMS key, reused across many records."""

    def __init__(self, key_id: str, context: dict[str, str], cache_size: int = 256) -> None:
        """``cache_size``: unwrapped data keys kept (~250 bytes each). Writers meet few distinct
        keys; a reader across the whole table (the provision functions) meets every key the
        writers ever made — one per writer instance per ``DATA_KEY_MAX_AGE_S`` — and needs many
        to avoid a KMS Decrypt per record."""
        self.key_id = key_id
        self.context = context
        self.cache_size = cache_size
        self._current: _DataKey | None = None
        self._unwrapped: OrderedDict[bytes, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def current(self, uses: int = 1) -> tuple[bytes, bytes]:
        """(plaintext key, wrapped key) for sealing ``uses`` more records."""
        with self._lock:
            now = time.monotonic()
            dk = self._current
            if dk is None or now - dk.created > DATA_KEY_MAX_AGE_S or dk.uses + uses > DATA_KEY_MAX_USES:
                response = aws.client("kms").generate_data_key(
                    KeyId=self.key_id, KeySpec="AES_256", EncryptionContext=self.context,
                )
                dk = _DataKey(response["Plaintext"], response["CiphertextBlob"], now)
                self._current = dk
                self._remember(dk.wrapped, dk.plaintext)
            dk.uses += uses
            return dk.plaintext, dk.wrapped

    def unwrap(self, wrapped: bytes) -> bytes:
        cached = self._unwrapped.get(wrapped)
        if cached is not None:
            with contextlib.suppress(KeyError):  # evicted meanwhile by another thread: still valid
                self._unwrapped.move_to_end(wrapped)  # least recently used goes first
            return cached
        response = aws.client("kms").decrypt(
            CiphertextBlob=wrapped, KeyId=self.key_id, EncryptionContext=self.context,
        )
        with self._lock:
            self._remember(wrapped, response["Plaintext"])
        return response["Plaintext"]

    def _remember(self, wrapped: bytes, plaintext: bytes) -> None:
        self._unwrapped[wrapped] = plaintext
        while len(self._unwrapped) > self.cache_size:
            self._unwrapped.popitem(last=False)
