"""The municipality CS (コミュニケーションサーバ): an export file in, signed notices out.

read the file from the drop zone → parse and validate every row → reserve gap-free
sequence numbers for the valid rows (atomically with a record of the file) → sign batches
and send them to the prefecture's inbound queue → append each change, with the row's
municipality-only fields, to the tier's local-record table → write the rejection report → count.
The local fields (世帯, 続柄, 本籍 … ``domain/local_record.py``) are never part of a notice: what
is signed and sent upward is the basic facts only (``docs/decisions/0044-*``).
A rejected row is reported with row number, field and rule, counted, and never sent; a
valid row is never half-sent (see ``adapters.cs_state``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import posixpath
from dataclasses import dataclass

from ..adapters import aws, queues
from ..adapters.card_store import ResidentRegister
from ..adapters.cs_state import REJECTED, RESERVED, SENT, CsState
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
    status: str  # sent | rejected | duplicate | ignored
    sent: int = 0
    rejected: int = 0
    messages: int = 0
    first_seq: int | None = None
    last_seq: int | None = None


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
        incoming = f"{self.prefix}incoming/"
        if bucket != self.bucket or not key.startswith(incoming):
            logger.warning("object outside this CS's drop zone ignored", extra={"bucket": bucket, "key": key})
            return FileOutcome(key, "ignored")
        s3 = aws.client("s3")
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        sha256 = hashlib.sha256(data).hexdigest()
        existing = self.state.file(sha256)
        if existing is not None and existing.status != RESERVED:
            logger.info("file already taken; not sent again", extra={"key": key, "first": existing.object_key})
            metrics.add_metric(name="DuplicateFiles", unit=MetricUnit.Count, value=1)
            return FileOutcome(key, "duplicate")

        # A retry reuses the recorded notice time, so the re-sent notices are byte-identical.
        notice_time = parse_notice_time(existing.notice_time) if existing else self.clock()
        filename = posixpath.basename(key)
        result = parse_export(data, municipality=self.municipality, notice_time=notice_time, filename=filename)
        valid = [n for _, n in result.notices]
        rows = [row for row, _ in result.notices]
        rejected = len(result.rejections) + (1 if result.file_error else 0)
        stamp = notice_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        record = existing or self.state.reserve(
            sha256, key, len(valid), rejected, stamp, notice_time.astimezone(JST).strftime("%Y-%m"))
        if record.status != RESERVED:  # a concurrent invocation took and finished the same file
            metrics.add_metric(name="DuplicateFiles", unit=MetricUnit.Count, value=1)
            return FileOutcome(key, "duplicate")
        if record.notice_time != stamp:  # a concurrent invocation reserved it first: use its time
            notice_time = parse_notice_time(record.notice_time)
            result = parse_export(data, municipality=self.municipality, notice_time=notice_time, filename=filename)
            valid = [n for _, n in result.notices]
            rows = [row for row, _ in result.notices]
        if record.count != len(valid):
            raise RuntimeError(f"{key}: {len(valid)} valid rows but {record.count} numbers reserved")
        notices = [dataclasses.replace(n, sequence=record.first_seq + i) for i, n in enumerate(valid)]

        messages = 0
        if notices:
            signed = [self.signer.sign(p) for p in pack(notices, sender=self.municipality.value, created=notice_time)]
            messages = queues.send_signed(self.outbound_queue_url, signed)
        report_base = f"{self.prefix}reports/{filename}"
        s3.put_object(Bucket=bucket, Key=f"{report_base}.rejections.csv", Body=rejection_report_csv(result, filename),
                      ContentType="text/csv; charset=utf-8")
        summary = summary_json(result)
        s3.put_object(Bucket=bucket, Key=f"{report_base}.summary.json",
                      Body=summary.encode() if isinstance(summary, str) else summary, ContentType="application/json")
        status = REJECTED if result.file_error else SENT
        if self.register is not None and notices:  # before finish: a retry records them again (idempotent)
            self.register.record(notices)
        if notices:  # before finish: a retry appends the same items, found already stored
            self._store_locally(notices, [result.local_fields.get(row) for row in rows])
        self.state.finish(record, status, now=self.clock())

        metrics.add_metric(name="NoticesSent", unit=MetricUnit.Count, value=len(notices))
        metrics.add_metric(name="RowsRejected", unit=MetricUnit.Count, value=rejected)
        logger.info("export processed", extra={
            "key": key, "sent": len(notices), "rejected": rejected, "messages": messages,
            "first_seq": record.first_seq, "encoding": getattr(result, "encoding", None),
        })
        return FileOutcome(key, status, len(notices), rejected, messages,
                           record.first_seq if notices else None,
                           record.first_seq + len(notices) - 1 if notices else None)

    def _store_locally(self, notices: list, local_fields: list) -> None:
        if self.local_records is None:
            if any(local_fields):
                logger.warning("local record fields given but no local-record table configured: not stored",
                               extra={"rows": sum(1 for f in local_fields if f)})
            return
        outcome = self.local_records.append(zip(notices, local_fields, strict=True))
        logger.info("local records appended", extra={"written": outcome.written, "already": outcome.already,
                                                     "requests": outcome.requests})
