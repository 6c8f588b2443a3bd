"""S3 drop zones and the trail: the boundary with the existing systems, and who did what."""

from __future__ import annotations

import pytest

from infra.composition import trail_hosts
from infra.naming import Names

from .conftest import Synth, as_list, statements

pytestmark = pytest.mark.slow


def test_every_bucket_blocks_public_access_is_versioned_and_tls_only(every: Synth) -> None:
    for stack, lid, res in every.resources("AWS::S3::Bucket"):
        p = res["Properties"]
        assert p["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
        assert p["VersioningConfiguration"] == {"Status": "Enabled"}
        policies = [r["Properties"] for r in every.templates[stack]["Resources"].values()
                    if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": lid}]
        assert any(s["Effect"] == "Deny" and s["Condition"]["Bool"]["aws:SecureTransport"] == "false"
                   for pol in policies for s in statements(pol["PolicyDocument"])), lid


def test_each_municipality_has_a_kms_encrypted_access_logged_drop_zone_that_triggers_its_cs(nagano: Synth) -> None:
    names = Names.of(nagano.deployment)
    env = nagano.deployment.prefectures[0].municipality_tier.env
    drop_zones = [(stack, lid, r["Properties"]) for stack, lid, r in nagano.resources("AWS::S3::Bucket")
                  if str(r["Properties"].get("BucketName", "")).startswith(names.drop_zone_bucket_prefix(env))]
    assert len(drop_zones) == 77
    for stack, lid, p in drop_zones:
        code = p["BucketName"].rsplit("-", 1)[1]
        rule = p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms" and rule["BucketKeyEnabled"] is True
        assert p["LoggingConfiguration"]["LogFilePrefix"] == f"dropzones/{code}/"
        # S3 → the CS's inbox queue (decision 0051; tests/infra/test_cs_inbox.py has the rest)
        assert "LambdaConfigurations" not in p["NotificationConfiguration"]
        [notification] = p["NotificationConfiguration"]["QueueConfigurations"]
        assert notification["Event"] == "s3:ObjectCreated:*"
        assert notification["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "incoming/"}]
        resources = nagano.templates[stack]["Resources"]
        queue_id = notification["Queue"]["Fn::GetAtt"][0]
        assert resources[queue_id]["Properties"]["QueueName"] == f"jukinet-cs-{code}-inbox"
        [mapping] = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"
                     and r["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}]
        function = resources[mapping["FunctionName"]["Ref"]]["Properties"]
        assert function["FunctionName"] == f"jukinet-cs-{code}"
        # S3 checks the queue's policy when the notification is configured: it must exist first.
        [policy_id] = [k for k, r in resources.items() if r["Type"] == "AWS::SQS::QueuePolicy"
                       and {"Ref": queue_id} in r["Properties"]["Queues"]]
        assert {queue_id, policy_id} <= set(as_list(resources[lid].get("DependsOn", [])))


def test_each_account_has_exactly_one_trail(every: Synth) -> None:
    trails = every.resources("AWS::CloudTrail::Trail")
    hosts = trail_hosts(every.deployment)
    assert len(trails) == len(hosts) == len(every.deployment.accounts())
    stacks = {stack for stack, _, _ in trails}
    accounts = {s.account for s in every.built.stacks if s.stack_name in stacks}
    assert accounts == set(every.deployment.accounts())


def test_trails_validate_encrypt_log_to_cloudwatch_and_record_data_events(every: Synth) -> None:
    names = Names.of(every.deployment)
    for stack, _, res in every.resources("AWS::CloudTrail::Trail"):
        t = res["Properties"]
        assert t["IsLogging"] is True and t["EnableLogFileValidation"] is True and t["IsMultiRegionTrail"] is True
        assert "KMSKeyId" in t and "CloudWatchLogsLogGroupArn" in t and "CloudWatchLogsRoleArn" in t
        selectors = {s["Name"]: {f["Field"]: f for f in s["FieldSelectors"]} for s in t["AdvancedEventSelectors"]}
        assert selectors["Management events"]["eventCategory"]["Equals"] == ["Management"]
        data_types = {sel["resources.type"]["Equals"][0]: sel["resources.ARN"]["StartsWith"][0]
                      for sel in selectors.values() if "resources.type" in sel}
        assert set(data_types) == {"AWS::DynamoDB::Table", "AWS::Lambda::Function", "AWS::S3::Object"}
        account = next(s.account for s in every.built.stacks if s.stack_name == stack)
        # Every table and function of this account is covered by the trail's ARN prefixes.
        for s in every.built.stacks:
            if s.account != account:
                continue
            for r in every.templates[s.stack_name]["Resources"].values():
                if r["Type"] == "AWS::DynamoDB::Table":
                    arn = f"arn:aws:dynamodb:{s.region}:{account}:table/{r['Properties']['TableName']}"
                    assert arn.startswith(data_types["AWS::DynamoDB::Table"])
                if r["Type"] == "AWS::Lambda::Function":
                    arn = f"arn:aws:lambda:{s.region}:{account}:function:{r['Properties']['FunctionName']}"
                    assert arn.startswith(data_types["AWS::Lambda::Function"])
        assert data_types["AWS::S3::Object"].startswith(f"arn:aws:s3:::{names.prefix}-dropzone-{account}-")


def test_trail_bucket_is_kms_encrypted_and_access_logged(every: Synth) -> None:
    for stack, _, res in every.resources("AWS::CloudTrail::Trail"):
        resources = every.templates[stack]["Resources"]
        bucket = resources[res["Properties"]["S3BucketName"]["Ref"]]["Properties"]
        assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
            "ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
        assert "DestinationBucketName" in bucket["LoggingConfiguration"]
        group = resources[res["Properties"]["CloudWatchLogsLogGroupArn"]["Fn::GetAtt"][0]]["Properties"]
        assert "KmsKeyId" in group
