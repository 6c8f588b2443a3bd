"""The municipality tier's local-record table: each municipality's resident records, with the
fields that never leave the tier (``domain/local_record.py``; ``docs/decisions/0044-*``).

Table ``<prefix>-muni-<prefecture>-local-records``, append-only:

=======================================  ======================  ==================================================
pk                                       sk                      what
=======================================  ======================  ==================================================
``MUNI#<municipality>#R#<resident>``     ``H#<order key>``       one change of the resident as the CS sent it: the
                                                                 notice's id, reason and date, its facts (JSON),
                                                                 the local fields the row gave (JSON), ``digest``;
                                                                 ``household`` = ``MUNI#<m>#HH#<number>`` when the
                                                                 row gave a household (GSI ``by_household``)
=======================================  ======================  ==================================================

Every item is put once, conditionally (``attribute_not_exists(pk)``): nothing is overwritten,
updated or deleted. The current record is derived on read (``domain.local_record.fold``). The
key begins with the municipality's code, so each CS's role may put items of its own
municipality only (``dynamodb:LeadingKeys``, ``infra/components/local_records.py``).

Writes go 100 to a ``TransactWriteItems`` (each Put authorised by IAM as ``PutItem``): a file
of 1,000 rows is 10 requests, not 1,000. A retried file puts the same items again (same notice
ids, same order keys): their conditions fail, the cancellation returns the stored item
(``ReturnValuesOnConditionCheckFailure``), and an item with the same digest counts as already
written; a different one under the same key raises ``LocalRecordConflict``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..domain.facts import ChangeReason
from ..domain.local_record import LocalRecord, LocalRecordEntry, LocalRecordFields, fold
from ..domain.notice import UpdateNotice
from . import aws
from .dynamo_items import string as _s

BY_HOUSEHOLD = "by_household"
TRANSACTION_ITEMS = 100  # DynamoDB's limit per TransactWriteItems
MAX_ATTEMPTS = 8


class LocalRecordConflict(RuntimeError):
    """An item already stored under a key differs from the one being appended: never overwritten."""


def partition(municipality: str, resident_code: str) -> str:
    return f"MUNI#{municipality}#R#{resident_code}"


def household_key(municipality: str, household_number: str) -> str:
    return f"MUNI#{municipality}#HH#{household_number}"


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_item(municipality: str, notice: UpdateNotice, local: LocalRecordFields | None, *,
               resident_code: str | None = None, replaced_by: str | None = None) -> dict:
    """The item of one change. ``resident_code``/``replaced_by``: the old code's entry of a code change."""
    code = resident_code or notice.resident_code.value
    body = {
        "resident_code": code, "notice_id": notice.notice_id, "reason": notice.reason.value,
        "change_date": notice.change_date.isoformat(),
        "facts": None if notice.facts is None or replaced_by else notice.facts.to_dict(),
        "local": (local or LocalRecordFields()).given(), "replaced_by": replaced_by,
    }
    item = {"pk": _s(partition(municipality, code)), "sk": _s(f"H#{notice.order_key}"),
            "municipality": _s(municipality), "resident_code": _s(code), "notice_id": _s(notice.notice_id),
            "reason": _s(notice.reason.value), "change_date": _s(body["change_date"]),
            "local": _s(_json(body["local"])), "digest": _s(hashlib.sha256(_json(body).encode()).hexdigest())}
    if body["facts"] is not None:
        item["facts"] = _s(_json(body["facts"]))
    if replaced_by:
        item["replaced_by"] = _s(replaced_by)
    if local is not None and local.household_number is not None and not replaced_by:
        item["household"] = _s(household_key(municipality, local.household_number))
    return item


def entry_from(item: Mapping) -> LocalRecordEntry:
    return LocalRecordEntry(
        municipality=item["municipality"]["S"], resident_code=item["resident_code"]["S"],
        order_key=item["sk"]["S"].removeprefix("H#"), notice_id=item["notice_id"]["S"],
        reason=ChangeReason(item["reason"]["S"]), change_date=dt.date.fromisoformat(item["change_date"]["S"]),
        facts=json.loads(item["facts"]["S"]) if "facts" in item else None,
        local=LocalRecordFields.from_given(json.loads(item["local"]["S"])),
        replaced_by=item["replaced_by"]["S"] if "replaced_by" in item else None)


@dataclass(frozen=True)
class AppendOutcome:
    written: int  # items put now
    already: int  # items found stored before (a retried file)
    requests: int  # TransactWriteItems calls


class LocalRecords:
    """One municipality's local records in its tier's table."""

    def __init__(self, table_name: str, municipality: str) -> None:
        self.table_name = table_name
        self.municipality = municipality

    # --- writes ------------------------------------------------------------------------
    def items_for(self, changes: Iterable[tuple[UpdateNotice, LocalRecordFields | None]]) -> list[dict]:
        items = []
        for notice, local in changes:
            if notice.municipality.value != self.municipality:
                raise ValueError(f"notice {notice.notice_id} is not of municipality {self.municipality}")
            items.append(entry_item(self.municipality, notice, local))
            if notice.reason is ChangeReason.CODE_CHANGE and notice.previous_resident_code is not None:
                items.append(entry_item(self.municipality, notice, None,
                                        resident_code=notice.previous_resident_code.value,
                                        replaced_by=notice.resident_code.value))
        return items

    def append(self, changes: Iterable[tuple[UpdateNotice, LocalRecordFields | None]]) -> AppendOutcome:
        """Append one entry per notice (two for a code change), 100 to a transaction."""
        items = self.items_for(changes)
        written = already = requests = 0
        for start in range(0, len(items), TRANSACTION_ITEMS):
            w, a, r = self._put_group(items[start:start + TRANSACTION_ITEMS])
            written, already, requests = written + w, already + a, requests + r
        return AppendOutcome(written, already, requests)

    def _put_group(self, items: Sequence[dict]) -> tuple[int, int, int]:
        pending, already, requests = list(items), 0, 0
        for attempt in range(MAX_ATTEMPTS):
            requests += 1
            codes = self._transact(pending)
            if codes is None:
                return len(pending), already, requests
            retry = []
            for item, (code, stored) in zip(pending, codes, strict=True):
                if code == "ConditionalCheckFailed":
                    if stored is not None and stored.get("digest") != item["digest"]:
                        raise LocalRecordConflict(f"{self.table_name}: {item['pk']['S']} {item['sk']['S']} is stored "
                                                  "with other content; an append never overwrites")
                    already += 1
                elif code is None or code == "TransactionConflict":
                    retry.append(item)
                else:
                    raise RuntimeError(f"{self.table_name}: append cancelled for {item['pk']['S']}: {code}")
            if not retry:
                return 0, already, requests
            pending = retry
            time.sleep(min(0.01 * (attempt + 1), 0.2))
        raise RuntimeError(f"{self.table_name}: {len(pending)} local records still contended after {MAX_ATTEMPTS} tries")

    def _transact(self, items: Sequence[dict]) -> list[tuple[str | None, dict | None]] | None:
        """None if committed, else per item (cancellation code or None, the stored item if returned)."""
        return aws.transact_write([{"Put": {
            "TableName": self.table_name, "Item": item, "ConditionExpression": "attribute_not_exists(pk)",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}} for item in items])

    # --- reads -------------------------------------------------------------------------
    def history(self, resident_code: str) -> list[LocalRecordEntry]:
        """Every stored change of the resident in this municipality, in the ordering rule's order."""
        items, kwargs = [], {}
        while True:
            page = aws.client("dynamodb").query(
                TableName=self.table_name, KeyConditionExpression="pk = :pk AND begins_with(sk, :h)",
                ExpressionAttributeValues={":pk": _s(partition(self.municipality, resident_code)), ":h": _s("H#")},
                ConsistentRead=True, **kwargs)
            items += page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                break
            kwargs = {"ExclusiveStartKey": page["LastEvaluatedKey"]}
        return [entry_from(i) for i in items]

    def current(self, resident_code: str) -> LocalRecord | None:
        """The resident's record now (derived from the history), or None if never recorded here."""
        return fold(self.history(resident_code))

    def household(self, household_number: str) -> list[LocalRecord]:
        """The household's members now: residents whose current record is active in this household
        (someone who left it, moved out or died is not), sorted by relationship code then resident code.
        The index is eventually consistent (a member appended a moment ago may be missing for up to a
        second); each member's record is then read consistently."""
        residents, kwargs = set(), {}
        while True:
            page = aws.client("dynamodb").query(
                TableName=self.table_name, IndexName=BY_HOUSEHOLD, KeyConditionExpression="household = :h",
                ExpressionAttributeValues={":h": _s(household_key(self.municipality, household_number))}, **kwargs)
            residents.update(i["resident_code"]["S"] if "resident_code" in i else
                             i["pk"]["S"].rsplit("#", 1)[-1] for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs = {"ExclusiveStartKey": page["LastEvaluatedKey"]}
        members = []
        for code in sorted(residents):
            record = self.current(code)
            if record is not None and record.status == "active" and record.household_number == household_number:
                members.append(record)
        return sorted(members, key=lambda r: (r.local.relationship.value if r.local.relationship else "99",
                                              r.resident_code))
