"""Provision API (private REST API, IAM/SigV4): look-ups, searches, batches, disclosure.

Routes and their request/response models are declared here; Powertools validates requests
against them (``enable_validation=True``) and generates the OpenAPI document published as
``docs/openapi.json`` (``jukinet openapi``; a test fails when it is stale). Errors are mapped
once, below: handlers never build error JSON.
"""

from __future__ import annotations

import json
import os
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Path as PathParam
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.metrics import single_metric
from pydantic import BaseModel, Field

from ..adapters.batch_jobs import BatchJobs
from ..adapters.identity_store import IdentityStore
from ..adapters.kms import DataKeys
from ..adapters.provision_log import ProvisionLog
from ..clock import system_clock
from ..domain.agreements import Directory, FactField, Recipient
from ..domain.provision import MAX_REQUEST_BYTES, Refusal, RefusalCode
from ..domain.scan import Signal
from ..observability import MetricUnit, count_refused_by_code, flush, logger, metrics, use_tier
from ..services.provision import Caller, Grant, ProvisionService
from ..services.provision_batch import BatchProvision
from ..settings import ProvisionSettings, load_settings
from ._api import first_validation_error

API_TITLE = "jukinet provision API"
API_VERSION = "1.0.0"

app = APIGatewayRestResolver(enable_validation=True)

# --- models --------------------------------------------------------------------------------


class LookupRequest(BaseModel):
    affair_code: Annotated[str, Field(min_length=1, max_length=64, description="the statutory affair (agreement)")]
    resident_codes: Annotated[list[Annotated[str, Field(max_length=32)]],
                              Field(min_length=1, description="1 to 100 resident codes (住民票コード, 11 digits)")]
    fields: Annotated[list[FactField] | None,
                      Field(description="fields wanted; default: all the agreement permits")] = None


class SearchRequest(BaseModel):
    affair_code: Annotated[str, Field(min_length=1, max_length=64)]
    kana_name: Annotated[str, Field(min_length=1, max_length=100, description="name in kana, any spelling")]
    birth_date: Annotated[str, Field(min_length=1, max_length=10, description="YYYY-MM-DD")]
    sex: Annotated[str | None, Field(max_length=8, description="1 (男) or 2 (女)")] = None
    address: Annotated[str | None, Field(max_length=200)] = None
    fields: list[FactField] | None = None


class BatchRequest(BaseModel):
    affair_code: Annotated[str, Field(min_length=1, max_length=64)]
    input_key: Annotated[str, Field(min_length=1, max_length=512,
                                    description="object key under in/<recipient id>/ in the batch bucket")]
    fields: list[FactField] | None = None


class ResidentAnswer(BaseModel):
    resident_code: str
    outcome: Literal["provided", "not_found", "deleted", "code_changed", "invalid_code"]
    facts: dict


class LookupResponse(BaseModel):
    provision_id: str
    affair_code: str
    function: Literal["lookup", "own_use"]
    results: list[ResidentAnswer]


class SearchResult(BaseModel):
    resident_code: Annotated[str | None, Field(
        description="the match's resident code, only when the agreement permits resident_code")] = None
    outcome: Literal["provided"]
    facts: dict


class SearchResponse(BaseModel):
    provision_id: str
    affair_code: str
    outcome: Literal["unique", "not_found", "ambiguous"]
    result: SearchResult | None = None


class BatchAccepted(BaseModel):
    job_id: str
    provision_id: str
    status: str


class BatchStatus(BaseModel):
    job_id: str
    provision_id: str
    affair_code: str
    status: Literal["accepted", "running", "complete", "failed"]
    input_key: str
    created_at: str
    rows: int
    chunks: int
    chunks_done: int
    outcomes: dict[str, int]
    completed_at: str | None = None
    result_keys: list[str] | None = None
    error: dict | None = None


class DisclosedProvision(BaseModel):
    date: str
    at: str
    provision_id: str
    recipient_id: str
    recipient: str
    affair_code: str
    affair: str
    function: str
    function_label: str
    fields: list[str]
    provider: str
    entry: int
    delivery: Literal["delivered", "unconfirmed"] = Field(
        description="delivered: the answer was handed back; unconfirmed: the entry was written but no confirmation "
                    "of the answer followed (the function stopped in between: the answer may never have reached the "
                    "recipient). Shown either way (decision 0034).")


class ChainVerification(BaseModel):
    entries: int
    verified: bool = Field(description="the chain and every sealed entry check out against the signed seals")
    problems: list[str]
    unsealed_days: list[str] = Field(
        description="days (JST) with entries no hourly seal covers yet: checked by the hash chain only")


class EarlierDisclosure(BaseModel):
    date: str
    at: str
    office: str
    staff: str
    entry: int


class Disclosure(BaseModel):
    resident_code: str
    office: str
    provisions: list[DisclosedProvision]
    disclosures: list[EarlierDisclosure] = Field(
        description="earlier disclosures of this resident's provisions (who, when): each is recorded in the chain")
    chain: ChainVerification
    period_from: Annotated[str, Field(alias="from")]
    period_to: Annotated[str, Field(alias="to")]


# --- runtime -------------------------------------------------------------------------------


@lru_cache(maxsize=8)  # one per distinct environment: a cold start
def _runtime(settings: ProvisionSettings, endpoint: str | None) -> tuple[ProvisionService, BatchProvision]:
    root = Path(os.environ.get("LAMBDA_TASK_ROOT") or Path(__file__).resolve().parents[2])
    directory = Directory.from_document((root / settings.AGREEMENTS_FILE).read_bytes(),
                                        settings.prefecture_endpoints())
    # Reads meet every data key the national processor ever made: keep up to 65,536 unwrapped
    # (~16 MB), so a batch does not call KMS Decrypt per record (docs/performance.md).
    identity = IdentityStore(settings.TABLE_NAME, DataKeys(settings.DATA_KEY_ID, {"tier": "national"},
                                                           cache_size=65_536))
    service = ProvisionService(directory, identity, ProvisionLog(settings.PROVISION_LOG_TABLE,
                                                                 settings.PROVISION_STATE_TABLE),
                               clock=system_clock, seal_key_id=settings.SEAL_KEY_ID)
    jobs = BatchJobs(settings.PROVISION_STATE_TABLE, settings.BATCH_BUCKET, settings.BATCH_QUEUE_URL)
    return service, BatchProvision(service, jobs)


def runtime() -> tuple[ProvisionService, BatchProvision]:
    return _runtime(load_settings(ProvisionSettings), os.environ.get("AWS_ENDPOINT_URL"))


def caller() -> Caller:
    identity = app.current_event.raw_event.get("requestContext", {}).get("identity", {}) or {}
    return Caller(principal_arn=identity.get("userArn"), source_endpoint=identity.get("vpceId"),
                  request_id=app.current_event.request_context.request_id or "")


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


def served(grant: Grant, records: int, *, not_found: int = 0) -> None:
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
    who = caller()
    logger.info("provision served", extra={
        "provision_id": grant.provision_id, "recipient": grant.recipient.recipient_id,
        "affair_code": grant.agreement.affair_code, "function": grant.function.value, "records": records,
        "fields": sorted(grant.fields), "outside_agreed_hours": grant.outside_hours, "events": grant.events,
        "caller": who.principal_arn, "source_vpce": who.source_endpoint})


# --- routes --------------------------------------------------------------------------------


@app.post("/v1/lookups", summary="Look up residents by resident code (照会); the prefecture's own use (利用)",
          responses={200: {"description": "one answer per code", "content": {
              "application/json": {"model": LookupResponse}}}}, tags=["provision"])
def lookups(request: LookupRequest) -> LookupResponse:
    service, _ = runtime()
    grant, body = service.lookup(caller(), request.model_dump())
    _isolation_unchecked.set(None)
    results = body["results"]
    served(grant, sum(1 for r in results if r["outcome"] != "not_found"),
           not_found=sum(1 for r in results if r["outcome"] == "not_found"))
    return LookupResponse.model_validate(body)


@app.post("/v1/searches", summary="Search by the four basic facts (検索): a unique match or nothing",
          responses={200: {"description": "unique, not_found or ambiguous", "content": {
              "application/json": {"model": SearchResponse}}}}, tags=["provision"])
def searches(request: SearchRequest) -> SearchResponse:
    service, _ = runtime()
    grant, body = service.search(caller(), request.model_dump())
    served(grant, 1 if body["outcome"] == "unique" else 0, not_found=1 if body["outcome"] == "not_found" else 0)
    return SearchResponse.model_validate(body)


@app.post("/v1/batches", summary="Submit a batch provision (一括提供) of an uploaded file of resident codes",
          responses={202: {"description": "accepted", "content": {"application/json": {"model": BatchAccepted}}}},
          tags=["batch"])
def submit_batch(request: BatchRequest) -> Response[BatchAccepted]:
    _, batch = runtime()
    grant, body = batch.submit(caller(), request.model_dump())
    served(grant, 0)
    return Response(status_code=202, content_type="application/json", body=BatchAccepted.model_validate(body))


@app.get("/v1/batches/<job_id>", summary="Status of a batch provision job", tags=["batch"],
         responses={200: {"description": "the job", "content": {"application/json": {"model": BatchStatus}}}})
def batch_status(job_id: Annotated[str, PathParam(max_length=64)]) -> BatchStatus:
    _, batch = runtime()
    return BatchStatus.model_validate(batch.status(caller(), job_id))


@app.get("/v1/disclosures/<resident_code>", tags=["disclosure"],
         summary="Disclosure of provisions (提供状況の開示) of one resident, for prefecture staff",
         responses={200: {"description": "the provisions and the chain's verification",
                          "content": {"application/json": {"model": Disclosure}}}})
def disclosures(resident_code: Annotated[str, PathParam(max_length=32)],
                date_from: Annotated[str | None, Query(alias="from", max_length=10)] = None,
                date_to: Annotated[str | None, Query(alias="to", max_length=10)] = None) -> Disclosure:
    service, _ = runtime()
    body = service.disclose(caller(), resident_code, date_from, date_to)
    logger.info("disclosure served", extra={"office": body["office"], "caller": caller().principal_arn,
                                            "provisions": len(body["provisions"])})
    metrics.add_metric(name="DisclosuresServed", unit=MetricUnit.Count, value=1)
    return Disclosure.model_validate(body)


# --- errors --------------------------------------------------------------------------------


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


def _isolation_first(refusal: Refusal) -> Refusal:
    recipient = _isolation_unchecked.get()
    if recipient is None or refusal.code is RefusalCode.RECIPIENT_ISOLATED:
        return refusal
    _isolation_unchecked.set(None)
    try:
        runtime()[0].not_isolated(recipient)
    except Refusal as isolated:
        return isolated
    return refusal


def refusal_response(refusal: Refusal) -> Response:
    refusal = _isolation_first(refusal)
    who = caller()
    count_refusal(refusal, who)
    return Response(status_code=refusal.code.status, content_type="application/json",
                    body=json.dumps({"error": {**refusal.to_dict(), "request_id": who.request_id}}))


@app.exception_handler(Refusal)
def _refused(exc: Refusal) -> Response:
    return refusal_response(exc)


@app.exception_handler(RequestValidationError)
def _invalid(exc: RequestValidationError) -> Response:
    message, field, rule = first_validation_error(exc)
    return refusal_response(Refusal(RefusalCode.INVALID_REQUEST, message, field=field, rule=rule))


@app.not_found
def _not_found(exc: Exception) -> Response:
    return refusal_response(Refusal(RefusalCode.NOT_FOUND, "no such resource"))


def _is_lookup(event: dict) -> bool:
    return event.get("httpMethod") == "POST" and (event.get("resource") or event.get("path")) == "/v1/lookups"


def precheck(event: dict) -> dict | None:
    """Refusals decided before routing and validation: the caller and its endpoint (an unknown
    caller learns nothing about its input), the isolation mark (a look-up's comes with its
    snapshot, ``_isolation_first``), then the body's size."""
    context = event.get("requestContext") or {}
    identity = context.get("identity") or {}
    who = Caller(principal_arn=identity.get("userArn"), source_endpoint=identity.get("vpceId"),
                 request_id=context.get("requestId") or "")
    body = event.get("body") or ""
    _isolation_unchecked.set(None)
    try:
        lookup = _is_lookup(event)
        recipient = runtime()[0].identify(who, isolation=not lookup)
        if lookup:
            _isolation_unchecked.set(recipient)
        if len(body.encode("utf-8") if isinstance(body, str) else body) > MAX_REQUEST_BYTES:
            raise Refusal(RefusalCode.REQUEST_TOO_LARGE, f"the request body is over {MAX_REQUEST_BYTES} bytes",
                          field="body", rule="max_bytes")
    except Refusal as refusal:
        refusal = _isolation_first(refusal)
        count_refusal(refusal, who)
        return {"statusCode": refusal.code.status, "headers": {"Content-Type": "application/json"},
                "body": json.dumps({"error": {**refusal.to_dict(), "request_id": who.request_id}}),
                "isBase64Encoded": False}
    return None


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    use_tier("national")
    try:
        return precheck(event) or app.resolve(event, context)
    finally:
        flush()
