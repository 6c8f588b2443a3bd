"""The counter API's OpenAPI document (resident cards), generated from the handler's code.

Routes live in ``lambdas/jukinet/handlers/card_api.py``, models in ``card_models.py``; this module gives
Powertools the servers, the SigV4 scheme and the error codes (``jukinet_ops.openapi.generate``), documents
the refusals (``CardRefusalCode``) on every operation and writes
``docs/card-openapi.json``, byte-stable, so a test fails when the published file is stale.
``jukinet openapi`` writes it together with the provision API's document.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .openapi import ROOT, generate, with_error_responses

DOCUMENT_PATH = ROOT / "docs" / "card-openapi.json"
REGENERATE = "jukinet openapi"

#: What each ``CardRefusalCode`` means to a counter. A code without an entry fails generation.
ERROR_CODE_MEANINGS = {
    "UNKNOWN_CALLER": "the signing principal is not a counter-staff role (or the operator role) of this tier",
    "ENDPOINT_NOT_ALLOWED": "the request did not come through this tier's execute-api endpoint",
    "NOT_THIS_MUNICIPALITY": "only the counter of the municipality that holds the card may do this (the operator: "
                             "suspensions only); issuance only at a municipality's counter",
    "RESIDENT_NOT_ACTIVE": "the tier's register does not show the resident living in the caller's municipality",
    "PUBLIC_KEY_IN_USE": "the public key is already registered to another card (a cloned key)",
    "INVALID_REQUEST": "the request does not match its schema or a rule (field and rule say which)",
    "INVALID_TRANSITION": "the card's lifecycle does not allow this change now (docs/card.md)",
    "CARD_NOT_FOUND": "no card with this serial in this tier",
    "CHALLENGE_NOT_FOUND": "no such challenge",
    "CHALLENGE_REPLAYED": "the challenge was already answered (one answer per challenge)",
    "CHALLENGE_EXPIRED": "the challenge's two minutes have passed",
    "WRONG_COUNTER": "the challenge was issued to another counter (municipality and staff session)",
    "SIGNATURE_INVALID": "the signature does not verify with the card's registered public key",
    "CARD_SUSPENDED": "the card is suspended (e.g. reported lost)",
    "CARD_REVOKED": "the card is revoked (returned, re-issued, death, deletion, code change)",
    "CARD_EXPIRED": "the card's ten-year validity has ended",
    "PIN_LOCKED": "three wrong PINs: the PIN must be reset at the holder's counter",
    "NOT_FOUND": "no such route (also: wide-area copies are not enabled in a tier without the channel)",
    "PROOF_NOT_VALID": "the card authentication named as a wide-area copy's proof is not a successful one of the "
                       "applicant by this clerk at this counter in the last 15 minutes, or already vouched for "
                       "another request",
    "COPY_NOT_FOUND": "no wide-area copy request with this correlation id at this counter",
    "SPECIAL_MOVE_NOT_FOUND": "no special move-out of this resident at this municipality, or no special move-in request "
                              "with this correlation id at this counter",
    "CARD_MOVED": "the card was carried over to a municipality of another tier (the message names it): this tier "
                  "changes it no more; authenticate it with POST /v1/remote-authentications",
    "CARRY_OVER_NOT_AGREED": "(between tiers) the old home has no special move-out of the resident to the "
                             "municipality asking for the card record",
}
ERROR_STATUSES = (400, 403, 404, 409)

DESCRIPTION = """\
The private REST API of a municipality tier through which its municipalities' counter \
terminals (窓口端末) issue resident register cards (住基カード), change their status, \
authenticate a card presented at any counter of the tier (a card of another prefecture through \
its home tier: `/v1/remote-authentications`), and ask another municipality for a \
wide-area copy of a resident record (住民票の写しの広域交付; docs/second-phase.md). Every \
request is signed with SigV4 \
by a counter-staff role (`jukinet-counter-<municipality code>`; the tier's operator role for \
suspensions) and comes through the tier's execute-api endpoint. See [docs/card.md](card.md).

Generated from `lambdas/jukinet/handlers/card_api.py` by `{regenerate}`.

## Errors

Every refusal is `{{"error": {{"code", "message", "field"?, "rule"?, "request_id"?}}}}`; \
authentication refusals are counted per reason and municipality and alarmed in bursts.

| code | HTTP status | meaning |
| --- | --- | --- |
{table}
"""


def error_codes() -> dict[str, dict[str, Any]]:
    from jukinet.domain.card import CardRefusalCode

    codes: dict[str, dict[str, Any]] = {}
    for code in CardRefusalCode:
        if code.name not in ERROR_CODE_MEANINGS:
            raise KeyError(f"CardRefusalCode.{code.name} has no entry in ERROR_CODE_MEANINGS")
        codes[code.name] = {"status": code.status, "authentication": code.authentication,
                            "description": ERROR_CODE_MEANINGS[code.name]}
    stale = sorted(set(ERROR_CODE_MEANINGS) - set(codes))
    if stale:
        raise KeyError(f"ERROR_CODE_MEANINGS names codes CardRefusalCode does not have: {stale}")
    return codes


def document() -> dict[str, Any]:
    from jukinet.handlers import card_api

    codes = error_codes()
    table = "\n".join(f"| `{name}` | {c['status']} | {c['description']} |" for name, c in codes.items())
    doc = generate(
        card_api.app, title=card_api.API_TITLE, version=card_api.API_VERSION,
        description=DESCRIPTION.format(regenerate=REGENERATE, table=table),
        servers=[{"url": "https://{api_id}-{vpce_id}.execute-api.{region}.amazonaws.com/api",
                  "description": "The tier's private REST API through its execute-api endpoint",
                  "variables": {"api_id": {"default": "api_id"}, "vpce_id": {"default": "vpce-0123456789abcdef0"},
                                "region": {"default": "ap-northeast-1"}}}],
        security_schemes={"sigv4": {
            "type": "apiKey", "in": "header", "name": "Authorization", "x-amazon-apigateway-authtype": "awsSigv4",
            "description": "AWS Signature Version 4 (service execute-api) with a counter-staff role of the tier"}},
        security=[{"sigv4": []}], extensions={"x-error-codes": codes})
    doc["components"].setdefault("schemas", {})["ErrorResponse"] = {
        "title": "ErrorResponse", "type": "object", "required": ["error"], "properties": {
            "error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string", "enum": list(codes)}, "message": {"type": "string"},
                "field": {"type": "string"}, "rule": {"type": "string"}, "request_id": {"type": "string"}}}}}
    responses = {}
    for status in ERROR_STATUSES:
        names = ", ".join(f"`{n}`" for n, c in codes.items() if c["status"] == status)
        responses[status] = {"description": f"Refused: {names}", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
    return with_error_responses(doc, responses)


def render(doc: dict[str, Any] | None = None) -> str:
    return json.dumps(document() if doc is None else doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write(path: Path | str = DOCUMENT_PATH) -> Path:
    path = Path(path)
    path.write_text(render(), encoding="utf-8")
    return path


def is_current(path: Path | str = DOCUMENT_PATH) -> bool:
    path = Path(path)
    return path.is_file() and path.read_text(encoding="utf-8") == render()
