"""Records of special move-outs and move-ins (特例転出・特例転入) in the municipality tier's card table.

=====================================  ===========================  ============================================
pk                                     sk                           what
=====================================  ===========================  ============================================
``SPECIAL-OUT#<A>``                    ``<resident>#<filed at>``    A's record of one special move-out
                                                                    (``domain.special_move.MoveOut``): the filing
                                                                    (clerk, by post or card authentication,
                                                                    planned date, destination, card serial), its
                                                                    state, the municipality holding the
                                                                    certificate, the SHA-256 of the certificate
                                                                    information given; ``v`` = version (every
                                                                    change conditional on it)
``SPECIAL-IN#<B>#<YYYY-MM>``           ``<correlation>``            B's record of one special move-in: clerk,
                                                                    resident, home (A), move date, the card
                                                                    authentication and serial, status; the
                                                                    certificate's SHA-256; the 転入通知's
                                                                    correlation and registration instant; the
                                                                    card's carry-over; the refusal or timeout
=====================================  ===========================  ============================================

One partition per municipality for A's records: the resident's latest filing is the last item
of ``begins_with(sk, <resident>#)``, and a month's statistics read the partition (a municipality
files a few thousand special move-outs a year). B's records are keyed by the certificate
request's correlation id, which names B and the month (``domain/channel.py``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping

from ..domain.channel import correlation_owner
from ..domain.special_move import MoveOut, State
from . import aws
from .dynamo_items import conditional as _conditional, plain as _plain, string as _s

RETENTION = dt.timedelta(days=7 * 366)


def _iso(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def out_partition(municipality: str) -> str:
    return f"SPECIAL-OUT#{municipality}"


def in_key(correlation: str) -> dict:
    requester, month = correlation_owner(correlation)
    return {"pk": _s(f"SPECIAL-IN#{requester}#{month}"), "sk": _s(correlation)}


def move_out_item(record: MoveOut, version: int, extra: Mapping[str, str]) -> dict:
    item = {
        "pk": _s(out_partition(record.municipality)), "sk": _s(f"{record.resident_code}#{_iso(record.filed_at)}"),
        "resident_code": _s(record.resident_code), "filed_at": _s(_iso(record.filed_at)),
        "planned_move_date": _s(record.planned_move_date.isoformat()),
        "destination_address": _s(record.destination_address), "card_serial": _s(record.card_serial),
        "by_post": {"BOOL": record.by_post}, "state": _s(record.state.value), "v": {"N": str(version)},
        "expires_at": {"N": str(int((record.filed_at + RETENTION).timestamp()))},
        **{k: _s(v) for k, v in extra.items()},
    }
    for name, value in (("requester", record.requester), ("certificate_correlation", record.certificate_correlation)):
        if value:
            item[name] = _s(value)
    if record.moved_on is not None:
        item["moved_on"] = _s(record.moved_on.isoformat())
    if record.changed_at is not None:
        item["changed_at"] = _s(_iso(record.changed_at))
    return item


def move_out_from(item: Mapping, municipality: str) -> MoveOut:
    p = _plain(item)
    return MoveOut(municipality=municipality, resident_code=p["resident_code"], filed_at=_instant(p["filed_at"]),
                   planned_move_date=dt.date.fromisoformat(p["planned_move_date"]),
                   destination_address=p["destination_address"], card_serial=p["card_serial"], by_post=p["by_post"],
                   state=State(p["state"]), requester=p.get("requester", ""),
                   certificate_correlation=p.get("certificate_correlation", ""),
                   moved_on=dt.date.fromisoformat(p["moved_on"]) if "moved_on" in p else None,
                   changed_at=_instant(p["changed_at"]) if "changed_at" in p else None)


class SpecialMoveStore:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    # --- A: the special move-outs ------------------------------------------------------------------
    def latest(self, municipality: str, resident_code: str) -> tuple[MoveOut, int, dict] | None:
        """The resident's latest special move-out at ``municipality``: the record, its version and
        the stored item (plain values)."""
        page = aws.client("dynamodb").query(
            TableName=self.table_name, KeyConditionExpression="pk = :p AND begins_with(sk, :r)",
            ExpressionAttributeValues={":p": _s(out_partition(municipality)), ":r": _s(f"{resident_code}#")},
            ScanIndexForward=False, Limit=1, ConsistentRead=True)
        items = page.get("Items", [])
        if not items:
            return None
        return move_out_from(items[0], municipality), int(items[0]["v"]["N"]), _plain(items[0])

    def file(self, record: MoveOut, extra: Mapping[str, str]) -> bool:
        return _conditional(aws.client("dynamodb").put_item, TableName=self.table_name,
                            Item=move_out_item(record, 1, extra), ConditionExpression="attribute_not_exists(pk)")

    def change(self, after: MoveOut, version: int, extra: Mapping[str, str] | None = None) -> bool:
        """Write ``after``'s state over the record stored at ``version``, with ``extra``
        attributes (``False``: someone changed it first)."""
        fields = {"state": after.state.value, "requester": after.requester,
                  "certificate_correlation": after.certificate_correlation,
                  "moved_on": after.moved_on.isoformat() if after.moved_on else "",
                  "changed_at": _iso(after.changed_at) if after.changed_at else "", **(extra or {})}
        fields = {k: v for k, v in fields.items() if v}
        names = {f"#f{i}": k for i, k in enumerate(fields)}
        return _conditional(
            aws.client("dynamodb").update_item, TableName=self.table_name,
            Key={"pk": _s(out_partition(after.municipality)), "sk": _s(f"{after.resident_code}#{_iso(after.filed_at)}")},
            UpdateExpression="SET v = :next, " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields))),
            ConditionExpression="v = :v", ExpressionAttributeNames=names,
            ExpressionAttributeValues={":v": {"N": str(version)}, ":next": {"N": str(version + 1)},
                                       **{f":f{i}": _s(v) for i, v in enumerate(fields.values())}})

    def move_outs(self, municipality: str) -> list[MoveOut]:
        """Every special move-out of ``municipality`` (the statistics read them all)."""
        ddb, items, start = aws.client("dynamodb"), [], None
        while True:
            kwargs = {"ExclusiveStartKey": start} if start else {}
            page = ddb.query(TableName=self.table_name, KeyConditionExpression="pk = :p",
                             ExpressionAttributeValues={":p": _s(out_partition(municipality))}, **kwargs)
            items += page.get("Items", [])
            start = page.get("LastEvaluatedKey")
            if not start:
                return [move_out_from(i, municipality) for i in items]

    # --- B: the special move-ins ---------------------------------------------------------------
    def put_move_in(self, correlation: str, fields: Mapping[str, str], now: dt.datetime) -> bool:
        item = {**in_key(correlation), **{k: _s(v) for k, v in fields.items()}, "status": _s("requested"),
                "requested_at": _s(_iso(now)), "expires_at": {"N": str(int((now + RETENTION).timestamp()))}}
        return _conditional(aws.client("dynamodb").put_item, TableName=self.table_name, Item=item,
                            ConditionExpression="attribute_not_exists(pk)")

    def move_in(self, correlation: str) -> dict | None:
        item = aws.client("dynamodb").get_item(TableName=self.table_name, Key=in_key(correlation),
                                               ConsistentRead=True).get("Item")
        return _plain(item) if item else None

    def advance(self, correlation: str, before: str | tuple[str, ...], after: str, fields: Mapping[str, str],
                now: dt.datetime) -> bool:
        """Move B's record from status ``before`` to ``after`` with ``fields``, once."""
        allowed = (before,) if isinstance(before, str) else before
        values = {f":b{i}": _s(b) for i, b in enumerate(allowed)}
        names = {"#status": "status", **{f"#f{i}": k for i, k in enumerate(fields)}}
        sets = ["#status = :after", "changed_at = :t", *(f"#f{i} = :f{i}" for i in range(len(fields)))]
        return _conditional(
            aws.client("dynamodb").update_item, TableName=self.table_name, Key=in_key(correlation),
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression="attribute_exists(pk) AND #status IN (" + ", ".join(values) + ")",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={**values, ":after": _s(after), ":t": _s(_iso(now)),
                                       **{f":f{i}": _s(v) for i, v in enumerate(fields.values())}})

    def set_fields(self, correlation: str, fields: Mapping[str, str], *, unless: str) -> bool:
        """Add ``fields`` once (``False`` if the attribute ``unless`` is already there)."""
        names = {f"#f{i}": k for i, k in enumerate(fields)} | {"#u": unless}
        return _conditional(
            aws.client("dynamodb").update_item, TableName=self.table_name, Key=in_key(correlation),
            UpdateExpression="SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields))),
            ConditionExpression="attribute_exists(pk) AND attribute_not_exists(#u)", ExpressionAttributeNames=names,
            ExpressionAttributeValues={f":f{i}": _s(v) for i, v in enumerate(fields.values())})

    def claim_challenge(self, challenge_id: str, correlation: str, partition: str = "CHALLENGE#") -> str:
        """Bind one special move-in request to a card authentication (the ``CHALLENGE#`` item of
        ``adapters/card_store.py`` at B; at A, for B in another tier, the ``REMOTE-CHALLENGE#``
        item A's tier issued to B); the correlation it is bound to (an earlier one on a retry)."""
        key = {"pk": _s(f"{partition}{challenge_id}"), "sk": _s("CHALLENGE")}
        if _conditional(aws.client("dynamodb").update_item, TableName=self.table_name, Key=key,
                        UpdateExpression="SET move_correlation = :c",
                        ConditionExpression="attribute_exists(authenticated_resident) AND "
                                            "attribute_not_exists(move_correlation)",
                        ExpressionAttributeValues={":c": _s(correlation)}):
            return correlation
        item = aws.client("dynamodb").get_item(TableName=self.table_name, Key=key, ConsistentRead=True).get("Item")
        return item.get("move_correlation", {}).get("S", "") if item else ""


def dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
