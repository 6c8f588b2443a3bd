"""The municipality CS's own state: its sequence counter, the files it has taken, its counts.

Sequence numbers must be strictly increasing and gap-free per municipality, and a file must
never be sent twice nor half-sent. So a file's range of numbers is reserved in the same
transaction that records the file (keyed by its SHA-256); a retry after a crash finds the
record, reuses the same range and notice time, and therefore re-sends byte-identical
notices that the next tier deduplicates. Counts move in the transaction that marks the
file sent, so they are exact whatever the retries.

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
        if item is None:
            return None
        return FileRecord(
            sha256=sha256, status=item["status"]["S"], object_key=item["object_key"]["S"],
            first_seq=int(item["first_seq"]["N"]), count=int(item["count"]["N"]),
            rejected=int(item["rejected"]["N"]), notice_time=item["notice_time"]["S"], month=item["month"]["S"],
        )

    def reserve(self, sha256: str, object_key: str, count: int, rejected: int, notice_time: str,
                month: str) -> FileRecord:
        """Record the file and reserve ``count`` sequence numbers for it, atomically."""
        ddb = aws.client("dynamodb")
        for _ in range(20):
            existing = self.file(sha256)
            if existing is not None:
                return existing
            counter = ddb.get_item(TableName=self.table_name, Key=self._key("COUNTER"), ConsistentRead=True).get("Item")
            first = int(counter["next_seq"]["N"]) if counter else 1
            record = FileRecord(sha256, RESERVED, object_key, first, count, rejected, notice_time, month)
            counter_update = {
                "TableName": self.table_name, "Key": self._key("COUNTER"),
                "UpdateExpression": "SET next_seq = :new",
                "ExpressionAttributeValues": {":new": {"N": str(first + count)}},
            }
            if counter:
                counter_update["ConditionExpression"] = "next_seq = :cur"
                counter_update["ExpressionAttributeValues"][":cur"] = {"N": str(first)}
            else:
                counter_update["ConditionExpression"] = "attribute_not_exists(pk)"
            try:
                ddb.transact_write_items(TransactItems=[
                    {"Update": counter_update},
                    {"Put": {
                        "TableName": self.table_name,
                        "Item": {
                            **self._key(f"FILE#{sha256}"), "status": {"S": RESERVED}, "object_key": {"S": object_key},
                            "first_seq": {"N": str(first)}, "count": {"N": str(count)},
                            "rejected": {"N": str(rejected)}, "notice_time": {"S": notice_time},
                            "month": {"S": month},
                        },
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }},
                ])
            except Exception as exc:
                if aws.error_code(exc) == "TransactionCanceledException":
                    continue  # another file took the counter first, or this file was recorded
                raise
            return record
        raise RuntimeError("could not reserve sequence numbers after 20 attempts")

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
        values = {k: {"N": str(v)} for k, v in stats.items()}
        expression = "ADD sent :sent, rejected :rej, files :files, rejected_files :rfiles"
        if now is not None:
            values[":at"] = {"S": now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
            expression += " SET last_sent = :at"
        aws.client("dynamodb").transact_write_items(TransactItems=[
            {"Update": {
                "TableName": self.table_name, "Key": self._key(f"FILE#{record.sha256}"),
                "UpdateExpression": "SET #s = :done", "ConditionExpression": "#s = :reserved",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": {":done": {"S": status}, ":reserved": {"S": RESERVED}},
            }},
            {"Update": {
                "TableName": self.table_name, "Key": self._key(f"STAT#{record.month}"),
                "UpdateExpression": expression, "ExpressionAttributeValues": values,
            }},
        ])

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
