"""Network watch of a tier: metric filters and alarms on the VPC's flow logs and DNS queries.

Meanings, the expected traffic and first responses: ``docs/operations.md`` ("Network watch").

**Flow log format** (``FLOW_LOG_FIELDS``): the 14 fields of the default format (version 2), in
their order, then two version-5 fields, ``flow-direction`` and ``pkt-dst-aws-service``. The
filters are space-delimited patterns over exactly these 16 columns (``FLOW_LOG_COLUMNS``):

* ``flow-log-rejects`` — any record with ``action`` ``REJECT``: a security group (or network
  ACL) refused a packet. The functions' group allows only TCP 443 out, the endpoints' group only
  443 in from the functions (and the configured client networks), so nothing normal is refused.
* ``flow-log-leaving-vpc`` — an ``egress`` record whose destination is neither inside the VPC
  nor in a configured client network (``upload_cidrs``, ``api_client_cidrs``: the answers of the
  client endpoints go there) and whose ``pkt-dst-aws-service`` is neither ``S3`` nor ``DYNAMODB``
  (the gateway endpoints: their traffic goes to the services' public addresses, and the flow log
  names the service). Everything else leaving a tier is an attempt to go around its endpoints.

Addresses are matched with CloudWatch's ``*`` wildcard on octets: a CIDR becomes the ``a.b.c.*``
(or ``a.b.*``) prefixes that cover exactly it (/8 to /24; a longer prefix counts as its /24;
``octet_prefixes``); if a pattern would need more than ``MAX_PREFIXES`` the covering /16 is used.

**DNS** (``dns-outside-endpoint-zones``): the tier's Route 53 Resolver query log (JSON, one line a
query) and a filter for any name outside the endpoint zones — the AWS service names of the tier's
own region (``*.<region>.amazonaws.com.``: the interface endpoints' private zones, the gateway
endpoints' regional names, private APIs' ``execute-api`` names). Flow logs cannot see DNS: traffic
to the VPC's resolver (VPC+2) is not logged.

**GuardDuty** (``Operations.guardduty``, off by default): a detector in every stack that hosts an
account trail (one per account and region). Its findings go to EventBridge and Security Hub;
they are not emulated locally.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

import aws_cdk as cdk
import jsii
from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_route53resolver as resolver
from constructs import Construct

from jukinet.domain.metrics import DNS_METRIC, LEAVING_METRIC, REJECTS_METRIC, network_namespace

from ..naming import Names
from .monitoring import PERIOD, TierAlarms

# The default format (version 2) in its order, then the two version-5 fields the filters need.
FLOW_LOG_FIELDS: tuple[str, ...] = (
    "version", "account-id", "interface-id", "srcaddr", "dstaddr", "srcport", "dstport", "protocol", "packets",
    "bytes", "start", "end", "action", "log-status", "flow-direction", "pkt-dst-aws-service")
FLOW_LOG_FORMAT = " ".join(f"${{{f}}}" for f in FLOW_LOG_FIELDS)
FLOW_LOG_COLUMNS: tuple[str, ...] = tuple(f.replace("-", "_") for f in FLOW_LOG_FIELDS)
GATEWAY_SERVICES = ("S3", "DYNAMODB")  # pkt-dst-aws-service of the gateway endpoints' traffic
MAX_PREFIXES = 40  # wildcard prefixes per pattern (a pattern may have at most 1,024 characters)

REJECTS_KIND = "flow-log-rejects"
LEAVING_KIND = "flow-log-leaving-vpc"
DNS_KIND = "dns-outside-endpoint-zones"
# The metric names and each tier's namespace: jukinet.domain.metrics (the monitoring report reads them).


def octet_prefixes(cidr: str) -> list[str]:
    """``10.20.4.0/22`` → ``10.20.4.*`` … ``10.20.7.*``: wildcard prefixes covering exactly the
    CIDR (/8 to /24; a longer prefix becomes its /24)."""
    net = ipaddress.ip_network(cidr, strict=False)
    if net.version != 4:
        raise ValueError(f"{cidr}: flow-log address patterns are IPv4 only")
    if net.prefixlen == 0:
        return ["*"]
    octets = -(-net.prefixlen // 8)  # the octets the prefix touches
    if octets > 3:
        octets = 3
    step = 256 ** (4 - octets)
    first = int(net.network_address) // step
    last = int(net.broadcast_address) // step
    out = []
    for block in range(first, last + 1):
        parts = ipaddress.ip_address(block * step).exploded.split(".")[:octets]
        out.append(".".join(parts) + ".*")
    return out


def inside_prefixes(cidrs: Sequence[str]) -> list[str]:
    prefixes: list[str] = []
    for cidr in cidrs:
        for p in octet_prefixes(cidr):
            if p not in prefixes:
                prefixes.append(p)
    if len(prefixes) > MAX_PREFIXES:
        prefixes = []
        for cidr in cidrs:
            net = ipaddress.ip_network(cidr, strict=False)
            for p in octet_prefixes(str(net.supernet(new_prefix=min(net.prefixlen, 16)))):
                if p not in prefixes:
                    prefixes.append(p)
    return prefixes


def rejects_pattern() -> str:
    return logs.FilterPattern.space_delimited(*FLOW_LOG_COLUMNS).where_string("action", "=", "REJECT") \
        .log_pattern_string


def leaving_pattern(inside: Sequence[str]) -> str:
    pattern = logs.FilterPattern.space_delimited(*FLOW_LOG_COLUMNS).where_string("flow_direction", "=", "egress")
    for prefix in inside_prefixes(inside):
        pattern = pattern.where_string("dstaddr", "!=", prefix)
    for service in GATEWAY_SERVICES:
        pattern = pattern.where_string("pkt_dst_aws_service", "!=", service)
    return pattern.log_pattern_string


def dns_pattern(region: str) -> str:
    """A query for a name outside ``*.<region>.amazonaws.com.``."""
    return f'{{ $.query_name != "*.{region}.amazonaws.com." }}'


@jsii.implements(cdk.IAspect)
class _PatternWhenComplete:
    """Sets a metric filter's pattern when the construct tree is complete (aspects run before
    synthesis), so client endpoints added after the watch are counted."""

    def __init__(self, target: logs.CfnMetricFilter, produce: Callable[[], str]) -> None:
        self._target, self._path, self._produce = target, target.node.path, produce

    def visit(self, node: Construct) -> None:
        if node.node.path == self._path:
            self._target.filter_pattern = self._produce()


class NetworkWatch(Construct):
    """The flow-log and DNS metric filters of one tier and their alarms on the tier's topic.

    ``client_cidrs`` is read when the template is synthesized, so client endpoints added later
    by the tier's stacks (``TierNetwork.client_cidrs``) are counted as expected peers."""

    def __init__(self, scope: Construct, id: str, *, vpc: ec2.IVpc, vpc_cidr: str, flow_log_group: logs.ILogGroup,
                 client_cidrs: Callable[[], Sequence[str]], alarms: TierAlarms, names: Names, tier: str,
                 log_key: kms.IKey, retention: logs.RetentionDays) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        namespace = network_namespace(tier)
        self.filters: list[logs.MetricFilter] = []

        def add(metric: str, kind: str, group: logs.ILogGroup, pattern: logs.IFilterPattern, description: str
                ) -> None:
            self.filters.append(logs.MetricFilter(
                self, metric, log_group=group, filter_name=names.alarm(tier, kind), filter_pattern=pattern,
                metric_namespace=namespace, metric_name=metric, metric_value="1"))
            alarms.alarm(metric, name=names.alarm(tier, kind), description=description,
                         metric=cloudwatch.Metric(namespace=namespace, metric_name=metric,
                                                  statistic=cloudwatch.Stats.SUM, period=PERIOD))

        add(REJECTS_METRIC, REJECTS_KIND, flow_log_group, logs.FilterPattern.literal(rejects_pattern()),
            f"{tier}: the VPC flow log recorded a rejected connection (action REJECT): something in or towards "
            "the tier tried traffic its security groups do not allow.")
        add(LEAVING_METRIC, LEAVING_KIND, flow_log_group, logs.FilterPattern.literal(leaving_pattern([vpc_cidr])),
            f"{tier}: the VPC flow log recorded traffic leaving for an address outside the VPC that is not a "
            "gateway endpoint's service: an attempt to go around the tier's endpoints.")
        cdk.Aspects.of(self).add(_PatternWhenComplete(
            self.filters[-1].node.default_child, lambda: leaving_pattern([vpc_cidr, *client_cidrs()])))

        self.dns_log_group = logs.LogGroup(
            self, "DnsQueries", encryption_key=log_key, retention=retention, removal_policy=RemovalPolicy.RETAIN,
            log_group_name=f"/{names.prefix}/{tier}/dns-queries")
        config = resolver.CfnResolverQueryLoggingConfig(
            self, "QueryLogging", name=f"{names.prefix}-{tier}-dns-queries",
            destination_arn=self.dns_log_group.log_group_arn)
        resolver.CfnResolverQueryLoggingConfigAssociation(
            self, "QueryLoggingAssociation", resolver_query_log_config_id=config.attr_id, resource_id=vpc.vpc_id)
        add(DNS_METRIC, DNS_KIND, self.dns_log_group, logs.FilterPattern.literal(dns_pattern(stack.region)),
            f"{tier}: something in the VPC resolved a name outside the AWS service zones of its region "
            "(Route 53 Resolver query log): the tier reaches only its endpoints, so no such name is expected.")
