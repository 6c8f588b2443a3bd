"""The security checklist against the deployed Nagano assembly in the embedded AWS.

The assembly is synthesized and deployed once (module scope). The deployment as synthesized
must pass (nothing FAILs, exit 0). Then each test breaks one setting through the AWS APIs,
runs the checklist, expects exactly that check to FAIL, naming the resource, and restores the
setting — so the next test starts from a passing deployment again (each test asserts the
exact set of failures, so a restore that did not work shows up at once).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from infra.config import Deployment, Environment, load_deployment
from infra.naming import NATIONAL, Names, municipality_tier, prefecture_tier
from jukinet.clock import JST, fixed
from jukinet_ops.checklist import CHECKS, Audit, Status, run_checklist
from jukinet_ops.cli import main
from embedded_aws.deploy import deploy_assembly
from embedded_aws.server import MotoServer, local_client

from ..dates import SYNTH_DAY
from .embedded import nagano_assembly

# The checklist's clock: noon on the day the assembly was synthesized as of.
SYNTH_NOON = fixed(dt.datetime.combine(SYNTH_DAY, dt.time(12), JST))

pytestmark = pytest.mark.slow

NAGANO, MATSUMOTO = "202011", "202029"
PREF = "200000"
MUNI_TIER, PREF_TIER = municipality_tier(PREF), prefecture_tier(PREF)
# What moto or local mode cannot hold (docs/checklist.md, "Not verifiable locally").
NOT_VERIFIABLE_HERE = {"S3-3", "EDGE-2", "NET-5", "DB-1"}
MUNICIPALITY_CHECKS = ["S3-1", "S3-2", "S3-3", "S3-4", "EDGE-1", "EDGE-2", "FN-1", "FN-2", "FN-3", "FN-4", "KEY-3",
                       "ALM-3"]


@dataclass
class World:
    deployment: Deployment
    endpoint_url: str

    @property
    def names(self) -> Names:
        return Names.of(self.deployment)

    @property
    def env(self) -> Environment:
        return self.deployment.national.env  # every tier of nagano-demo is in one account and region

    def client(self, service: str) -> Any:
        return local_client(self.endpoint_url, service, self.env.region, self.env.account)

    def vpc(self, tier: str) -> str:
        p = self.names.prefix
        [vpc] = self.client("ec2").describe_vpcs(Filters=[{"Name": f"tag:{p}:tier", "Values": [tier]}])["Vpcs"]
        return vpc["VpcId"]

    def queue_url(self, name: str) -> str:
        return self.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]

    def key_id(self, alias: str) -> str:
        return self.client("kms").describe_key(KeyId=alias)["KeyMetadata"]["KeyId"]

    def checklist(self, codes: tuple[str, ...] = (NAGANO,), today: dt.date = SYNTH_DAY) -> Audit:
        """The checklist, dates judged on ``today`` (default: the day the assembly was synthesized
        as of, so the demo contract and agreements are judged as the templates were made)."""
        return run_checklist(self.deployment, endpoint_url=self.endpoint_url, codes=list(codes), out_dir=None,
                             now=dt.datetime.combine(today, dt.time(12), JST), today=today)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    deployment = load_deployment("nagano-demo")
    out = nagano_assembly(tmp_path_factory, "nagano-demo")
    with MotoServer() as server:
        deploy_assembly(out, server.endpoint_url, default_region=deployment.region)
        yield World(deployment, server.endpoint_url)


def _failures(audit: Audit) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for f in audit.failed:
        found.setdefault(f.check_id, []).append(f.resource)
    return found


# --- the deployment as synthesized ------------------------------------------------------------


def test_the_deployed_assembly_passes_and_every_municipality_gets_its_reports(world, tmp_path, capsys):
    out = tmp_path / "reports"
    code = main(["checklist", "--endpoint-url", world.endpoint_url, "--out", str(out)], clock=SYNTH_NOON)
    summary = capsys.readouterr().out
    assert code == 0, summary
    assert "result: PASS" in summary and "77 PASS, 0 FAIL" in summary

    municipalities = [m.code for m in world.deployment.prefecture(PREF).municipality_tier.municipalities]
    assert len(municipalities) == 77
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{c}.{s}" for c in municipalities for s in ("md", "html")] + ["index.html", "index.md"])
    for c in (NAGANO, municipalities[-1]):
        md = (out / f"{c}.md").read_text(encoding="utf-8")
        page = (out / f"{c}.html").read_text(encoding="utf-8")
        for check_id in CHECKS:  # the municipality's own checks and those of every tier it depends on
            assert f"| {check_id} |" in md, (c, check_id)
            assert f"<td>{check_id}</td>" in page, (c, check_id)
        assert "| **FAIL** |" not in md
        assert page.startswith("<!DOCTYPE html>") and "<style>" in page
        assert not re.search(r"<(script|link|img)\b|src=|@import", page), "the HTML must be self-contained"
        assert f"jukinet-dropzone-{world.env.account}-{world.env.region}-{c}" in md
    assert "[html](202011.html)" in (out / "index.md").read_text(encoding="utf-8")


def test_only_what_moto_cannot_hold_is_not_verifiable(world):
    audit = world.checklist()
    assert audit.exit_code == 0 and not audit.failed
    assert {f.check_id for f in audit.findings if f.status is Status.NOT_VERIFIABLE} == NOT_VERIFIABLE_HERE
    verifiable = {f.check_id for f in audit.findings if f.status is Status.PASS}
    assert verifiable == set(CHECKS) - NOT_VERIFIABLE_HERE  # here those three pass on no resource
    # Deployed agreements are read from the provision functions' deployed code, not from configuration.
    [agr] = [f for f in audit.findings if f.check_id == "AGR-1"]
    assert agr.resource.startswith("agreements.json deployed with jukinet-national-provision-api")


# --- one setting broken at a time ------------------------------------------------------------

Breaker = Callable[[World], contextlib.AbstractContextManager[Any]]


@contextlib.contextmanager
def writer_trusts_someone_else(w: World) -> Iterator[None]:
    """The attack: a principal added by hand to Nagano's drop-zone writer (it could then drop
    files that leave as Nagano's signed notices)."""
    iam, role = w.client("iam"), w.names.drop_zone_writer(NAGANO)
    saved = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    intruder = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                "Principal": {"AWS": "arn:aws:iam::210987654321:root"}}]}
    iam.update_assume_role_policy(RoleName=role, PolicyDocument=json.dumps(intruder))
    try:
        yield
    finally:
        iam.update_assume_role_policy(RoleName=role, PolicyDocument=saved if isinstance(saved, str)
                                      else json.dumps(saved))


@contextlib.contextmanager
def bucket_encryption_deleted(w: World) -> Iterator[None]:
    s3, bucket = w.client("s3"), w.names.drop_zone_bucket(w.env, NAGANO)
    saved = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    s3.delete_bucket_encryption(Bucket=bucket)
    try:
        yield
    finally:
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=saved)


@contextlib.contextmanager
def bucket_encrypted_with_another_key(w: World) -> Iterator[None]:
    s3, bucket = w.client("s3"), w.names.drop_zone_bucket(w.env, NAGANO)
    saved = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    other = w.key_id(w.names.key_alias(MUNI_TIER, "audit"))
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": other}}]})
    try:
        yield
    finally:
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=saved)


@contextlib.contextmanager
def public_access_block_weakened(w: World) -> Iterator[None]:
    s3, bucket = w.client("s3"), w.names.drop_zone_bucket(w.env, NAGANO)
    saved = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={**saved, "BlockPublicPolicy": False})
    try:
        yield
    finally:
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=saved)


@contextlib.contextmanager
def versioning_suspended(w: World) -> Iterator[None]:
    s3, bucket = w.client("s3"), w.names.drop_zone_bucket(w.env, NAGANO)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    try:
        yield
    finally:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


@contextlib.contextmanager
def function_taken_out_of_vpc(w: World) -> Iterator[None]:
    lam, name = w.client("lambda"), w.names.cs_function(NAGANO)
    saved = lam.get_function(FunctionName=name)["Configuration"]["VpcConfig"]
    lam.update_function_configuration(FunctionName=name, VpcConfig={"SubnetIds": [], "SecurityGroupIds": []})
    try:
        yield
    finally:
        lam.update_function_configuration(FunctionName=name, VpcConfig={
            "SubnetIds": saved["SubnetIds"], "SecurityGroupIds": saved["SecurityGroupIds"]})


@contextlib.contextmanager
def function_url_added(w: World) -> Iterator[None]:
    lam, name = w.client("lambda"), w.names.cs_function(NAGANO)
    lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    try:
        yield
    finally:
        lam.delete_function_url_config(FunctionName=name)


@contextlib.contextmanager
def secret_in_environment(w: World) -> Iterator[None]:
    lam, name = w.client("lambda"), w.names.cs_function(NAGANO)
    saved = lam.get_function(FunctionName=name)["Configuration"]["Environment"]["Variables"]
    lam.update_function_configuration(FunctionName=name, Environment={
        "Variables": {**saved, "REGISTRY_DB_PASSWORD": "hunter2"}})
    try:
        yield
    finally:
        lam.update_function_configuration(FunctionName=name, Environment={"Variables": saved})


@contextlib.contextmanager
def reserved_concurrency_removed(w: World, name: str | None = None) -> Iterator[None]:
    lam, name = w.client("lambda"), name or w.names.cs_function(NAGANO)
    saved = lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"]
    lam.delete_function_concurrency(FunctionName=name)
    try:
        yield
    finally:
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=saved)


@contextlib.contextmanager
def signing_key_disabled(w: World) -> Iterator[None]:
    kms, key = w.client("kms"), w.key_id(w.names.signing_alias(NAGANO))
    kms.disable_key(KeyId=key)
    try:
        yield
    finally:
        kms.enable_key(KeyId=key)


@contextlib.contextmanager
def key_rotation_disabled(w: World) -> Iterator[None]:
    kms, key = w.client("kms"), w.key_id(w.names.key_alias(MUNI_TIER, "at-rest"))
    kms.disable_key_rotation(KeyId=key)
    try:
        yield
    finally:
        kms.enable_key_rotation(KeyId=key)


@contextlib.contextmanager
def tier_key_disabled(w: World) -> Iterator[None]:
    kms, key = w.client("kms"), w.key_id(w.names.key_alias(PREF_TIER, "envelope"))
    kms.disable_key(KeyId=key)
    try:
        yield
    finally:
        kms.enable_key(KeyId=key)


@contextlib.contextmanager
def internet_gateway_and_default_route(w: World) -> Iterator[None]:
    ec2, vpc = w.client("ec2"), w.vpc(MUNI_TIER)
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    table = next(t["RouteTableId"] for t in ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"] if not any(
        a.get("Main") for a in t.get("Associations", [])))
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    try:
        yield
    finally:
        ec2.delete_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0")
        ec2.detach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
        ec2.delete_internet_gateway(InternetGatewayId=igw)


@contextlib.contextmanager
def nat_gateway_added(w: World) -> Iterator[None]:
    ec2, vpc = w.client("ec2"), w.vpc(PREF_TIER)
    subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][0]["SubnetId"]
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat = ec2.create_nat_gateway(SubnetId=subnet, AllocationId=allocation)["NatGateway"]["NatGatewayId"]
    try:
        yield
    finally:
        ec2.delete_nat_gateway(NatGatewayId=nat)
        ec2.release_address(AllocationId=allocation)


@contextlib.contextmanager
def default_security_group_opened(w: World) -> Iterator[None]:
    ec2, vpc = w.client("ec2"), w.vpc(NATIONAL)
    [group] = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                                    {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"]
    rule = [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    ec2.authorize_security_group_ingress(GroupId=group["GroupId"], IpPermissions=rule)
    try:
        yield
    finally:
        ec2.revoke_security_group_ingress(GroupId=group["GroupId"], IpPermissions=rule)


@contextlib.contextmanager
def kms_endpoint_deleted(w: World) -> Iterator[None]:
    ec2, vpc = w.client("ec2"), w.vpc(PREF_TIER)
    [endpoint] = [e for e in ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["VpcEndpoints"]
                  if e["ServiceName"].endswith(".kms")]
    ec2.delete_vpc_endpoints(VpcEndpointIds=[endpoint["VpcEndpointId"]])
    try:
        yield
    finally:  # a new endpoint (new id): nothing else checked refers to the KMS endpoint's id
        ec2.create_vpc_endpoint(VpcId=vpc, ServiceName=endpoint["ServiceName"], VpcEndpointType="Interface",
                                SubnetIds=endpoint["SubnetIds"], PrivateDnsEnabled=True,
                                SecurityGroupIds=[g["GroupId"] for g in endpoint["Groups"]])


@contextlib.contextmanager
def queue_attribute(w: World, queue: str, attribute: str, value: Callable[[str], str]) -> Iterator[None]:
    sqs, url = w.client("sqs"), w.queue_url(queue)
    saved = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[attribute])["Attributes"][attribute]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={attribute: value(saved)})
    try:
        yield
    finally:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={attribute: saved})


@contextlib.contextmanager
def redrive_removed(w: World) -> Iterator[None]:
    sqs, url = w.client("sqs"), w.queue_url(w.names.inbound_queue(PREF_TIER))
    saved = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy", "Policy"])["Attributes"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": ""})
    # moto 5.2.5 drops the queue's Policy along with an emptied RedrivePolicy; AWS does not.
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": saved["Policy"]})
    try:
        yield
    finally:
        sqs.set_queue_attributes(QueueUrl=url, Attributes=saved)


def queue_key_removed(w: World) -> contextlib.AbstractContextManager[None]:
    return queue_attribute(w, w.names.cs_failure_queue(PREF), "KmsMasterKeyId", lambda _: "")


def _edit_policy(edit: Callable[[list[dict]], list[dict]]) -> Callable[[str], str]:
    def apply(text: str) -> str:
        policy = json.loads(text)
        return json.dumps({**policy, "Statement": edit(policy["Statement"])})
    return apply


def source_vpce_deny_removed(w: World) -> contextlib.AbstractContextManager[None]:
    return queue_attribute(w, w.names.inbound_queue(NATIONAL), "Policy", _edit_policy(
        lambda statements: [s for s in statements if s.get("Sid") != "DenySendOutsideSendingTierEndpoint"]))


def foreign_endpoint_admitted(w: World) -> contextlib.AbstractContextManager[None]:
    def add(statements: list[dict]) -> list[dict]:
        for s in statements:
            if s.get("Sid") == "DenySendOutsideSendingTierEndpoint":
                s["Condition"]["StringNotEquals"]["aws:SourceVpce"].append("vpce-0123456789abcdef0")
        return statements
    return queue_attribute(w, w.names.inbound_queue(PREF_TIER), "Policy", _edit_policy(add))


@contextlib.contextmanager
def point_in_time_recovery_off(w: World) -> Iterator[None]:
    ddb, table = w.client("dynamodb"), w.names.identity_table(PREF_TIER)
    ddb.update_continuous_backups(TableName=table,
                                  PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False})
    try:
        yield
    finally:
        ddb.update_continuous_backups(TableName=table,
                                      PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})


@contextlib.contextmanager
def deletion_protection_off(w: World) -> Iterator[None]:
    ddb, table = w.client("dynamodb"), w.names.cs_state_table(PREF)
    ddb.update_table(TableName=table, DeletionProtectionEnabled=False)
    try:
        yield
    finally:
        ddb.update_table(TableName=table, DeletionProtectionEnabled=True)


@contextlib.contextmanager
def alarm_actions_disabled(w: World) -> Iterator[None]:
    cw, alarm = w.client("cloudwatch"), w.names.alarm(PREF_TIER, "processor-errors")
    cw.disable_alarm_actions(AlarmNames=[alarm])
    try:
        yield
    finally:
        cw.enable_alarm_actions(AlarmNames=[alarm])


_ALARM_FIELDS = ("AlarmName", "AlarmDescription", "ActionsEnabled", "OKActions", "AlarmActions",
                 "InsufficientDataActions", "MetricName", "Namespace", "Statistic", "Dimensions", "Period",
                 "EvaluationPeriods", "DatapointsToAlarm", "Threshold", "ComparisonOperator", "TreatMissingData",
                 "Metrics", "ThresholdMetricId")


@contextlib.contextmanager
def alarm_deleted(w: World, name: Callable[[World], str]) -> Iterator[None]:
    cw = w.client("cloudwatch")
    [alarm] = cw.describe_alarms(AlarmNames=[name(w)])["MetricAlarms"]
    cw.delete_alarms(AlarmNames=[alarm["AlarmName"]])
    try:
        yield
    finally:
        cw.put_metric_alarm(**{k: alarm[k] for k in _ALARM_FIELDS if alarm.get(k) not in (None, [], "")})


def _cs_errors_alarm(w: World) -> str:
    prefix = w.names.alarm(MUNI_TIER, "cs-errors-")
    alarms = w.client("cloudwatch").describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]
    function = w.names.cs_function(NAGANO)
    return next(a["AlarmName"] for a in alarms if any(
        d["Value"] == function for m in a["Metrics"] for d in m.get("MetricStat", {}).get("Metric", {}).get(
            "Dimensions", [])))


@contextlib.contextmanager
def trail_stopped(w: World) -> Iterator[None]:
    ct = w.client("cloudtrail")
    ct.stop_logging(Name=w.names.trail())
    try:
        yield
    finally:
        ct.start_logging(Name=w.names.trail())


@contextlib.contextmanager
def trail_validation_off(w: World) -> Iterator[None]:
    ct = w.client("cloudtrail")
    ct.update_trail(Name=w.names.trail(), EnableLogFileValidation=False)
    try:
        yield
    finally:
        ct.update_trail(Name=w.names.trail(), EnableLogFileValidation=True)


def _rest_api(w: World, name: str) -> dict[str, Any]:
    [api] = [a for a in w.client("apigateway").get_rest_apis()["items"] if a["name"] == name]
    return api


def _provision_api(w: World) -> dict[str, Any]:
    return _rest_api(w, w.names.provision_api())


@contextlib.contextmanager
def api_made_regional(w: World, name: str | None = None) -> Iterator[None]:
    ag, api = w.client("apigateway"), _rest_api(w, name or w.names.provision_api())
    ag.update_rest_api(restApiId=api["id"], patchOperations=[
        {"op": "replace", "path": "/endpointConfiguration/types/PRIVATE", "value": "REGIONAL"}])
    try:
        yield
    finally:
        ag.update_rest_api(restApiId=api["id"], patchOperations=[
            {"op": "replace", "path": "/endpointConfiguration/types/REGIONAL", "value": "PRIVATE"}])


@contextlib.contextmanager
def api_endpoint_deny_removed(w: World) -> Iterator[None]:
    ag, api = w.client("apigateway"), _provision_api(w)
    policy = json.loads(api["policy"])
    weakened = {**policy, "Statement": [s for s in policy["Statement"]
                                        if s.get("Sid") != "DenyOutsideConfiguredEndpoints"]}
    ag.update_rest_api(restApiId=api["id"], patchOperations=[
        {"op": "replace", "path": "/policy", "value": json.dumps(weakened)}])
    try:
        yield
    finally:
        ag.update_rest_api(restApiId=api["id"], patchOperations=[
            {"op": "replace", "path": "/policy", "value": api["policy"]}])


def _names(f: Callable[[Names, Environment], str]) -> Callable[[World], str]:
    return lambda w: f(w.names, w.env)


# (breaker, {check id: what the failing finding's resource names})
BREAKS: dict[str, tuple[Breaker, dict[str, Callable[[World], str]]]] = {
    "bucket encryption deleted": (bucket_encryption_deleted,
                                  {"S3-1": _names(lambda n, e: n.drop_zone_bucket(e, NAGANO))}),
    "bucket encrypted with another key": (bucket_encrypted_with_another_key,
                                          {"S3-1": _names(lambda n, e: n.drop_zone_bucket(e, NAGANO))}),
    "public access block weakened": (public_access_block_weakened,
                                     {"S3-2": _names(lambda n, e: n.drop_zone_bucket(e, NAGANO))}),
    "versioning suspended": (versioning_suspended, {"S3-4": _names(lambda n, e: n.drop_zone_bucket(e, NAGANO))}),
    "CS taken out of the VPC": (function_taken_out_of_vpc, {"FN-1": _names(lambda n, e: n.cs_function(NAGANO))}),
    "function URL added": (function_url_added, {"FN-2": _names(lambda n, e: n.cs_function(NAGANO))}),
    "secret in the environment": (secret_in_environment, {"FN-3": _names(lambda n, e: n.cs_function(NAGANO))}),
    "reserved concurrency removed": (reserved_concurrency_removed,
                                     {"FN-4": _names(lambda n, e: n.cs_function(NAGANO))}),
    "signing key disabled": (signing_key_disabled, {"KEY-3": _names(lambda n, e: n.signing_alias(NAGANO))}),
    "key rotation disabled": (key_rotation_disabled,
                              {"KEY-1": _names(lambda n, e: n.key_alias(MUNI_TIER, "at-rest"))}),
    "tier key disabled": (tier_key_disabled, {"KEY-2": _names(lambda n, e: n.key_alias(PREF_TIER, "envelope"))}),
    "internet gateway and 0.0.0.0/0 route": (internet_gateway_and_default_route,
                                             {"NET-1": lambda w: w.vpc(MUNI_TIER),
                                              "NET-3": lambda w: w.vpc(MUNI_TIER)}),
    "NAT gateway added": (nat_gateway_added, {"NET-2": lambda w: w.vpc(PREF_TIER)}),
    "drop-zone writer trusts another account": (writer_trusts_someone_else,
                                                {"EDGE-1": _names(lambda n, e: n.drop_zone_writer(NAGANO))}),
    "KMS endpoint deleted": (kms_endpoint_deleted, {"NET-4": lambda w: w.vpc(PREF_TIER)}),
    "default security group opened": (default_security_group_opened, {"NET-5": lambda w: w.vpc(NATIONAL)}),
    "queue key removed": (queue_key_removed, {"Q-1": _names(lambda n, e: n.cs_failure_queue(PREF))}),
    "redrive policy removed": (redrive_removed, {"Q-2": _names(lambda n, e: n.inbound_queue(PREF_TIER))}),
    "SourceVpce deny removed": (source_vpce_deny_removed, {"Q-3": _names(lambda n, e: n.inbound_queue(NATIONAL))}),
    "foreign endpoint admitted": (foreign_endpoint_admitted,
                                  {"Q-3": _names(lambda n, e: n.inbound_queue(PREF_TIER))}),
    "point-in-time recovery off": (point_in_time_recovery_off,
                                   {"DB-2": _names(lambda n, e: n.identity_table(PREF_TIER))}),
    "deletion protection off": (deletion_protection_off, {"DB-3": _names(lambda n, e: n.cs_state_table(PREF))}),
    "alarm deleted": (lambda w: alarm_deleted(w, _names(lambda n, e: n.alarm(PREF_TIER, "sequence-gaps"))),
                      {"ALM-1": _names(lambda n, e: n.alarm(PREF_TIER, "sequence-gaps"))}),
    "flow-log alarm deleted": (lambda w: alarm_deleted(w, _names(lambda n, e: n.alarm(MUNI_TIER, "flow-log-rejects"))),
                               {"ALM-1": _names(lambda n, e: n.alarm(MUNI_TIER, "flow-log-rejects"))}),
    "alarm actions disabled": (alarm_actions_disabled,
                               {"ALM-2": _names(lambda n, e: n.alarm(PREF_TIER, "processor-errors"))}),
    "CS errors alarm deleted": (lambda w: alarm_deleted(w, _cs_errors_alarm),
                                {"ALM-3": _names(lambda n, e: n.cs_function(NAGANO))}),
    "trail stopped": (trail_stopped, {"TRAIL-2": _names(lambda n, e: n.trail())}),
    "trail log file validation off": (trail_validation_off, {"TRAIL-3": _names(lambda n, e: n.trail())}),
    "provision API made regional": (api_made_regional, {"API-1": _names(lambda n, e: n.provision_api())}),
    "provision API endpoint deny removed": (api_endpoint_deny_removed,
                                            {"API-2": _names(lambda n, e: n.provision_api())}),
    "counter API made regional": (lambda w: api_made_regional(w, w.names.card_api(PREF)),
                                  {"API-1": _names(lambda n, e: n.card_api(PREF))}),
    "counter function's reserved concurrency removed": (
        lambda w: reserved_concurrency_removed(w, w.names.card_api(PREF)),
        {"FN-4": _names(lambda n, e: n.card_api(PREF))}),
}


@pytest.mark.parametrize("what", list(BREAKS))
def test_breaking_one_setting_fails_exactly_that_check(world, what):
    breaker, expected = BREAKS[what]
    with breaker(world):
        audit = world.checklist()
    failed = _failures(audit)
    assert set(failed) == set(expected), [(f.check_id, f.resource, f.evidence) for f in audit.failed]
    for check_id, resource in expected.items():
        assert any(resource(world) in r for r in failed[check_id]), (check_id, failed[check_id])
    assert audit.exit_code == 1


@pytest.mark.parametrize(("today", "check_id"), [(dt.date(2028, 3, 10), "AGR-2"), (dt.date(2028, 4, 1), "AGR-1")])
def test_agreements_expiring_or_expired_on_the_day_judged(world, today, check_id):
    audit = world.checklist(today=today)
    [failed] = audit.failed
    assert failed.check_id == check_id
    assert failed.resource.startswith("agreements.json deployed with")
    assert "(valid until 2028-03-31)" in failed.evidence  # the demo's agreement that ends first


def test_a_miss_fails_the_command_and_shows_in_that_municipality_report_only(world, tmp_path, capsys):
    out = tmp_path / "reports"
    bucket = world.names.drop_zone_bucket(world.env, NAGANO)
    with bucket_encryption_deleted(world):
        code = main(["checklist", "--endpoint-url", world.endpoint_url, "--out", str(out),
                     "--municipality", NAGANO, MATSUMOTO], clock=SYNTH_NOON)
    summary = capsys.readouterr().out
    assert code == 1
    assert f"S3-1 [municipality {NAGANO}] {bucket}: no default encryption configured" in summary
    assert "result: FAIL" in summary
    nagano = (out / f"{NAGANO}.md").read_text(encoding="utf-8")
    matsumoto = (out / f"{MATSUMOTO}.md").read_text(encoding="utf-8")
    assert "Result: **FAIL**" in nagano and "Result: **PASS**" in matsumoto
    [row] = [line for line in nagano.splitlines() if line.startswith("| S3-1 |") and bucket in line]
    assert "**FAIL**" in row
    assert 'class="FAIL">FAIL</td>' in (out / f"{NAGANO}.html").read_text(encoding="utf-8")
