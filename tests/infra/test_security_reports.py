"""The nightly reconciliation of each processing tier and its security-reports bucket (decision 0033):
properties asserted by name, and the bucket policy evaluated as the attacks it stops — another
tier's function, a drop-zone writer, the tier's own processor or operator writing or reading a
report."""

from __future__ import annotations

from typing import Any

import pytest

from infra.naming import Names
from infra.stacks.processing import RECONCILIATION_SCHEDULE
from jukinet_ops.iam_policy import ALLOW, DENY, evaluate

from .conftest import Synth
from .test_responsibility import ACCOUNT, people_roles, policies_of, tier_stacks

pytestmark = pytest.mark.slow

REGION = "ap-northeast-1"
TIERS = ("national", "pref-200000")
HANDLER = "jukinet.handlers.reconciliation.handler"


def role(tier: str, name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/jukinet/{tier}/{name}"


def person(tier: str, kind: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/jukinet/{tier}-people/jukinet-{tier}-{kind}"


def bucket_of(synth: Synth, tier: str) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """(template, logical id, properties) of the tier's security-reports bucket."""
    template = synth.templates[tier_stacks(synth)[tier]]
    name = Names("jukinet").security_reports_bucket(synth.deployment.national.env if tier == "national"
                                                    else synth.deployment.prefectures[0].env, tier)
    [(lid, props)] = [(lid, r["Properties"]) for lid, r in template["Resources"].items()
                      if r["Type"] == "AWS::S3::Bucket" and r["Properties"].get("BucketName") == name]
    return template, lid, props


def bucket_policy(template: dict[str, Any], lid: str) -> dict[str, Any]:
    [doc] = [r["Properties"]["PolicyDocument"] for r in template["Resources"].values()
             if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": lid}]
    return doc


def objects(lid: str) -> dict[str, Any]:
    """An object ARN as the bucket policy writes it (the evaluator matches intrinsics by equality)."""
    return {"Fn::Join": ["", [{"Fn::GetAtt": [lid, "Arn"]}, "/*"]]}


def test_each_processing_tier_has_a_named_versioned_cmk_encrypted_private_tls_only_reports_bucket(
        nagano: Synth) -> None:
    for tier in TIERS:
        template, lid, p = bucket_of(nagano, tier)
        assert p["BucketName"] == f"jukinet-sec-reports-{tier}-{ACCOUNT}-{REGION}"
        [rule] = p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        sse = rule["ServerSideEncryptionByDefault"]
        assert sse["SSEAlgorithm"] == "aws:kms"
        key_lid = sse["KMSMasterKeyID"]["Fn::GetAtt"][0]
        key = template["Resources"][key_lid]
        assert key["Type"] == "AWS::KMS::Key" and key["Properties"]["EnableKeyRotation"] is True
        aliases = [r["Properties"]["AliasName"] for r in template["Resources"].values()
                   if r["Type"] == "AWS::KMS::Alias" and r["Properties"]["TargetKeyId"] == {"Fn::GetAtt": [key_lid, "Arn"]}]
        assert aliases == [f"alias/jukinet/{tier}/security-reports"]
        assert p["PublicAccessBlockConfiguration"] == {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                                       "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
        assert p["VersioningConfiguration"] == {"Status": "Enabled"}
        assert p["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
        policy = bucket_policy(template, lid)
        officer = person(tier, "security-officer")
        plain = {"aws:SecureTransport": "false", "aws:PrincipalArn": officer}
        assert evaluate(policy, action="s3:GetObject", resource=objects(lid), principal=officer, context=plain) == DENY
        assert evaluate(policy, action="s3:GetObject", resource=objects(lid), principal=officer,
                        context={**plain, "aws:SecureTransport": "true"}) != DENY


def test_only_the_tiers_reconciliation_writes_a_report_and_no_one_deletes_one(nagano: Synth) -> None:
    for tier in TIERS:
        template, lid, _ = bucket_of(nagano, tier)
        policy = bucket_policy(template, lid)
        other = "pref-200000" if tier == "national" else "national"

        def put(principal: str, action: str = "s3:PutObject") -> str:
            return evaluate(policy, action=action, resource=objects(lid), principal=principal, context={
                "aws:SecureTransport": "true", "aws:PrincipalArn": principal})

        assert put(role(tier, f"jukinet-{tier}-reconciliation")) != DENY
        attackers = [role(other, f"jukinet-{other}-reconciliation"),       # another tier's function
                     role(tier, f"jukinet-{tier}-processor"),               # the tier's own processor
                     role(tier, f"jukinet-{tier}-ledger-watch"),
                     "arn:aws:iam::123456789012:role/jukinet/muni-200000-writers/jukinet-dropzone-writer-202011",
                     person(tier, "operator"), person(tier, "security-officer"), person(tier, "break-glass")]
        for attacker in attackers:
            assert put(attacker) == DENY, attacker
        for principal in [role(tier, f"jukinet-{tier}-reconciliation"), person(tier, "chief-security-officer")]:
            assert put(principal, "s3:DeleteObject") == DENY
            assert put(principal, "s3:DeleteObjectVersion") == DENY


def test_only_the_tiers_security_officers_read_a_report(nagano: Synth) -> None:
    for tier in TIERS:
        template, lid, _ = bucket_of(nagano, tier)
        policy = bucket_policy(template, lid)
        other = "pref-200000" if tier == "national" else "national"

        def get(principal: str, action: str = "s3:GetObject") -> str:
            return evaluate(policy, action=action, resource=objects(lid), principal=principal, context={
                "aws:SecureTransport": "true", "aws:PrincipalArn": principal})

        for kind in ("security-officer", "chief-security-officer", "deputy-chief-security-officer"):
            assert get(person(tier, kind)) != DENY and get(person(tier, kind), "s3:GetObjectVersion") != DENY
        for attacker in [person(tier, "operator"), person(tier, "auditor"), person(tier, "network-administrator"),
                         person(tier, "break-glass"), person(other, "security-officer"),
                         role(tier, f"jukinet-{tier}-reconciliation"), role(other, f"jukinet-{other}-reconciliation"),
                         "arn:aws:iam::123456789012:role/jukinet/muni-200000-writers/jukinet-dropzone-writer-202011"]:
            assert get(attacker) == DENY, attacker
            assert get(attacker, "s3:GetObjectVersion") == DENY, attacker


def test_the_security_officers_role_grants_the_read_and_the_operators_does_not(nagano: Synth) -> None:
    for tier in TIERS:
        template = nagano.templates[tier_stacks(nagano)[tier]]
        report = f"arn:aws:s3:::jukinet-sec-reports-{tier}-{ACCOUNT}-{REGION}/reconciliation/2027-03-31.md"
        roles = people_roles(template, tier)
        for name, props in roles.items():
            decision = evaluate(policies_of(template, props), action="s3:GetObject", resource=report)
            reads = name.endswith(("-security-officer", "-chief-security-officer", "-deputy-chief-security-officer"))
            assert (decision == ALLOW) == reads, name


def test_the_reconciliation_function_writes_reports_only_reads_counts_and_runs_nightly_at_0130_jst(
        nagano: Synth) -> None:
    assert RECONCILIATION_SCHEDULE == "cron(30 16 * * ? *)"  # 16:30 UTC = 01:30 JST
    for tier in TIERS:
        template = nagano.templates[tier_stacks(nagano)[tier]]
        [(lid, fn)] = [(lid, r["Properties"]) for lid, r in template["Resources"].items()
                       if r["Type"] == "AWS::Lambda::Function" and r["Properties"]["Handler"] == HANDLER]
        assert fn["FunctionName"] == f"jukinet-{tier}-reconciliation"
        assert fn["Environment"]["Variables"]["TIER"] == ("national" if tier == "national" else "prefecture")
        [rule] = [r["Properties"] for r in template["Resources"].values()
                  if r["Type"] == "AWS::Events::Rule" and r["Properties"].get("Name") == f"jukinet-{tier}-reconciliation"]
        assert rule["ScheduleExpression"] == RECONCILIATION_SCHEDULE
        role = template["Resources"][fn["Role"]["Fn::GetAtt"][0]]["Properties"]
        docs = [template["Resources"][ref["Ref"]]["Properties"]["PolicyDocument"] for ref in role["ManagedPolicyArns"]]
        actions = {a for d in docs for st in d["Statement"] if st["Effect"] == "Allow"
                   for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}
        assert "s3:PutObject" in actions and "s3:GetObject" not in actions and "s3:DeleteObject" not in actions
        assert not {a for a in actions if a.startswith("dynamodb:") and a != "dynamodb:GetItem"}
        [alarm] = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"
                   and r["Properties"]["AlarmName"] == f"jukinet-{tier}-reconciliation-mismatches"]
        assert alarm["MetricName"] == "ReconciliationMismatches" and alarm["Threshold"] == 0
        assert alarm["AlarmDescription"].endswith("See docs/operations.md#reconciliation-mismatches.")
