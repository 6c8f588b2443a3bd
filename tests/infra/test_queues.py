"""SQS: encryption, TLS, dead-letter queues, timeouts, event source mappings, tier boundaries."""

from __future__ import annotations

import pytest

from jukinet.domain import inbox
from infra.naming import Names, prefecture_tier
from embedded_aws.iam_policy import ALLOW, DENY, evaluate

from .conftest import Synth, as_list, statements

pytestmark = pytest.mark.slow


def _queue_policies(synth: Synth, stack: str) -> dict[str, list[dict]]:
    """Logical id of each queue → statements of the policy attached to it."""
    found: dict[str, list[dict]] = {}
    template = synth.templates[stack]["Resources"]
    for res in template.values():
        if res["Type"] == "AWS::SQS::QueuePolicy":
            for q in res["Properties"]["Queues"]:
                found.setdefault(q["Ref"], []).extend(statements(res["Properties"]["PolicyDocument"]))
    return found


def test_every_queue_is_encrypted_with_a_customer_managed_key(every: Synth) -> None:
    queues = every.props("AWS::SQS::Queue")
    assert queues
    for q in queues:
        assert "Fn::GetAtt" in q["KmsMasterKeyId"] or "Fn::ImportValue" in q["KmsMasterKeyId"], q["QueueName"]


def test_every_queue_denies_requests_without_tls(every: Synth) -> None:
    for stack, lid, res in every.resources("AWS::SQS::Queue"):
        policy = _queue_policies(every, stack).get(lid, [])
        assert any(s["Effect"] == "Deny" and s["Action"] == "sqs:*"
                   and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
                   for s in policy), res["Properties"]["QueueName"]


def test_inbound_queues_dead_letter_after_at_least_five_receives_into_a_14_day_queue(every: Synth) -> None:
    templates = every.templates
    inbound = [(stack, res) for stack, _, res in every.resources("AWS::SQS::Queue")
               if res["Properties"]["QueueName"].endswith("-inbound")]
    assert len(inbound) == len(every.deployment.prefectures) + 1
    for stack, res in inbound:
        redrive = res["Properties"]["RedrivePolicy"]
        assert redrive["maxReceiveCount"] >= 5
        dlq = templates[stack]["Resources"][redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]]["Properties"]
        assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
        assert dlq["QueueName"] == res["Properties"]["QueueName"] + "-dlq"


def test_visibility_timeout_is_at_least_six_times_the_consumers_timeout(every: Synth) -> None:
    for stack, _, mapping in every.resources("AWS::Lambda::EventSourceMapping"):
        resources = every.templates[stack]["Resources"]
        queue = resources[mapping["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]]["Properties"]
        function = resources[mapping["Properties"]["FunctionName"]["Ref"]]["Properties"]
        assert queue["VisibilityTimeout"] >= 6 * function["Timeout"]


def test_event_source_mappings_report_partial_failures_with_a_maximum_concurrency(every: Synth) -> None:
    mappings = every.props("AWS::Lambda::EventSourceMapping")
    provision = 1 if every.deployment.agencies else 0  # the provision batch queue (one task per message)
    channel = len(every.deployment.prefectures) if every.deployment.channel else 0  # each tier's channel queue
    inboxes = sum(len(p.municipality_tier.municipalities) for p in every.deployment.prefectures)  # each CS's inbox
    assert len(mappings) == len(every.deployment.prefectures) + 1 + provision + channel + inboxes
    assert sorted(m["BatchSize"] for m in mappings) == ([1] * provision + [10] * (len(mappings) - provision - inboxes)
                                                        + [inbox.BATCH_SIZE] * inboxes)
    for m in mappings:
        assert m["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert 2 <= m["ScalingConfig"]["MaximumConcurrency"] <= 1000


def test_inbound_queue_denies_send_outside_the_sending_tiers_endpoint_and_roles(nagano: Synth) -> None:
    names = Names.of(nagano.deployment)
    stack = names.prefecture_stack("200000")
    resources = nagano.templates[stack]["Resources"]
    inbound_id = next(lid for lid, r in resources.items() if r["Type"] == "AWS::SQS::Queue"
                      and r["Properties"]["QueueName"] == "jukinet-pref-200000-inbound")
    policy = _queue_policies(nagano, stack)[inbound_id]
    vpce_deny = [s for s in policy if s["Effect"] == "Deny" and s["Action"] == "sqs:SendMessage"
                 and "aws:SourceVpce" in s.get("Condition", {}).get("StringNotEquals", {})]
    assert len(vpce_deny) == 1
    assert vpce_deny[0]["Principal"] == {"AWS": "*"}
    # Same account and region: the municipality tier's endpoint id is imported from its stack.
    assert as_list(vpce_deny[0]["Condition"]["StringNotEquals"]["aws:SourceVpce"]) == [
        {"Fn::ImportValue": "jukinet-muni-200000-sqs-endpoint-id"}]
    role_deny = [s for s in policy if s["Effect"] == "Deny" and s["Action"] == "sqs:SendMessage"
                 and "ArnNotLike" in s.get("Condition", {})]
    operator = "arn:aws:iam::123456789012:role/jukinet/pref-200000-people/jukinet-pref-200000-operator"
    # the national processor routes channel messages down (components/channel.py): by role ARN
    router = "arn:aws:iam::123456789012:role/jukinet/national/jukinet-national-processor"
    assert role_deny[0]["Condition"]["ArnNotLike"]["aws:PrincipalArn"] == [
        "arn:aws:iam::123456789012:role/jukinet/muni-200000/*", operator, router]
    # The operator (jukinet redrive) and the channel's router may send from outside the
    # endpoint; nobody else may.
    assert vpce_deny[0]["Condition"]["ArnNotEquals"]["aws:PrincipalArn"] == [operator, router]
    document = {"Statement": policy}
    outside = {"aws:SourceVpce": "vpce-0elsewhere"}
    writer = "arn:aws:iam::123456789012:role/jukinet/muni-200000/jukinet-cs-202011"
    for who, expected in ((operator, ALLOW), (writer, DENY),
                          ("arn:aws:iam::123456789012:role/jukinet/pref-200000-people/jukinet-pref-200000-auditor",
                           DENY),
                          ("arn:aws:iam::123456789012:role/jukinet/national-people/jukinet-national-operator", DENY)):
        got = evaluate(document, action="sqs:SendMessage", resource=policy[0]["Resource"],
                       principal=who, context={**outside, "aws:PrincipalArn": who})
        assert (got == DENY) == (expected == DENY), (who, got)
    consume_deny = [s for s in policy if s["Effect"] == "Deny" and "sqs:ReceiveMessage" in as_list(s["Action"])]
    assert consume_deny[0]["Condition"]["ArnNotLike"]["aws:PrincipalArn"] == [
        "arn:aws:iam::123456789012:role/jukinet/pref-200000/*"]


def test_national_inbound_queue_admits_every_prefecture_endpoint_and_no_other(large: Synth) -> None:
    names = Names.of(large.deployment)
    resources = large.templates[names.national_stack()]["Resources"]
    inbound_id = next(lid for lid, r in resources.items() if r["Type"] == "AWS::SQS::Queue"
                      and r["Properties"]["QueueName"] == "jukinet-national-inbound")
    policy = _queue_policies(large, names.national_stack())[inbound_id]
    vpce_deny = next(s for s in policy if s["Effect"] == "Deny" and "StringNotEquals" in s.get("Condition", {}))
    assert sorted(v["Fn::ImportValue"] for v in vpce_deny["Condition"]["StringNotEquals"]["aws:SourceVpce"]) == sorted(
        names.sqs_endpoint_export(prefecture_tier(p.code)) for p in large.deployment.prefectures)


def test_tiers_in_other_accounts_are_admitted_by_the_configured_endpoint_ids(multi_account: Synth) -> None:
    deployment = multi_account.deployment
    names = Names.of(deployment)
    pref = deployment.prefectures[0]
    for stack, expected, sender_account in (
        (names.prefecture_stack(pref.code), pref.municipality_tier.sqs_endpoint_id, pref.municipality_tier.env.account),
        (names.national_stack(), pref.sqs_endpoint_id, pref.env.account),
    ):
        policy = [s for stmts in _queue_policies(multi_account, stack).values() for s in stmts]
        vpce_deny = next(s for s in policy if s["Effect"] == "Deny" and "StringNotEquals" in s.get("Condition", {}))
        assert vpce_deny["Condition"]["StringNotEquals"]["aws:SourceVpce"] == [expected]
        allow = next(s for s in policy if s["Effect"] == "Allow")
        assert allow["Principal"] == {"AWS": f"arn:aws:iam::{sender_account}:root"}
    # Nothing crosses accounts by CloudFormation reference.
    for template in multi_account.templates.values():
        assert "Fn::GetStackOutput" not in str(template)
