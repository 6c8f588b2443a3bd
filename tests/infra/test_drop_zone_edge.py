"""The existing-system edge (既存ネットワークとの接続管理): who may put an export into a drop zone,
and by which path. The attacks: another principal of the account (even another municipality's
writer or a CS role) drops a file into a municipality's incoming/, or a writer uploads from
the internet instead of through the tier's private endpoint."""

from __future__ import annotations

from typing import Any

import pytest

from infra.naming import Names
from embedded_aws.iam_policy import ALLOW, DENY, evaluate

from .conftest import Synth

pytestmark = pytest.mark.slow

PUT = "s3:PutObject"


def _resolve(value: Any, refs: dict[str, str]) -> Any:
    """Endpoint ids are references (``Ref``, ``Fn::ImportValue``): name them by what they point at."""
    if isinstance(value, dict):
        if "Ref" in value:
            return refs.get(value["Ref"], f"ref:{value['Ref']}")
        if "Fn::ImportValue" in value:
            return f"import:{value['Fn::ImportValue']}"
        return {k: _resolve(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, refs) for v in value]
    return value


def _drop_zones(synth: Synth) -> dict[str, tuple[str, dict, str]]:
    """code → (bucket name, bucket policy document with references resolved, stack)."""
    env = synth.deployment.prefectures[0].municipality_tier.env
    prefix = Names.of(synth.deployment).drop_zone_bucket_prefix(env)
    out = {}
    for stack, template in synth.templates.items():
        resources = template["Resources"]
        for lid, res in resources.items():
            if res["Type"] != "AWS::S3::Bucket" or not str(res["Properties"].get("BucketName", "")).startswith(prefix):
                continue
            [policy] = [r["Properties"]["PolicyDocument"] for r in resources.values()
                        if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": lid}]
            name = res["Properties"]["BucketName"]
            out[name.rsplit("-", 1)[1]] = (name, _resolve(policy, {}), stack)
    return out


def _endpoint_values(policy: dict) -> list[Any]:
    [deny] = [s for s in policy["Statement"] if s.get("Sid") == "ExportsOnlyThroughTheTiersEndpoints"]
    values = deny["Condition"]["StringNotEquals"]["aws:SourceVpce"]
    return values if isinstance(values, list) else [values]


def test_each_drop_zone_accepts_exports_only_from_its_own_writer_through_the_tiers_endpoint(nagano: Synth) -> None:
    names = Names.of(nagano.deployment)
    prefecture = nagano.deployment.prefectures[0]
    env = prefecture.municipality_tier.env
    zones = _drop_zones(nagano)
    assert len(zones) == 77
    for code, (bucket, policy, _) in zones.items():
        endpoints = _endpoint_values(policy)
        assert endpoints, code
        endpoint = endpoints[0]  # as S3 sees it: the id of the endpoint the request came through
        own = names.drop_zone_writer_arn(env, prefecture.code, code)
        other = names.drop_zone_writer_arn(env, prefecture.code, "202029" if code != "202029" else "202011")
        cs = names.role_arn(env, f"muni-{prefecture.code}", names.cs_role(code))
        obj = f"arn:aws:s3:::{bucket}/incoming/export.csv"

        def put(principal: str, vpce: Any, key: str = obj) -> str:
            return evaluate(policy, action=PUT, resource=key, principal=principal,
                            context={"aws:PrincipalArn": principal, "aws:SourceVpce": vpce})

        assert put(own, endpoint) != DENY, code  # the legitimate upload (its role policy allows it)
        assert put(other, endpoint) == DENY, code  # another municipality's writer
        assert put(cs, endpoint) == DENY, code  # the CS itself (it only reads incoming/)
        assert put(own, "vpce-0123456789abcdef0") == DENY, code  # another VPC's endpoint
        assert put(own, None) == DENY, code  # from the internet: no endpoint at all
        # reports/ is the CS's: the writer rules do not apply there
        assert put(cs, endpoint, f"arn:aws:s3:::{bucket}/reports/x.csv") != DENY


def test_one_writer_role_per_municipality_may_put_only_into_its_own_incoming(nagano: Synth) -> None:
    names = Names.of(nagano.deployment)
    prefecture = nagano.deployment.prefectures[0]
    zones = _drop_zones(nagano)
    writers = {r["Properties"]["RoleName"]: r["Properties"] for _, _, r in nagano.resources("AWS::IAM::Role")
               if r["Properties"].get("Path") == names.drop_zone_writers_path(prefecture.code)}
    assert set(writers) == {names.drop_zone_writer(code) for code in zones}
    for code, (bucket, _, _) in zones.items():
        role = writers[names.drop_zone_writer(code)]
        assert role["MaxSessionDuration"] == 3600
        [trust] = role["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"AWS": f"arn:aws:iam::{prefecture.municipality_tier.env.account}:root"}
        assert "ManagedPolicyArns" not in role  # its one policy is inline (decision 0051)
        [document] = [p["PolicyDocument"] for p in role["Policies"]]
        own = f"arn:aws:s3:::{bucket}/incoming/export.csv"
        assert evaluate(document, action=PUT, resource=own) == ALLOW
        assert evaluate(document, action=PUT, resource=f"arn:aws:s3:::{bucket}/reports/x.csv") != ALLOW
        neighbour = zones["202029" if code != "202029" else "202011"][0]
        assert evaluate(document, action=PUT, resource=f"arn:aws:s3:::{neighbour}/incoming/export.csv") != ALLOW
        assert evaluate(document, action="s3:GetObject", resource=own) != ALLOW


def test_the_tiers_s3_endpoint_carries_writers_puts_into_incoming_only(nagano: Synth) -> None:
    names = Names.of(nagano.deployment)
    prefecture = nagano.deployment.prefectures[0]
    env = prefecture.municipality_tier.env
    [endpoint] = [r["Properties"] for s, _, r in nagano.resources("AWS::EC2::VPCEndpoint")
                  if "s3" in str(r["Properties"]["ServiceName"]) and r["Properties"].get("VpcEndpointType")
                  in (None, "Gateway") and s == names.municipality_base_stack(prefecture.code)]
    bucket = names.drop_zone_bucket(env, "202011")
    writer = names.drop_zone_writer_arn(env, prefecture.code, "202011")
    doc = endpoint["PolicyDocument"]
    ctx = {"aws:PrincipalArn": writer}
    assert evaluate(doc, action=PUT, resource=f"arn:aws:s3:::{bucket}/incoming/a.csv", principal=writer,
                    context=ctx) == ALLOW
    assert evaluate(doc, action=PUT, resource=f"arn:aws:s3:::{bucket}/reports/a.csv", principal=writer,
                    context=ctx) != ALLOW
    assert evaluate(doc, action="s3:GetObject", resource=f"arn:aws:s3:::{bucket}/incoming/a.csv",
                    principal=writer, context=ctx) != ALLOW


def test_a_configured_vpn_path_gets_its_own_s3_endpoint_open_only_to_the_existing_systems(every: Synth) -> None:
    """The documented path for existing systems outside the VPC: ``upload_cidrs`` (data) give an
    S3 interface endpoint whose security group admits HTTPS from those networks only, and each
    drop zone accepts exports through it as well as through the gateway endpoint."""
    prefecture = every.deployment.prefectures[0]
    cidrs = prefecture.municipality_tier.upload_cidrs
    names = Names.of(every.deployment)
    base = names.municipality_base_stack(prefecture.code)
    resources = every.templates[base]["Resources"]
    interface = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::EC2::VPCEndpoint"
                 and r["Properties"].get("VpcEndpointType") == "Interface" and "s3" in str(r["Properties"]["ServiceName"])]
    zones = _drop_zones(every)
    if not cidrs:
        assert interface == []
        assert all(len(_endpoint_values(policy)) == 1 for _, policy, _ in zones.values())
        return
    [endpoint] = interface
    assert endpoint["PrivateDnsEnabled"] is False
    [group_ref] = endpoint["SecurityGroupIds"]
    group = resources[group_ref["Fn::GetAtt"][0]]["Properties"]
    assert sorted(r["CidrIp"] for r in group["SecurityGroupIngress"]) == sorted(cidrs)
    assert {r["ToPort"] for r in group["SecurityGroupIngress"]} == {443}
    assert all(len(_endpoint_values(policy)) == 2 for _, policy, _ in zones.values())
    writer = names.drop_zone_writer_arn(prefecture.municipality_tier.env, prefecture.code, "202011")
    bucket = names.drop_zone_bucket(prefecture.municipality_tier.env, "202011")
    ctx = {"aws:PrincipalArn": writer}
    assert evaluate(endpoint["PolicyDocument"], action=PUT, resource=f"arn:aws:s3:::{bucket}/incoming/a.csv",
                    principal=writer, context=ctx) == ALLOW
    assert evaluate(endpoint["PolicyDocument"], action="s3:GetObject", resource=f"arn:aws:s3:::{bucket}/incoming/a.csv",
                    principal=writer, context=ctx) != ALLOW
