"""The special move-out/move-in on the synthesized templates (docs/second-phase.md part 4): the
channel function's records of the moves, by partition (its own prefecture's municipalities only;
never deleted); the card authentications it checks, read; the routes deployed, the counter roles
invoking them, the operator kept out. The attacks: another tier's records, a delete, the
operator filing or cancelling a move."""

from __future__ import annotations

import pytest

from infra.components.counter import ROUTES, route_arn
from infra.naming import Names
from embedded_aws.iam_policy import ALLOW, IMPLICIT_DENY, evaluate

from .conftest import Synth, as_list, statements
from .test_channel import ACCOUNT, _base, _role_policy
from .test_counter import _counter_api

pytestmark = pytest.mark.slow

MOVE_ROUTES = [r for r in ROUTES if "/special-move-" in r[1]]


def test_the_channel_function_keeps_its_own_municipalities_move_records_and_reads_authentications(nagano: Synth):
    names = Names.of(nagano.deployment)
    doc = _role_policy(nagano, _base(nagano, "200000"), names.channel_function("200000"))
    table = f"arn:aws:dynamodb:ap-northeast-1:{ACCOUNT}:table/{names.card_table('200000')}"
    for key in ("SPECIAL-OUT#202037", "SPECIAL-IN#202029#2003-01"):
        for action in ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"):
            assert evaluate(doc, action=action, resource=table, context={"dynamodb:LeadingKeys": [key]}) == ALLOW, \
                (action, key)
        assert evaluate(doc, action="dynamodb:DeleteItem", resource=table,
                        context={"dynamodb:LeadingKeys": [key]}) == IMPLICIT_DENY, key
    challenge = {"dynamodb:LeadingKeys": ["CHALLENGE#" + "a" * 32]}
    assert evaluate(doc, action="dynamodb:GetItem", resource=table, context=challenge) == ALLOW
    # the attack: a channel function writing an authentication into a challenge (a forged proof)
    for action in ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query"):
        assert evaluate(doc, action=action, resource=table, context=challenge) == IMPLICIT_DENY, action
    [read] = [s for s in statements(doc) if s.get("Sid") == "ReadCardAuthentications"]
    assert as_list(read["Action"]) == ["dynamodb:GetItem"]
    assert read["Condition"]["Null"] == {"dynamodb:LeadingKeys": "false"}
    # another prefecture's municipalities' records, statistics and call records: out of reach (its own
    # municipalities' statistics and call records it writes for the cards of other tiers, decision 0050)
    for key in ("SPECIAL-OUT#131016", "SPECIAL-IN#131016#2003-01", "STAT#131016", "CALL#131016#2003-01"):
        assert evaluate(doc, action="dynamodb:PutItem", resource=table,
                        context={"dynamodb:LeadingKeys": [key]}) == IMPLICIT_DENY, key


def test_the_move_routes_are_deployed_for_the_counter_roles_and_denied_to_the_operator(nagano: Synth) -> None:
    assert sorted(MOVE_ROUTES) == sorted([
        ("POST", "/v1/special-move-outs"), ("GET", "/v1/special-move-outs/{resident_code}"),
        ("POST", "/v1/special-move-outs/{resident_code}/cancellation"), ("POST", "/v1/special-move-ins"),
        ("GET", "/v1/special-move-ins/{correlation}"), ("POST", "/v1/special-move-ins/{correlation}/move-in")])
    _, api = _counter_api(nagano)
    policy = statements(api["Properties"]["Policy"])
    allow = next(s for s in policy if s.get("Sid") == "AllowCounterStaff")
    deny = next(s for s in policy if s.get("Sid") == "DenyCardRoutesToOthers")
    for method, path in MOVE_ROUTES:
        assert route_arn(method, path) in as_list(allow["Resource"]), path
        assert route_arn(method, path) in as_list(deny["Resource"]), path  # the operator may only suspend
    names = Names.of(nagano.deployment)
    base = nagano.templates[_base(nagano, "200000")]["Resources"]
    [staff] = [r["Properties"] for r in base.values() if r["Type"] == "AWS::IAM::ManagedPolicy"
               and r["Properties"].get("ManagedPolicyName") == f"{names.card_api('200000')}-staff"]
    invoked = [str(r) for s in statements(staff["PolicyDocument"]) for r in as_list(s["Resource"])]
    assert any("special-move-ins/*/move-in" in r for r in invoked)
    assert any("special-move-outs/*/cancellation" in r for r in invoked)
