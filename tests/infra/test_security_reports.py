"""The nightly reconciliation and the monthly monitoring report of each processing tier, and their
security-reports bucket (decisions 0033, 0039):
properties asserted by name, and the bucket policy evaluated as the attacks it stops — another
tier's function, a drop-zone writer, the tier's own processor or operator writing or reading a
report."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.naming import Names
from infra.stacks.processing import MONITORING_REPORT_SCHEDULE, RECONCILIATION_SCHEDULE
from embedded_aws.iam_policy import ALLOW, DENY, evaluate

from .conftest import Synth, as_list
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
        # Counts only: GetItem of ledgers and CS counts; the prefecture also Queries its municipalities'
        # channel records (ReadChannelRecords, decision 0047; tests/infra/test_channel.py).
        reads = {a for a in actions if a.startswith("dynamodb:")}
        assert reads == ({"dynamodb:GetItem", "dynamodb:Query"} if tier != "national" else {"dynamodb:GetItem"})
        queries = [st for d in docs for st in d["Statement"] if "dynamodb:Query" in as_list(st["Action"])]
        assert [st["Sid"] for st in queries] == (["ReadChannelRecords"] if tier != "national" else [])
        [alarm] = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"
                   and r["Properties"]["AlarmName"] == f"jukinet-{tier}-reconciliation-mismatches"]
        assert alarm["MetricName"] == "ReconciliationMismatches" and alarm["Threshold"] == 0
        assert alarm["AlarmDescription"].endswith("See docs/operations.md#reconciliation-mismatches.")


# --- the monthly monitoring report (decision 0039) -------------------------------------------------

MONITORING_HANDLER = "jukinet.handlers.monitoring_report.handler"


def _resolve(template: dict[str, Any], value: Any) -> Any:
    """Intrinsics of a policy as plain strings: buckets by name, other resources by logical id."""
    if isinstance(value, list):
        return [_resolve(template, v) for v in value]
    if not isinstance(value, dict):
        return value
    if "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return sep.join(str(_resolve(template, p)) for p in parts)
    if "Ref" in value:
        return {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}.get(
            value["Ref"], f"ref:{value['Ref']}")
    if "Fn::GetAtt" in value:
        lid = value["Fn::GetAtt"][0]
        resource = template["Resources"].get(lid, {})
        if resource.get("Type") == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{resource['Properties']['BucketName']}"
        return f"arn:aws:resource:::{lid}"
    return {k: _resolve(template, v) for k, v in value.items()}


def monitoring_function(synth: Synth, tier: str) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(template, function properties, the role's policy documents resolved)."""
    template = synth.templates[tier_stacks(synth)[tier]]
    [fn] = [r["Properties"] for r in template["Resources"].values()
            if r["Type"] == "AWS::Lambda::Function" and r["Properties"]["Handler"] == MONITORING_HANDLER]
    role_props = template["Resources"][fn["Role"]["Fn::GetAtt"][0]]["Properties"]
    return template, fn, [_resolve(template, d) for d in policies_of(template, role_props)]


def test_each_processing_tier_reports_the_previous_month_on_the_1st_at_0930_jst(nagano: Synth) -> None:
    assert MONITORING_REPORT_SCHEDULE == "cron(30 0 1 * ? *)"  # 00:30 UTC on the 1st = 09:30 JST on the 1st
    for tier in TIERS:
        template, fn, _ = monitoring_function(nagano, tier)
        assert fn["FunctionName"] == f"jukinet-{tier}-monitoring-report"
        env = fn["Environment"]["Variables"]
        assert env["TIER"] == ("national" if tier == "national" else "prefecture") and env["TIER_NAME"] == tier
        assert env["REPORTS_BUCKET"] == {"Ref": bucket_of(nagano, tier)[1]}
        scope = json.loads(env["REPORT_SCOPE"])
        assert scope["tiers"] == (["national"] if tier == "national" else [tier, "muni-200000"])
        assert bool(env.get("PROVISION_LOG_TABLE")) == (tier == "national")
        [rule] = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::Events::Rule"
                  and r["Properties"].get("Name") == f"jukinet-{tier}-monitoring-report"]
        assert rule["ScheduleExpression"] == MONITORING_REPORT_SCHEDULE and rule["State"] == "ENABLED"
        [target] = rule["Targets"]
        assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2 and "Input" not in target


def test_the_monitoring_report_role_writes_only_its_own_reports_in_its_own_bucket(nagano: Synth) -> None:
    """The attack: the report function's role (stolen, or its code subverted) overwriting the
    reconciliation's reports, writing into another tier's bucket, reading or deleting a report."""
    for tier in TIERS:
        _, _, docs = monitoring_function(nagano, tier)
        other = "pref-200000" if tier == "national" else "national"
        own = f"arn:aws:s3:::jukinet-sec-reports-{tier}-{ACCOUNT}-{REGION}"
        theirs = f"arn:aws:s3:::jukinet-sec-reports-{other}-{ACCOUNT}-{REGION}"

        def may(action: str, resource: str, **context: Any) -> bool:
            return evaluate(docs, action=action, resource=resource, context=context) == ALLOW

        assert may("s3:PutObject", f"{own}/monitoring-report/2026-11/report.md")
        for key in ("reconciliation/2026-11-30.md", "monitoring-report", "other/x.md"):
            assert not may("s3:PutObject", f"{own}/{key}"), key
        assert not may("s3:PutObject", f"{theirs}/monitoring-report/2026-11/report.md")
        for action in ("s3:GetObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectAcl",
                       "s3:PutBucketPolicy", "s3:ListBucket"):
            assert not may(action, f"{own}/monitoring-report/2026-11/report.md"), action
            assert not may(action, own), action


def test_the_monitoring_report_role_reads_no_identity_table_and_writes_no_table_or_parameter(nagano: Synth) -> None:
    for tier in TIERS:
        _, _, docs = monitoring_function(nagano, tier)
        table = lambda name: f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"  # noqa: E731

        def may(action: str, resource: str, **context: Any) -> bool:
            return evaluate(docs, action=action, resource=resource, context=context) == ALLOW

        for name in ("jukinet-national-identity", "jukinet-pref-200000-identity", "jukinet-cs-20"):
            for action in ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:BatchGetItem"):
                assert not may(action, table(name)) and not may(action, f"{table(name)}/index/by_sender"), (name,
                                                                                                          action)
        log, state = table("jukinet-national-provision-log"), table("jukinet-national-provision-state")
        for action in ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Scan",
                       "dynamodb:BatchWriteItem"):
            assert not may(action, log) and not may(action, state), action
        reads_log = tier == "national"  # seals and the statistics check; the prefectures hold no log
        assert may("dynamodb:Query", log) == reads_log
        assert may("dynamodb:Query", state, **{"dynamodb:LeadingKeys": ["STAT#2026-11"]}) == reads_log
        # The state table's other items (reservations, heads, answered provisions) are not the report's.
        assert not may("dynamodb:Query", state, **{"dynamodb:LeadingKeys": ["RESERVE#2026-11"]})
        assert not may("dynamodb:GetItem", state, **{"dynamodb:LeadingKeys": ["STAT#2026-11"]})
        isolation = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/jukinet/isolation"
        assert may("ssm:GetParametersByPath", isolation)
        assert may("ssm:GetParameterHistory", f"{isolation}/municipality/202011")
        assert not may("ssm:PutParameter", f"{isolation}/municipality/202011")
        assert not may("ssm:GetParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/jukinet/secret")
        assert not may("ssm:GetParametersByPath", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/jukinet")
        assert may("cloudwatch:GetMetricStatistics", "*") and not may("cloudwatch:PutMetricData", "*")
        assert not may("cloudwatch:PutMetricAlarm", "*") and not may("cloudwatch:SetAlarmState", "*")


def test_the_bucket_admits_the_monitoring_report_as_a_writer_and_not_as_a_reader(nagano: Synth) -> None:
    for tier in TIERS:
        template, lid, _ = bucket_of(nagano, tier)
        policy = bucket_policy(template, lid)
        writer = role(tier, f"jukinet-{tier}-monitoring-report")
        other = "pref-200000" if tier == "national" else "national"
        context = {"aws:SecureTransport": "true", "aws:PrincipalArn": writer}
        assert evaluate(policy, action="s3:PutObject", resource=objects(lid), principal=writer, context=context) != DENY
        for action in ("s3:GetObject", "s3:DeleteObject", "s3:DeleteObjectVersion"):
            assert evaluate(policy, action=action, resource=objects(lid), principal=writer, context=context) == DENY
        stranger = role(other, f"jukinet-{other}-monitoring-report")
        assert evaluate(policy, action="s3:PutObject", resource=objects(lid), principal=stranger,
                        context={**context, "aws:PrincipalArn": stranger}) == DENY
