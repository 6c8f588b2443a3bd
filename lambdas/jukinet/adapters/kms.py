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
from typing import Protocol

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
        return self.sign_bytes(payload.to_bytes())

    def sign_bytes(self, data: bytes) -> SignedMessage:
        """Sign any payload's bytes (the notices' gzip payload, or a channel envelope)."""
        response = aws.client("kms").sign(
            KeyId=self.key_id, Message=payload_digest(data), MessageType="RAW", SigningAlgorithm=ALGORITHM,
        )
        return SignedMessage(sender=self.sender, key_id=self.key_id, payload=data, signature=response["Signature"])


@dataclass(frozen=True)
class SenderKey:
    """A sender's public key and the KMS key it belongs to (recorded with what it verified)."""

    arn: str
    public_key: PublicKeyTypes


class KeyPins(Protocol):
    """Where a receiver keeps the key each sender is pinned to (the tier's table)."""

    def pinned_key(self, sender: str) -> str | None: ...

    def pin_key(self, sender: str, key_arn: str) -> str:
        """Record ``key_arn`` unless a pin exists; return the pin that holds."""
        ...


class TableKeyPins:
    """``KeyPins`` kept in a DynamoDB table with ``pk``/``sk`` keys: the item
    ``META``/``sender-key#<code>`` holds the pinned key ARN (a conditional put: the first pin
    wins across function instances). The identity tables and the channel's table use it."""

    table_name: str

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    def pinned_key(self, sender: str) -> str | None:
        item = aws.client("dynamodb").get_item(
            TableName=self.table_name, Key={"pk": {"S": "META"}, "sk": {"S": f"sender-key#{sender}"}},
            ConsistentRead=True).get("Item")
        return None if item is None else item["key_arn"]["S"]

    def pin_key(self, sender: str, key_arn: str) -> str:
        key = {"pk": {"S": "META"}, "sk": {"S": f"sender-key#{sender}"}}
        try:
            aws.client("dynamodb").put_item(TableName=self.table_name, Item={**key, "key_arn": {"S": key_arn}},
                                            ConditionExpression="attribute_not_exists(pk)")
        except Exception as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise
            return self.pinned_key(sender) or key_arn
        return key_arn


class PublicKeys:
    """Public keys of senders, cached for ``PUBLIC_KEY_TTL_S`` (a disabled key stops being
    trusted by warm functions within that time).

    A sender's key is found by alias ``<prefix><sender code>`` only the first time: its ARN is
    then pinned (``pins``, in the receiving tier's table) and from then on fetched by that ARN,
    so re-pointing the alias (``UpdateAlias``) or creating a new key under it changes nothing.
    Rotating a sender's key is a deliberate act: remove the pin (docs/operations.md)."""

    def __init__(self, alias_prefix: str, pins: KeyPins | None = None) -> None:
        self.alias_prefix = alias_prefix
        self.pins = pins
        self._cache: dict[str, tuple[float, SenderKey]] = {}
        self._lock = threading.Lock()

    def get(self, sender: str) -> SenderKey:
        cached = self._cache.get(sender)
        if cached is not None and time.monotonic() - cached[0] < PUBLIC_KEY_TTL_S:
            return cached[1]
        pinned = self.pins.pinned_key(sender) if self.pins is not None else None
        response = self._public_key(sender, pinned or self.alias_prefix + sender)
        arn = str(response.get("KeyId", ""))
        if pinned is None and self.pins is not None:
            pinned = self.pins.pin_key(sender, arn)
            if pinned != arn:  # another instance pinned a different key first: trust only the pin
                response = self._public_key(sender, pinned)
                arn = str(response.get("KeyId", ""))
        key = SenderKey(arn, load_der_public_key(response["PublicKey"]))
        with self._lock:
            self._cache[sender] = (time.monotonic(), key)
        return key

    @staticmethod
    def _public_key(sender: str, key_id: str) -> dict:
        try:
            response = aws.client("kms").get_public_key(KeyId=key_id)
        except Exception as exc:
            if aws.error_code(exc) in ("NotFoundException", "InvalidArnException", "DisabledException"):
                raise UnknownSender(f"no signing key for sender {sender}") from exc
            raise
        if response.get("KeyUsage") != "SIGN_VERIFY" or ALGORITHM not in response.get("SigningAlgorithms", []):
            raise UnknownSender(f"key for sender {sender} is not an {ALGORITHM} signing key")
        return response


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
