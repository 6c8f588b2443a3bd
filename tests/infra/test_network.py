"""Per-tier VPCs: isolated, logged, default group closed, endpoints narrowed."""

from __future__ import annotations

import re

import pytest

from infra.components.network import CLOSE_DEFAULT_SG_RUNBOOK
from infra.naming import Names

from .conftest import Synth, statements

pytestmark = pytest.mark.slow


def test_no_internet_gateway_nat_or_public_subnet(every: Synth) -> None:
    for banned in ("AWS::EC2::InternetGateway", "AWS::EC2::NatGateway", "AWS::EC2::EgressOnlyInternetGateway",
                   "AWS::EC2::VPCGatewayAttachment", "AWS::EC2::EIP"):
        assert not every.resources(banned), banned
    subnets = every.props("AWS::EC2::Subnet")
    assert subnets and all(s["MapPublicIpOnLaunch"] is False for s in subnets)
    for stack, _, route in every.resources("AWS::EC2::Route"):
        raise AssertionError(f"unexpected route in {stack}: {route}")


def test_each_tier_has_one_vpc_with_isolated_subnets_in_two_named_azs(every: Synth) -> None:
    vpcs = every.resources("AWS::EC2::VPC")
    assert len(vpcs) == 1 + 2 * len(every.deployment.prefectures)
    for stack, vpc_id, _ in vpcs:
        azs = [r["Properties"]["AvailabilityZone"] for r in every.templates[stack]["Resources"].values()
               if r["Type"] == "AWS::EC2::Subnet" and r["Properties"]["VpcId"] == {"Ref": vpc_id}]
        assert len(set(azs)) >= 2
        assert all(isinstance(az, str) and az.startswith(every.deployment.region) for az in azs)


def test_every_vpc_has_flow_logs_to_an_encrypted_log_group(every: Synth) -> None:
    for stack, vpc_id, _ in every.resources("AWS::EC2::VPC"):
        resources = every.templates[stack]["Resources"]
        logs = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::EC2::FlowLog"
                and r["Properties"]["ResourceId"] == {"Ref": vpc_id}]
        assert len(logs) == 1 and logs[0]["TrafficType"] == "ALL"
        group = resources[logs[0]["LogGroupName"]["Ref"]]["Properties"]
        assert "KmsKeyId" in group and group["RetentionInDays"] > 0


def test_every_default_security_group_is_closed_by_the_aws_runbook_without_custom_resources(every: Synth) -> None:
    for stack, vpc_id, _ in every.resources("AWS::EC2::VPC"):
        associations = [r["Properties"] for r in every.templates[stack]["Resources"].values()
                        if r["Type"] == "AWS::SSM::Association"]
        assert len(associations) == 1
        a = associations[0]
        assert a["Name"] == CLOSE_DEFAULT_SG_RUNBOOK
        assert a["Parameters"]["GroupId"] == [{"Fn::GetAtt": [vpc_id, "DefaultSecurityGroup"]}]
        assert a["ScheduleExpression"] == "rate(1 day)"


def test_functions_egress_only_https_and_endpoints_admit_only_the_functions(every: Synth) -> None:
    """Except the prefecture's execute-api endpoint, which admits HTTPS from its staff networks, and
    the drop-zone uploads endpoint, which admits HTTPS from the existing systems' networks."""
    staff = {c for p in every.deployment.prefectures for c in p.api_clients}
    existing_systems = {c for p in every.deployment.prefectures for c in p.municipality_tier.upload_cidrs}
    # the counter API's endpoint: the municipal networks (upload_cidrs) and the tier's VPC (docs/card.md)
    counters = existing_systems | {p.municipality_tier.network.cidr for p in every.deployment.prefectures}
    for _, _, res in every.resources("AWS::EC2::SecurityGroup"):
        p = res["Properties"]
        egress = p.get("SecurityGroupEgress", [])
        assert all(e.get("FromPort") in (443, 252) for e in egress), egress  # 252: CDK's "no egress" marker
        if p["GroupDescription"].startswith("execute-api endpoint of the counter API"):
            ingress = p["SecurityGroupIngress"]
            assert ingress and all(i["FromPort"] == i["ToPort"] == 443 and i["CidrIp"] in counters for i in ingress)
        elif p["GroupDescription"].startswith("execute-api endpoint"):
            ingress = p["SecurityGroupIngress"]
            assert ingress and all(i["FromPort"] == i["ToPort"] == 443 and i["CidrIp"] in staff for i in ingress)
        elif p["GroupDescription"].startswith("S3 endpoint for exports of the existing registry systems"):
            ingress = p["SecurityGroupIngress"]
            assert ingress and all(i["FromPort"] == i["ToPort"] == 443 and i["CidrIp"] in existing_systems
                                   for i in ingress)
        else:
            assert not p.get("SecurityGroupIngress")
    for _, _, ingress in every.resources("AWS::EC2::SecurityGroupIngress"):
        assert ingress["Properties"]["FromPort"] == 443 and "SourceSecurityGroupId" in ingress["Properties"]


def test_endpoints_are_exactly_the_services_the_functions_call(every: Synth) -> None:
    by_stack: dict[str, set[str]] = {}
    for stack, _, res in every.resources("AWS::EC2::VPCEndpoint"):
        name = res["Properties"]["ServiceName"]
        service = name if isinstance(name, str) else name["Fn::Join"][1][-1]
        by_stack.setdefault(stack, set()).add(service.rsplit(".", 1)[-1])
        assert statements(res["Properties"]["PolicyDocument"]), f"{stack} {service} endpoint has no policy"
    own_use = {f"jukinet-pref-{a.prefecture}" for a in every.deployment.agencies if a.kind == "prefecture"}
    for stack, services in by_stack.items():
        # S3 everywhere: drop zones; the processing tiers' security reports (and the provision batch bucket)
        expected = {"sqs", "kms", "dynamodb", "s3"}
        if stack in own_use or stack.endswith("-base"):  # the provision API (prefecture), the counter API
            expected.add("execute-api")
        if stack == "jukinet-national" or re.fullmatch(r"jukinet-pref-\d{6}", stack):
            expected |= {"monitoring", "ssm"}  # the monthly monitoring report's reads (decision 0039)
        assert services == expected, stack


def test_endpoint_policies_admit_only_this_tiers_roles(every: Synth) -> None:
    """The execute-api endpoint: the prefecture's own-use and disclosure roles instead."""
    for stack, _, res in every.resources("AWS::EC2::VPCEndpoint"):
        service = str(res["Properties"]["ServiceName"])
        for s in statements(res["Properties"]["PolicyDocument"]):
            assert s["Effect"] == "Allow"
            patterns = s["Condition"]["ArnLike"]["aws:PrincipalArn"]
            if "execute-api" in service and stack.endswith("-base"):  # the counter API's endpoint
                code = stack.split("-")[2]
                p = next(p for p in every.deployment.prefectures if p.code == code)
                names = Names.of(every.deployment)
                env = p.municipality_tier.env
                assert sorted(patterns) == sorted(
                    [names.counter_role_arn(env, code, m.code) for m in p.municipality_tier.municipalities]
                    + [names.people_role_arn(env, f"muni-{code}", "operator")])
                assert s["Action"] == "execute-api:Invoke"
            elif "execute-api" in service:
                code = stack.rsplit("-", 1)[1]
                assert patterns == sorted(p for a in every.deployment.own_use_recipients(code)
                                          for p in a.all_principals)
                assert s["Action"] == "execute-api:Invoke"
            else:
                # a tier's function roles, or one function's role alone (KMS: card-event signing by the
                # counter function; CloudWatch and SSM: the monthly monitoring report; SQS and KMS: the
                # channel function, infra/components/channel.py)
                assert all(p.startswith("arn:aws:iam::") and p.endswith(("/*", "-counter", "-monitoring-report",
                                                                         "-channel"))
                           for p in patterns)
            if "monitoring" in service:  # CloudWatch's reads take no resource: the role alone is admitted
                assert [p.rsplit("/", 1)[1] for p in patterns] == [f"{stack}-monitoring-report"]
                assert sorted(s["Action"]) == ["cloudwatch:DescribeAlarmHistory", "cloudwatch:GetMetricStatistics",
                                               "cloudwatch:ListMetrics"]
                continue
            assert s["Resource"] != "*"


def test_only_the_monthly_reports_endpoints_stand_in_one_az(nagano):
    """CloudWatch and SSM serve only the once-a-month, retried report: one AZ halves their
    price. Every endpoint the pipeline or an API needs keeps both AZs (an AZ outage must
    not stop notices, provisions or a counter)."""
    single = 0
    for stack, _lid, resource in nagano.resources("AWS::EC2::VPCEndpoint"):
        props = resource["Properties"]
        if props.get("VpcEndpointType") != "Interface":
            continue
        service = str(props["ServiceName"])
        expected = 1 if (".monitoring" in service or ".ssm" in service) else 2
        assert len(props["SubnetIds"]) == expected, (stack, service)
        single += expected == 1
    assert single == 4  # national and Nagano's prefecture tier: CloudWatch and SSM each
