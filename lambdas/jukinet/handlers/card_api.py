"""Counter API (窓口) of one municipality tier: resident cards (住基カード) — private REST API, IAM/SigV4.

Routes and the entry point; the request/response models are in ``card_models.py`` (Powertools
validates requests against them, ``enable_validation=True``, and generates the OpenAPI document
published as ``docs/card-openapi.json``: ``jukinet openapi --card``; a test fails when it is
stale), the services built from the settings in ``card_runtime.py``, the metrics and logs in
``services/card_observability.py``. Errors are mapped once, below: routes never build error
JSON. Every call is recorded and counted by the service (``services/card.py``); refusals also
go to the metrics alarmed in bursts.
"""

from __future__ import annotations

import json
from typing import Annotated

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Path as PathParam

from ..domain.card import CardRefusal, CardRefusalCode
from ..observability import MetricUnit, flush, logger, metrics, use_tier
from ..services.card import Caller
from ..services.card_observability import count_refusal, count_unidentified, served
from ._api import first_validation_error
from .card_models import (
    AuthenticationRequest,
    AuthenticationResponse,
    CardView,
    ChallengeRequest,
    ChallengeResponse,
    IssueRequest,
    PinFailureResponse,
    PinResetRequest,
    PinResetResponse,
    RemoteAnswerRequest,
    RemoteAuthenticationRequest,
    RemoteAuthenticationStatus,
    SignedEvent,
    SpecialMoveInAccepted,
    SpecialMoveInRequest,
    SpecialMoveInResult,
    SpecialMoveOutRequest,
    SpecialMoveOutView,
    SuspendRequest,
    WideAreaCopyAccepted,
    WideAreaCopyRequest,
    WideAreaCopyResult,
)
from .card_runtime import copies, moves, remote, runtime

API_TITLE = "jukinet counter API (resident cards)"
API_VERSION = "1.0.0"
MAX_REQUEST_BYTES = 8_192

app = APIGatewayRestResolver(enable_validation=True)

Serial = Annotated[str, PathParam(max_length=32, description="card serial: <issuer code>-<16 hex digits>")]


def caller() -> Caller:
    identity = app.current_event.raw_event.get("requestContext", {}).get("identity", {}) or {}
    return Caller(principal_arn=identity.get("userArn"), source_endpoint=identity.get("vpceId"),
                  request_id=app.current_event.request_context.request_id or "")


# --- routes --------------------------------------------------------------------------------


@app.post("/v1/cards", summary="Issue a card (交付) to a resident of the caller's municipality", tags=["cards"],
          responses={201: {"description": "issued", "content": {"application/json": {"model": CardView}}}})
def issue(request: IssueRequest) -> Response[CardView]:
    who = caller()
    card = runtime().issue(who, request.to_application())
    served("issue", who, card)
    metrics.add_metric(name="CardsIssued", unit=MetricUnit.Count, value=1)
    return Response(status_code=201, content_type="application/json", body=CardView.of(card))


@app.post("/v1/cards/<serial>/suspension", summary="Suspend a card (一時停止), e.g. reported lost", tags=["cards"],
          responses={200: {"description": "suspended", "content": {"application/json": {"model": CardView}}}})
def suspend(serial: Serial, request: SuspendRequest) -> CardView:
    who = caller()
    card = runtime().suspend(who, serial, request.reason)
    served("suspend", who, card)
    return CardView.of(card)


@app.post("/v1/cards/<serial>/resumption", summary="Resume a suspended card", tags=["cards"],
          responses={200: {"description": "active again", "content": {"application/json": {"model": CardView}}}})
def resume(serial: Serial) -> CardView:
    who = caller()
    card = runtime().resume(who, serial)
    served("resume", who, card)
    return CardView.of(card)


@app.post("/v1/cards/<serial>/revocation", summary="Revoke a returned card (返納)", tags=["cards"],
          responses={200: {"description": "revoked", "content": {"application/json": {"model": CardView}}}})
def revoke(serial: Serial) -> CardView:
    who = caller()
    card = runtime().revoke(who, serial)
    served("revoke", who, card)
    return CardView.of(card)


@app.post("/v1/cards/<serial>/expiry", summary="Record that a card's validity has ended", tags=["cards"],
          responses={200: {"description": "expired", "content": {"application/json": {"model": CardView}}}})
def expire(serial: Serial) -> CardView:
    who = caller()
    card = runtime().expire(who, serial)
    served("expire", who, card)
    return CardView.of(card)


@app.post("/v1/cards/<serial>/pin-reset", summary="Reset the PIN at the counter, identity checked", tags=["cards"],
          responses={200: {"description": "reset", "content": {"application/json": {"model": PinResetResponse}}}})
def reset_pin(serial: Serial, request: PinResetRequest) -> PinResetResponse:
    who = caller()
    card, event = runtime().reset_pin(who, serial, resident_code=request.resident_code)
    served("reset_pin", who, card)
    return PinResetResponse(card=CardView.of(card), event=SignedEvent.model_validate(event.to_dict()))


@app.post("/v1/challenges", summary="A one-time challenge for a card presented at this counter",
          tags=["authentication"],
          responses={200: {"description": "sign it with the card",
                           "content": {"application/json": {"model": ChallengeResponse}}}})
def challenge(request: ChallengeRequest) -> ChallengeResponse:
    who = caller()
    issued = runtime().challenge(who, request.serial)
    served("challenge", who)
    return ChallengeResponse.of(issued)


@app.post("/v1/authentications", summary="Authenticate a card: its signature over the challenge",
          tags=["authentication"],
          responses={200: {"description": "the card's resident code and issuing municipality, nothing else",
                           "content": {"application/json": {"model": AuthenticationResponse}}}})
def authenticate(request: AuthenticationRequest) -> AuthenticationResponse:
    who, signature = caller(), request.signature_bytes()
    card = runtime().authenticate(who, request.challenge_id, signature)
    served("authenticate", who)
    metrics.add_metric(name="CardAuthentications", unit=MetricUnit.Count, value=1)
    return AuthenticationResponse.of(card)


@app.post("/v1/challenges/<challenge_id>/pin-failure", tags=["authentication"],
          summary="Report that the card refused the PIN for this challenge (the network counts, locks at 3)",
          responses={200: {"description": "counted", "content": {"application/json": {"model": PinFailureResponse}}}})
def pin_failure(challenge_id: Annotated[str, PathParam(max_length=64)]) -> PinFailureResponse:
    who = caller()
    counted = runtime().pin_failed(who, challenge_id)
    served("pin_failed", who)
    metrics.add_metric(name="CardPinFailures", unit=MetricUnit.Count, value=1)
    return PinFailureResponse.of(counted)


@app.post("/v1/remote-authentications", tags=["authentication"],
          summary="Ask the home tier of a card of another prefecture for a challenge bound to this counter",
          responses={202: {"description": "sent; poll GET /v1/remote-authentications/{id}",
                           "content": {"application/json": {"model": RemoteAuthenticationStatus}}}})
def remote_start(request: RemoteAuthenticationRequest) -> Response[RemoteAuthenticationStatus]:
    who = caller()
    body = remote().start(who, request.serial)
    served("remote_challenge", who)
    return Response(status_code=202, content_type="application/json", body=RemoteAuthenticationStatus.of(body))


@app.get("/v1/remote-authentications/<auth_id>", tags=["authentication"],
         summary="The state of an authentication by the card's home tier: the challenge to sign, then the outcome",
         responses={200: {"description": "pending, challenge, authenticated, refused (code), timed out, or the "
                                         "wrong PIN counted", "content": {"application/json": {
                                             "model": RemoteAuthenticationStatus}}}})
def remote_result(auth_id: Annotated[str, PathParam(max_length=64)]) -> Response[RemoteAuthenticationStatus]:
    who = caller()
    body = remote().result(who, auth_id)
    served("remote_result", who)
    return Response(status_code=200, content_type="application/json", body=RemoteAuthenticationStatus.of(body))


@app.post("/v1/remote-authentications/<auth_id>/answer", tags=["authentication"],
          summary="Send the card's signature over the home tier's challenge to the home tier",
          responses={202: {"description": "sent; poll GET /v1/remote-authentications/{id}",
                           "content": {"application/json": {"model": RemoteAuthenticationStatus}}}})
def remote_answer(auth_id: Annotated[str, PathParam(max_length=64)],
                  request: RemoteAnswerRequest) -> Response[RemoteAuthenticationStatus]:
    who, signature = caller(), request.signature_bytes()  # refused before the channel is looked for
    body = remote().answer(who, auth_id, signature)
    served("remote_answer", who)
    return Response(status_code=202, content_type="application/json", body=RemoteAuthenticationStatus.of(body))


@app.post("/v1/remote-authentications/<auth_id>/pin-failure", tags=["authentication"],
          summary="Report to the home tier that the card refused the PIN (it counts, locks at 3)",
          responses={202: {"description": "sent; poll GET /v1/remote-authentications/{id}",
                           "content": {"application/json": {"model": RemoteAuthenticationStatus}}}})
def remote_pin_failure(auth_id: Annotated[str, PathParam(max_length=64)]) -> Response[RemoteAuthenticationStatus]:
    who = caller()
    body = remote().pin_failure(who, auth_id)
    served("remote_pin_failure", who)
    return Response(status_code=202, content_type="application/json", body=RemoteAuthenticationStatus.of(body))


@app.post("/v1/wide-area-copies", tags=["wide-area copies"],
          summary="Ask the home municipality for a wide-area copy of the applicant's record (住民票の写しの広域交付)",
          responses={202: {"description": "sent; poll the result",
                           "content": {"application/json": {"model": WideAreaCopyAccepted}}}})
def request_copy(request: WideAreaCopyRequest) -> Response[WideAreaCopyAccepted]:
    who = caller()
    correlation = copies().request(who, request.to_application())
    served("wide_area_copy_request", who)
    return Response(status_code=202, content_type="application/json",
                    body=WideAreaCopyAccepted(correlation=correlation, status="pending"))


@app.get("/v1/wide-area-copies/<correlation>", tags=["wide-area copies"],
         summary="The outcome of a wide-area copy request: pending, refused (code), timed out, or the copy as a PDF",
         responses={200: {"description": "the outcome", "content": {"application/json": {"model": WideAreaCopyResult}}}})
def copy_result(correlation: Annotated[str, PathParam(max_length=48, description="from POST /v1/wide-area-copies")]
                ) -> WideAreaCopyResult:
    who = caller()
    body = copies().result(who, correlation)
    served("wide_area_copy_result", who)
    return WideAreaCopyResult(**body)


ResidentPath = Annotated[str, PathParam(max_length=16, description="住民票コード")]
CorrelationPath = Annotated[str, PathParam(max_length=48, description="from POST /v1/special-move-ins")]


@app.post("/v1/special-move-outs", tags=["special move-out/move-in"],
          summary="Record a special move-out (特例転出) of a card holder of this municipality",
          responses={201: {"description": "filed (or the same filing again)",
                           "content": {"application/json": {"model": SpecialMoveOutView}}}})
def file_move_out(request: SpecialMoveOutRequest) -> Response[SpecialMoveOutView]:
    who = caller()
    body = moves().file(who, request.to_filing())
    served("special_move_out_file", who)
    return Response(status_code=201, content_type="application/json", body=SpecialMoveOutView(**body))


@app.get("/v1/special-move-outs/<resident_code>", tags=["special move-out/move-in"],
         summary="The resident's latest special move-out here and its state",
         responses={200: {"description": "the record", "content": {"application/json": {"model": SpecialMoveOutView}}}})
def move_out_status(resident_code: ResidentPath) -> SpecialMoveOutView:
    who = caller()
    body = moves().status(who, resident_code)
    served("special_move_out_status", who)
    return SpecialMoveOutView(**body)


@app.post("/v1/special-move-outs/<resident_code>/cancellation", tags=["special move-out/move-in"],
          summary="Cancel an open special move-out (before the move-in completes it)",
          responses={200: {"description": "cancelled", "content": {"application/json": {"model": SpecialMoveOutView}}}})
def cancel_move_out(resident_code: ResidentPath) -> SpecialMoveOutView:
    who = caller()
    body = moves().cancel(who, resident_code)
    served("special_move_out_cancel", who)
    return SpecialMoveOutView(**body)


@app.post("/v1/special-move-ins", tags=["special move-out/move-in"],
          summary="Ask the home municipality for the move-out certificate information (特例転入), card authenticated here",
          responses={202: {"description": "sent; poll the result",
                           "content": {"application/json": {"model": SpecialMoveInAccepted}}}})
def request_move_in(request: SpecialMoveInRequest) -> Response[SpecialMoveInAccepted]:
    who = caller()
    correlation = moves().request(who, request.to_application())
    served("special_move_in_request", who)
    return Response(status_code=202, content_type="application/json",
                    body=SpecialMoveInAccepted(correlation=correlation, status="requested"))


@app.get("/v1/special-move-ins/<correlation>", tags=["special move-out/move-in"],
         summary="The special move-in now: requested, certified (the certificate information), moved in, completed, "
                 "refused (code) or timed out",
         responses={200: {"description": "the outcome", "content": {"application/json": {"model": SpecialMoveInResult}}}})
def move_in_result(correlation: CorrelationPath) -> SpecialMoveInResult:
    who = caller()
    body = moves().result(who, correlation)
    served("special_move_in_result", who)
    return SpecialMoveInResult(**body)


@app.post("/v1/special-move-ins/<correlation>/move-in", tags=["special move-out/move-in"],
          summary="The move-in is registered here: tell the home municipality (転入通知); the card is carried over "
                  "when it completes the move-out",
          responses={202: {"description": "the notice is sent; poll the result",
                           "content": {"application/json": {"model": SpecialMoveInResult}}}})
def register_move_in(correlation: CorrelationPath) -> Response[SpecialMoveInResult]:
    who = caller()
    body = moves().move_in(who, correlation)
    served("special_move_in_register", who)
    return Response(status_code=202, content_type="application/json", body=SpecialMoveInResult(**body))


# --- errors --------------------------------------------------------------------------------


def _refused_body(refusal: CardRefusal, who: Caller) -> str:
    return json.dumps({"error": {**refusal.to_dict(), "request_id": who.request_id}})


def refusal_response(refusal: CardRefusal) -> Response:
    who = caller()
    event = app.current_event
    try:
        body = json.loads(event.body or "{}")
    except ValueError:
        body = {}
    count_refusal(refusal, who, event.path, body if isinstance(body, dict) else {}, runtime())
    return Response(status_code=refusal.code.status, content_type="application/json",
                    body=_refused_body(refusal, who))


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
        count_unidentified(refusal, who)
        return {"statusCode": refusal.code.status, "headers": {"Content-Type": "application/json"},
                "body": _refused_body(refusal, who), "isBase64Encoded": False}
    return None


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    use_tier("municipality")
    try:
        return precheck(event) or app.resolve(event, context)
    finally:
        flush()
