"""Batch provision (一括提供): a file of up to ``max_batch_records`` resident codes for one affair.

1. ``submit`` (the API, ``POST /v1/batches``): the recipient has uploaded a file to
   ``in/<recipient id>/`` of the batch bucket; the request is authorised like any other, the
   object's version (and ETag) pinned, the job recorded, and a *split* task queued. The
   answer (202) carries the job and provision ids.
2. *split* (the batch function): re-authorises the job, reads exactly the pinned version of
   the file (one resident code per line, an optional ``resident_code`` header), checks the
   size against the agreement, **reserves** the rows against the month's limit (atomically,
   with every look-up and other batch of the recipient), and queues one *chunk* task per
   ``CHUNK_ROWS`` rows.
3. *chunk*: re-authorises the job against the agreement as it is *now* (expired, narrowed,
   or the recipient isolated: the job fails and the chunk provides nothing), reads the
   current states (BatchGetItem per 100), minimises them to the agreement's fields,
   **records** every row that gives facts in the provision log, writes the chunk's result
   part, gives back the reservation of rows that gave nothing, feeds the recipient's scan
   window, and counts the chunk once in the job. A malformed code is answered
   ``invalid_code`` for its row — one bad row must not refuse a million good ones.
4. ``GET /v1/batches/{job_id}``: the job's status, counts, and result keys when complete.

A chunk retried after a crash between recording and counting records its rows again: the log
may hold a provision twice, never miss one.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from ..adapters.batch_jobs import BatchJobs, InputChanged, Job, new_job_id
from ..clock import month_jst
from ..domain.agreements import ProvisionFunction
from ..domain.codes import ResidentCode
from ..domain.errors import ValidationError
from ..domain.provision import Answer, BatchSubmission, Outcome, Refusal, RefusalCode, authorise
from .provision import Caller, Grant, ProvisionService

CHUNK_ROWS = 1000
MAX_INPUT_BYTES = 64 * 1024 * 1024  # 1,000,000 codes of 12 digits with CRLF is ~14 MB
_HEADER = "resident_code"


class BatchProvision:
    def __init__(self, service: ProvisionService, jobs: BatchJobs) -> None:
        self.service = service
        self.jobs = jobs

    # --- the API side -------------------------------------------------------------------
    def submit(self, caller: Caller, submission: BatchSubmission) -> tuple[Grant, Job]:
        """Accept a job (its answer: the accepted ``Job``). The key's length the API's model
        checked; that it is the recipient's own is checked here."""
        grant = self.service.grant(caller, affair_code=submission.affair_code, function=ProvisionFunction.BATCH,
                                   fields=submission.fields, records=0)
        key = submission.input_key
        prefix = f"in/{grant.recipient.recipient_id}/"
        if not key.startswith(prefix) or ".." in key:
            raise Refusal(RefusalCode.INVALID_REQUEST, f"input_key must be an object under {prefix}",
                          field="input_key", rule="prefix")
        pinned = self.jobs.input_object(key)
        if pinned is None:
            raise Refusal(RefusalCode.INVALID_REQUEST, "input_key names no uploaded object", field="input_key",
                          rule="exists")
        if pinned.size > MAX_INPUT_BYTES:
            raise Refusal(RefusalCode.REQUEST_TOO_LARGE, f"the input file is over {MAX_INPUT_BYTES} bytes",
                          field="input_key", rule="max_bytes")
        job = Job(job_id=new_job_id(), recipient_id=grant.recipient.recipient_id,
                  affair_code=grant.agreement.affair_code, function=grant.function.value,
                  fields=tuple(sorted(grant.fields)), input_key=key, provision_id=grant.provision_id,
                  status="accepted", created_at=grant.at.isoformat(), input_version=pinned.version_id,
                  input_etag=pinned.etag, input_size=pinned.size)
        self.jobs.create(job, grant.at)
        self.jobs.enqueue([{"kind": "split", "job_id": job.job_id}])
        return grant, job

    def status(self, caller: Caller, job_id: str) -> Job:
        recipient = self.service.identify(caller)
        job = self.jobs.get(job_id) if job_id.startswith("J-") else None
        if job is None or job.recipient_id != recipient.recipient_id:
            raise Refusal(RefusalCode.NOT_FOUND, "no such batch job for this recipient", field="job_id",
                          rule="exists")
        return job

    # --- the worker side ----------------------------------------------------------------
    def handle(self, task: dict) -> Grant | None:
        """Run one task; a chunk that ran returns its grant (with the recipient's scan window)."""
        kind = task.get("kind")
        if kind == "split":
            self.split(task["job_id"])
            return None
        elif kind == "chunk":
            return self.chunk(task["job_id"], int(task["chunk"]), int(task["first_row"]), list(task["rows"]))
        else:
            raise ValueError(f"unknown batch task kind {kind!r}")

    def _grant(self, job: Job) -> Grant:
        """The job's authorisation, decided again now: the agreement as configured today (in
        force, still with the job's function and every one of its fields) and the recipient
        not isolated. A job accepted yesterday provides nothing its agreement no longer allows."""
        now = self.service.clock()
        recipient = self.service.directory.get(job.recipient_id)
        if recipient is not None:
            self.service.not_isolated(recipient)
        recipient, agreement, fields = authorise(recipient, affair_code=job.affair_code,
                                                 function=ProvisionFunction(job.function), now=now,
                                                 requested_fields=job.fields)
        return Grant(recipient, agreement, ProvisionFunction(job.function), fields, job.provision_id, now)

    @staticmethod
    def _month(job: Job) -> str:
        """The month a job's rows are reserved in (and given back to): the month it was accepted."""
        return month_jst(dt.datetime.fromisoformat(job.created_at))

    def split(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None or job.status not in ("accepted", "running"):
            return  # unknown or finished: a repeated task changes nothing
        now = self.service.clock()
        try:
            grant = self._grant(job)
            try:
                raw = self.jobs.read_input(job)
            except InputChanged as exc:
                raise Refusal(RefusalCode.INVALID_REQUEST, str(exc), field="input_key", rule="pinned") from None
            lines = [line.strip() for line in raw]
            if lines and lines[0].lower() == _HEADER:
                lines = lines[1:]
            while lines and not lines[-1]:
                lines.pop()
            limit = grant.agreement.max_batch_records
            if not lines:
                raise Refusal(RefusalCode.INVALID_REQUEST, "the input file holds no resident codes",
                              field="input_key", rule="required")
            if limit and len(lines) > limit:
                raise Refusal(RefusalCode.REQUEST_TOO_LARGE,
                              f"{len(lines)} rows; the agreement allows {limit} per batch", field="input_key",
                              rule="max_batch_records")
            if job.status == "accepted":  # a split retried after start() has reserved already
                self.service.reserve(grant.recipient, grant.agreement, len(lines), self._month(job))
        except Refusal as refusal:
            self.jobs.fail(job_id, refusal.code.name, refusal.message, now)
            raise
        chunks = [lines[i:i + CHUNK_ROWS] for i in range(0, len(lines), CHUNK_ROWS)]
        self.jobs.start(job_id, len(lines), len(chunks))
        self.jobs.enqueue([{"kind": "chunk", "job_id": job_id, "chunk": k, "first_row": k * CHUNK_ROWS + 1,
                            "rows": rows} for k, rows in enumerate(chunks)])

    def chunk(self, job_id: str, chunk: int, first_row: int, rows: list[str]) -> Grant | None:
        job = self.jobs.get(job_id)
        if job is None or chunk in job.done or job.status not in ("running", "failed"):
            return None
        if job.status == "failed":  # stopped by an earlier chunk: give this chunk's reservation back, once
            self._abandon(job, chunk, rows)
            return None
        try:
            grant = self._grant(job)
        except Refusal as refusal:
            self.jobs.fail(job_id, refusal.code.name, refusal.message, self.service.clock())
            self._abandon(job, chunk, rows)
            raise
        valid: dict[int, str] = {}
        for i, raw in enumerate(rows):
            try:
                valid[i] = ResidentCode.parse(raw, "resident_code").value
            except ValidationError:
                continue
        answers_by_code = {a.resident_code: a for a in self.service.answers(grant, list(dict.fromkeys(valid.values())))}
        lines, outcomes = [], Counter()
        for i, raw in enumerate(rows):
            answer = answers_by_code.get(valid.get(i, ""), Answer(str(raw)[:32], Outcome.INVALID_CODE))
            outcomes[answer.outcome.value] += 1
            lines.append({"row": first_row + i, **answer.to_dict()})
        answers = list(answers_by_code.values())
        provided = self.service.record(grant, answers)
        self.jobs.put_result(job.result_key(chunk), lines)
        if provided:  # the chunk's answer is in its result part: delivered (decision 0034)
            self.service.log.confirm_answered(grant.provision_id, grant.at)
        if self.jobs.complete_chunk(job_id, chunk, outcomes, self.service.clock()) is not None:
            self.service.release(grant, len(rows) - provided, self._month(job))
        self.service.observe(grant, list(valid.values()), answers, remember=False)
        return grant

    def _abandon(self, job: Job, chunk: int, rows: list[str]) -> None:
        if self.jobs.complete_chunk(job.job_id, chunk, {}, self.service.clock()) is not None:
            self.service.log.release(self._month(job), job.recipient_id, job.affair_code, len(rows))


__all__ = ["CHUNK_ROWS", "BatchProvision"]
