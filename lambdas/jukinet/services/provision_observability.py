"""The provision functions' metrics and structured logs (docs/operations.md): a served
request, a refusal, the scan detection's signal — and the rule that an isolated recipient's
look-up is refused ``RECIPIENT_ISOLATED`` whatever else is wrong with it (decision 0023).

Never a resident's facts: counts, ids, the fields granted, the caller.
"""

from __future__ import annotations

from contextvars import ContextVar

from aws_lambda_powertools.metrics import single_metric

from ..domain.agreements import Recipient
from ..domain.provision import Refusal, RefusalCode
from ..domain.scan import Signal
from ..observability import MetricUnit, count_refused_by_code, logger, metrics
from .provision import Caller, Grant, ProvisionService


def scan_metrics(signal: Signal, recipient: str) -> None:
    """The scan detection's metrics (``domain.scan``, docs/operations.md): ``SequentialCodes``
    counts codes near another code of the recipient's sliding window (across requests and
    batch chunks), ``ScanSuspected`` says the window of one recipient looks like a scan."""
    if signal.near:
        metrics.add_metric(name="SequentialCodes", unit=MetricUnit.Count, value=signal.near)
    if signal.suspect:
        metrics.add_metric(name="ScanSuspected", unit=MetricUnit.Count, value=1)
        logger.warning("provision scan suspected", extra={
            "recipient": recipient, "reasons": signal.reasons, "window_near_codes": signal.window_near,
            "window_answers": signal.window_answers, "window_not_found": signal.window_not_found})


def served(grant: Grant, who: Caller, records: int, *, not_found: int = 0) -> None:
    """Metrics and the structured log of a served request (never a resident's facts).

    ``not_found`` and the grant's scan window feed the scan detection (docs/operations.md):
    resident codes are sparse, so someone walking through codes meets mostly unknown ones,
    and codes whose 10-digit bodies are close together are a sign of enumeration."""
    metrics.add_metric(name="ProvisionRequests", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="RecordsProvided", unit=MetricUnit.Count, value=records)
    metrics.add_metric(name="NotFoundAnswers", unit=MetricUnit.Count, value=not_found)
    if grant.scan is not None:
        scan_metrics(grant.scan, grant.recipient.recipient_id)
    if grant.outside_hours:
        metrics.add_metric(name="OutsideAgreedHours", unit=MetricUnit.Count, value=1)
    with single_metric(name="RecordsProvidedByRecipient", unit=MetricUnit.Count, value=records,
                       namespace=metrics.namespace,
                       default_dimensions={"service": metrics.service or "jukinet"}) as metric:
        metric.add_dimension(name="recipient", value=grant.recipient.recipient_id)
    logger.info("provision served", extra={
        "provision_id": grant.provision_id, "recipient": grant.recipient.recipient_id,
        "affair_code": grant.agreement.affair_code, "function": grant.function.value, "records": records,
        "fields": sorted(grant.fields), "outside_agreed_hours": grant.outside_hours, "events": grant.events,
        "caller": who.principal_arn, "source_vpce": who.source_endpoint})


def disclosure_served(office: str, who: Caller, provisions: int) -> None:
    logger.info("disclosure served", extra={"office": office, "caller": who.principal_arn,
                                            "provisions": provisions})
    metrics.add_metric(name="DisclosuresServed", unit=MetricUnit.Count, value=1)


def count_refusal(refusal: Refusal, who: Caller) -> None:
    metrics.add_metric(name="ProvisionRefusals", unit=MetricUnit.Count, value=1)
    count_refused_by_code(refusal.code.name)
    if refusal.code.unauthorised:
        metrics.add_metric(name="UnauthorisedAttempts", unit=MetricUnit.Count, value=1)
    if refusal.code is RefusalCode.RECIPIENT_ISOLATED:  # alarmed on its own: the emergency is not over
        metrics.add_metric(name="IsolatedRecipientCalls", unit=MetricUnit.Count, value=1)
    logger.warning("provision refused", extra={"code": refusal.code.name, "field": refusal.field,
                                               "rule": refusal.rule, "caller": who.principal_arn,
                                               "source_vpce": who.source_endpoint})


# A look-up reads the isolation mark with the rest of its state (one request, decision 0023):
# until it has, any refusal of the request is first checked against the mark, so an isolated
# recipient is refused RECIPIENT_ISOLATED whatever else is wrong with its request.
_isolation_unchecked: ContextVar[Recipient | None] = ContextVar("isolation_unchecked", default=None)


def isolation_pending(recipient: Recipient | None) -> None:
    """``recipient``: its isolation mark is not read yet (a look-up's comes with its snapshot);
    ``None``: it has been, or it need not be (a new request, a look-up that got its snapshot)."""
    _isolation_unchecked.set(recipient)


def isolation_first(refusal: Refusal, service: ProvisionService) -> Refusal:
    """The refusal to answer: ``RECIPIENT_ISOLATED`` when the recipient is isolated and its mark
    was not read yet, else ``refusal``."""
    recipient = _isolation_unchecked.get()
    if recipient is None or refusal.code is RefusalCode.RECIPIENT_ISOLATED:
        return refusal
    _isolation_unchecked.set(None)
    try:
        service.not_isolated(recipient)
    except Refusal as isolated:
        return isolated
    return refusal


__all__ = ["count_refusal", "disclosure_served", "isolation_first", "isolation_pending", "scan_metrics", "served"]
