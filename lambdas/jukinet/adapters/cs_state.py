"""The municipality CS's own state: its sequence counter, the files it has taken, its counts.

Sequence numbers must be strictly increasing and gap-free per municipality, and a file must
never be sent twice nor half-sent. So a file's range of numbers is reserved in the same
transaction that records the file (keyed by its SHA-256); a retry after a crash finds the
record, reuses the same range and notice time, and therefore re-sends byte-identical
notices that the next tier deduplicates. Counts move in the transaction that marks the
file sent, so they are exact whatever the retries.

Several files of one invocation (a batch from the CS's inbox queue) are read with one
``BatchGetItem``, reserved in one transaction (the counter once, each file its own range, in
the batch's order) and finished in one transaction (each file's status, each month's counts
summed): ``files``, ``reserve_many``, ``finish_many``. A file is still recorded by its own
SHA-256 with its own range, so the rules above hold file by file.

Items (pk ``MUNI#<code>``): ``COUNTER`` (next_seq), ``FILE#<sha256>`` (status, range,
counts), ``STAT#<YYYY-MM>`` (sent, rejected, files, rejected_files, and ``last_sent``: when the month's latest
file was sent — the ledger watch waits 15 minutes past it before it calls a shortfall overdue).
"""

from __future__ import annotations

import datetime as dt

import time
from dataclasses import dataclass

from . import aws

RESERVED, SENT, REJECTED = "reserved", "sent", "rejected"
# TransactWriteItems takes 100 items: the counter and 99 files.
MAX_FILES_PER_TRANSACTION = 99
_MAX_BATCH_GET = 100


@dataclass(frozen=True)
class NewFile:
    """A file to record: its counts and notice time as its parse gave them."""

    sha256: str
    object_key: str
    count: int
    rejected: int
    notice_time: str
    month: str


@dataclass(frozen=True)
class FileRecord:
    sha256: str
    status: str
    object_key: str
    first_seq: int
    count: int
    rejected: int
    notice_time: str
    month: str


class CsState:
    def __init__(self, table_name: str, municipality: str) -> None:
        self.table_name = table_name
        self.pk = f"MUNI#{municipality}"

    def _key(self, sk: str) -> dict:
        return {"pk": {"S": self.pk}, "sk": {"S": sk}}

    def file(self, sha256: str) -> FileRecord | None:
        item = aws.client("dynamodb").get_item(
            TableName=self.table_name, Key=self._key(f"FILE#{sha256}"), ConsistentRead=True).get("Item")
        return None if item is None else _record(item)

    def files(self, sha256s: list[str]) -> dict[str, FileRecord]:
        """The records of the files already taken among ``sha256s`` (consistent reads, one
        ``BatchGetItem`` per 100)."""
        ddb = aws.client("dynamodb")
        wanted = list(dict.fromkeys(sha256s))
        found: dict[str, FileRecord] = {}
        for start in range(0, len(wanted), _MAX_BATCH_GET):
            keys = [self._key(f"FILE#{sha}") for sha in wanted[start:start + _MAX_BATCH_GET]]
            request = {self.table_name: {"Keys": keys, "ConsistentRead": True}}
            for _ in range(20):
                got = ddb.batch_get_item(RequestItems=request)
                for item in got.get("Responses", {}).get(self.table_name, []):
                    record = _record(item)
                    found[record.sha256] = record
                request = got.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError("BatchGetItem left keys unprocessed after 20 attempts")
        return found

    def reserve_many(self, files: list[NewFile], *, unrecorded: bool = False) -> dict[str, FileRecord]:
        """Record ``files`` and reserve each its own range of sequence numbers, in the order
        given, all in one transaction (per 99 files). A file already recorded — by a concurrent
        invocation — keeps its record, which is returned instead (its status says whether it is
        finished). Returns a record for every file. ``unrecorded``: the caller has just read them
        (``files``) and found none recorded; they are read again only if the transaction fails."""
        out: dict[str, FileRecord] = {}
        pending = list({f.sha256: f for f in files}.values())
        ddb = aws.client("dynamodb")
        for attempt in range(20):
            if not pending:
                return out
            if attempt or not unrecorded:
                out.update(self.files([f.sha256 for f in pending]))
            pending = [f for f in pending if f.sha256 not in out]
            if not pending:
                return out
            chunk = pending[:MAX_FILES_PER_TRANSACTION]
            counter = ddb.get_item(TableName=self.table_name, Key=self._key("COUNTER"), ConsistentRead=True).get("Item")
            first = int(counter["next_seq"]["N"]) if counter else 1
            records, seq = [], first
            for f in chunk:
                records.append(FileRecord(f.sha256, RESERVED, f.object_key, seq, f.count, f.rejected,
                                          f.notice_time, f.month))
                seq += f.count
            try:
                ddb.transact_write_items(TransactItems=[
                    {"Update": self._counter_update(counter, first, seq)},
                    *({"Put": self._file_put(r)} for r in records)])
            except Exception as exc:
                if aws.error_code(exc) == "TransactionCanceledException":
                    continue  # another invocation took the counter first, or recorded one of the files
                raise
            out.update({r.sha256: r for r in records})
            pending = pending[len(chunk):]
        raise RuntimeError("could not reserve sequence numbers after 20 attempts")

    def _counter_update(self, counter: dict | None, first: int, new: int) -> dict:
        update = {
            "TableName": self.table_name, "Key": self._key("COUNTER"),
            "UpdateExpression": "SET next_seq = :new",
            "ExpressionAttributeValues": {":new": {"N": str(new)}},
        }
        if counter:
            update["ConditionExpression"] = "next_seq = :cur"
            update["ExpressionAttributeValues"][":cur"] = {"N": str(first)}
        else:
            update["ConditionExpression"] = "attribute_not_exists(pk)"
        return update

    def _file_put(self, r: FileRecord) -> dict:
        return {
            "TableName": self.table_name,
            "Item": {
                **self._key(f"FILE#{r.sha256}"), "status": {"S": RESERVED}, "object_key": {"S": r.object_key},
                "first_seq": {"N": str(r.first_seq)}, "count": {"N": str(r.count)},
                "rejected": {"N": str(r.rejected)}, "notice_time": {"S": r.notice_time}, "month": {"S": r.month},
            },
            "ConditionExpression": "attribute_not_exists(pk)",
        }

    def reserve(self, sha256: str, object_key: str, count: int, rejected: int, notice_time: str,
                month: str) -> FileRecord:
        """Record the file and reserve ``count`` sequence numbers for it, atomically."""
        return self.reserve_many([NewFile(sha256, object_key, count, rejected, notice_time, month)])[sha256]

    def finish_many(self, done: list[tuple[FileRecord, str]], now: dt.datetime | None = None) -> None:
        """Mark several files done and count them, in one transaction (per 90 files): each
        file's status, and per month the counts summed. If any of them was finished already (a
        concurrent invocation), or the transaction fails otherwise, each is finished on its own
        (``finish``: once, whatever happened)."""
        for start in range(0, len(done), 90):
            chunk = done[start:start + 90]
            if len(chunk) == 1:
                self.finish(chunk[0][0], chunk[0][1], now)
                continue
            try:
                self._finish_together(chunk, now)
            except Exception as exc:
                if aws.error_code(exc) != "TransactionCanceledException":
                    raise
                for record, status in chunk:
                    self.finish(record, status, now)

    def _finish_together(self, chunk: list[tuple[FileRecord, str]], now: dt.datetime | None) -> None:
        months: dict[str, dict[str, int]] = {}
        for record, status in chunk:
            stats = months.setdefault(record.month, {":sent": 0, ":rej": 0, ":files": 0, ":rfiles": 0})
            stats[":sent"] += record.count if status == SENT else 0
            stats[":rej"] += record.rejected
            stats[":files"] += 1
            stats[":rfiles"] += 1 if status == REJECTED else 0
        aws.client("dynamodb").transact_write_items(TransactItems=[
            *({"Update": self._status_update(record, status)} for record, status in chunk),
            *({"Update": self._stats_update(month, stats, now)} for month, stats in months.items()),
        ])

    def finish(self, record: FileRecord, status: str = SENT, now: dt.datetime | None = None) -> bool:
        """Mark the file done and count it, once. False if it was already finished; a
        transaction conflict (another file of this municipality finishing at the same moment)
        is retried, never taken for "already finished". ``now`` (when the file was sent) is kept
        as the month's ``last_sent``: the ledger watch waits that long past it before it calls
        a difference between sent and stored overdue (``services.ledger_watch``)."""
        stats = {":sent": record.count if status == SENT else 0, ":rej": record.rejected,
                 ":files": 1, ":rfiles": 1 if status == REJECTED else 0}
        for attempt in range(20):
            try:
                self._finish(record, status, stats, now)
                return True
            except Exception as exc:
                if aws.error_code(exc) != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code") for r in getattr(exc, "response", {}).get("CancellationReasons", [])]
                if reasons and reasons[0] == "ConditionalCheckFailed":
                    return False
                time.sleep(min(0.02 * (attempt + 1), 0.5))
        raise RuntimeError(f"could not finish file {record.sha256} after 20 attempts")

    def _finish(self, record: FileRecord, status: str, stats: dict[str, int], now: dt.datetime | None) -> None:
        aws.client("dynamodb").transact_write_items(TransactItems=[
            {"Update": self._status_update(record, status)},
            {"Update": self._stats_update(record.month, stats, now)},
        ])

    def _status_update(self, record: FileRecord, status: str) -> dict:
        return {
            "TableName": self.table_name, "Key": self._key(f"FILE#{record.sha256}"),
            "UpdateExpression": "SET #s = :done", "ConditionExpression": "#s = :reserved",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":done": {"S": status}, ":reserved": {"S": RESERVED}},
        }

    def _stats_update(self, month: str, stats: dict[str, int], now: dt.datetime | None) -> dict:
        values = {k: {"N": str(v)} for k, v in stats.items()}
        expression = "ADD sent :sent, rejected :rej, files :files, rejected_files :rfiles"
        if now is not None:
            values[":at"] = {"S": now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
            expression += " SET last_sent = :at"
        return {"TableName": self.table_name, "Key": self._key(f"STAT#{month}"),
                "UpdateExpression": expression, "ExpressionAttributeValues": values}

    def month_stats(self, month: str) -> dict[str, int]:
        return {k: v for k, v in self._month_item(month).items() if k != "last_sent"}  # type: ignore[misc]

    def last_sent(self, month: str) -> tuple[int, dt.datetime | None]:
        """Notices sent in ``month`` and when the last of its files was sent (None: never, or
        before ``last_sent`` was recorded)."""
        item = self._month_item(month)
        at = item.get("last_sent")
        return int(item["sent"]), (dt.datetime.fromisoformat(str(at).replace("Z", "+00:00")) if at else None)

    def _month_item(self, month: str) -> dict[str, int | str]:
        item = aws.client("dynamodb").get_item(
            TableName=self.table_name, Key=self._key(f"STAT#{month}"), ConsistentRead=True).get("Item") or {}
        out: dict[str, int | str] = {k: int(item[k]["N"]) if k in item else 0
                                     for k in ("sent", "rejected", "files", "rejected_files")}
        if "last_sent" in item:
            out["last_sent"] = item["last_sent"]["S"]
        return out


def _record(item: dict) -> FileRecord:
    return FileRecord(
        sha256=item["sk"]["S"].removeprefix("FILE#"), status=item["status"]["S"], object_key=item["object_key"]["S"],
        first_seq=int(item["first_seq"]["N"]), count=int(item["count"]["N"]),
        rejected=int(item["rejected"]["N"]), notice_time=item["notice_time"]["S"], month=item["month"]["S"],
    )
