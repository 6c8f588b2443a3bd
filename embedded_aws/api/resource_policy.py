"""An API Gateway resource policy: ``ResourcePolicy`` accepts what the stacks use and has the one
IAM evaluator (``embedded_aws/iam_policy.py``) decide."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from .. import iam_policy
from ..iam_policy import as_list
from ._base import INVOKE_ACTION, UnsupportedPolicyError
from .principals import LocalPrincipal

# -- the resource policy -------------------------------------------------------------------------

Decision = Literal["allow", "explicit-deny", "implicit-deny"]

# Condition operator (lower case) -> IAM's name of it, and the keys it is evaluated for (lower case).
_CONDITIONS = {
    "stringequals": ("StringEquals", frozenset({"aws:sourcevpce", "aws:principalarn"})),
    "stringnotequals": ("StringNotEquals", frozenset({"aws:sourcevpce", "aws:principalarn"})),
    "arnlike": ("ArnLike", frozenset({"aws:principalarn"})),
    "arnnotlike": ("ArnNotLike", frozenset({"aws:principalarn"})),
}
_STATEMENT_KEYS = frozenset({"Sid", "Effect", "Principal", "Action", "Resource", "Condition"})
_DECISIONS: dict[str, Decision] = {iam_policy.ALLOW: "allow", iam_policy.DENY: "explicit-deny",
                                   iam_policy.IMPLICIT_DENY: "implicit-deny"}


class ResourcePolicy:
    """An API Gateway resource policy, evaluated for ``execute-api:Invoke``.

    Accepts exactly what the stacks use: ``Allow``/``Deny`` statements with
    ``Principal`` ``*`` or ``{"AWS": ...}`` (role ARNs, assumed-role session ARNs, account
    ids or roots), ``Action``, ``Resource`` (ARNs with wildcards, or API Gateway's
    ``execute-api:/stage/METHOD/path`` shorthand), and conditions ``StringEquals``/
    ``StringNotEquals`` on ``aws:SourceVpce`` or ``aws:PrincipalArn``, ``ArnLike``/
    ``ArnNotLike`` on ``aws:PrincipalArn``. Anything else raises ``UnsupportedPolicyError``
    when the policy is loaded (never a silent allow). The accepted statements, their shorthand
    expanded, are evaluated by the one IAM evaluator (``iam_policy.evaluate``, decision 0052)."""

    def __init__(self, document: str | Mapping[str, Any], *, region: str, account: str, api_id: str,
                 partition: str = "aws") -> None:
        parsed: Any = document
        while isinstance(parsed, str):  # API Gateway serves the policy as a (sometimes escaped) JSON string
            parsed = json.loads(parsed.replace('\\"', '"') if parsed.startswith('{\\"') else parsed)
        if not isinstance(parsed, Mapping):
            raise UnsupportedPolicyError(f"resource policy is not a JSON object: {document!r}")
        self.document = dict(parsed)
        self.api_arn = f"arn:{partition}:execute-api:{region}:{account}:{api_id}"
        self.statements = [self._statement(s, i) for i, s in enumerate(as_list(parsed.get("Statement")))]

    def _statement(self, raw: Any, index: int) -> dict[str, Any]:
        """The statement as ``iam_policy`` evaluates it, once it is known to hold only what is
        accepted: condition operators in IAM's spelling, the ``execute-api:/`` shorthand expanded."""
        if not isinstance(raw, Mapping):
            raise UnsupportedPolicyError(f"statement {index} is not an object")
        sid = str(raw.get("Sid", index))
        unknown = set(raw) - _STATEMENT_KEYS
        if unknown:
            raise UnsupportedPolicyError(f"statement {sid}: {', '.join(sorted(unknown))} not supported locally")
        effect = raw.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise UnsupportedPolicyError(f"statement {sid}: Effect {effect!r}")
        principal = raw.get("Principal")
        if principal == "*":
            principals: Any = "*"
        elif isinstance(principal, Mapping) and set(principal) == {"AWS"}:
            principals = {"AWS": [str(p) for p in as_list(principal["AWS"])]}
        else:
            raise UnsupportedPolicyError(f"statement {sid}: Principal {principal!r} (only * and AWS principals)")
        actions = [str(a) for a in as_list(raw.get("Action"))]
        resources = [self._expand(str(r)) for r in as_list(raw.get("Resource"))]
        if not actions or not resources:
            raise UnsupportedPolicyError(f"statement {sid}: needs Action and Resource")
        conditions: dict[str, dict[str, list[str]]] = {}
        for operator, block in (raw.get("Condition") or {}).items():
            if operator.lower() not in _CONDITIONS:
                raise UnsupportedPolicyError(f"statement {sid}: condition operator {operator} is not evaluated "
                                             f"locally (supported: StringEquals, StringNotEquals, ArnLike, "
                                             f"ArnNotLike)")
            if not isinstance(block, Mapping):
                raise UnsupportedPolicyError(f"statement {sid}: condition {operator} is not an object")
            name, keys = _CONDITIONS[operator.lower()]
            for key, values in block.items():
                if key.lower() not in keys:
                    raise UnsupportedPolicyError(f"statement {sid}: {operator} on {key} is not evaluated locally "
                                                 f"(supported: StringEquals/StringNotEquals on aws:SourceVpce or "
                                                 f"aws:PrincipalArn, ArnLike/ArnNotLike on aws:PrincipalArn)")
                conditions.setdefault(name, {})[key.lower()] = [str(v) for v in as_list(values)]
        return {"Sid": sid, "Effect": effect, "Principal": principals, "Action": actions, "Resource": resources,
                **({"Condition": conditions} if conditions else {})}

    def _expand(self, resource: str) -> str:
        if resource.startswith("execute-api:/"):
            return f"{self.api_arn}/{resource[len('execute-api:/'):]}"
        return resource

    def evaluate(self, *, resource_arn: str, principal: LocalPrincipal | None, source_vpce: str | None,
                 action: str = INVOKE_ACTION) -> Decision:
        """``explicit-deny`` if a matching Deny statement applies, else ``allow`` if a
        matching Allow does, else ``implicit-deny``. ``principal`` None: anonymous (matched by a
        ``*`` principal only). A signed-in caller is its role and its session: a statement naming
        either, or its account, applies to it."""
        context: dict[str, str] = {}
        if source_vpce:
            context["aws:SourceVpce"] = source_vpce
        if principal is not None:
            context["aws:PrincipalArn"] = principal.principal_arn
        identities = () if principal is None else (principal.principal_arn, principal.session_arn)
        decision = iam_policy.evaluate({"Statement": self.statements}, action=action, resource=resource_arn,
                                       principal=identities, context=context)
        return _DECISIONS[decision]
