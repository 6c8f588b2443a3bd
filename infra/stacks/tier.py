"""What every tier stack has: an audit key, the network, the alarm topic, maybe the account's trail."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_guardduty as guardduty
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ..components import keys
from ..components.audit import AccountTrail, access_log_bucket
from ..components.monitoring import TierAlarms
from ..components.network import TierNetwork
from ..components.network_watch import NetworkWatch
from ..components.security_monitoring import CisMonitoring
from ..config import Deployment, Environment, Network
from ..naming import NATIONAL, Names

_RETENTION = {
    30: logs.RetentionDays.ONE_MONTH, 60: logs.RetentionDays.TWO_MONTHS, 90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS, 365: logs.RetentionDays.ONE_YEAR, 400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS, 731: logs.RetentionDays.TWO_YEARS, 1827: logs.RetentionDays.FIVE_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS, 3653: logs.RetentionDays.TEN_YEARS,
}

SQS = ec2.InterfaceVpcEndpointAwsService.SQS
KMS = ec2.InterfaceVpcEndpointAwsService.KMS
# The processing tiers' monthly monitoring report reads CloudWatch and the isolation records (SSM).
# Only that once-a-month, retried job uses them: they stand in one AZ (decision 0039).
MONITORING = ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING
SSM = ec2.InterfaceVpcEndpointAwsService.SSM
REPORT_ONLY_ENDPOINTS = ("Monitoring", "Ssm")
S3 = ec2.GatewayVpcEndpointAwsService.S3
DYNAMODB = ec2.GatewayVpcEndpointAwsService.DYNAMODB


def retention(days: int) -> logs.RetentionDays:
    try:
        return _RETENTION[days]
    except KeyError:
        raise ValueError(f"log retention {days} days is not one CloudWatch Logs offers; "
                         f"use one of {sorted(_RETENTION)}") from None


def cdk_env(env: Environment) -> cdk.Environment:
    return cdk.Environment(account=env.account, region=env.region)


class TierStack(cdk.Stack):
    """Base of the national, prefecture and municipality-tier base stacks."""

    def __init__(self, scope: Construct, *, deployment: Deployment, tier: str, env: Environment, network: Network,
                 stack_name: str, description: str, host_trail: bool,
                 interface_endpoints: Mapping[str, ec2.InterfaceVpcEndpointAwsService],
                 gateway_endpoints: Mapping[str, ec2.GatewayVpcEndpointAwsService],
                 single_az_endpoints: Collection[str] = ()) -> None:
        super().__init__(scope, stack_name, stack_name=stack_name, env=cdk_env(env), description=description,
                         termination_protection=False)
        self._availability_zones = list(network.availability_zones)
        self.deployment = deployment
        self.names = Names.of(deployment)
        self.tier = tier
        self.tier_env = env
        ops = deployment.operations
        self.administrators = ops.key_administrators
        self.log_retention = retention(ops.log_retention_days)
        self.service_role_path = f"/{self.names.prefix}/{tier}-service/"
        cdk.Tags.of(self).add(f"{self.names.prefix}:tier", tier)
        cdk.Tags.of(self).add(f"{self.names.prefix}:deployment", deployment.name)

        self.audit_key = keys.symmetric_key(
            self, "AuditKey", alias=self.names.key_alias(tier, "audit"), account=env.account,
            administrators=self.administrators,
            description=f"{tier}: audit and operations data (log groups, flow logs, alarm topic, trail)",
            statements=[keys.use_by_cloudwatch_logs(env.account, env.region),
                        keys.use_by_cloudwatch_alarms(env.account, env.region)],
        )
        self.network = TierNetwork(
            self, "Network", network=network, log_key=self.audit_key,
            flow_log_retention=retention(ops.flow_log_retention_days), service_role_path=self.service_role_path,
            interface_endpoints=interface_endpoints, gateway_endpoints=gateway_endpoints,
            single_az_endpoints=single_az_endpoints,
        )
        self.alarms = TierAlarms(self, "Alarms", topic_name=f"{self.names.prefix}-{tier}-alarms", key=self.audit_key,
                                 email=ops.alarm_email, chat_url=ops.alarm_chat_url)
        self.network_watch = NetworkWatch(
            self, "NetworkWatch", vpc=self.network.vpc, vpc_cidr=network.cidr,
            flow_log_group=self.network.flow_log_group, client_cidrs=lambda: self.network.client_cidrs,
            alarms=self.alarms, names=self.names, tier=tier, log_key=self.audit_key,
            retention=retention(ops.flow_log_retention_days))
        self._access_logs: s3.Bucket | None = None
        self.trail: AccountTrail | None = None
        if host_trail:
            self.trail = AccountTrail(self, "AccountTrail", names=self.names, env=env, key=self.audit_key,
                                      access_logs=self.access_logs, log_retention=self.log_retention,
                                      service_role_path=self.service_role_path)
            CisMonitoring(self, "CisMonitoring", log_group=self.trail.log_group, alarms=self.alarms, names=self.names,
                          tier=tier)
            if ops.guardduty:  # one detector per account and region: where the account's trail is
                guardduty.CfnDetector(self, "GuardDuty", enable=True, finding_publishing_frequency="FIFTEEN_MINUTES")
        if "Sqs" in self.network.interface and tier != NATIONAL:
            endpoint_id = self.network.interface["Sqs"].vpc_endpoint_id
            cdk.CfnOutput(self, "SqsEndpointId", value=endpoint_id,
                          description="This tier's SQS endpoint: the next tier's inbound queue admits only it",
                          export_name=self.names.sqs_endpoint_export(tier))

    @property
    def availability_zones(self) -> list[str]:
        """The configured AZs: without this override, naming AZs in the VPC makes CDK look the
        account's AZs up (a network call at synth, and a cdk.context.json to keep)."""
        return self._availability_zones

    @property
    def access_logs(self) -> s3.Bucket:
        """The tier's S3 access-log bucket, created when the first bucket needs it."""
        if self._access_logs is None:
            self._access_logs = access_log_bucket(self, "AccessLogs",
                                                  retention_days=self.deployment.operations.log_retention_days)
        return self._access_logs

    @property
    def role_pattern(self) -> str:
        """Every function role of this tier."""
        return self.names.role_arn_pattern(self.tier_env, self.tier)

    def symmetric_key(self, id: str, *, purpose: str, description: str, statements: list) -> kms.Key:
        return keys.symmetric_key(self, id, alias=self.names.key_alias(self.tier, purpose),
                                  account=self.tier_env.account, administrators=self.administrators,
                                  description=f"{self.tier}: {description}", statements=statements)
