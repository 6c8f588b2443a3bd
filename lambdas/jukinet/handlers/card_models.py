"""The counter API's request and response models (``handlers/card_api.py`` routes them).

Powertools validates each request against its model and generates the OpenAPI document from
them (``docs/card-openapi.json``, ``jukinet openapi --card``). What a model checks (types,
lengths, enumerations, the proof's shape, the number of members) the services take as given;
the rules a model cannot say (check digits, dates and their period, the home municipality, the
key, the register, the authentication) the services check, each once, with their own refusal
naming the field and the rule. The ``to_…`` methods map a request to the services' typed,
frozen request (``domain/card.py`` ``CardApplication``, ``domain/wide_area_copy.py``
``CopyApplication``, ``domain/special_move.py`` ``MoveOutFiling``, ``MoveInApplication``):
no dict and no loose argument list passes from the handler to a service.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_serializer

from ..domain import special_move as sm
from ..domain import wide_area_copy as wac
from ..domain.card import Card, CardApplication, CardRefusal, CardRefusalCode, CardType, Challenge, PinFailures


def signature_bytes(text: str) -> bytes:
    """A card's signature (base64 DER) as bytes; refused ``INVALID_REQUEST`` (signature, base64)."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CardRefusal(CardRefusalCode.INVALID_REQUEST, "the signature is not base64", field="signature",
                          rule="base64") from None


class IssueRequest(BaseModel):
    resident_code: Annotated[str, Field(max_length=16, description="住民票コード (11 digits)")]
    card_type: Annotated[Literal["A", "B"], Field(description="A: no photo; B: photo")]
    public_key: Annotated[str, Field(max_length=512, description="the card's P-256 public key, base64 DER")]

    def to_application(self) -> CardApplication:
        return CardApplication(self.resident_code, CardType(self.card_type), self.public_key)


class CardView(BaseModel):
    serial: str
    resident_code: str
    issuer: str = Field(description="the municipality that issued the card")
    home: str = Field(description="the municipality that holds the card now (differs after a special move-in)")
    card_type: Literal["A", "B"]
    status: Literal["active", "suspended", "revoked", "expired"]
    valid_until: str = Field(description="last day of validity (JST)")
    pin_locked: bool
    events: int = Field(description="number of signed lifecycle events")

    @classmethod
    def of(cls, card: Card) -> CardView:
        return cls(serial=card.serial, resident_code=card.resident_code, issuer=card.issuer, home=card.home,
                   card_type=card.card_type.value, status=card.status.value,
                   valid_until=card.valid_until.isoformat(), pin_locked=card.pin_locked, events=card.seq)


class SuspendRequest(BaseModel):
    reason: Annotated[str, Field(max_length=64, description="e.g. lost, stolen")] = "lost"


class PinResetRequest(BaseModel):
    resident_code: Annotated[str, Field(max_length=16,
                                        description="the resident code read from the resident's own documents")]


class SignedEvent(BaseModel):
    serial: str
    seq: int
    kind: str
    at: str
    municipality: str
    actor: str
    previous: str
    details: dict
    signer: str
    signature: str
    v: int


class PinResetResponse(BaseModel):
    card: CardView
    event: SignedEvent = Field(description="the signed pin_reset event the card takes to set its new PIN")


class ChallengeRequest(BaseModel):
    serial: Annotated[str, Field(max_length=32)]


class ChallengeResponse(BaseModel):
    challenge_id: str
    serial: str
    message: str = Field(description="the exact bytes (UTF-8) the card signs after its PIN")
    expires_at: str

    @classmethod
    def of(cls, challenge: Challenge) -> ChallengeResponse:
        return cls(challenge_id=challenge.challenge_id, serial=challenge.serial,
                   message=challenge.message().decode(),
                   expires_at=challenge.expires_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"))


class AuthenticationRequest(BaseModel):
    challenge_id: Annotated[str, Field(max_length=64)]
    signature: Annotated[str, Field(max_length=256, description="the card's ECDSA P-256 signature, base64 DER")]

    def signature_bytes(self) -> bytes:
        return signature_bytes(self.signature)


class AuthenticationResponse(BaseModel):
    resident_code: str
    issuer: str = Field(description="the municipality that issued the card")

    @classmethod
    def of(cls, card: Card) -> AuthenticationResponse:
        """The resident code and the issuing municipality, nothing else of the card."""
        return cls(resident_code=card.resident_code, issuer=card.issuer)


class PinFailureResponse(BaseModel):
    failures: int
    locked: bool

    @classmethod
    def of(cls, counted: PinFailures) -> PinFailureResponse:
        return cls(failures=counted.failures, locked=counted.locked)


class CardAuthenticationProof(BaseModel):
    card_authentication: Annotated[str, Field(min_length=32, max_length=32, description=(
        "the challenge_id of a successful POST /v1/authentications by this clerk at this counter for the "
        "applicant, within the last 15 minutes: the server looks it up, the caller vouches for nothing"))]

    def to_proof(self) -> wac.CardProof:
        return wac.CardProof(self.card_authentication)


class CheckedDocument(BaseModel):
    type: Literal["driving_licence", "passport", "individual_number_card", "resident_card_with_photo",
                  "residence_card", "disability_certificate"]
    number: Annotated[str, Field(min_length=1, max_length=32, description="the document's number as printed")]
    clerk: Annotated[str, Field(min_length=1, max_length=64, description="the clerk who checked the document")]


class DocumentProofModel(BaseModel):
    document: CheckedDocument

    def to_proof(self) -> wac.DocumentProof:
        return wac.DocumentProof(self.document.type, self.document.number, self.document.clerk)


class WideAreaCopyRequest(BaseModel):
    resident_code: Annotated[str, Field(max_length=16, description="住民票コード of the applicant (the person at "
                                                                   "the counter, whose identity the proof shows)")]
    home_municipality: Annotated[str, Field(max_length=6, description="the municipality that holds the applicant's "
                                                                      "record (6-digit code)")]
    members: Annotated[list[Annotated[str, Field(max_length=16)]], Field(max_length=19, description=(
        "resident codes of other members of the applicant's household to put on the copy"))] = []
    whole_household: bool = Field(default=False, description="every current member of the household (not with members)")
    proof: CardAuthenticationProof | DocumentProofModel = Field(description="how the applicant's identity was proven")

    def to_application(self) -> wac.CopyApplication:
        return wac.CopyApplication(self.resident_code, self.home_municipality, tuple(self.members),
                                   self.whole_household, self.proof.to_proof())


class WideAreaCopyAccepted(BaseModel):
    correlation: str = Field(description="poll GET /v1/wide-area-copies/{correlation}")
    status: Literal["pending"]


class WideAreaCopyResult(BaseModel):
    correlation: str
    home_municipality: str
    status: Literal["pending", "refused", "timed_out", "issued"]
    refusal: str | None = Field(default=None, description="refused: the home municipality's code")
    meaning: str | None = None
    serial: str | None = Field(default=None, description="issued: 交付番号 <issuer>-<year>-<6 digits>")
    issued_on: str | None = None
    issued_on_ja: str | None = Field(default=None, description="the date of issue in the Japanese calendar")
    rows: list[dict[str, str]] | None = Field(default=None, description="the copy's content (never 本籍 or 筆頭者)")
    pdf_sha256: str | None = None
    pdf: str | None = Field(default=None, description="issued: the copy as a PDF, base64")


class SpecialMoveOutRequest(BaseModel):
    resident_code: Annotated[str, Field(max_length=16, description="住民票コード of the card holder moving out")]
    planned_move_date: Annotated[str, Field(max_length=10, description="転出予定年月日, YYYY-MM-DD (at most 14 days "
                                                                       "past, 30 days ahead)")]
    destination_address: Annotated[str, Field(max_length=200, description="the address the resident moves to")]
    by_post: bool = Field(default=False, description="notified by post: the clerk records it without the card")
    card_authentication: Annotated[str | None, Field(min_length=32, max_length=32, description=(
        "at the counter: the challenge_id of a successful POST /v1/authentications of the resident's card by this "
        "clerk here within 15 minutes"))] = None

    def to_filing(self) -> sm.MoveOutFiling:
        return sm.MoveOutFiling(self.resident_code, self.planned_move_date, self.destination_address, self.by_post,
                                self.card_authentication)


class SpecialMoveOutView(BaseModel):
    resident_code: str
    municipality: str = Field(description="the municipality moved out of (A)")
    state: Literal["filed", "certificate_requested", "completed", "cancelled", "expired", "not_moved_in"]
    filed_at: str
    planned_move_date: str
    last_day: str = Field(description="the last day a special move-in may be registered (JST)")
    destination_address: str
    card_serial: str
    by_post: bool
    moved_in_at: str | None = Field(default=None, description="the municipality that asked for the certificate")
    moved_on: str | None = None


class SpecialMoveInRequest(BaseModel):
    resident_code: Annotated[str, Field(max_length=16, description="住民票コード read from the authenticated card")]
    home_municipality: Annotated[str, Field(max_length=6, description="the municipality moved out of (A)")]
    moved_on: Annotated[str, Field(max_length=10, description="the day the resident moved here, YYYY-MM-DD")]
    card_authentication: Annotated[str, Field(min_length=32, max_length=32, description=(
        "the challenge_id of a successful POST /v1/authentications of the resident's card by this clerk here within "
        "15 minutes: the server looks it up"))]

    def to_application(self) -> sm.MoveInApplication:
        return sm.MoveInApplication(self.resident_code, self.home_municipality, self.moved_on,
                                    self.card_authentication)


class SpecialMoveInAccepted(BaseModel):
    correlation: str = Field(description="poll GET /v1/special-move-ins/{correlation}")
    status: Literal["requested"]


class SpecialMoveInResult(BaseModel):
    correlation: str
    home_municipality: str
    resident_code: str
    moved_on: str
    status: Literal["requested", "certified", "moved_in", "completed", "refused", "timed_out"]
    refusal: str | None = Field(default=None, description="refused: the home municipality's code")
    meaning: str | None = None
    certificate: dict[str, str] | None = Field(default=None, description="the move-out certificate information "
                                                                         "(転出証明書情報)")
    notice: str | None = Field(default=None, description="certified again after a 転入通知 timed out: register again")
    notice_correlation: str | None = None
    card_carry_over: str | None = Field(default=None, description="completed: moved, already; another prefecture's card: pending, then moved or refused_<CODE>")


class RemoteAuthenticationRequest(BaseModel):
    serial: Annotated[str, Field(max_length=32, description="a card held by a municipality of another tier")]


class RemoteAnswerRequest(BaseModel):
    signature: Annotated[str, Field(max_length=256, description="the card's ECDSA P-256 signature over the home "
                                                                "tier's challenge message, base64 DER")]

    def signature_bytes(self) -> bytes:
        return signature_bytes(self.signature)


class RemoteAuthenticationStatus(BaseModel):
    id: str = Field(description="this counter's authentication id (also a wide-area copy's card proof)")
    serial: str
    home: str = Field(description="the municipality the request went to (the card's home)")
    step: Literal["challenge", "answer", "pin-failure"] | None = None
    status: Literal["pending", "challenge", "authenticated", "refused", "timed_out", "pin_failure_counted"]
    challenge_id: str | None = Field(default=None, description="challenge: the home tier's challenge id")
    message: str | None = Field(default=None, description="challenge: the exact bytes (UTF-8) the card signs; "
                                                          "refused: what the code means")
    expires_at: str | None = Field(default=None, description="challenge: judged by the home tier on arrival")
    resident_code: str | None = Field(default=None, description="authenticated")
    issuer: str | None = Field(default=None, description="authenticated: the municipality that issued the card")
    code: str | None = Field(default=None, description="refused: the same codes as within the tier (docs/card.md)")
    failures: int | None = None
    locked: bool | None = None

    @model_serializer(mode="wrap")
    def _without_nulls(self, handler):  # noqa: ANN001, ANN202 — only the fields this state has
        return {k: v for k, v in handler(self).items() if v is not None}

    @classmethod
    def of(cls, body: dict) -> dict:
        """The fields this state has, no nulls: an authentication answers the resident code and the
        issuer and nothing else."""
        return cls(**body).model_dump(exclude_none=True)


def view(card: Card) -> CardView:
    return CardView(serial=card.serial, resident_code=card.resident_code, issuer=card.issuer, home=card.home,
                    card_type=card.card_type.value, status=card.status.value,
                    valid_until=card.valid_until.isoformat(), pin_locked=card.pin_locked, events=card.seq)
