"""The CS's inbox (decision 0051): each drop zone notifies its own CS's queue, which the CS
takes in batches. The attacks: an insider with another municipality's CS role (or any role of
the account) reads, hides or deletes a municipality's events, or injects a made-up event
naming a file; another bucket sends to the queue; an event is lost on the way."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.naming import Names
from infra.stacks.municipality import RESOURCES_PER_MUNICIPALITY
from jukinet.domain import inbox
from embedded_aws.iam_policy import ALLOW, DENY, evaluate

from .conftest import Synth

pytestmark = pytest.mark.slow

TAKE = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:PurgeQueue")


def _inboxes(synth: Synth) -> dict[str, dict[str, Any]]:
    """code → {"queue": properties, "policy": document, "bucket": properties, "mapping": properties}."""
    names = Names.of(synth.deployment)
    out: dict[str, dict[str, Any]] = {}
    for _stack, template in synth.templates.items():
        resources = template["Resources"]
        for lid, res in resources.items():
            if res["Type"] != "AWS::SQS::Queue" or not str(res["Properties"].get("QueueName", "")).endswith("-inbox"):
                continue
            code = res["Properties"]["QueueName"].split("-")[-2]
            [policy] = [r["Properties"]["PolicyDocument"] for r in resources.values()
                        if r["Type"] == "AWS::SQS::QueuePolicy" and {"Ref": lid} in r["Properties"]["Queues"]]
            [bucket] = [r for r in resources.values() if r["Type"] == "AWS::S3::Bucket"
                        and str(r["Properties"].get("BucketName", "")).endswith(f"-{code}")]
            [mapping] = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"
                         and r["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [lid, "Arn"]}]
            out[code] = {"queue": res["Properties"], "policy": policy, "bucket": bucket, "mapping": mapping,
                         "lid": lid, "arn": names.queue_arn(synth.deployment.prefectures[0].municipality_tier.env,
                                                            res["Properties"]["QueueName"])}
    return out


def test_every_drop_zone_notifies_its_own_cs_inbox_and_nothing_invokes_the_cs_directly(nagano: Synth) -> None:
    inboxes = _inboxes(nagano)
    assert len(inboxes) == 77
    for code, box in inboxes.items():
        config = box["bucket"]["Properties"]["NotificationConfiguration"]
        assert "LambdaConfigurations" not in config, code
        [queue_config] = config["QueueConfigurations"]
        assert queue_config["Queue"] == {"Fn::GetAtt": [box["lid"], "Arn"]}
        assert queue_config["Event"] == "s3:ObjectCreated:*"
        assert queue_config["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "incoming/"}]
        # The queue and its policy exist before S3 checks the configuration.
        assert box["lid"] in box["bucket"]["DependsOn"], code
        policies = [lid for lid in box["bucket"]["DependsOn"] if lid.startswith("InboxPolicy")]
        assert policies, code
    assert not [r for _, _, r in nagano.resources("AWS::Lambda::Permission")
                if r["Properties"].get("Principal") == "s3.amazonaws.com"]


def test_the_inbox_is_encrypted_with_the_tiers_key_and_loses_nothing(nagano: Synth) -> None:
    names = Names.of(nagano.deployment)
    pcode = nagano.deployment.prefectures[0].code
    for code, box in _inboxes(nagano).items():
        queue = box["queue"]
        assert "AtRestKey" in str(queue["KmsMasterKeyId"]), code  # the tier's CMK (the base stack's)
        assert queue["MessageRetentionPeriod"] == 14 * 24 * 3600
        assert queue["VisibilityTimeout"] >= 6 * 300 + inbox.BATCHING_WINDOW_S
        redrive = queue["RedrivePolicy"]
        assert redrive["maxReceiveCount"] == inbox.MAX_RECEIVE_COUNT > inbox.ATTEMPTS
        assert str(redrive["deadLetterTargetArn"]).endswith(f":{names.cs_failure_queue(pcode)}")


def test_the_cs_takes_its_inbox_in_batches_with_a_window_and_partial_failures(nagano: Synth) -> None:
    for code, box in _inboxes(nagano).items():
        mapping = box["mapping"]
        assert mapping["BatchSize"] == inbox.BATCH_SIZE
        assert mapping["MaximumBatchingWindowInSeconds"] == inbox.BATCHING_WINDOW_S
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping["ScalingConfig"]["MaximumConcurrency"] == 2
        assert mapping["Enabled"] is True
        assert str(mapping["FunctionName"]["Ref"]).startswith(f"Cs{code}"), code
    functions = {f["FunctionName"]: f for f in nagano.props("AWS::Lambda::Function")}
    names = Names.of(nagano.deployment)
    for code in _inboxes(nagano):
        # never throttled: the mapping runs at most 2 at once, the function may run that many
        assert functions[names.cs_function(code)]["ReservedConcurrentExecutions"] >= 2


def test_only_s3_for_a_drop_zone_may_send_and_no_role_can_inject_an_event(nagano: Synth) -> None:
    names = Names.of(nagano.deployment)
    prefecture = nagano.deployment.prefectures[0]
    env = prefecture.municipality_tier.env
    tier = f"muni-{prefecture.code}"
    for code, box in _inboxes(nagano).items():
        policy, queue = box["policy"], box["arn"]
        own_bucket = f"arn:aws:s3:::{names.drop_zone_bucket(env, code)}"
        other = "202029" if code != "202029" else "202011"

        def send(principal: str, context: dict[str, Any]) -> str:
            return evaluate(policy, action="sqs:SendMessage", resource=queue, principal=principal,
                            context={"aws:SecureTransport": "true", **context})

        s3 = "s3.amazonaws.com"
        assert send(s3, {"aws:SourceArn": own_bucket, "aws:SourceAccount": env.account}) == ALLOW, code
        assert send(s3, {"aws:SourceArn": f"arn:aws:s3:::attacker-bucket-{code}", "aws:SourceAccount": env.account}
                    ) == DENY
        assert send(s3, {"aws:SourceArn": own_bucket, "aws:SourceAccount": "999999999999"}) != ALLOW
        for insider in (names.role_arn(env, tier, names.cs_role(other)),  # another municipality's CS
                        names.role_arn(env, tier, names.cs_role(code)),  # even its own CS: events come from S3
                        names.drop_zone_writer_arn(env, prefecture.code, code),  # the existing system's writer
                        f"arn:aws:iam::{env.account}:role/Admin"):
            assert send(insider, {"aws:PrincipalArn": insider}) == DENY, (code, insider)
        assert send(s3, {"aws:SourceArn": own_bucket, "aws:SourceAccount": env.account,
                         "aws:SecureTransport": "false"}) == DENY  # TLS only


def test_only_the_municipalitys_own_cs_may_read_hide_or_delete_its_events(nagano: Synth) -> None:
    """Two checks: the inboxes' policy denies every principal but the tier's CS roles; each CS
    role's own IAM names its own inbox only."""
    names = Names.of(nagano.deployment)
    prefecture = nagano.deployment.prefectures[0]
    env = prefecture.municipality_tier.env
    tier = f"muni-{prefecture.code}"
    roles = {r["Properties"].get("RoleName"): r["Properties"] for _, _, r in nagano.resources("AWS::IAM::Role")}
    managed = {lid: r["Properties"] for _, lid, r in nagano.resources("AWS::IAM::ManagedPolicy")}

    def iam_of(code: str) -> list[dict]:
        return [managed[ref["Ref"]]["PolicyDocument"] for ref in roles[names.cs_role(code)]["ManagedPolicyArns"]
                if isinstance(ref, dict) and ref.get("Ref") in managed]

    ctx = {"aws:SecureTransport": "true"}
    for code, box in _inboxes(nagano).items():
        own = names.role_arn(env, tier, names.cs_role(code))
        other_code = "202029" if code != "202029" else "202011"
        other = names.role_arn(env, tier, names.cs_role(other_code))
        for action in TAKE:
            for outsider in (names.drop_zone_writer_arn(env, prefecture.code, code),
                             names.role_arn(env, tier, f"jukinet-{tier}-channel"),  # another function of the tier
                             names.role_arn(env, "pref-200000", "jukinet-pref-200000-processor"),
                             f"arn:aws:iam::{env.account}:role/Admin"):
                assert evaluate(box["policy"], action=action, resource=box["arn"], principal=outsider,
                                context={**ctx, "aws:PrincipalArn": outsider}) == DENY, (code, action, outsider)
            assert evaluate(box["policy"], action=action, resource=box["arn"], principal=own,
                            context={**ctx, "aws:PrincipalArn": own}) != DENY, (code, action)
            # another municipality's CS: its own IAM grants nothing on this inbox
            assert evaluate(iam_of(other_code), action=action, resource=box["arn"]) != ALLOW, (code, action)
            assert evaluate(box["policy"], action=action, resource=box["arn"], principal=other,
                            context={**ctx, "aws:PrincipalArn": other}) != ALLOW
        assert evaluate(iam_of(code), action="sqs:ReceiveMessage", resource=box["arn"]) == ALLOW


def test_the_inboxes_policy_is_one_per_stack_and_a_stack_still_fits(nagano: Synth) -> None:
    for stack, template in nagano.templates.items():
        resources = template["Resources"]
        inboxes = [lid for lid, r in resources.items() if r["Type"] == "AWS::SQS::Queue"
                   and str(r["Properties"].get("QueueName", "")).endswith("-inbox")]
        if not inboxes:
            continue
        [policy] = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::SQS::QueuePolicy"]
        assert sorted(q["Ref"] for q in policy["Queues"]) == sorted(inboxes)
        assert len(policy["PolicyDocument"]["Statement"]) <= 20  # SQS's limit
        assert len(json.dumps(policy["PolicyDocument"])) <= 8192
        alarms = sum(r["Type"] == "AWS::CloudWatch::Alarm" for r in resources.values())
        assert (len(resources) - alarms - 1) / len(inboxes) == RESOURCES_PER_MUNICIPALITY
    assert 40 * RESOURCES_PER_MUNICIPALITY + 1 + 8 < 450


def test_a_forty_cs_stack_template_stays_under_cloudformations_size_limit(nagano: Synth) -> None:
    """CloudFormation takes a template of at most 1,000,000 bytes (from S3); the CDK writes it
    indented. The largest CS stack, as written to cdk.out."""
    sizes = {p.name: p.stat().st_size for p in nagano.outdir.glob("*-muni-*.template.json")}
    assert sizes and max(sizes.values()) < 1_000_000, sizes


def test_the_tiers_sqs_endpoint_lets_a_cs_keep_a_failed_event_and_nothing_else_new(nagano: Synth) -> None:
    """The CS keeps an event that failed its last attempt in the tier's failed-event queue, from
    inside the VPC: the endpoint admits that send for the tier's function roles, and still no
    send to another queue of the account (the prefecture's inbound queue aside)."""
    names = Names.of(nagano.deployment)
    prefecture = nagano.deployment.prefectures[0]
    env = prefecture.municipality_tier.env
    tier = f"muni-{prefecture.code}"
    [endpoint] = [r["Properties"] for s, _, r in nagano.resources("AWS::EC2::VPCEndpoint")
                  if s == names.municipality_base_stack(prefecture.code) and "sqs" in str(r["Properties"]["ServiceName"])]
    cs = names.role_arn(env, tier, names.cs_role("202011"))
    failed = names.queue_arn(env, names.cs_failure_queue(prefecture.code))

    def send(queue: str, principal: str) -> str:
        return evaluate(endpoint["PolicyDocument"], action="sqs:SendMessage", resource=queue, principal=principal,
                        context={"aws:PrincipalArn": principal})

    assert send(failed, cs) == ALLOW
    assert send(names.queue_arn(env, names.cs_inbox_queue("202029")), cs) != ALLOW  # no made-up inbox event
    assert send(failed, names.drop_zone_writer_arn(env, prefecture.code, "202011")) != ALLOW
