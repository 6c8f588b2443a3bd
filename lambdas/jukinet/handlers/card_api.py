"""Counter API (窓口) of one municipality tier: resident cards (住基カード) — private REST API, IAM/SigV4.

Routes and models are declared here; Powertools validates requests and generates the OpenAPI
document published as ``docs/card-openapi.json`` (``jukinet openapi --card``; a test fails
when it is stale). Errors are mapped once, below. Every call is recorded and counted by the
service (``services/card.py``); refusals also go to the metrics alarmed in bursts.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
from functools import lru_cache
from typing import Annotated, Literal

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Path as PathParam
from pydantic import BaseModel, Field, model_serializer

from ..adapters.card_store import CardStore
from ..clock import system_clock
from ..domain.card import Card, CardRefusal, CardRefusalCode
from ..observability import MetricUnit, count_refused_by_code, flush, logger, metrics, use_tier
from ..adapters.channel_store import ChannelStore
from ..adapters.copy_store import CopyStore
from ..services.card import Caller, CardService, EventSigner
from ..services.card_across_tiers import CardCarryOvers, CardEventKeys, RemoteAuthentications
from ..services.channel import ChannelEndpoint, ChannelKeys
from ..services.wide_area_copy import WideAreaCopies
from ..adapters.special_move_store import SpecialMoveStore
from ..services.special_move import SpecialMoves
from ..settings import CardSettings, load_settings
from ._api import first_validation_error

API_TITLE = "jukinet counter API (resident cards)"
API_VERSION = "1.0.0"
MAX_REQUEST_BYTES = 8_192

app = APIGatewayRestResolver(enable_validation=True)

Serial = Annotated[str, PathParam(max_length=32, description="card serial: <issuer code>-<16 hex digits>")]


# --- models --------------------------------------------------------------------------------


class IssueRequest(BaseModel):
    resident_code: Annotated[str, Field(max_length=16, description="住民票コード (11 digits)")]
    card_type: Annotated[Literal["A", "B"], Field(description="A: no photo; B: photo")]
    public_key: Annotated[str, Field(max_length=512, description="the card's P-256 public key, base64 DER")]


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


class AuthenticationRequest(BaseModel):
    challenge_id: Annotated[str, Field(max_length=64)]
    signature: Annotated[str, Field(max_length=256, description="the card's ECDSA P-256 signature, base64 DER")]


class AuthenticationResponse(BaseModel):
    resident_code: str
    issuer: str = Field(description="the municipality that issued the card")


class PinFailureResponse(BaseModel):
    failures: int
    locked: bool


class CardAuthenticationProof(BaseModel):
    card_authentication: Annotated[str, Field(min_length=32, max_length=32, description=(
        "the challenge_id of a successful POST /v1/authentications by this clerk at this counter for the "
        "applicant, within the last 15 minutes: the server looks it up, the caller vouches for nothing"))]


class CheckedDocument(BaseModel):
    type: Literal["driving_licence", "passport", "individual_number_card", "resident_card_with_photo",
                  "residence_card", "disability_certificate"]
    number: Annotated[str, Field(min_length=1, max_length=32, description="the document's number as printed")]
    clerk: Annotated[str, Field(min_length=1, max_length=64, description="the clerk who checked the document")]


class DocumentProofModel(BaseModel):
    document: CheckedDocument


class WideAreaCopyRequest(BaseModel):
    resident_code: Annotated[str, Field(max_length=16, description="住民票コード of the applicant (the person at "
                                                                   "the counter, whose identity the proof shows)")]
    home_municipality: Annotated[str, Field(max_length=6, description="the municipality that holds the applicant's "
                                                                      "record (6-digit code)")]
    members: Annotated[list[Annotated[str, Field(max_length=16)]], Field(max_length=19, description=(
        "resident codes of other members of the applicant's household to put on the copy"))] = []
    whole_household: bool = Field(default=False, description="every current member of the household (not with members)")
    proof: CardAuthenticationProof | DocumentProofModel = Field(description="how the applicant's identity was proven")


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


def view(card: Card) -> CardView:
    return CardView(serial=card.serial, resident_code=card.resident_code, issuer=card.issuer, home=card.home,
                    card_type=card.card_type.value, status=card.status.value,
                    valid_until=card.valid_until.isoformat(), pin_locked=card.pin_locked, events=card.seq)


# --- runtime -------------------------------------------------------------------------------


@lru_cache(maxsize=8)  # one per distinct environment: a cold start
def _runtime(settings: CardSettings, endpoint: str | None) -> CardService:
    return CardService(CardStore(settings.CARD_TABLE_NAME), EventSigner(settings.CARD_EVENT_KEY_ID),
                       municipalities=settings.MUNICIPALITIES, counter_role_prefix=settings.COUNTER_ROLE_PREFIX,
                       operator_roles=settings.OPERATOR_ROLES, account=settings.ACCOUNT_ID or None,
                       allowed_endpoints=settings.API_ENDPOINT_IDS or None, clock=system_clock)


def runtime() -> CardService:
    return _runtime(load_settings(CardSettings), os.environ.get("AWS_ENDPOINT_URL"))


@lru_cache(maxsize=8)
def _copies(settings: CardSettings, endpoint: str | None) -> WideAreaCopies:
    cards = _runtime(settings, endpoint)
    names: dict[str, str] = {}
    if settings.MUNICIPALITY_NAMES_FILE:
        path = settings.MUNICIPALITY_NAMES_FILE
        if not os.path.isabs(path):
            path = os.path.join(os.environ.get("LAMBDA_TASK_ROOT", "."), path)
        with open(path, encoding="utf-8") as fh:
            names = json.load(fh)
    store = ChannelStore(settings.CARD_TABLE_NAME)
    # Only .result is used: the answers are read (Decrypt) here; requests are sent by the channel function.
    reader = ChannelEndpoint(settings.MUNICIPALITIES[0][:2] + "0000", store,
                             ChannelKeys(settings.CHANNEL_KEY_ID, settings.CHANNEL_KEY_ALIAS_PREFIX),
                             None, None, "", "", None, clock=cards.clock)  # type: ignore[arg-type]
    return WideAreaCopies(cards, CopyStore(settings.CARD_TABLE_NAME), reader, settings.CHANNEL_QUEUE_URL, names=names,
                          clock=cards.clock)


@lru_cache(maxsize=8)
def _remote(settings: CardSettings, endpoint: str | None) -> RemoteAuthentications:
    cards = _runtime(settings, endpoint)
    reader = ChannelEndpoint(settings.MUNICIPALITIES[0][:2] + "0000", ChannelStore(settings.CARD_TABLE_NAME),
                             ChannelKeys(settings.CHANNEL_KEY_ID, settings.CHANNEL_KEY_ALIAS_PREFIX),
                             None, None, "", "", None, clock=cards.clock)  # type: ignore[arg-type]
    return RemoteAuthentications(cards, reader, settings.CHANNEL_QUEUE_URL, clock=cards.clock)


def remote() -> RemoteAuthentications:
    """Cards of other tiers, through the channel (decision 0050)."""
    settings = load_settings(CardSettings)
    if not settings.CHANNEL_QUEUE_URL or not settings.CHANNEL_KEY_ID:
        raise CardRefusal(CardRefusalCode.NOT_FOUND, "cards of other tiers are not served here (no channel)")
    return _remote(settings, os.environ.get("AWS_ENDPOINT_URL"))


def carry_overs() -> CardCarryOvers:
    """The new home's side of a card's carry-over from another tier (decision 0050), for the
    special move-in (転入の特例) to call: ``request`` then ``complete``."""
    settings = load_settings(CardSettings)
    if not settings.CHANNEL_QUEUE_URL or not settings.CHANNEL_KEY_ID:
        raise CardRefusal(CardRefusalCode.NOT_FOUND, "cards of other tiers are not served here (no channel)")
    remote_side = _remote(settings, os.environ.get("AWS_ENDPOINT_URL"))
    return CardCarryOvers(remote_side.cards, remote_side.reader, settings.CHANNEL_QUEUE_URL,
                          CardEventKeys(settings.CARD_EVENT_KEY_ALIAS_TEMPLATE), clock=remote_side.cards.clock)


def copies() -> WideAreaCopies:
    settings = load_settings(CardSettings)
    if not settings.CHANNEL_QUEUE_URL or not settings.CHANNEL_KEY_ID:
        raise CardRefusal(CardRefusalCode.NOT_FOUND, "wide-area copies are not enabled in this tier (no channel)")
    return _copies(settings, os.environ.get("AWS_ENDPOINT_URL"))


@lru_cache(maxsize=8)
def _moves(settings: CardSettings, endpoint: str | None) -> SpecialMoves:
    cards = _runtime(settings, endpoint)
    reader = ChannelEndpoint(settings.MUNICIPALITIES[0][:2] + "0000", ChannelStore(settings.CARD_TABLE_NAME),
                             ChannelKeys(settings.CHANNEL_KEY_ID, settings.CHANNEL_KEY_ALIAS_PREFIX),
                             None, None, "", "", None, clock=cards.clock)  # type: ignore[arg-type]
    moves = SpecialMoves(cards, SpecialMoveStore(settings.CARD_TABLE_NAME), reader, settings.CHANNEL_QUEUE_URL,
                         clock=cards.clock)
    # the card of another tier carried over on the move-in (decision 0050), on the moves' clock
    moves.carry_overs = CardCarryOvers(cards, reader, settings.CHANNEL_QUEUE_URL,
                                       CardEventKeys(settings.CARD_EVENT_KEY_ALIAS_TEMPLATE),
                                       clock=lambda: moves.clock())
    return moves


def moves() -> SpecialMoves:
    settings = load_settings(CardSettings)
    if not settings.CHANNEL_QUEUE_URL or not settings.CHANNEL_KEY_ID:
        raise CardRefusal(CardRefusalCode.NOT_FOUND, "special moves are not enabled in this tier (no channel)")
    return _moves(settings, os.environ.get("AWS_ENDPOINT_URL"))


def caller() -> Caller:
    identity = app.current_event.raw_event.get("requestContext", {}).get("identity", {}) or {}
    return Caller(principal_arn=identity.get("userArn"), source_endpoint=identity.get("vpceId"),
                  request_id=app.current_event.request_context.request_id or "")


def done(action: str, card: Card | None = None) -> None:
    metrics.add_metric(name="CardRequests", unit=MetricUnit.Count, value=1)
    logger.info("card request served", extra={"action": action, "caller": caller().principal_arn,
                                              "serial": card.serial if card else None})


# --- routes --------------------------------------------------------------------------------


@app.post("/v1/cards", summary="Issue a card (交付) to a resident of the caller's municipality", tags=["cards"],
          responses={201: {"description": "issued", "content": {"application/json": {"model": CardView}}}})
def issue(request: IssueRequest) -> Response[CardView]:
    card = runtime().issue(caller(), resident_code=request.resident_code, card_type=request.card_type,
                           public_key=request.public_key)
    done("issue", card)
    metrics.add_metric(name="CardsIssued", unit=MetricUnit.Count, value=1)
    return Response(status_code=201, content_type="application/json", body=view(card))


@app.post("/v1/cards/<serial>/suspension", summary="Suspend a card (一時停止), e.g. reported lost", tags=["cards"],
          responses={200: {"description": "suspended", "content": {"application/json": {"model": CardView}}}})
def suspend(serial: Serial, request: SuspendRequest) -> CardView:
    card = runtime().suspend(caller(), serial, request.reason)
    done("suspend", card)
    return view(card)


@app.post("/v1/cards/<serial>/resumption", summary="Resume a suspended card", tags=["cards"],
          responses={200: {"description": "active again", "content": {"application/json": {"model": CardView}}}})
def resume(serial: Serial) -> CardView:
    card = runtime().resume(caller(), serial)
    done("resume", card)
    return view(card)


@app.post("/v1/cards/<serial>/revocation", summary="Revoke a returned card (返納)", tags=["cards"],
          responses={200: {"description": "revoked", "content": {"application/json": {"model": CardView}}}})
def revoke(serial: Serial) -> CardView:
    card = runtime().revoke(caller(), serial)
    done("revoke", card)
    return view(card)


@app.post("/v1/cards/<serial>/expiry", summary="Record that a card's validity has ended", tags=["cards"],
          responses={200: {"description": "expired", "content": {"application/json": {"model": CardView}}}})
def expire(serial: Serial) -> CardView:
    card = runtime().expire(caller(), serial)
    done("expire", card)
    return view(card)


@app.post("/v1/cards/<serial>/pin-reset", summary="Reset the PIN at the counter, identity checked", tags=["cards"],
          responses={200: {"description": "reset", "content": {"application/json": {"model": PinResetResponse}}}})
def reset_pin(serial: Serial, request: PinResetRequest) -> PinResetResponse:
    card, event = runtime().reset_pin(caller(), serial, resident_code=request.resident_code)
    done("reset_pin", card)
    return PinResetResponse(card=view(card), event=SignedEvent.model_validate(event.to_dict()))


@app.post("/v1/challenges", summary="A one-time challenge for a card presented at this counter",
          tags=["authentication"],
          responses={200: {"description": "sign it with the card",
                           "content": {"application/json": {"model": ChallengeResponse}}}})
def challenge(request: ChallengeRequest) -> ChallengeResponse:
    body = runtime().challenge(caller(), request.serial)
    done("challenge")
    return ChallengeResponse(challenge_id=body["challenge_id"], serial=body["serial"], message=body["message"],
                             expires_at=body["expires_at"].astimezone(dt.UTC).isoformat().replace("+00:00", "Z"))


@app.post("/v1/authentications", summary="Authenticate a card: its signature over the challenge",
          tags=["authentication"],
          responses={200: {"description": "the card's resident code and issuing municipality, nothing else",
                           "content": {"application/json": {"model": AuthenticationResponse}}}})
def authenticate(request: AuthenticationRequest) -> AuthenticationResponse:
    try:
        signature = base64.b64decode(request.signature, validate=True)
    except (binascii.Error, ValueError):
        raise CardRefusal(CardRefusalCode.INVALID_REQUEST, "the signature is not base64", field="signature",
                          rule="base64") from None
    body = runtime().authenticate(caller(), request.challenge_id, signature)
    done("authenticate")
    metrics.add_metric(name="CardAuthentications", unit=MetricUnit.Count, value=1)
    return AuthenticationResponse(**body)


@app.post("/v1/challenges/<challenge_id>/pin-failure", tags=["authentication"],
          summary="Report that the card refused the PIN for this challenge (the network counts, locks at 3)",
          responses={200: {"description": "counted", "content": {"application/json": {"model": PinFailureResponse}}}})
def pin_failure(challenge_id: Annotated[str, PathParam(max_length=64)]) -> PinFailureResponse:
    body = runtime().pin_failed(caller(), challenge_id)
    done("pin_failed")
    metrics.add_metric(name="CardPinFailures", unit=MetricUnit.Count, value=1)
    return PinFailureResponse(**body)


@app.post("/v1/remote-authentications", tags=["authentication"],
          summary="Ask the home tier of a card of another prefecture for a challenge bound to this counter",
          responses={202: {"description": "sent; poll GET /v1/remote-authentications/{id}",
                           "content": {"application/json": {"model": RemoteAuthenticationStatus}}}})
def remote_start(request: RemoteAuthenticationRequest) -> Response[RemoteAuthenticationStatus]:
    body = remote().start(caller(), request.serial)
    done("remote_challenge")
    return Response(status_code=202, content_type="application/json", body=_status(body))


@app.get("/v1/remote-authentications/<auth_id>", tags=["authentication"],
         summary="The state of an authentication by the card's home tier: the challenge to sign, then the outcome",
         responses={200: {"description": "pending, challenge, authenticated, refused (code), timed out, or the "
                                         "wrong PIN counted", "content": {"application/json": {
                                             "model": RemoteAuthenticationStatus}}}})
def remote_result(auth_id: Annotated[str, PathParam(max_length=64)]) -> Response[RemoteAuthenticationStatus]:
    body = remote().result(caller(), auth_id)
    done("remote_result")
    return Response(status_code=200, content_type="application/json", body=_status(body))


def _status(body: dict) -> dict:
    """The fields this state has, no nulls: an authentication answers the resident code and the
    issuer and nothing else."""
    return RemoteAuthenticationStatus(**body).model_dump(exclude_none=True)


@app.post("/v1/remote-authentications/<auth_id>/answer", tags=["authentication"],
          summary="Send the card's signature over the home tier's challenge to the home tier",
          responses={202: {"description": "sent; poll GET /v1/remote-authentications/{id}",
                           "content": {"application/json": {"model": RemoteAuthenticationStatus}}}})
def remote_answer(auth_id: Annotated[str, PathParam(max_length=64)],
                  request: RemoteAnswerRequest) -> Response[RemoteAuthenticationStatus]:
    try:
        signature = base64.b64decode(request.signature, validate=True)
    except (binascii.Error, ValueError):
        raise CardRefusal(CardRefusalCode.INVALID_REQUEST, "the signature is not base64", field="signature",
                          rule="base64") from None
    body = remote().answer(caller(), auth_id, signature)
    done("remote_answer")
    return Response(status_code=202, content_type="application/json", body=_status(body))


@app.post("/v1/remote-authentications/<auth_id>/pin-failure", tags=["authentication"],
          summary="Report to the home tier that the card refused the PIN (it counts, locks at 3)",
          responses={202: {"description": "sent; poll GET /v1/remote-authentications/{id}",
                           "content": {"application/json": {"model": RemoteAuthenticationStatus}}}})
def remote_pin_failure(auth_id: Annotated[str, PathParam(max_length=64)]) -> Response[RemoteAuthenticationStatus]:
    body = remote().pin_failure(caller(), auth_id)
    done("remote_pin_failure")
    return Response(status_code=202, content_type="application/json", body=_status(body))


@app.post("/v1/wide-area-copies", tags=["wide-area copies"],
          summary="Ask the home municipality for a wide-area copy of the applicant's record (住民票の写しの広域交付)",
          responses={202: {"description": "sent; poll the result",
                           "content": {"application/json": {"model": WideAreaCopyAccepted}}}})
def request_copy(request: WideAreaCopyRequest) -> Response[WideAreaCopyAccepted]:
    body = copies().request(caller(), resident_code=request.resident_code,
                            home_municipality=request.home_municipality, members=request.members,
                            whole_household=request.whole_household, proof=request.proof.model_dump())
    done("wide_area_copy_request")
    return Response(status_code=202, content_type="application/json", body=WideAreaCopyAccepted(**body))


@app.get("/v1/wide-area-copies/<correlation>", tags=["wide-area copies"],
         summary="The outcome of a wide-area copy request: pending, refused (code), timed out, or the copy as a PDF",
         responses={200: {"description": "the outcome", "content": {"application/json": {"model": WideAreaCopyResult}}}})
def copy_result(correlation: Annotated[str, PathParam(max_length=48, description="from POST /v1/wide-area-copies")]
                ) -> WideAreaCopyResult:
    body = copies().result(caller(), correlation)
    done("wide_area_copy_result")
    return WideAreaCopyResult(**body)


ResidentPath = Annotated[str, PathParam(max_length=16, description="住民票コード")]
CorrelationPath = Annotated[str, PathParam(max_length=48, description="from POST /v1/special-move-ins")]


@app.post("/v1/special-move-outs", tags=["special move-out/move-in"],
          summary="Record a special move-out (特例転出) of a card holder of this municipality",
          responses={201: {"description": "filed (or the same filing again)",
                           "content": {"application/json": {"model": SpecialMoveOutView}}}})
def file_move_out(request: SpecialMoveOutRequest) -> Response[SpecialMoveOutView]:
    body = moves().file(caller(), resident_code=request.resident_code, planned_move_date=request.planned_move_date,
                        destination_address=request.destination_address, by_post=request.by_post,
                        card_authentication=request.card_authentication)
    done("special_move_out_file")
    return Response(status_code=201, content_type="application/json", body=SpecialMoveOutView(**body))


@app.get("/v1/special-move-outs/<resident_code>", tags=["special move-out/move-in"],
         summary="The resident's latest special move-out here and its state",
         responses={200: {"description": "the record", "content": {"application/json": {"model": SpecialMoveOutView}}}})
def move_out_status(resident_code: ResidentPath) -> SpecialMoveOutView:
    body = moves().status(caller(), resident_code)
    done("special_move_out_status")
    return SpecialMoveOutView(**body)


@app.post("/v1/special-move-outs/<resident_code>/cancellation", tags=["special move-out/move-in"],
          summary="Cancel an open special move-out (before the move-in completes it)",
          responses={200: {"description": "cancelled", "content": {"application/json": {"model": SpecialMoveOutView}}}})
def cancel_move_out(resident_code: ResidentPath) -> SpecialMoveOutView:
    body = moves().cancel(caller(), resident_code)
    done("special_move_out_cancel")
    return SpecialMoveOutView(**body)


@app.post("/v1/special-move-ins", tags=["special move-out/move-in"],
          summary="Ask the home municipality for the move-out certificate information (特例転入), card authenticated here",
          responses={202: {"description": "sent; poll the result",
                           "content": {"application/json": {"model": SpecialMoveInAccepted}}}})
def request_move_in(request: SpecialMoveInRequest) -> Response[SpecialMoveInAccepted]:
    body = moves().request(caller(), resident_code=request.resident_code, home_municipality=request.home_municipality,
                           moved_on=request.moved_on, card_authentication=request.card_authentication)
    done("special_move_in_request")
    return Response(status_code=202, content_type="application/json", body=SpecialMoveInAccepted(**body))


@app.get("/v1/special-move-ins/<correlation>", tags=["special move-out/move-in"],
         summary="The special move-in now: requested, certified (the certificate information), moved in, completed, "
                 "refused (code) or timed out",
         responses={200: {"description": "the outcome", "content": {"application/json": {"model": SpecialMoveInResult}}}})
def move_in_result(correlation: CorrelationPath) -> SpecialMoveInResult:
    body = moves().result(caller(), correlation)
    done("special_move_in_result")
    return SpecialMoveInResult(**body)


@app.post("/v1/special-move-ins/<correlation>/move-in", tags=["special move-out/move-in"],
          summary="The move-in is registered here: tell the home municipality (転入通知); the card is carried over "
                  "when it completes the move-out",
          responses={202: {"description": "the notice is sent; poll the result",
                           "content": {"application/json": {"model": SpecialMoveInResult}}}})
def register_move_in(correlation: CorrelationPath) -> Response[SpecialMoveInResult]:
    body = moves().move_in(caller(), correlation)
    done("special_move_in_register")
    return Response(status_code=202, content_type="application/json", body=SpecialMoveInResult(**body))


# --- errors --------------------------------------------------------------------------------


_ACTIONS = {"/v1/authentications": "authenticate", "/v1/challenges": "challenge", "/v1/cards": "issue",
            "/v1/wide-area-copies": "wide_area_copy_request", "/v1/special-move-outs": "special_move_out_file",
            "/v1/special-move-ins": "special_move_in_request"}


def _action(path: str) -> str:
    if path.startswith("/v1/wide-area-copies/"):
        return "wide_area_copy_result"
    if path.startswith("/v1/special-move-outs/"):
        return "special_move_out_cancel" if path.endswith("/cancellation") else "special_move_out_status"
    if path.startswith("/v1/special-move-ins/"):
        return "special_move_in_register" if path.endswith("/move-in") else "special_move_in_result"
    return _ACTIONS.get(path, path.rsplit("/", 1)[-1])


def count_refusal(refusal: CardRefusal, who: Caller, path: str, body: dict) -> None:
    metrics.add_metric(name="CardRefusals", unit=MetricUnit.Count, value=1)
    count_refused_by_code(refusal.code.name)
    remote_path = path.startswith("/v1/remote-authentications")
    if refusal.code.authentication and (path in ("/v1/authentications", "/v1/challenges") or remote_path):
        metrics.add_metric(name="CardAuthenticationRefusals", unit=MetricUnit.Count, value=1)
    if refusal.code in (CardRefusalCode.CARD_SUSPENDED, CardRefusalCode.CARD_REVOKED):
        metrics.add_metric(name="EndedCardPresented", unit=MetricUnit.Count, value=1)  # a lost or stolen card
    if refusal.code in (CardRefusalCode.UNKNOWN_CALLER, CardRefusalCode.ENDPOINT_NOT_ALLOWED,
                        CardRefusalCode.NOT_THIS_MUNICIPALITY, CardRefusalCode.PUBLIC_KEY_IN_USE,
                        CardRefusalCode.PROOF_NOT_VALID):
        metrics.add_metric(name="CardUnauthorisedAttempts", unit=MetricUnit.Count, value=1)
    logger.warning("card request refused", extra={"code": refusal.code.name, "field": refusal.field,
                                                  "rule": refusal.rule, "caller": who.principal_arn,
                                                  "source_vpce": who.source_endpoint, "path": path})
    action = _action(path)
    if remote_path:  # counted as the authentication step it is (card-stats: auth refused)
        action = {"answer": "authenticate", "pin-failure": "pin-failure"}.get(path.rsplit("/", 1)[-1], "challenge")
    serial = body.get("serial") if isinstance(body.get("serial"), str) else ""
    if not serial and path.startswith("/v1/cards/"):
        serial = path.split("/")[3]
    try:
        runtime().refused(who, action, refusal, serial=serial[:32],
                          resident_code=str(body.get("resident_code", ""))[:16])
    except Exception:  # the refusal must reach the caller even if its record cannot be written
        logger.exception("card refusal not recorded")


def refusal_response(refusal: CardRefusal) -> Response:
    who = caller()
    event = app.current_event
    try:
        body = json.loads(event.body or "{}")
    except ValueError:
        body = {}
    count_refusal(refusal, who, event.path, body if isinstance(body, dict) else {})
    return Response(status_code=refusal.code.status, content_type="application/json",
                    body=json.dumps({"error": {**refusal.to_dict(), "request_id": who.request_id}}))


@app.exception_handler(CardRefusal)
def _refused(exc: CardRefusal) -> Response:
    return refusal_response(exc)


@app.exception_handler(RequestValidationError)
def _invalid(exc: RequestValidationError) -> Response:
    message, field, rule = first_validation_error(exc)
    return refusal_response(CardRefusal(CardRefusalCode.INVALID_REQUEST, message, field=field, rule=rule))


@app.not_found
def _not_found(exc: Exception) -> Response:
    return refusal_response(CardRefusal(CardRefusalCode.NOT_FOUND, "no such resource"))


def precheck(event: dict) -> dict | None:
    """Refused before routing: an unknown caller or endpoint learns nothing about its input."""
    context = event.get("requestContext") or {}
    identity = context.get("identity") or {}
    who = Caller(principal_arn=identity.get("userArn"), source_endpoint=identity.get("vpceId"),
                 request_id=context.get("requestId") or "")
    body = event.get("body") or ""
    try:
        runtime().identify(who)
        if len(body.encode("utf-8") if isinstance(body, str) else body) > MAX_REQUEST_BYTES:
            raise CardRefusal(CardRefusalCode.INVALID_REQUEST, f"the request body is over {MAX_REQUEST_BYTES} bytes",
                              field="body", rule="max_bytes")
    except CardRefusal as refusal:
        metrics.add_metric(name="CardRefusals", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="CardUnauthorisedAttempts", unit=MetricUnit.Count, value=1)
        logger.warning("card request refused", extra={"code": refusal.code.name, "caller": who.principal_arn,
                                                      "source_vpce": who.source_endpoint})
        return {"statusCode": refusal.code.status, "headers": {"Content-Type": "application/json"},
                "body": json.dumps({"error": {**refusal.to_dict(), "request_id": who.request_id}}),
                "isBase64Encoded": False}
    return None


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    use_tier("municipality")
    try:
        return precheck(event) or app.resolve(event, context)
    finally:
        flush()
