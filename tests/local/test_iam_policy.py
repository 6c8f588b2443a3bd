"""The one IAM evaluator (``embedded_aws/iam_policy.py``, decision 0052): what the locally served
APIs' resource policies added to it — a caller given as its identities (a session and its role),
an anonymous caller, ``ArnLike`` matched part by part as IAM does. The rest of it is exercised
by ``tests/infra`` (every role's policies) and ``tests/ops/test_access_review.py``."""

from __future__ import annotations

from embedded_aws.iam_policy import ALLOW, DENY, IMPLICIT_DENY, evaluate

ROLE = "arn:aws:iam::111122223333:role/agency/nenkin-provision"
SESSION = "arn:aws:sts::111122223333:assumed-role/nenkin-provision/local"
QUEUE = "arn:aws:sqs:ap-northeast-1:111122223333:q"


def _resource_policy(principal, condition=None, effect="Allow"):
    return {"Statement": [{"Effect": effect, "Principal": principal, "Action": "sqs:SendMessage", "Resource": QUEUE,
                           **({"Condition": condition} if condition else {})}]}


def test_a_caller_is_any_of_its_identities():
    policy = _resource_policy({"AWS": ROLE})
    assert evaluate(policy, action="sqs:SendMessage", resource=QUEUE, principal=(ROLE, SESSION)) == ALLOW
    assert evaluate(policy, action="sqs:SendMessage", resource=QUEUE, principal=(SESSION,)) == IMPLICIT_DENY
    assert evaluate(policy, action="sqs:SendMessage", resource=QUEUE, principal=SESSION) == IMPLICIT_DENY
    account = _resource_policy({"AWS": "111122223333"})
    assert evaluate(account, action="sqs:SendMessage", resource=QUEUE, principal=(SESSION,)) == ALLOW


def test_an_anonymous_caller_is_matched_by_a_star_alone():
    for star in ("*", {"AWS": "*"}):
        assert evaluate(_resource_policy(star), action="sqs:SendMessage", resource=QUEUE, principal=()) == ALLOW
    assert evaluate(_resource_policy({"AWS": ROLE}), action="sqs:SendMessage", resource=QUEUE,
                    principal=()) == IMPLICIT_DENY
    assert evaluate(_resource_policy({"AWS": "111122223333"}), action="sqs:SendMessage", resource=QUEUE,
                    principal=()) == IMPLICIT_DENY


def test_no_caller_given_matches_no_principal_element():
    """An identity policy's evaluation (no caller): a statement with a ``Principal`` other than
    ``*`` is not about this request."""
    deny = _resource_policy({"AWS": "*"}, effect="Deny")
    assert evaluate(deny, action="sqs:SendMessage", resource=QUEUE) == IMPLICIT_DENY
    assert evaluate(_resource_policy("*", effect="Deny"), action="sqs:SendMessage", resource=QUEUE) == DENY


def test_arn_like_matches_each_part_on_its_own():
    def allowed(pattern, arn=ROLE, operator="ArnLike"):
        policy = _resource_policy("*", {operator: {"aws:PrincipalArn": pattern}})
        return evaluate(policy, action="sqs:SendMessage", resource=QUEUE, principal=(arn,),
                        context={"aws:PrincipalArn": arn}) == ALLOW

    assert allowed("arn:aws:iam::111122223333:role/agency/*")
    assert allowed("arn:aws:iam::*:role/agency/nenkin-*")
    assert allowed("arn:aws:iam::111122223333:role/agency/nenkin-provision", operator="ArnEquals")
    assert not allowed("arn:aws:iam::111122223333*")  # a wildcard does not swallow the separators
    assert not allowed("arn:aws:iam::*")
    assert not allowed("arn:aws:iam::444455556666:role/agency/*")
    assert allowed("arn:aws:iam::444455556666:role/agency/*", operator="ArnNotLike")


def test_an_arn_condition_on_a_template_token_matches_only_an_equal_token():
    token = {"Fn::GetAtt": ["Role", "Arn"]}
    policy = _resource_policy("*", {"ArnEquals": {"aws:PrincipalArn": [token]}})
    assert evaluate(policy, action="sqs:SendMessage", resource=QUEUE, principal=(),
                    context={"aws:PrincipalArn": token}) == ALLOW
    assert evaluate(policy, action="sqs:SendMessage", resource=QUEUE, principal=(),
                    context={"aws:PrincipalArn": ROLE}) == IMPLICIT_DENY
