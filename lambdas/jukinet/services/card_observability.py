"""The counter API's metrics and structured logs (docs/card.md, docs/operations.md): a served
request, a refusal — counted by code, the authentication refusals, an ended card presented and
the unauthorised attempts on their own (alarmed in bursts) — and the refusal recorded in the
municipality's call record and statistics as the action it refused (``card-stats``).

Never a resident's facts: the action, the caller, the card's serial, the refusal's code, field
and rule.
"""

from __future__ import annotations

from ..domain.card import Card, CardRefusal, CardRefusalCode
from ..observability import MetricUnit, count_refused_by_code, logger, metrics
from .card import Caller, CardService

_ACTIONS = {"/v1/authentications": "authenticate", "/v1/challenges": "challenge", "/v1/cards": "issue",
            "/v1/wide-area-copies": "wide_area_copy_request", "/v1/special-move-outs": "special_move_out_file",
            "/v1/special-move-ins": "special_move_in_request"}
_UNAUTHORISED = (CardRefusalCode.UNKNOWN_CALLER, CardRefusalCode.ENDPOINT_NOT_ALLOWED,
                 CardRefusalCode.NOT_THIS_MUNICIPALITY, CardRefusalCode.PUBLIC_KEY_IN_USE,
                 CardRefusalCode.PROOF_NOT_VALID)


def served(action: str, who: Caller, card: Card | None = None) -> None:
    """Metrics and the structured log of a served request."""
    metrics.add_metric(name="CardRequests", unit=MetricUnit.Count, value=1)
    logger.info("card request served", extra={"action": action, "caller": who.principal_arn,
                                              "serial": card.serial if card else None})


def refused_action(path: str) -> str:
    """The action a refused request is recorded as: a remote authentication's step counts as the
    authentication step it is (card-stats: auth refused)."""
    if path.startswith("/v1/remote-authentications"):
        return {"answer": "authenticate", "pin-failure": "pin-failure"}.get(path.rsplit("/", 1)[-1], "challenge")
    if path.startswith("/v1/wide-area-copies/"):
        return "wide_area_copy_result"
    if path.startswith("/v1/special-move-outs/"):
        return "special_move_out_cancel" if path.endswith("/cancellation") else "special_move_out_status"
    if path.startswith("/v1/special-move-ins/"):
        return "special_move_in_register" if path.endswith("/move-in") else "special_move_in_result"
    return _ACTIONS.get(path, path.rsplit("/", 1)[-1])


def count_refusal(refusal: CardRefusal, who: Caller, path: str, body: dict, cards: CardService) -> None:
    """Count and log a refused request, and record it with ``cards`` (the serial and resident code
    the request named, cut to their lengths; a record that cannot be written is logged, the
    refusal still reaches the caller)."""
    metrics.add_metric(name="CardRefusals", unit=MetricUnit.Count, value=1)
    count_refused_by_code(refusal.code.name)
    remote_path = path.startswith("/v1/remote-authentications")
    if refusal.code.authentication and (path in ("/v1/authentications", "/v1/challenges") or remote_path):
        metrics.add_metric(name="CardAuthenticationRefusals", unit=MetricUnit.Count, value=1)
    if refusal.code in (CardRefusalCode.CARD_SUSPENDED, CardRefusalCode.CARD_REVOKED):
        metrics.add_metric(name="EndedCardPresented", unit=MetricUnit.Count, value=1)  # a lost or stolen card
    if refusal.code in _UNAUTHORISED:
        metrics.add_metric(name="CardUnauthorisedAttempts", unit=MetricUnit.Count, value=1)
    logger.warning("card request refused", extra={"code": refusal.code.name, "field": refusal.field,
                                                  "rule": refusal.rule, "caller": who.principal_arn,
                                                  "source_vpce": who.source_endpoint, "path": path})
    serial = body.get("serial") if isinstance(body.get("serial"), str) else ""
    if not serial and path.startswith("/v1/cards/"):
        serial = path.split("/")[3]
    try:
        cards.refused(who, refused_action(path), refusal, serial=serial[:32],
                      resident_code=str(body.get("resident_code", ""))[:16])
    except Exception:  # the refusal must reach the caller even if its record cannot be written
        logger.exception("card refusal not recorded")


def count_unidentified(refusal: CardRefusal, who: Caller) -> None:
    """A request refused before routing (an unknown caller or endpoint, a body too large):
    counted as an unauthorised attempt, logged, recorded nowhere (no municipality is known)."""
    metrics.add_metric(name="CardRefusals", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="CardUnauthorisedAttempts", unit=MetricUnit.Count, value=1)
    logger.warning("card request refused", extra={"code": refusal.code.name, "caller": who.principal_arn,
                                                  "source_vpce": who.source_endpoint})


__all__ = ["count_refusal", "count_unidentified", "refused_action", "served"]
