"""A small IAM policy evaluator: enough of IAM's rules to answer "would this be allowed?" offline.

The one IAM evaluator of the repository (decision 0052): the embedded AWS's locally served APIs
evaluate their resource policies with it (``api.ResourcePolicy``), the access review asks it
whether a deployed trust policy is still in force today, the checklist and the access review
read policy documents with its ``document`` and ``as_list``, and ``tests/infra`` proves with it
what each role may do (a contractor's access ending by itself, an insider refused). It follows IAM's evaluation logic for one set of
policies: an explicit Deny wins, else any Allow, else the implicit deny. Supported:
``Action``/``NotAction``, ``Resource``/``NotResource`` (wildcards ``*`` and ``?``),
``Principal`` (``AWS``, ``Federated``, ``*``) for trust and resource policies, and the
condition operators this system writes — String*, Arn*, Bool, Null, Date*, Numeric*, with
``ForAnyValue:`` / ``ForAllValues:`` and ``…IfExists``. Anything else raises
``UnsupportedPolicy`` rather than guessing. A resource or an ARN condition value that is still a
CloudFormation intrinsic (``{"Fn::GetAtt": …}``) matches only an equal request value, so
synthesized templates can be evaluated as they are.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

ALLOW, DENY, IMPLICIT_DENY = "allow", "deny", "implicit-deny"


class UnsupportedPolicy(ValueError):
    """The policy uses something this evaluator does not implement."""


def document(value: Any) -> Any:
    """A policy document as AWS returns it, parsed: IAM's URL-encoded JSON (``%7B...``), a JSON
    string (API Gateway escapes its quotes; some APIs return it encoded twice), or a mapping
    already parsed (copied). Anything else (``None``) is returned as it is."""
    if isinstance(value, Mapping):
        return dict(value)
    if not isinstance(value, str):
        return value
    text = urllib.parse.unquote(value) if value.startswith(("%7B", "%7b")) else value
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        parsed = json.loads(text.replace('\\"', '"'))
    return json.loads(parsed) if isinstance(parsed, str) else parsed


def as_list(value: Any) -> list[Any]:
    """A policy element that may be one value or a list of them, as a list: absent (``None``)
    is no value, a tuple is copied into a list, a list is returned as it is. The one home of
    this helper: the checklist, the access review, the embedded AWS and the tests use it."""
    if value is None:
        return []
    if isinstance(value, tuple):
        return list(value)
    return value if isinstance(value, list) else [value]


def _glob(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    if not case_sensitive:
        pattern, value = pattern.lower(), value.lower()
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def _arn_like(pattern: Any, arn: Any) -> bool:
    """``ArnLike``/``ArnEquals``: each of the six colon-separated parts of the ARN is matched on
    its own, wildcards within a part (a ``*`` never swallows a separator: ``arn:aws:iam::1111*``
    matches no role ARN). A value that is not a string (an intrinsic) matches only an equal one."""
    if not (isinstance(pattern, str) and isinstance(arn, str)):
        return pattern == arn
    wanted, got = pattern.split(":", 5), arn.split(":", 5)
    return len(wanted) == len(got) == 6 and all(_glob(w, g) for w, g in zip(wanted, got, strict=True))


def _resource_matches(pattern: Any, resource: Any) -> bool:
    if isinstance(pattern, str) and isinstance(resource, str):
        return _glob(pattern, resource)
    return pattern == resource


def parse_time(value: Any) -> dt.datetime:
    """An IAM date: ISO 8601 with an offset or ``Z`` (a naive value is taken as UTC), or epoch seconds."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        return dt.datetime.fromtimestamp(float(value), dt.UTC)
    else:
        parsed = dt.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _compare(base: str, actual: Any, expected: Any) -> bool:
    """One context value against one policy value, for a non-negated base operator."""
    if base == "StringEquals":
        return str(actual) == str(expected)
    if base == "StringEqualsIgnoreCase":
        return str(actual).lower() == str(expected).lower()
    if base == "StringLike":
        return _glob(str(expected), str(actual))
    if base in ("ArnLike", "ArnEquals"):
        return _arn_like(expected, actual)
    if base == "Bool":
        return str(actual).lower() == str(expected).lower()
    if base.startswith("Date"):
        a, e = parse_time(actual), parse_time(expected)
        return {"DateEquals": a == e, "DateLessThan": a < e, "DateLessThanEquals": a <= e,
                "DateGreaterThan": a > e, "DateGreaterThanEquals": a >= e}[base]
    if base.startswith("Numeric"):
        a, e = float(actual), float(expected)
        return {"NumericEquals": a == e, "NumericLessThan": a < e, "NumericLessThanEquals": a <= e,
                "NumericGreaterThan": a > e, "NumericGreaterThanEquals": a >= e}[base]
    raise UnsupportedPolicy(f"condition operator {base!r}")


_NEGATED = {"StringNotEquals": "StringEquals", "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
            "StringNotLike": "StringLike", "ArnNotLike": "ArnLike", "ArnNotEquals": "ArnEquals",
            "NumericNotEquals": "NumericEquals", "DateNotEquals": "DateEquals"}
_POSITIVE = {"StringEquals", "StringEqualsIgnoreCase", "StringLike", "ArnLike", "ArnEquals", "Bool",
             "DateEquals", "DateLessThan", "DateLessThanEquals", "DateGreaterThan", "DateGreaterThanEquals",
             "NumericEquals", "NumericLessThan", "NumericLessThanEquals", "NumericGreaterThan",
             "NumericGreaterThanEquals"}


def _condition(operator: str, key: str, expected: Sequence[Any], context: Mapping[str, Any]) -> bool:
    qualifier = ""
    if ":" in operator:
        qualifier, operator = operator.split(":", 1)
        if qualifier not in ("ForAnyValue", "ForAllValues"):
            raise UnsupportedPolicy(f"condition qualifier {qualifier!r}")
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    present = key.lower() in context
    actual = context.get(key.lower())
    if base == "Null":
        absent = not present or actual is None or actual == []
        return any(str(e).lower() == ("true" if absent else "false") for e in expected)
    negated = base in _NEGATED
    positive = _NEGATED.get(base, base)
    if positive not in _POSITIVE:
        raise UnsupportedPolicy(f"condition operator {operator!r}")
    if not present or actual is None:
        if qualifier == "ForAllValues":
            return True
        if qualifier == "ForAnyValue":
            return False
        return if_exists or negated
    values = as_list(actual)

    def one(value: Any) -> bool:
        hit = any(_compare(positive, value, e) for e in expected)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(one(v) for v in values)
    if qualifier == "ForAnyValue":
        return any(one(v) for v in values)
    if len(values) != 1:
        raise UnsupportedPolicy(f"{operator} on the multivalued key {key} needs ForAnyValue or ForAllValues")
    return one(values[0])


def conditions_hold(conditions: Mapping[str, Mapping[str, Any]] | None, context: Mapping[str, Any]) -> bool:
    """Every operator, every key of each: true (values of one key are alternatives)."""
    normalised = {k.lower(): v for k, v in context.items()}
    for operator, keys in (conditions or {}).items():
        for key, expected in keys.items():
            if not _condition(operator, key, as_list(expected), normalised):
                return False
    return True


Principal = str | Sequence[str] | None
"""Who calls: an ARN; or the caller's identities — an assumed-role session is its session ARN and
its role's ARN — of which any may match; an empty sequence is an anonymous caller, whom only
``*`` matches. None: no caller given (an identity policy's evaluation): a ``Principal`` element
then applies to nobody."""


def _principal_matches(principal_block: Any, principal: Principal) -> bool:
    if principal_block == "*":
        return True
    if principal is None or not isinstance(principal_block, Mapping):
        return False
    identities = [principal] if isinstance(principal, str) else list(principal)
    for kind, values in principal_block.items():
        if kind not in ("AWS", "Federated", "Service", "CanonicalUser"):
            raise UnsupportedPolicy(f"principal type {kind!r}")
        for value in as_list(values):
            if value == "*" or value in identities:
                return True
            account = re.fullmatch(r"arn:[\w-]+:iam::(\d{12}):root|(\d{12})", str(value))
            if account and any(f":{account[1] or account[2]}:" in identity for identity in identities):
                return True
    return False


def _statement_applies(statement: Mapping[str, Any], *, action: str, resource: Any, principal: Principal,
                       context: Mapping[str, Any]) -> bool:
    if "Principal" in statement or "NotPrincipal" in statement:
        if "NotPrincipal" in statement:
            raise UnsupportedPolicy("NotPrincipal")
        if not _principal_matches(statement["Principal"], principal):
            return False
    if "Action" in statement:
        if not any(_glob(a, action, case_sensitive=False) for a in as_list(statement["Action"])):
            return False
    elif any(_glob(a, action, case_sensitive=False) for a in as_list(statement.get("NotAction"))):
        return False
    if "Resource" in statement:
        if not any(_resource_matches(r, resource) for r in as_list(statement["Resource"])):
            return False
    elif any(_resource_matches(r, resource) for r in as_list(statement.get("NotResource"))):
        return False
    return conditions_hold(statement.get("Condition"), context)


def statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return as_list(document.get("Statement"))


def evaluate(documents: Mapping[str, Any] | Iterable[Mapping[str, Any]], *, action: str, resource: Any = "*",
             principal: Principal = None, context: Mapping[str, Any] | None = None) -> str:
    """``allow``, ``deny`` (an explicit Deny applies) or ``implicit-deny`` for one request.

    ``documents``: one policy or several (a role's policies together, or a trust or resource
    policy — then give ``principal``, the caller's ARN or SAML provider ARN, or its identities:
    ``Principal``). ``context``: condition
    keys of the request (``aws:CurrentTime`` as a datetime or ISO string, ``aws:MultiFactorAuthPresent``…).
    """
    docs = [documents] if isinstance(documents, Mapping) else list(documents)
    ctx = dict(context or {})
    allowed = False
    for doc in docs:
        for st in statements(doc):
            if not _statement_applies(st, action=action, resource=resource, principal=principal, context=ctx):
                continue
            if st.get("Effect") == "Deny":
                return DENY
            allowed = allowed or st.get("Effect") == "Allow"
    return ALLOW if allowed else IMPLICIT_DENY


def date_bounds(document: Mapping[str, Any]) -> list[dt.datetime]:
    """Every ``DateLessThan aws:CurrentTime`` bound in the document's Allow statements."""
    found = []
    for st in statements(document):
        if st.get("Effect") != "Allow":
            continue
        for operator, keys in (st.get("Condition") or {}).items():
            if operator in ("DateLessThan", "DateLessThanEquals"):
                for key, value in keys.items():
                    if key.lower() == "aws:currenttime":
                        found += [parse_time(v) for v in as_list(value)]
    return found


__all__ = ["ALLOW", "DENY", "IMPLICIT_DENY", "Principal", "UnsupportedPolicy", "as_list", "conditions_hold",
           "date_bounds", "evaluate", "parse_time", "statements"]
