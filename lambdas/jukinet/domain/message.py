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

**Lineage.** A prefecture does not re-serialise what it forwards: its payload carries
``"origins"`` instead of notices — each municipality's signed payload verbatim (``Origin``:
sender, key, payload, signature) and the indices of its notices the prefecture dead-lettered
(``skip``). The national tier verifies the prefecture's signature *and* each municipality's,
so a prefecture cannot make up a notice for one of its municipalities.

**Bounds.** Everything here is parsed from untrusted bytes: a body is at most
``MAX_BODY_BYTES``, inflated JSON at most ``MAX_INFLATED_BYTES``, JSON nesting at most
``MAX_JSON_DEPTH`` (checked by a scan *before* parsing, so a deeply nested document is a
``ValidationError``, never a ``RecursionError``), at most ``MAX_NOTICES_PER_MESSAGE`` notices
and ``MAX_ORIGINS_PER_MESSAGE`` origins.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import gzip
import hashlib
import json
import re
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
MAX_BODY_BYTES = 262_144  # SQS's own limit: anything longer did not come through SQS
# A payload nests payload → notices → notice → facts → name (5); an origin adds two levels.
MAX_JSON_DEPTH = 16
# A prefecture packs the origins of one SQS batch (at most 10 records) into few messages; a
# small origin still costs ~200 bytes, so 1,000 keeps every message within SQS's limit.
MAX_ORIGINS_PER_MESSAGE = 1_000
# Municipality payloads (compressed) one forwarded message carries: base64 inside gzip inside
# base64 comes out ~1.36 times this, under SQS's 262,144 bytes. A bigger origin goes alone.
MAX_FORWARD_ORIGIN_BYTES = 180_000

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKETS = re.compile(r"[\[\]{}]")


def load_json(text: bytes | str, *, field: str, max_bytes: int) -> object:
    """``json.loads`` with every bound checked first: size, then nesting depth (a scan that
    skips strings), so no input makes the parser recurse; every failure is a
    ``ValidationError`` naming ``field`` and the rule (``size``, ``depth``, ``json``)."""
    if len(text) > max_bytes:
        raise ValidationError(field, "size", f"{len(text)} bytes is more than {max_bytes}")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError(field, "json", "not UTF-8 text") from None
    depth = deepest = 0
    for bracket in _JSON_BRACKETS.findall(_JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > MAX_JSON_DEPTH:
                raise ValidationError(field, "depth", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError cannot happen after the scan; kept as a guard
        raise ValidationError(field, "json", "not JSON") from None


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Payload:
    sender: str
    created: str
    notices: list[dict]
    origins: tuple[Origin, ...] = ()

    def to_bytes(self) -> bytes:
        body: dict = {"sender": self.sender, "created": self.created, "count": len(self.notices),
                      "notices": self.notices}
        if self.origins:
            body["origins"] = [o.to_dict() for o in self.origins]
        return gzip.compress(_dumps(body), compresslevel=6, mtime=0)

    @classmethod
    def from_bytes(cls, data: bytes) -> Payload:
        try:
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip container
            text = inflater.decompress(data, MAX_INFLATED_BYTES)
            if inflater.unconsumed_tail:
                raise ValidationError("payload", "size", f"payload inflates beyond {MAX_INFLATED_BYTES} bytes")
        except zlib.error as exc:
            raise ValidationError("payload", "format", f"payload is not gzip-compressed JSON ({exc})") from None
        body = load_json(text, field="payload", max_bytes=MAX_INFLATED_BYTES)
        if not isinstance(body, dict) or not isinstance(body.get("notices"), list):
            raise ValidationError("payload.notices", "format", "payload must carry a list of notices")
        if body.get("count") != len(body["notices"]):
            raise ValidationError("payload.count", "consistency", "count does not match the number of notices")
        if len(body["notices"]) > MAX_NOTICES_PER_MESSAGE:
            raise ValidationError("payload.notices", "count", f"more than {MAX_NOTICES_PER_MESSAGE} notices")
        raw_origins = body.get("origins", [])
        if not isinstance(raw_origins, list):
            raise ValidationError("payload.origins", "format", "origins must be a list")
        if len(raw_origins) > MAX_ORIGINS_PER_MESSAGE:
            raise ValidationError("payload.origins", "count", f"more than {MAX_ORIGINS_PER_MESSAGE} origins")
        origins = tuple(Origin.from_dict(o, f"payload.origins[{i}]") for i, o in enumerate(raw_origins))
        return cls(sender=str(body.get("sender")), created=str(body.get("created")), notices=body["notices"],
                   origins=origins)


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
        raw = load_json(body, field="envelope", max_bytes=MAX_BODY_BYTES)
        if not isinstance(raw, dict):
            raise ValidationError("envelope", "format", "message body must be a JSON object")
        if raw.get("v") != ENVELOPE_VERSION:
            raise ValidationError("envelope.v", "version", f"envelope version must be {ENVELOPE_VERSION}")
        if raw.get("alg") != ALGORITHM:
            raise ValidationError("envelope.alg", "enum", f"signature algorithm must be {ALGORITHM}")
        return cls._signed(raw, "envelope")

    @classmethod
    def _signed(cls, raw: dict, where: str) -> SignedMessage:
        sender = LocalGovernmentCode.parse(raw.get("sender"), f"{where}.sender").value
        try:
            payload = base64.b64decode(raw.get("payload") or "", validate=True)
            signature = base64.b64decode(raw.get("sig") or "", validate=True)
        except (binascii.Error, TypeError):
            raise ValidationError(f"{where}.payload", "format", "payload and sig must be base64") from None
        if not payload or not signature:
            raise ValidationError(f"{where}.sig", "required", "payload and signature are required")
        return cls(sender=sender, key_id=str(raw.get("key", "")), payload=payload, signature=signature)

    @property
    def digest(self) -> bytes:
        return payload_digest(self.payload)


@dataclass(frozen=True, slots=True)
class Origin:
    """A municipality's signed payload as the prefecture received it, carried verbatim to the
    national tier; ``skip``: indices of its notices the prefecture dead-lettered (not forwarded)."""

    message: SignedMessage
    skip: tuple[int, ...] = ()

    def to_dict(self) -> dict:
        return {"sender": self.message.sender, "key": self.message.key_id,
                "payload": base64.b64encode(self.message.payload).decode("ascii"),
                "sig": base64.b64encode(self.message.signature).decode("ascii"), "skip": list(self.skip)}

    @classmethod
    def from_dict(cls, raw: object, where: str) -> Origin:
        if not isinstance(raw, dict):
            raise ValidationError(where, "format", "an origin must be an object")
        skip = raw.get("skip", [])
        if (not isinstance(skip, list) or len(skip) > MAX_NOTICES_PER_MESSAGE
                or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in skip)):
            raise ValidationError(f"{where}.skip", "format", "skip must be a list of notice indices")
        return cls(SignedMessage._signed(raw, where), tuple(sorted(set(skip))))


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


def pack_origins(origins: Iterable[Origin], *, sender: str, created: dt.datetime) -> Iterator[Payload]:
    """Group origins into forwarded payloads that each fit one SQS message."""
    created_text = created.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    batch: list[Origin] = []
    size = 0
    for origin in origins:
        item_size = len(origin.message.payload)
        if batch and (size + item_size > MAX_FORWARD_ORIGIN_BYTES or len(batch) >= MAX_ORIGINS_PER_MESSAGE):
            yield Payload(sender, created_text, [], tuple(batch))
            batch, size = [], 0
        batch.append(origin)
        size += item_size
    if batch:
        yield Payload(sender, created_text, [], tuple(batch))
