"""Card requests to another tier (decision 0050), kept in the requesting tier's card table.

==================================  =====================  =================================================
pk                                  sk                     what
==================================  =====================  =================================================
``CARDREQ#<requester>#<YYYY-MM>``   ``<correlation>``      one channel request the counter recorded for the
                                                           channel function to send: the query (card
                                                           challenge, answer, wrong PIN, carry-over), the
                                                           municipality it goes to, the authentication it
                                                           belongs to; ``counted`` once its outcome is counted
``CHALLENGE#<id>``                  ``CHALLENGE``          the requesting counter's authentication of a card
                                                           of another tier (``remote_home`` set): bound to the
                                                           municipality and the clerk's session; ``step`` and
                                                           ``step_correlation`` name the channel request now
                                                           in flight; ``used`` is true from the start (it is
                                                           never answered within this tier); on success
                                                           ``authenticated_resident``/``authenticated_at``,
                                                           the same fields a wide-area copy's card proof reads
==================================  =====================  =================================================

The correlation id names the requester and the month (``domain/channel.py``). Every write that
decides something is conditional: a retry or a concurrent poll changes nothing twice.
"""

from __future__ import annotations

import datetime as dt
import json

from ..domain.channel import correlation_owner
from . import aws
from .dynamo_items import plain as _plain, string as _s

RETENTION = dt.timedelta(days=7 * 366)
MIRROR_KEEP = dt.timedelta(days=1)


def _iso(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def request_key(correlation: str) -> dict:
    requester, month = correlation_owner(correlation)
    return {"pk": _s(f"CARDREQ#{requester}#{month}"), "sk": _s(correlation)}


def _mirror_key(auth_id: str) -> dict:
    return {"pk": _s(f"CHALLENGE#{auth_id}"), "sk": _s("CHALLENGE")}


class CardRequests:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    def _conditional(self, **kwargs) -> bool:
        try:
            aws.client("dynamodb").update_item(TableName=self.table_name, **kwargs)
            return True
        except Exception as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise
            return False

    # --- the channel requests --------------------------------------------------------------
    def put_request(self, correlation: str, *, to: str, query: dict, auth_id: str, clerk: str,
                    now: dt.datetime) -> None:
        aws.client("dynamodb").put_item(TableName=self.table_name, Item={
            **request_key(correlation), "to": _s(to), "query": _s(json.dumps(query, sort_keys=True)),
            "auth_id": _s(auth_id), "clerk": _s(clerk), "requested_at": _s(_iso(now)),
            "expires_at": {"N": str(int((now + RETENTION).timestamp()))}}, ConditionExpression="attribute_not_exists(pk)")

    def request(self, correlation: str) -> dict | None:
        item = aws.client("dynamodb").get_item(TableName=self.table_name, Key=request_key(correlation),
                                               ConsistentRead=True).get("Item")
        return _plain(item) if item else None

    def count_once(self, correlation: str, outcome: str) -> bool:
        """``True`` the first time an outcome is recorded for this request (count it then)."""
        return self._conditional(Key=request_key(correlation), UpdateExpression="SET counted = :o",
                                 ConditionExpression="attribute_exists(pk) AND attribute_not_exists(counted)",
                                 ExpressionAttributeValues={":o": _s(outcome)})

    # --- the authentication at the requesting counter ----------------------------------------
    def put_authentication(self, auth_id: str, *, serial: str, municipality: str, principal: str, home: str,
                           correlation: str, now: dt.datetime) -> None:
        aws.client("dynamodb").put_item(TableName=self.table_name, Item={
            **_mirror_key(auth_id), "serial": _s(serial), "nonce": _s(""), "municipality": _s(municipality),
            "principal": _s(principal), "remote_home": _s(home), "issued_at": _s(_iso(now)),
            "challenge_expires_at": _s(_iso(now + MIRROR_KEEP)), "used": {"BOOL": True},
            "step": _s("challenge"), "step_correlation": _s(correlation), "routes": {"N": "0"},
            "expires_at": {"N": str(int((now + MIRROR_KEEP + MIRROR_KEEP).timestamp()))}},
            ConditionExpression="attribute_not_exists(pk)")

    def authentication(self, auth_id: str) -> dict | None:
        item = aws.client("dynamodb").get_item(TableName=self.table_name, Key=_mirror_key(auth_id),
                                               ConsistentRead=True).get("Item")
        if not item or "remote_home" not in item:
            return None
        return _plain(item)

    def next_step(self, auth_id: str, *, was: str, was_correlation: str, step: str, correlation: str,
                  home: str | None = None, home_challenge: str | None = None) -> bool:
        """Move the authentication to its next channel request, once (conditional on the step it
        was at and that step's request): a second answer or report for the same challenge fails."""
        sets = ["step = :n", "step_correlation = :c"]
        values = {":n": _s(step), ":c": _s(correlation), ":w": _s(was), ":wc": _s(was_correlation)}
        if home is not None:
            sets += ["remote_home = :h", "routes = routes + :one"]
            values |= {":h": _s(home), ":one": {"N": "1"}}
        if home_challenge is not None:
            sets.append("home_challenge = :hc")
            values[":hc"] = _s(home_challenge)
        return self._conditional(Key=_mirror_key(auth_id), UpdateExpression="SET " + ", ".join(sets),
                                 ConditionExpression="step = :w AND step_correlation = :wc",
                                 ExpressionAttributeValues=values)

    def authenticated(self, auth_id: str, resident_code: str, issuer: str, now: dt.datetime) -> None:
        """What the home tier answered, on the requesting counter's authentication: the server's own
        record a wide-area copy request names as its card proof."""
        self._conditional(Key=_mirror_key(auth_id),
                          UpdateExpression="SET authenticated_resident = :r, authenticated_at = :t, issuer = :i",
                          ConditionExpression="attribute_not_exists(authenticated_resident)",
                          ExpressionAttributeValues={":r": _s(resident_code), ":t": _s(_iso(now)),
                                                     ":i": _s(issuer)})
