"""The provision API's request and response models (``handlers/provision_api.py`` routes them).

Powertools validates each request against its model and generates the OpenAPI document from
them (``docs/openapi.json``, ``jukinet openapi``). What a model checks (types, lengths, the
fields' names) the services take as given; the rules the models cannot say (check digits,
dates, the number of codes, the agreement) the services check, with their own refusals. The
``to_query``/``of`` methods map to and from the services' typed requests and results
(``domain/provision.py``): no dict passes between the handler and a service.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from ..adapters.batch_jobs import Job
from ..domain.agreements import FactField
from ..domain.provision import Answer, BatchSubmission, LookupQuery, LookupResult, SearchQuery
from ..domain.provision import SearchResult as SearchAnswer
from ..services.provision import Disclosed


def _fields(fields: list[FactField] | None) -> tuple[str, ...] | None:
    return None if fields is None else tuple(fields)


class LookupRequest(BaseModel):
    affair_code: Annotated[str, Field(min_length=1, max_length=64, description="the statutory affair (agreement)")]
    resident_codes: Annotated[list[Annotated[str, Field(max_length=32)]],
                              Field(min_length=1, description="1 to 100 resident codes (住民票コード, 11 digits)")]
    fields: Annotated[list[FactField] | None,
                      Field(description="fields wanted; default: all the agreement permits")] = None

    def to_query(self) -> LookupQuery:
        return LookupQuery(self.affair_code, tuple(self.resident_codes), _fields(self.fields))


class SearchRequest(BaseModel):
    affair_code: Annotated[str, Field(min_length=1, max_length=64)]
    kana_name: Annotated[str, Field(min_length=1, max_length=100, description="name in kana, any spelling")]
    birth_date: Annotated[str, Field(min_length=1, max_length=10, description="YYYY-MM-DD")]
    sex: Annotated[str | None, Field(max_length=8, description="1 (男) or 2 (女)")] = None
    address: Annotated[str | None, Field(max_length=200)] = None
    fields: list[FactField] | None = None

    def to_query(self) -> SearchQuery:
        return SearchQuery(self.affair_code, self.kana_name, self.birth_date, self.sex, self.address,
                           _fields(self.fields))


class BatchRequest(BaseModel):
    affair_code: Annotated[str, Field(min_length=1, max_length=64)]
    input_key: Annotated[str, Field(min_length=1, max_length=512,
                                    description="object key under in/<recipient id>/ in the batch bucket")]
    fields: list[FactField] | None = None

    def to_query(self) -> BatchSubmission:
        return BatchSubmission(self.affair_code, self.input_key, _fields(self.fields))


class ResidentAnswer(BaseModel):
    resident_code: str
    outcome: Literal["provided", "not_found", "deleted", "code_changed", "invalid_code"]
    facts: dict

    @classmethod
    def of(cls, answer: Answer) -> ResidentAnswer:
        return cls.model_validate(answer.to_dict())


class LookupResponse(BaseModel):
    provision_id: str
    affair_code: str
    function: Literal["lookup", "own_use"]
    results: list[ResidentAnswer]

    @classmethod
    def of(cls, result: LookupResult) -> LookupResponse:
        return cls.model_validate({"provision_id": result.provision_id, "affair_code": result.affair_code,
                                   "function": result.function,
                                   "results": [ResidentAnswer.of(a) for a in result.answers]})


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

    @classmethod
    def of(cls, found: SearchAnswer) -> SearchResponse:
        result = None
        if found.answer is not None:
            result = SearchResult.model_validate({
                **found.answer.to_dict(),
                "resident_code": found.answer.resident_code if found.code_permitted else None})
        return cls.model_validate({"provision_id": found.provision_id, "affair_code": found.affair_code,
                                   "outcome": found.outcome, "result": result})


class BatchAccepted(BaseModel):
    job_id: str
    provision_id: str
    status: str

    @classmethod
    def of(cls, job: Job) -> BatchAccepted:
        return cls(job_id=job.job_id, provision_id=job.provision_id, status=job.status)


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

    @classmethod
    def of(cls, job: Job) -> BatchStatus:
        return cls.model_validate(job.to_status())


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

    @classmethod
    def of(cls, shown: Disclosed) -> Disclosure:
        return cls.model_validate({
            "resident_code": shown.resident_code, "office": shown.office, "from": shown.period_from,
            "to": shown.period_to, "provisions": list(shown.provisions), "disclosures": list(shown.disclosures),
            "chain": shown.chain})
