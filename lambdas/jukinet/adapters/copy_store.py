"""Records of wide-area copies (住民票の写しの広域交付) in the municipality tier's card table.

==================================  =====================  =================================================
pk                                  sk                     what
==================================  =====================  =================================================
``COPY#<issuer>#<YYYY-MM>``         ``<correlation>``      B's record of one copy request: clerk, applicant,
                                                           members, proof (card: serial and challenge;
                                                           document: type, number, checking clerk), home
                                                           municipality, the query sent; once issued: the
                                                           serial, the issue date, SHA-256 of the PDF; once
                                                           ended otherwise: ``outcome`` (issued, refused, timed_out)
``COPYNO#<issuer>``                 ``<YYYY>``             the last serial number given in that year (JST)
``COPY-ELSEWHERE#<home>#<YYYY-MM>`` ``<correlation>``      A's record that a copy of its residents' records
                                                           was answered for issue elsewhere: who asked
                                                           (municipality, clerk), when, the residents
==================================  =====================  =================================================

The correlation id names the issuer and the month (``domain/channel.py``), so every record is
found from it without a look-up. Every write is conditional: a retry changes nothing.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping

from ..clock import month_jst
from ..domain.channel import correlation_owner
from . import aws
from .dynamo_items import conditional as _conditional, plain as _plain, string as _s

RETENTION = dt.timedelta(days=7 * 366)


def _iso(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(correlation: str) -> dict:
    issuer, month = correlation_owner(correlation)
    return {"pk": _s(f"COPY#{issuer}#{month}"), "sk": _s(correlation)}


class CopyStore:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    # --- B: the issuing municipality ------------------------------------------------------------
    def put_request(self, correlation: str, *, clerk: str, applicant: str, home: str, query: Mapping,
                    proof: Mapping[str, str], now: dt.datetime) -> bool:
        item = {**_key(correlation), "clerk": _s(clerk), "applicant": _s(applicant), "home": _s(home),
                "query": _s(json.dumps(query, ensure_ascii=False, sort_keys=True)),
                "proof": _s(json.dumps(dict(proof), ensure_ascii=False, sort_keys=True)),
                "requested_at": _s(_iso(now)), "expires_at": {"N": str(int((now + RETENTION).timestamp()))}}
        return _conditional(aws.client("dynamodb").put_item, TableName=self.table_name, Item=item,
                            ConditionExpression="attribute_not_exists(pk)")

    def request(self, correlation: str) -> dict | None:
        item = aws.client("dynamodb").get_item(TableName=self.table_name, Key=_key(correlation),
                                               ConsistentRead=True).get("Item")
        return _plain(item) if item else None

    def next_serial(self, issuer: str, year: str) -> int:
        out = aws.client("dynamodb").update_item(
            TableName=self.table_name, Key={"pk": _s(f"COPYNO#{issuer}"), "sk": _s(year)},
            UpdateExpression="ADD last_serial :one", ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW")
        return int(out["Attributes"]["last_serial"]["N"])

    def issue(self, correlation: str, *, serial: str, issued_at: dt.datetime, issued_on: dt.date, sha256: str,
              rows: int) -> bool:
        """Record the copy as issued, once (``False``: it already was)."""
        return _conditional(
            aws.client("dynamodb").update_item, TableName=self.table_name, Key=_key(correlation),
            UpdateExpression="SET serial = :s, issued_at = :t, issued_on = :d, pdf_sha256 = :h, #r = :n, outcome = :f",
            ConditionExpression="attribute_exists(pk) AND attribute_not_exists(outcome)",
            ExpressionAttributeNames={"#r": "rows"},
            ExpressionAttributeValues={":s": _s(serial), ":t": _s(_iso(issued_at)), ":d": _s(issued_on.isoformat()),
                                       ":h": _s(sha256), ":n": {"N": str(rows)}, ":f": _s("issued")})

    def end(self, correlation: str, final: str, code: str, now: dt.datetime) -> bool:
        """Record a refusal or a timeout, once (``False``: the request had already ended)."""
        return _conditional(
            aws.client("dynamodb").update_item, TableName=self.table_name, Key=_key(correlation),
            UpdateExpression="SET outcome = :f, refusal = :c, ended_at = :t",
            ConditionExpression="attribute_exists(pk) AND attribute_not_exists(outcome)",
            ExpressionAttributeValues={":f": _s(final), ":c": _s(code), ":t": _s(_iso(now))})

    # --- A: the home municipality -------------------------------------------------------------------
    def record_answered_elsewhere(self, home: str, correlation: str, *, requester: str, clerk: str,
                                  residents: list[str], proof_kind: str, now: dt.datetime) -> bool:
        return _conditional(aws.client("dynamodb").put_item, TableName=self.table_name, Item={
            "pk": _s(f"COPY-ELSEWHERE#{home}#{month_jst(now)}"), "sk": _s(correlation), "requester": _s(requester),
            "clerk": _s(clerk), "residents": _s(",".join(residents)), "proof": _s(proof_kind),
            "answered_at": _s(_iso(now)), "expires_at": {"N": str(int((now + RETENTION).timestamp()))}},
            ConditionExpression="attribute_not_exists(pk)")

    def count_answered_elsewhere(self, home: str, month: str) -> int:
        """How many copies of ``home``'s residents' records were answered for issue elsewhere in
        ``month`` (JST; the statistics, ``jukinet card-stats``)."""
        total, kwargs = 0, {}
        while True:
            page = aws.client("dynamodb").query(
                TableName=self.table_name, KeyConditionExpression="pk = :p", Select="COUNT",
                ExpressionAttributeValues={":p": _s(f"COPY-ELSEWHERE#{home}#{month}")}, **kwargs)
            total += int(page.get("Count", 0))
            if "LastEvaluatedKey" not in page:
                return total
            kwargs = {"ExclusiveStartKey": page["LastEvaluatedKey"]}

    def answered_elsewhere(self, home: str, month: str) -> list[dict]:
        page = aws.client("dynamodb").query(
            TableName=self.table_name, KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": _s(f"COPY-ELSEWHERE#{home}#{month}")}, ConsistentRead=True)
        return [_plain(i) for i in page.get("Items", [])]
