"""Provision API (private REST API, IAM/SigV4): look-ups, searches, batches, disclosure.

Routes and the entry point; the request/response models are in ``provision_models.py``
(Powertools validates requests against them, ``enable_validation=True``, and generates the
OpenAPI document published as ``docs/openapi.json``: ``jukinet openapi``; a test fails when it
is stale), the metrics and logs in ``services/provision_observability.py``. Errors are mapped
once, below: routes never build error JSON.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Path as PathParam
from aws_lambda_powertools.event_handler.openapi.params import Query

from ..adapters.batch_jobs import BatchJobs
from ..adapters.identity_store import IdentityStore
from ..adapters.kms import DataKeys
from ..adapters.provision_log import ProvisionLog
from ..clock import system_clock
from ..domain.agreements import Directory
from ..domain.provision import MAX_REQUEST_BYTES, DisclosureQuery, Refusal, RefusalCode
from ..observability import flush, logger, use_tier
from ..services.provision import Caller, ProvisionService
from ..services.provision_batch import BatchProvision
from ..services.provision_observability import (
    count_refusal,
    disclosure_served,
    isolation_first,
    isolation_pending,
    served,
)
from ..settings import ProvisionSettings, load_settings
from ._api import first_validation_error
from .provision_models import (
    BatchAccepted,
    BatchRequest,
    BatchStatus,
    Disclosure,
    LookupRequest,
    LookupResponse,
    SearchRequest,
    SearchResponse,
)

API_TITLE = "jukinet provision API"
API_VERSION = "1.0.0"

app = APIGatewayRestResolver(enable_validation=True)

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


# --- routes --------------------------------------------------------------------------------


@app.post("/v1/lookups", summary="Look up residents by resident code (照会); the prefecture's own use (利用)",
          responses={200: {"description": "one answer per code", "content": {
              "application/json": {"model": LookupResponse}}}}, tags=["provision"])
def lookups(request: LookupRequest) -> LookupResponse:
    service, _ = runtime()
    who = caller()
    grant, result = service.lookup(who, request.to_query())
    isolation_pending(None)
    served(grant, who, result.records, not_found=result.not_found)
    return LookupResponse.of(result)


@app.post("/v1/searches", summary="Search by the four basic facts (検索): a unique match or nothing",
          responses={200: {"description": "unique, not_found or ambiguous", "content": {
              "application/json": {"model": SearchResponse}}}}, tags=["provision"])
def searches(request: SearchRequest) -> SearchResponse:
    service, _ = runtime()
    who = caller()
    grant, result = service.search(who, request.to_query())
    served(grant, who, 1 if result.outcome == "unique" else 0, not_found=1 if result.outcome == "not_found" else 0)
    return SearchResponse.of(result)


@app.post("/v1/batches", summary="Submit a batch provision (一括提供) of an uploaded file of resident codes",
          responses={202: {"description": "accepted", "content": {"application/json": {"model": BatchAccepted}}}},
          tags=["batch"])
def submit_batch(request: BatchRequest) -> Response[BatchAccepted]:
    _, batch = runtime()
    who = caller()
    grant, job = batch.submit(who, request.to_query())
    served(grant, who, 0)
    return Response(status_code=202, content_type="application/json", body=BatchAccepted.of(job))


@app.get("/v1/batches/<job_id>", summary="Status of a batch provision job", tags=["batch"],
         responses={200: {"description": "the job", "content": {"application/json": {"model": BatchStatus}}}})
def batch_status(job_id: Annotated[str, PathParam(max_length=64)]) -> BatchStatus:
    _, batch = runtime()
    return BatchStatus.of(batch.status(caller(), job_id))


@app.get("/v1/disclosures/<resident_code>", tags=["disclosure"],
         summary="Disclosure of provisions (提供状況の開示) of one resident, for prefecture staff",
         responses={200: {"description": "the provisions and the chain's verification",
                          "content": {"application/json": {"model": Disclosure}}}})
def disclosures(resident_code: Annotated[str, PathParam(max_length=32)],
                date_from: Annotated[str | None, Query(alias="from", max_length=10)] = None,
                date_to: Annotated[str | None, Query(alias="to", max_length=10)] = None) -> Disclosure:
    service, _ = runtime()
    who = caller()
    shown = service.disclose(who, DisclosureQuery(resident_code, date_from, date_to))
    disclosure_served(shown.office, who, len(shown.provisions))
    return Disclosure.of(shown)


# --- errors --------------------------------------------------------------------------------


def _refused_body(refusal: Refusal, who: Caller) -> str:
    return json.dumps({"error": {**refusal.to_dict(), "request_id": who.request_id}})


def refusal_response(refusal: Refusal) -> Response:
    refusal = isolation_first(refusal, runtime()[0])
    who = caller()
    count_refusal(refusal, who)
    return Response(status_code=refusal.code.status, content_type="application/json",
                    body=_refused_body(refusal, who))


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
    snapshot, ``isolation_first``), then the body's size."""
    context = event.get("requestContext") or {}
    identity = context.get("identity") or {}
    who = Caller(principal_arn=identity.get("userArn"), source_endpoint=identity.get("vpceId"),
                 request_id=context.get("requestId") or "")
    body = event.get("body") or ""
    isolation_pending(None)
    service = runtime()[0]
    try:
        lookup = _is_lookup(event)
        recipient = service.identify(who, isolation=not lookup)
        if lookup:
            isolation_pending(recipient)
        if len(body.encode("utf-8") if isinstance(body, str) else body) > MAX_REQUEST_BYTES:
            raise Refusal(RefusalCode.REQUEST_TOO_LARGE, f"the request body is over {MAX_REQUEST_BYTES} bytes",
                          field="body", rule="max_bytes")
    except Refusal as refusal:
        refusal = isolation_first(refusal, service)
        count_refusal(refusal, who)
        return {"statusCode": refusal.code.status, "headers": {"Content-Type": "application/json"},
                "body": _refused_body(refusal, who), "isBase64Encoded": False}
    return None


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    use_tier("national")
    try:
        return precheck(event) or app.resolve(event, context)
    finally:
        flush()
