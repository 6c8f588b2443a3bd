"""The resident register card (住民基本台帳カード): its record, lifecycle and authentication rules.

The network holds, per card, exactly what it needs to authenticate it: the serial number,
the resident code, the issuing municipality and the municipality that holds the card now
(``home``; the two differ once a special move-in carries the card over: decision 0027),
the type (A/B, photo flag), validity, the card's **public** key and its status. Nothing
else about the person, and never the PIN (it lives only on the card: :class:`VirtualCard`).

**Lifecycle** (every change is a :class:`CardEvent`, numbered 1, 2, 3 … per card, chained
by digest and signed by the municipality that made it):

======================  =================================  ==========================
event                   allowed from                        gives
======================  =================================  ==========================
``issued``              (no card)                           ``active``
``suspended``           ``active``                          ``suspended``
``resumed``             ``suspended``                       ``active``
``pin_locked``          ``active``, ``suspended``           same status, PIN locked
``pin_reset``           ``active``, ``suspended``           same status, PIN unlocked
``moved``               ``active``, ``suspended``           same status, new ``home``
``revoked``             ``active``, ``suspended``           ``revoked`` (final)
``expired``             ``active``, ``suspended``           ``expired`` (final)
======================  =================================  ==========================

Anything else is refused (``INVALID_TRANSITION``) and changes nothing. ``revoked`` and
``expired`` are final: a card never comes back; the resident gets a new card. Validity runs
out by time as well, whether or not an ``expired`` event was written: :meth:`Card.status_at`.

**Authentication** (:func:`decide_authentication`): a card authenticates only if it is
``active`` at ``now``, its PIN is not locked, and the response answers an unused, unexpired
challenge issued to the very counter presenting it, signed by the card's registered key.
The refusal codes are :class:`CardRefusalCode` (documented in ``docs/card.md``).
"""

from __future__ import annotations

import base64
import calendar
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass, field, replace
from enum import Enum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .codes import LocalGovernmentCode, ResidentCode
from .errors import CodedRefusal, ValidationError
from .notice import JST

VALIDITY_YEARS = 10
CHALLENGE_TTL = dt.timedelta(seconds=120)
MAX_PIN_FAILURES = 3
PIN_PATTERN = re.compile(r"^[0-9]{4}$")
SERIAL_PATTERN = re.compile(r"^[0-9]{6}-[0-9A-F]{16}$")
# scrypt work factor of the PIN hash held on the (virtual) card: about 15 ms a try here, and a
# 4-digit PIN space of 10,000: the card's 3-try lock, not the hash, is what stops guessing.
_SCRYPT = {"n": 2**13, "r": 8, "p": 1}


class CardStatus(Enum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        return self in (CardStatus.REVOKED, CardStatus.EXPIRED)


class CardType(Enum):
    """A: no photo; B: photo (and birth date, sex, address printed on the face)."""

    A = "A"
    B = "B"


class EventKind(Enum):
    ISSUED = "issued"
    SUSPENDED = "suspended"
    RESUMED = "resumed"
    PIN_LOCKED = "pin_locked"
    PIN_RESET = "pin_reset"
    MOVED = "moved"
    REVOKED = "revoked"
    EXPIRED = "expired"


class RevocationReason(Enum):
    """Why a card ends: the resident returned it (返納), or an update notice ended it."""

    RETURNED = "returned"  # 返納
    REISSUED = "reissued"  # a new card was issued; the old one ends
    DEATH = "death"  # 死亡
    DELETED_BY_AUTHORITY = "deleted_by_authority"  # 職権消除
    CODE_CHANGED = "code_changed"  # 住民票コード変更: the card carries the old code


class CardRefusalCode(Enum):
    """Documented error codes of the counter API (docs/card.md), each with its HTTP status.

    *Authentication* refusals are counted per reason and municipality and alarmed in bursts
    (a stolen card tried at many counters). None of them tells the caller more than the code."""

    UNKNOWN_CALLER = "UNKNOWN_CALLER"
    ENDPOINT_NOT_ALLOWED = "ENDPOINT_NOT_ALLOWED"
    NOT_THIS_MUNICIPALITY = "NOT_THIS_MUNICIPALITY"
    RESIDENT_NOT_ACTIVE = "RESIDENT_NOT_ACTIVE"
    PUBLIC_KEY_IN_USE = "PUBLIC_KEY_IN_USE"
    INVALID_REQUEST = "INVALID_REQUEST"
    INVALID_TRANSITION = "INVALID_TRANSITION"
    CARD_NOT_FOUND = "CARD_NOT_FOUND"
    CHALLENGE_NOT_FOUND = "CHALLENGE_NOT_FOUND"
    CHALLENGE_REPLAYED = "CHALLENGE_REPLAYED"
    CHALLENGE_EXPIRED = "CHALLENGE_EXPIRED"
    WRONG_COUNTER = "WRONG_COUNTER"
    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    CARD_SUSPENDED = "CARD_SUSPENDED"
    CARD_REVOKED = "CARD_REVOKED"
    CARD_EXPIRED = "CARD_EXPIRED"
    PIN_LOCKED = "PIN_LOCKED"
    NOT_FOUND = "NOT_FOUND"
    # the wide-area copy (services/wide_area_copy.py, docs/second-phase.md part 3)
    PROOF_NOT_VALID = "PROOF_NOT_VALID"
    COPY_NOT_FOUND = "COPY_NOT_FOUND"
    # the special move-out/move-in (services/special_move.py, docs/second-phase.md part 4)
    SPECIAL_MOVE_NOT_FOUND = "SPECIAL_MOVE_NOT_FOUND"
    # across tiers (services/card_across_tiers.py, decision 0050)
    CARD_MOVED = "CARD_MOVED"
    CARRY_OVER_NOT_AGREED = "CARRY_OVER_NOT_AGREED"

    @property
    def status(self) -> int:
        return _STATUS.get(self, 409)

    @property
    def authentication(self) -> bool:
        """A refused card authentication (counted by reason, alarmed in bursts)."""
        return self in AUTHENTICATION_REFUSALS


_STATUS = {
    CardRefusalCode.UNKNOWN_CALLER: 403, CardRefusalCode.ENDPOINT_NOT_ALLOWED: 403,
    CardRefusalCode.NOT_THIS_MUNICIPALITY: 403, CardRefusalCode.RESIDENT_NOT_ACTIVE: 409,
    CardRefusalCode.PUBLIC_KEY_IN_USE: 409, CardRefusalCode.INVALID_REQUEST: 400,
    CardRefusalCode.INVALID_TRANSITION: 409, CardRefusalCode.CARD_NOT_FOUND: 404,
    CardRefusalCode.NOT_FOUND: 404, CardRefusalCode.PROOF_NOT_VALID: 403, CardRefusalCode.COPY_NOT_FOUND: 404,
    CardRefusalCode.SPECIAL_MOVE_NOT_FOUND: 404,
    CardRefusalCode.CARD_MOVED: 409, CardRefusalCode.CARRY_OVER_NOT_AGREED: 403,
    **{c: 403 for c in (CardRefusalCode.CHALLENGE_NOT_FOUND, CardRefusalCode.CHALLENGE_REPLAYED,
                        CardRefusalCode.CHALLENGE_EXPIRED, CardRefusalCode.WRONG_COUNTER,
                        CardRefusalCode.SIGNATURE_INVALID, CardRefusalCode.CARD_SUSPENDED,
                        CardRefusalCode.CARD_REVOKED, CardRefusalCode.CARD_EXPIRED, CardRefusalCode.PIN_LOCKED)},
}
AUTHENTICATION_REFUSALS = frozenset({
    CardRefusalCode.CARD_NOT_FOUND, CardRefusalCode.CHALLENGE_NOT_FOUND, CardRefusalCode.CHALLENGE_REPLAYED,
    CardRefusalCode.CHALLENGE_EXPIRED, CardRefusalCode.WRONG_COUNTER, CardRefusalCode.SIGNATURE_INVALID,
    CardRefusalCode.CARD_SUSPENDED, CardRefusalCode.CARD_REVOKED, CardRefusalCode.CARD_EXPIRED,
    CardRefusalCode.PIN_LOCKED,
})


class CardRefusal(CodedRefusal):
    """A counter request refused with a documented code; ``field``/``rule`` say what was wrong."""

    code: CardRefusalCode


class CardMoved(CardRefusal):
    """The card was carried over to a municipality of another tier (decision 0027): this tier
    keeps its record up to the ``moved`` event and refuses every change; ``home`` is where it
    is held now (an authentication asked of this tier is routed there)."""

    def __init__(self, home: str) -> None:
        super().__init__(CardRefusalCode.CARD_MOVED, f"the card has moved to {home}, a municipality of another tier: "
                         "it is held there now", field="serial", rule="moved")
        self.home = home


# --- time ---------------------------------------------------------------------------------


def valid_until(now: dt.datetime) -> dt.date:
    """The last day (JST) a card issued at ``now`` is valid: the day before the tenth
    anniversary of the issue day (an issue on 29 February: the anniversary is 1 March)."""
    day = now.astimezone(JST).date()
    year = day.year + VALIDITY_YEARS
    if day.month == 2 and day.day == 29 and not calendar.isleap(year):
        anniversary = dt.date(year, 3, 1)
    else:
        anniversary = day.replace(year=year)
    return anniversary - dt.timedelta(days=1)


def _utc_text(instant: dt.datetime) -> str:
    if instant.tzinfo is None:
        raise ValueError("instants must be timezone-aware")
    return instant.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- keys ---------------------------------------------------------------------------------


def public_key_from_b64(raw: object, field: str = "public_key") -> ec.EllipticCurvePublicKey:
    """A card's public key as base64 DER (SubjectPublicKeyInfo), P-256 only."""
    if not isinstance(raw, str) or not raw:
        raise ValidationError(field, "required", "the card's public key (base64 DER) is required")
    try:
        key = serialization.load_der_public_key(base64.b64decode(raw, validate=True))
    except (ValueError, TypeError):
        raise ValidationError(field, "format", "not a base64 DER SubjectPublicKeyInfo") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValidationError(field, "algorithm", "the card key must be an ECC P-256 key")
    return key


def key_fingerprint(public_key_b64: str) -> str:
    """SHA-256 of the DER public key: two cards may never share it (a cloned key)."""
    return hashlib.sha256(base64.b64decode(public_key_b64)).hexdigest()


def verify_card_signature(public_key_b64: str, message: bytes, signature: bytes) -> bool:
    key = public_key_from_b64(public_key_b64)
    try:
        key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def new_serial(issuer: str, entropy: bytes | None = None) -> str:
    """``<issuer code>-<16 hex>``: the issuer names the card's tier; the rest is random."""
    return f"{issuer}-{(entropy or os.urandom(8)).hex().upper()}"


def parse_serial(raw: object, field: str = "serial") -> str:
    if not isinstance(raw, str) or not SERIAL_PATTERN.match(raw):
        raise ValidationError(field, "format", "a card serial is <6-digit issuer code>-<16 hex digits>")
    LocalGovernmentCode.parse(raw[:6], field)
    return raw


# --- the record and its events ------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    """The network's record of one card (no PIN, no private key, no facts beyond the code)."""

    serial: str
    resident_code: str
    issuer: str
    home: str
    card_type: CardType
    issued_at: dt.datetime
    valid_until: dt.date
    public_key: str  # base64 DER
    status: CardStatus = CardStatus.ACTIVE
    pin_locked: bool = False
    pin_failures: int = 0
    seq: int = 1
    head: str = ""  # digest of the latest event

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.public_key)

    def status_at(self, now: dt.datetime) -> CardStatus:
        """The status at ``now``: validity running out counts even before an ``expired`` event."""
        if self.status.final:
            return self.status
        if now.astimezone(JST).date() > self.valid_until:
            return CardStatus.EXPIRED
        return self.status


@dataclass(frozen=True)
class CardEvent:
    """One change of one card: numbered (``seq``), chained (``previous``), signed by ``actor``'s
    municipality (``signer``/``signature`` over :meth:`digest`)."""

    serial: str
    seq: int
    kind: EventKind
    at: dt.datetime
    municipality: str  # whose counter or notice made the change
    actor: str  # the staff role session, or "notice:<id>" for a change an update notice drove
    previous: str  # digest of event seq-1 ("" for the first)
    details: dict = field(default_factory=dict)
    signer: str = ""
    signature: bytes = b""

    def content(self) -> bytes:
        return json.dumps({
            "v": 1, "serial": self.serial, "seq": self.seq, "kind": self.kind.value, "at": _utc_text(self.at),
            "municipality": self.municipality, "actor": self.actor, "previous": self.previous,
            "details": self.details,
        }, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def digest(self) -> bytes:
        return hashlib.sha256(self.content()).digest()

    @property
    def digest_hex(self) -> str:
        return self.digest().hex()

    def signed(self, signer: str, signature: bytes) -> CardEvent:
        return replace(self, signer=signer, signature=signature)

    def to_dict(self) -> dict:
        return {**json.loads(self.content()), "signer": self.signer,
                "signature": base64.b64encode(self.signature).decode("ascii")}

    @classmethod
    def from_dict(cls, raw: dict) -> CardEvent:
        return cls(serial=raw["serial"], seq=int(raw["seq"]), kind=EventKind(raw["kind"]), at=parse_instant(raw["at"]),
                   municipality=raw["municipality"], actor=raw["actor"], previous=raw["previous"],
                   details=dict(raw.get("details") or {}), signer=raw.get("signer", ""),
                   signature=base64.b64decode(raw.get("signature", "")))


def verify_event(public_key: ec.EllipticCurvePublicKey, event: CardEvent) -> bool:
    """Check an event's signature (KMS ECDSA_SHA_256 over the event's digest as a RAW message,
    the same scheme as the update notices' messages) with its municipality's public key."""
    try:
        public_key.verify(event.signature, event.digest(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


class InvalidTransition(CardRefusal):
    def __init__(self, kind: EventKind, status: CardStatus | None) -> None:
        where = status.value if status else "no card"
        super().__init__(CardRefusalCode.INVALID_TRANSITION, f"a card cannot be {kind.value} from {where}",
                         field="status", rule="lifecycle")


_FROM: dict[EventKind, frozenset[CardStatus | None]] = {
    EventKind.ISSUED: frozenset({None}),
    EventKind.SUSPENDED: frozenset({CardStatus.ACTIVE}),
    EventKind.RESUMED: frozenset({CardStatus.SUSPENDED}),
    **{k: frozenset({CardStatus.ACTIVE, CardStatus.SUSPENDED})
       for k in (EventKind.PIN_LOCKED, EventKind.PIN_RESET, EventKind.MOVED, EventKind.REVOKED, EventKind.EXPIRED)},
}


def allowed(kind: EventKind, status: CardStatus | None) -> bool:
    return status in _FROM[kind]


def apply(card: Card | None, event: CardEvent) -> Card:
    """The card after ``event``; raises :class:`InvalidTransition` (or ``ValidationError`` for a
    broken order or chain) and changes nothing otherwise."""
    status = card.status if card else None
    expected_seq = card.seq + 1 if card else 1
    if event.seq != expected_seq:
        raise ValidationError("seq", "order", f"event {event.seq} of {event.serial} is not the next ({expected_seq})")
    if event.previous != (card.head if card else ""):
        raise ValidationError("previous", "chain", f"event {event.seq} of {event.serial} does not follow the chain")
    if not allowed(event.kind, status):
        raise InvalidTransition(event.kind, status)
    head = event.digest_hex
    if event.kind is EventKind.ISSUED:
        d = event.details
        return Card(serial=event.serial, resident_code=d["resident_code"], issuer=event.municipality,
                    home=event.municipality, card_type=CardType(d["card_type"]), issued_at=event.at,
                    valid_until=dt.date.fromisoformat(d["valid_until"]), public_key=d["public_key"],
                    seq=1, head=head)
    assert card is not None
    base = replace(card, seq=event.seq, head=head)
    match event.kind:
        case EventKind.SUSPENDED:
            return replace(base, status=CardStatus.SUSPENDED)
        case EventKind.RESUMED:
            return replace(base, status=CardStatus.ACTIVE)
        case EventKind.PIN_LOCKED:
            return replace(base, pin_locked=True)
        case EventKind.PIN_RESET:
            return replace(base, pin_locked=False, pin_failures=0)
        case EventKind.MOVED:
            return replace(base, home=event.details["to"])
        case EventKind.REVOKED:
            return replace(base, status=CardStatus.REVOKED)
        case EventKind.EXPIRED:
            return replace(base, status=CardStatus.EXPIRED)
    raise AssertionError(event.kind)  # pragma: no cover


def replay(events: list[CardEvent]) -> Card:
    """The card a log of events gives, in whatever order they arrive: sorted by ``seq``, each
    must follow the one before (no gap, no fork, no altered event). Raises on any break."""
    card: Card | None = None
    for event in sorted(events, key=lambda e: e.seq):
        card = apply(card, event)
    if card is None:
        raise ValidationError("events", "required", "a card's log starts with its issue")
    return card


def next_event(card: Card | None, kind: EventKind, *, serial: str, at: dt.datetime, municipality: str,
               actor: str, details: dict | None = None) -> CardEvent:
    """The unsigned event that would make ``kind`` happen to ``card`` now (checked: refused if the
    lifecycle does not allow it)."""
    status = card.status if card else None
    if not allowed(kind, status):
        raise InvalidTransition(kind, status)
    return CardEvent(serial=serial, seq=(card.seq + 1) if card else 1, kind=kind, at=at, municipality=municipality,
                     actor=actor, previous=card.head if card else "", details=details or {})


@dataclass(frozen=True, slots=True)
class CardApplication:
    """An application for a card (交付申請) at the counter, as the API validated it (types, lengths,
    the card type): the service checks the rest (the check digit, the key, the register)."""

    resident_code: str
    card_type: CardType
    public_key: str  # base64 DER


@dataclass(frozen=True, slots=True)
class PinFailures:
    """A wrong PIN counted: the card's failures so far, and whether that locked it."""

    failures: int

    @property
    def locked(self) -> bool:
        return self.failures >= MAX_PIN_FAILURES


def issue_details(resident_code: str, card_type: CardType, public_key_b64: str, now: dt.datetime) -> dict:
    ResidentCode.parse(resident_code)
    public_key_from_b64(public_key_b64)
    return {"resident_code": resident_code, "card_type": card_type.value,
            "valid_until": valid_until(now).isoformat(), "public_key": public_key_b64}


# --- challenges ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Counter:
    """A counter terminal's identity as the API established it: its municipality and the staff
    role session (SigV4) calling from it."""

    municipality: str
    principal: str


@dataclass(frozen=True)
class Challenge:
    """A one-time challenge for one card, bound to the counter that asked for it."""

    challenge_id: str
    serial: str
    nonce: str  # hex
    municipality: str
    principal: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    used: bool = False

    def message(self) -> bytes:
        """What the card signs: everything the challenge binds."""
        return json.dumps({"v": 1, "purpose": "jukinet-card-authentication", "challenge_id": self.challenge_id,
                           "serial": self.serial, "nonce": self.nonce, "municipality": self.municipality,
                           "expires_at": _utc_text(self.expires_at)},
                          sort_keys=True, separators=(",", ":")).encode()


def new_challenge(serial: str, counter: Counter, now: dt.datetime) -> Challenge:
    return Challenge(challenge_id=secrets.token_hex(16), serial=serial, nonce=secrets.token_hex(32),
                     municipality=counter.municipality, principal=counter.principal, issued_at=now,
                     expires_at=now + CHALLENGE_TTL)


def card_refusal(card: Card | None, now: dt.datetime) -> CardRefusal | None:
    """Why ``card`` cannot authenticate now, or ``None``."""
    if card is None:
        return CardRefusal(CardRefusalCode.CARD_NOT_FOUND, "no such card", field="serial", rule="registered")
    status = card.status_at(now)
    if status is CardStatus.REVOKED:
        return CardRefusal(CardRefusalCode.CARD_REVOKED, "the card is revoked", field="serial", rule="status")
    if status is CardStatus.EXPIRED:
        return CardRefusal(CardRefusalCode.CARD_EXPIRED, "the card's validity has ended", field="serial",
                           rule="validity")
    if status is CardStatus.SUSPENDED:
        return CardRefusal(CardRefusalCode.CARD_SUSPENDED, "the card is suspended", field="serial", rule="status")
    if card.pin_locked:
        return CardRefusal(CardRefusalCode.PIN_LOCKED, "the card's PIN is locked: reset it at the counter",
                           field="serial", rule="pin")
    return None


def decide_authentication(challenge: Challenge | None, card: Card | None, counter: Counter, signature: bytes,
                          now: dt.datetime) -> Card:
    """Accept a card's signed answer to ``challenge`` presented by ``counter`` at ``now``, or refuse.

    Order: the challenge (exists, unused, not expired, this counter), then the card's status,
    then the signature — a suspended card is refused whatever it signs."""
    if challenge is None:
        raise CardRefusal(CardRefusalCode.CHALLENGE_NOT_FOUND, "no such challenge", field="challenge_id",
                          rule="issued")
    if challenge.used:
        raise CardRefusal(CardRefusalCode.CHALLENGE_REPLAYED, "the challenge was already answered",
                          field="challenge_id", rule="one_time")
    if now >= challenge.expires_at:
        raise CardRefusal(CardRefusalCode.CHALLENGE_EXPIRED, "the challenge has expired", field="challenge_id",
                          rule="expiry")
    if (challenge.municipality, challenge.principal) != (counter.municipality, counter.principal):
        raise CardRefusal(CardRefusalCode.WRONG_COUNTER, "the challenge was issued to another counter",
                          field="challenge_id", rule="bound_to_counter")
    refusal = card_refusal(card, now)
    if refusal is not None:
        raise refusal
    assert card is not None
    if card.serial != challenge.serial or not verify_card_signature(card.public_key, challenge.message(), signature):
        raise CardRefusal(CardRefusalCode.SIGNATURE_INVALID, "the signature does not verify with the card's key",
                          field="signature", rule="card_key")
    return card


def parse_pin(raw: object, field: str = "pin") -> str:
    if not isinstance(raw, str) or not PIN_PATTERN.match(raw):
        raise ValidationError(field, "format", "a PIN is 4 digits")
    return raw


# --- the IC chip ------------------------------------------------------------------------


class WrongPin(Exception):
    def __init__(self, remaining: int) -> None:
        super().__init__(f"wrong PIN: {remaining} tries left")
        self.remaining = remaining


class CardLocked(Exception):
    """The chip has locked itself after ``MAX_PIN_FAILURES`` wrong PINs."""


class VirtualCard:
    """The card's IC chip, as a test or the demo holds it.

    It makes its key pair inside and only ever gives out the public key; it keeps the PIN only
    as a salted scrypt hash; it signs only after the right PIN; after ``MAX_PIN_FAILURES``
    wrong PINs in a row it locks itself until the counter resets the PIN (:meth:`reset_pin`,
    which takes the network's ``pin_reset`` event for this card)."""

    __slots__ = ("__key", "__pin_hash", "__salt", "_failures", "_locked", "_reset_seq", "serial")

    def __init__(self, pin: str) -> None:
        self.__key = ec.generate_private_key(ec.SECP256R1())
        self.__salt = os.urandom(16)
        self.__pin_hash = self._hash(parse_pin(pin))
        self._failures = 0
        self._locked = False
        self._reset_seq = 0
        self.serial: str | None = None

    def _hash(self, pin: str) -> bytes:
        return hashlib.scrypt(pin.encode(), salt=self.__salt, **_SCRYPT)

    @property
    def public_key(self) -> str:
        der = self.__key.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode("ascii")

    @property
    def locked(self) -> bool:
        return self._locked

    def sign(self, message: bytes, pin: str) -> bytes:
        if self._locked:
            raise CardLocked("the card is locked")
        if not isinstance(pin, str) or not hmac.compare_digest(self._hash(pin), self.__pin_hash):
            self._failures += 1
            if self._failures >= MAX_PIN_FAILURES:
                self._locked = True
                raise CardLocked("third wrong PIN: the card has locked itself")
            raise WrongPin(MAX_PIN_FAILURES - self._failures)
        self._failures = 0
        return self.__key.sign(message, ec.ECDSA(hashes.SHA256()))

    def reset_pin(self, new_pin: str, event: CardEvent) -> None:
        """Set a new PIN and unlock, on the network's ``pin_reset`` event for this card (a newer
        one each time: an old event cannot be replayed into the card)."""
        if event.kind is not EventKind.PIN_RESET or event.serial != self.serial or event.seq <= self._reset_seq:
            raise ValidationError("event", "pin_reset", "not a new PIN-reset event for this card")
        self.__pin_hash = self._hash(parse_pin(new_pin, "new_pin"))
        self._failures = 0
        self._locked = False
        self._reset_seq = event.seq

    def __repr__(self) -> str:
        return f"VirtualCard(serial={self.serial!r}, locked={self._locked})"

    def __reduce__(self):  # noqa: D105 — a chip cannot be copied (pickle, copy.deepcopy)
        raise TypeError("a card's chip cannot be copied")
