"""The network watch (issue 19 part 1): flow-log format, metric filters, alarms, DNS query
logging and GuardDuty, asserted on the synthesized templates by property name."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.components.network_watch import (
    DNS_KIND,
    DNS_METRIC,
    FLOW_LOG_COLUMNS,
    FLOW_LOG_FIELDS,
    LEAVING_KIND,
    LEAVING_METRIC,
    REJECTS_KIND,
    REJECTS_METRIC,
    network_namespace,
    octet_prefixes,
)
from infra.naming import NATIONAL, Names, municipality_tier, prefecture_tier

from .conftest import Synth

pytestmark = pytest.mark.slow


def tiers(s: Synth) -> list[tuple[str, str, str]]:
    """(tier, VPC CIDR, region) of every tier of the deployment."""
    d = s.deployment
    out = [(NATIONAL, d.national.network.cidr, d.national.env.region)]
    for p in d.prefectures:
        out.append((prefecture_tier(p.code), p.network.cidr, p.env.region))
        out.append((municipality_tier(p.code), p.municipality_tier.network.cidr, p.municipality_tier.env.region))
    return out


def test_flow_logs_use_the_default_v2_fields_then_flow_direction_and_destination_service(every: Synth) -> None:
    flow_logs = every.props("AWS::EC2::FlowLog")
    assert flow_logs and len(flow_logs) == len(tiers(every))
    v2 = ["version", "account-id", "interface-id", "srcaddr", "dstaddr", "srcport", "dstport", "protocol",
          "packets", "bytes", "start", "end", "action", "log-status"]
    for f in flow_logs:
        assert f["LogFormat"].split() == [f"${{{x}}}" for x in (*v2, "flow-direction", "pkt-dst-aws-service")]
        assert f["TrafficType"] == "ALL" and f["MaxAggregationInterval"] == 60
    assert list(FLOW_LOG_FIELDS[:14]) == v2


def _filters(s: Synth) -> dict[str, dict]:
    return {f["FilterName"]: f for f in s.props("AWS::Logs::MetricFilter")}


def _alarms(s: Synth) -> dict[str, dict]:
    return {a["AlarmName"]: a for a in s.props("AWS::CloudWatch::Alarm")}


def test_each_tier_counts_rejects_leaving_and_dns_names_into_its_own_namespace(every: Synth) -> None:
    names, filters, alarms = Names.of(every.deployment), _filters(every), _alarms(every)
    columns = ", ".join(FLOW_LOG_COLUMNS)
    for tier, cidr, region in tiers(every):
        rejects = filters[names.alarm(tier, REJECTS_KIND)]
        assert rejects["FilterPattern"] == "[" + columns.replace("action,", 'action = "REJECT",') + "]"
        leaving = filters[names.alarm(tier, LEAVING_KIND)]["FilterPattern"]
        assert 'flow_direction = "egress"' in leaving
        assert 'pkt_dst_aws_service != "S3" && pkt_dst_aws_service != "DYNAMODB"' in leaving
        for prefix in octet_prefixes(cidr):
            assert f'dstaddr != "{prefix}"' in leaving
        assert len(leaving) <= 1024
        dns = filters[names.alarm(tier, DNS_KIND)]
        assert dns["FilterPattern"] == f'{{ $.query_name != "*.{region}.amazonaws.com." }}'
        for kind, metric in ((REJECTS_KIND, REJECTS_METRIC), (LEAVING_KIND, LEAVING_METRIC), (DNS_KIND, DNS_METRIC)):
            f = filters[names.alarm(tier, kind)]
            [t] = f["MetricTransformations"]
            assert t == {"MetricNamespace": network_namespace(tier), "MetricName": metric, "MetricValue": "1"}
            a = alarms[names.alarm(tier, kind)]
            assert (a["Namespace"], a["MetricName"], a["Statistic"], a["Period"]) == \
                (network_namespace(tier), metric, "Sum", 300)
            assert a["Threshold"] == 0 and a["ComparisonOperator"] == "GreaterThanThreshold"
            assert a["EvaluationPeriods"] == 1 and a["TreatMissingData"] == "notBreaching"
            assert a["AlarmDescription"].endswith(f"See docs/operations.md#{kind}.")


def test_client_networks_of_the_upload_endpoint_are_expected_peers(multi_account: Synth) -> None:
    names = Names.of(multi_account.deployment)
    for p in multi_account.deployment.prefectures:
        leaving = _filters(multi_account)[names.alarm(municipality_tier(p.code), LEAVING_KIND)]["FilterPattern"]
        for cidr in p.municipality_tier.upload_cidrs:
            for prefix in octet_prefixes(cidr):
                assert f'dstaddr != "{prefix}"' in leaving


def test_each_vpc_logs_its_dns_queries_to_an_encrypted_group(every: Synth) -> None:
    for stack, vpc_id, _ in every.resources("AWS::EC2::VPC"):
        resources = every.templates[stack]["Resources"]
        associations = [r["Properties"] for r in resources.values()
                        if r["Type"] == "AWS::Route53Resolver::ResolverQueryLoggingConfigAssociation"
                        and r["Properties"]["ResourceId"] == {"Ref": vpc_id}]
        assert len(associations) == 1
        config = resources[associations[0]["ResolverQueryLogConfigId"]["Fn::GetAtt"][0]]["Properties"]
        group = resources[config["DestinationArn"]["Fn::GetAtt"][0]]["Properties"]
        assert "KmsKeyId" in group and group["RetentionInDays"] > 0
        assert group["LogGroupName"].endswith("/dns-queries")


def test_guardduty_is_off_by_default_and_one_detector_per_trail_when_configured(nagano: Synth,
                                                                                multi_account: Synth) -> None:
    assert nagano.deployment.operations.guardduty is False and not nagano.resources("AWS::GuardDuty::Detector")
    detectors = multi_account.resources("AWS::GuardDuty::Detector")
    trails = multi_account.resources("AWS::CloudTrail::Trail")
    assert detectors and sorted(s for s, _, _ in detectors) == sorted(s for s, _, _ in trails)
    assert all(r["Properties"]["Enable"] is True for _, _, r in detectors)


@pytest.mark.parametrize(("cidr", "expected"), [
    ("10.20.4.0/22", ["10.20.4.*", "10.20.5.*", "10.20.6.*", "10.20.7.*"]),
    ("10.0.0.0/16", ["10.0.*"]),
    ("192.168.20.0/24", ["192.168.20.*"]),
    ("192.168.20.128/25", ["192.168.20.*"]),
    ("172.16.0.0/12", [f"172.{n}.*" for n in range(16, 32)]),
])
def test_octet_prefixes_cover_the_cidr(cidr, expected) -> None:
    assert octet_prefixes(cidr) == expected


@given(st.integers(0, 2**32 - 1), st.integers(8, 32), st.integers(0, 2**32 - 1))
def test_octet_prefixes_match_exactly_the_addresses_of_the_cidr(base, prefix, probe) -> None:
    """The leaving filter's ``dstaddr != "<prefix>"`` terms: an address matches one exactly when it
    lies in the CIDR (/8 to /24); a longer prefix counts as its /24."""
    import ipaddress
    import re

    net = ipaddress.ip_network((base, prefix), strict=False)
    covered = net if prefix <= 24 else net.supernet(new_prefix=24)
    patterns = [re.compile(re.escape(p[:-1]) + ".*") for p in octet_prefixes(str(net))]
    inside = ipaddress.ip_address(int(net.network_address) + probe % net.num_addresses)
    neighbours = [ipaddress.ip_address(int(a) + d) for a, d in ((covered.network_address, -1),
                                                               (covered.broadcast_address, 1))
                  if 0 <= int(a) + d < 2**32]  # just outside: a cover too wide would match them
    for address in (ipaddress.ip_address(probe), inside, net.network_address, net.broadcast_address, *neighbours):
        assert any(p.fullmatch(str(address)) for p in patterns) == (address in covered), (str(net), str(address))
