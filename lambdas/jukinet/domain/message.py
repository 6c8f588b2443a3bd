"""The signed message that carries update notices between tiers.

One SQS message carries many notices (a *batch*) and one signature: the sender has KMS sign
the 32-byte SHA-256 digest of the compressed payload as a RAW message (ECDSA_SHA_256, so the
curve signs SHA-256 of that digest); the receiver verifies with the sender's public key,
fetched once and cached. RAW-over-digest rather than MessageType=DIGEST because KMS's RAW
limit is 4 KiB (payloads are up to ~240 KiB) and the embedded AWS (moto) ignores DIGEST —
this form verifies identically on both. Signing per
message, not per notice, keeps KMS requests far below one per notice.

Wire form (the SQS message body), JSON::

    {"v": 1, "sender": "202011", "alg": "ECDSA_SHA_256", "key": "<key id, informational>",
     "payload": "<base64 of gzip(JSON)>", "sig": "<base64 DER signature>"}

The payload JSON is ``{"sender": ..., "created": ..., "count": n, "notices": [...]}``. The
receiver trusts only what the signature covers (the payload); ``key`` is never used to pick
the verification key — that is derived from the claimed ``sender``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import gzip
import hashlib
import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from .codes import LocalGovernmentCode
from .errors import ValidationError
from .notice import UpdateNotice

ENVELOPE_VERSION = 1
ALGORITHM = "ECDSA_SHA_256"
# SQS accepts 256 KiB per message (262,144 bytes). gzip never grows JSON by more than a few
# bytes and base64 adds a third, so 180,000 bytes of uncompressed JSON always fits.
MAX_PAYLOAD_JSON_BYTES = 180_000
MAX_NOTICES_PER_MESSAGE = 1_000
# A payload never expands beyond MAX_PAYLOAD_JSON_BYTES; refuse to inflate far more than
# that (a gzip bomb in an unverified message must not exhaust the function's memory).
MAX_INFLATED_BYTES = 4 * MAX_PAYLOAD_JSON_BYTES


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Payload:
    sender: str
    created: str
    notices: list[dict]

    def to_bytes(self) -> bytes:
        body = {"sender": self.sender, "created": self.created, "count": len(self.notices), "notices": self.notices}
        return gzip.compress(_dumps(body), compresslevel=6, mtime=0)

    @classmethod
    def from_bytes(cls, data: bytes) -> Payload:
        try:
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip container
            text = inflater.decompress(data, MAX_INFLATED_BYTES)
            if inflater.unconsumed_tail:
                raise ValidationError("payload", "size", f"payload inflates beyond {MAX_INFLATED_BYTES} bytes")
            body = json.loads(text)
        except (zlib.error, ValueError) as exc:
            if isinstance(exc, ValidationError):
                raise
            raise ValidationError("payload", "format", f"payload is not gzip-compressed JSON ({exc})") from None
        if not isinstance(body, dict) or not isinstance(body.get("notices"), list):
            raise ValidationError("payload.notices", "format", "payload must carry a list of notices")
        if body.get("count") != len(body["notices"]):
            raise ValidationError("payload.count", "consistency", "count does not match the number of notices")
        return cls(sender=str(body.get("sender")), created=str(body.get("created")), notices=body["notices"])


@dataclass(frozen=True, slots=True)
class SignedMessage:
    sender: str
    key_id: str
    payload: bytes
    signature: bytes

    def to_body(self) -> str:
        return json.dumps({
            "v": ENVELOPE_VERSION,
            "sender": self.sender,
            "alg": ALGORITHM,
            "key": self.key_id,
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "sig": base64.b64encode(self.signature).decode("ascii"),
        }, separators=(",", ":"))

    @classmethod
    def from_body(cls, body: str) -> SignedMessage:
        try:
            raw = json.loads(body)
        except ValueError:
            raise ValidationError("envelope", "json", "message body is not JSON") from None
        if not isinstance(raw, dict):
            raise ValidationError("envelope", "format", "message body must be a JSON object")
        if raw.get("v") != ENVELOPE_VERSION:
            raise ValidationError("envelope.v", "version", f"envelope version must be {ENVELOPE_VERSION}")
        if raw.get("alg") != ALGORITHM:
            raise ValidationError("envelope.alg", "enum", f"signature algorithm must be {ALGORITHM}")
        sender = LocalGovernmentCode.parse(raw.get("sender"), "envelope.sender").value
        try:
            payload = base64.b64decode(raw.get("payload") or "", validate=True)
            signature = base64.b64decode(raw.get("sig") or "", validate=True)
        except (binascii.Error, TypeError):
            raise ValidationError("envelope.payload", "format", "payload and sig must be base64") from None
        if not payload or not signature:
            raise ValidationError("envelope.sig", "required", "payload and signature are required")
        return cls(sender=sender, key_id=str(raw.get("key", "")), payload=payload, signature=signature)

    @property
    def digest(self) -> bytes:
        return payload_digest(self.payload)


def payload_digest(payload: bytes) -> bytes:
    return hashlib.sha256(payload).digest()


def verify_signature(public_key: PublicKeyTypes, message: SignedMessage) -> bool:
    """Verify a KMS ECDSA_SHA_256 signature (DER) over the payload digest, with no KMS call."""
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return False
    try:
        public_key.verify(message.signature, message.digest, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def pack(notices: Iterable[UpdateNotice], *, sender: str, created: dt.datetime) -> Iterator[Payload]:
    """Group notices into payloads that each fit one SQS message."""
    created_text = created.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    batch: list[dict] = []
    size = 0
    for notice in notices:
        item = notice.to_dict()
        item_size = len(_dumps(item)) + 1
        if batch and (size + item_size > MAX_PAYLOAD_JSON_BYTES or len(batch) >= MAX_NOTICES_PER_MESSAGE):
            yield Payload(sender, created_text, batch)
            batch, size = [], 0
        batch.append(item)
        size += item_size
    if batch:
        yield Payload(sender, created_text, batch)
