"""The municipality CS (コミュニケーションサーバ): export files in, signed notices out.

One invocation takes a batch of files (the S3 events its inbox queue gathered, decision 0051):
read each file from the drop zone → parse and validate every row → reserve gap-free sequence
numbers for the valid rows of all new files (one transaction that records each file by its
SHA-256 with its own range) → pack the notices of all files together, sign each message once and
send them to the prefecture's inbound queue → append each change, with the row's
municipality-only fields, to the tier's local-record table → write each file's rejection
report → finish and count all files (one transaction).
The local fields (世帯, 続柄, 本籍 … ``domain/local_record.py``) are never part of a notice: what
is signed and sent upward is the basic facts only (``docs/decisions/0044-*``).
A rejected row is reported with row number, field and rule, counted, and never sent; a
valid row is never half-sent (see ``adapters.cs_state``). A file that fails (its object cannot be
read, its report cannot be written) fails alone: the others of the batch go on, and the caller
reports it for a retry, which resumes it with its recorded range and notice time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import posixpath
from dataclasses import dataclass, field

from ..adapters import aws, queues
from ..adapters.card_store import ResidentRegister
from ..adapters.cs_state import REJECTED, RESERVED, SENT, CsState, FileRecord, NewFile
from ..adapters.kms import Signer
from ..adapters.local_records import LocalRecords
from ..clock import Clock
from ..domain.codes import LocalGovernmentCode
from ..domain.export import parse_export, rejection_report_csv, summary_json
from ..domain.message import pack
from ..domain.notice import JST, parse_notice_time
from ..observability import MetricUnit, logger, metrics


@dataclass
class FileOutcome:
    object_key: str
    status: str  # sent | rejected | duplicate | ignored | failed
    sent: int = 0
    rejected: int = 0
    messages: int = 0  # messages of the batch that carried this file's notices
    first_seq: int | None = None
    last_seq: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class FileRef:
    """One S3 object to take; ``item``: what the caller reports a failure under (the SQS
    message id of the event that named it)."""

    bucket: str
    key: str
    item: str = ""


@dataclass
class BatchOutcome:
    files: list[FileOutcome]
    failed: list[tuple[FileRef, BaseException]] = field(default_factory=list)  # to retry

    @property
    def messages(self) -> int:
        return max((f.messages for f in self.files), default=0)


@dataclass
class _File:
    index: int
    ref: FileRef
    data: bytes
    sha256: str
    notice_time: dt.datetime | None = None
    result: object = None
    valid: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    record: FileRecord | None = None
    notices: list = field(default_factory=list)

    @property
    def filename(self) -> str:
        return posixpath.basename(self.ref.key)

    @property
    def rejected(self) -> int:
        return len(self.result.rejections) + (1 if self.result.file_error else 0)  # type: ignore[attr-defined]


class CommunicationServer:
    def __init__(self, municipality: str, state: CsState, signer: Signer, outbound_queue_url: str,
                 bucket: str, prefix: str = "", *, clock: Clock, register: ResidentRegister | None = None,
                 local_records: LocalRecords | None = None) -> None:
        self.municipality = LocalGovernmentCode.parse(municipality, "MUNICIPALITY_CODE")
        self.state = state
        self.signer = signer
        self.outbound_queue_url = outbound_queue_url
        self.bucket = bucket
        self.prefix = prefix
        self.clock = clock  # a notice's time is when its CS sent it
        # The tier's own register of residents for the counter API (住基カード): issuance checks
        # it, and a death, deletion or code change recorded there ends the resident's card.
        self.register = register
        # The municipality's own store of its residents' records, with the fields that stay in
        # the tier (append-only; adapters/local_records.py).
        self.local_records = local_records

    def process_object(self, bucket: str, key: str) -> FileOutcome:
        """One file; its failure is raised."""
        outcome = self.process_batch([FileRef(bucket, key)])
        if outcome.failed:
            raise outcome.failed[0][1]
        return outcome.files[0]

    def process_batch(self, refs: list[FileRef]) -> BatchOutcome:
        """Take the files ``refs`` name, in their order: each one's outcome, and those that
        failed (with why) for the caller to retry."""
        outcomes: list[FileOutcome | None] = [None] * len(refs)
        failed: list[tuple[FileRef, BaseException]] = []

        def fail(f: _File, exc: BaseException) -> None:
            logger.error("file failed; it is retried", extra={"key": f.ref.key,
                                                             "error": f"{type(exc).__name__}: {exc}"[:500]})
            outcomes[f.index] = FileOutcome(f.ref.key, "failed", error=f"{type(exc).__name__}: {exc}"[:500])
            failed.append((f.ref, exc))

        s3 = aws.client("s3")
        incoming = f"{self.prefix}incoming/"
        files: list[_File] = []
        for index, ref in enumerate(refs):
            if ref.bucket != self.bucket or not ref.key.startswith(incoming):
                logger.warning("object outside this CS's drop zone ignored", extra={"bucket": ref.bucket,
                                                                                    "key": ref.key})
                outcomes[index] = FileOutcome(ref.key, "ignored")
                continue
            try:
                data = s3.get_object(Bucket=ref.bucket, Key=ref.key)["Body"].read()
            except Exception as exc:  # noqa: BLE001 — this file fails alone
                fail(_File(index, ref, b"", ""), exc)
                continue
            files.append(_File(index, ref, data, hashlib.sha256(data).hexdigest()))

        pending = self._take(files, outcomes, fail)
        messages = 0
        try:
            notices = sorted((n for f in pending for n in f.notices), key=lambda n: n.sequence)
            if notices:
                created = max(f.notice_time for f in pending if f.notices)
                signed = [self.signer.sign(p) for p in pack(notices, sender=self.municipality.value, created=created)]
                messages = queues.send_signed(self.outbound_queue_url, signed)
        except Exception as exc:  # noqa: BLE001 — nothing of the batch is finished: all are retried
            for f in pending:
                fail(f, exc)
            pending = []
        reported = []
        for f in pending:
            try:
                self._write_reports(s3, f)
                reported.append(f)
            except Exception as exc:  # noqa: BLE001 — this file fails alone
                fail(f, exc)
        try:
            sent = [n for f in reported for n in f.notices]
            if self.register is not None and sent:  # before finish: a retry records them again (idempotent)
                self.register.record(sent)
            if sent:  # before finish: a retry appends the same items, found already stored
                self._store_locally(sent, [f.result.local_fields.get(row)  # type: ignore[attr-defined]
                                           for f in reported for row in f.rows])
            self.state.finish_many([(f.record, REJECTED if f.result.file_error else SENT)  # type: ignore
                                    for f in reported], now=self.clock())
        except Exception as exc:  # noqa: BLE001 — none of them finished: all are retried
            for f in reported:
                fail(f, exc)
            reported = []

        for f in reported:
            status = REJECTED if f.result.file_error else SENT  # type: ignore[attr-defined]
            record = f.record
            assert record is not None
            outcomes[f.index] = FileOutcome(
                f.ref.key, status, len(f.notices), f.rejected, messages,
                record.first_seq if f.notices else None,
                record.first_seq + len(f.notices) - 1 if f.notices else None)
            metrics.add_metric(name="NoticesSent", unit=MetricUnit.Count, value=len(f.notices))
            metrics.add_metric(name="RowsRejected", unit=MetricUnit.Count, value=f.rejected)
            logger.info("export processed", extra={
                "key": f.ref.key, "sent": len(f.notices), "rejected": f.rejected, "messages": messages,
                "first_seq": record.first_seq, "encoding": getattr(f.result, "encoding", None),
            })
        if len(refs) > 1:
            logger.info("batch processed", extra={"files": len(refs), "finished": len(reported),
                                                  "failed": len(failed), "messages": messages})
        return BatchOutcome([o for o in outcomes if o is not None], failed)

    def _take(self, files: list[_File], outcomes: list, fail) -> list[_File]:
        """Which files to send, each with its record and numbered notices: a file already taken
        (or twice in the batch) is a duplicate; one reserved by an invocation that did not finish
        is resumed with its range and notice time (byte-identical notices); the rest are parsed
        at one notice time and reserved together."""
        if not files:
            return []
        try:
            existing = self.state.files([f.sha256 for f in files])
        except Exception as exc:  # noqa: BLE001 — nothing recorded: all are retried
            for f in files:
                fail(f, exc)
            return []
        now = self.clock()
        seen: set[str] = set()
        taken: list[_File] = []
        for f in files:
            record = existing.get(f.sha256)
            if f.sha256 in seen or (record is not None and record.status != RESERVED):
                logger.info("file already taken; not sent again", extra={
                    "key": f.ref.key, "first": record.object_key if record else f.ref.key})
                metrics.add_metric(name="DuplicateFiles", unit=MetricUnit.Count, value=1)
                outcomes[f.index] = FileOutcome(f.ref.key, "duplicate")
                continue
            seen.add(f.sha256)
            # A retry reuses the recorded notice time, so the re-sent notices are byte-identical.
            f.record = record
            self._parse(f, parse_notice_time(record.notice_time) if record else now)
            taken.append(f)
        new = [f for f in taken if f.record is None]
        if new:
            try:
                records = self.state.reserve_many([NewFile(
                    f.sha256, f.ref.key, len(f.valid), f.rejected, _stamp(f.notice_time),
                    f.notice_time.astimezone(JST).strftime("%Y-%m")) for f in new],  # type: ignore[union-attr]
                    unrecorded=True)
            except Exception as exc:  # noqa: BLE001 — the transaction decides for all: all are retried
                for f in new:
                    fail(f, exc)
                taken = [f for f in taken if f.record is not None]
                records = {}
            for f in new:
                if f.sha256 in records:
                    f.record = records[f.sha256]
        ready = []
        for f in taken:
            record = f.record
            assert record is not None
            if record.status != RESERVED:  # a concurrent invocation took and finished the same file
                metrics.add_metric(name="DuplicateFiles", unit=MetricUnit.Count, value=1)
                outcomes[f.index] = FileOutcome(f.ref.key, "duplicate")
                continue
            if record.notice_time != _stamp(f.notice_time):  # reserved by another invocation first: its time
                self._parse(f, parse_notice_time(record.notice_time))
            if record.count != len(f.valid):
                fail(f, RuntimeError(f"{f.ref.key}: {len(f.valid)} valid rows but {record.count} numbers reserved"))
                continue
            f.notices = [dataclasses.replace(n, sequence=record.first_seq + i) for i, n in enumerate(f.valid)]
            ready.append(f)
        return ready

    def _parse(self, f: _File, notice_time: dt.datetime) -> None:
        f.notice_time = notice_time
        f.result = parse_export(f.data, municipality=self.municipality, notice_time=notice_time,
                                filename=f.filename)
        f.valid = [n for _, n in f.result.notices]  # type: ignore[attr-defined]
        f.rows = [row for row, _ in f.result.notices]  # type: ignore[attr-defined]

    def _write_reports(self, s3, f: _File) -> None:
        report_base = f"{self.prefix}reports/{f.filename}"
        s3.put_object(Bucket=f.ref.bucket, Key=f"{report_base}.rejections.csv",
                      Body=rejection_report_csv(f.result, f.filename), ContentType="text/csv; charset=utf-8")
        summary = summary_json(f.result)
        s3.put_object(Bucket=f.ref.bucket, Key=f"{report_base}.summary.json",
                      Body=summary.encode() if isinstance(summary, str) else summary, ContentType="application/json")

    def _store_locally(self, notices: list, local_fields: list) -> None:
        if self.local_records is None:
            if any(local_fields):
                logger.warning("local record fields given but no local-record table configured: not stored",
                               extra={"rows": sum(1 for f in local_fields if f)})
            return
        outcome = self.local_records.append(zip(notices, local_fields, strict=True))
        logger.info("local records appended", extra={"written": outcome.written, "already": outcome.already,
                                                     "requests": outcome.requests})


def _stamp(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
