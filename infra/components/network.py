"""A tier's network: isolated subnets, flow logs, closed default security group, VPC endpoints.

No internet gateway and no NAT: the functions reach AWS only through the endpoints created
here, and each endpoint policy admits only this system's resources and this tier's roles.
The default security group is closed without CDK's ``restrictDefaultSecurityGroup`` (that
uses a Lambda-backed custom resource): an SSM State Manager association runs AWS's own
runbook ``AWSConfigRemediation-RemoveVPCDefaultSecurityGroupRules`` once at deployment and
then daily, so a rule someone adds later is removed again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import aws_cdk as cdk
from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from ..config import Network
from ..naming import PARTITION
from . import nag
from .network_watch import FLOW_LOG_FORMAT

CLOSE_DEFAULT_SG_RUNBOOK = "AWSConfigRemediation-RemoveVPCDefaultSecurityGroupRules"
ISOLATED = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)


class TierNetwork(Construct):
    def __init__(self, scope: Construct, id: str, *, network: Network, log_key: kms.IKey,
                 flow_log_retention: logs.RetentionDays, service_role_path: str,
                 interface_endpoints: Mapping[str, ec2.InterfaceVpcEndpointAwsService],
                 gateway_endpoints: Mapping[str, ec2.GatewayVpcEndpointAwsService],
                 single_az_endpoints: Collection[str] = ()) -> None:
        """``single_az_endpoints``: names of ``interface_endpoints`` placed in the first AZ only
        (half the hourly price): for callers that can wait out an AZ's outage, e.g. a monthly job
        that is retried. Functions in the other AZ reach it across zones."""
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.cidr = network.cidr
        self.client_cidrs: list[str] = []  # networks outside the VPC that client endpoints answer
        self.vpc = ec2.Vpc(
            self, "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(network.cidr),
            availability_zones=list(network.availability_zones),
            subnet_configuration=[ec2.SubnetConfiguration(
                name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24)],
            nat_gateways=0,
            create_internet_gateway=False,
            restrict_default_security_group=False,  # custom resource; see module docstring
            enable_dns_hostnames=True,  # private DNS of the interface endpoints
            enable_dns_support=True,
        )
        cdk.Validations.of(self.vpc).acknowledge(cdk.Acknowledgment(
            id="CloudFormation-Validate::W3010",
            reason="AZs are named in the deployment configuration on purpose: synth makes no lookup, and every tier "
                   "of a deployment uses the same zones."))
        self._flow_logs(stack, log_key, flow_log_retention, service_role_path)
        self._close_default_security_group(stack, service_role_path)

        self.functions_sg = ec2.SecurityGroup(
            self, "FunctionsSg", vpc=self.vpc, allow_all_outbound=False,
            description="Functions of this tier: HTTPS out only (the subnets route only to VPC endpoints)",
        )
        # The isolated subnets have no route except to the gateway endpoints' prefix lists and
        # the interface endpoints' addresses, so 443 to anywhere reaches only those.
        self.functions_sg.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to VPC endpoints")
        self.endpoints_sg = ec2.SecurityGroup(
            self, "EndpointsSg", vpc=self.vpc, allow_all_outbound=False,
            description="Interface endpoints of this tier: HTTPS in from the functions of this tier only",
        )
        self.endpoints_sg.add_ingress_rule(self.functions_sg, ec2.Port.tcp(443), "HTTPS from the tier's functions")

        self.interface: dict[str, ec2.InterfaceVpcEndpoint] = {}
        unknown = set(single_az_endpoints) - set(interface_endpoints)
        if unknown:
            raise ValueError(f"single_az_endpoints names no interface endpoint: {sorted(unknown)}")
        first_az = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED,
                                       availability_zones=[network.availability_zones[0]])
        for name, service in interface_endpoints.items():
            self.interface[name] = ec2.InterfaceVpcEndpoint(
                self, f"{name}Endpoint", vpc=self.vpc, service=service, private_dns_enabled=True,
                security_groups=[self.endpoints_sg], open=False,
                subnets=first_az if name in single_az_endpoints else ISOLATED,
            )
        self.gateway: dict[str, ec2.GatewayVpcEndpoint] = {}
        for name, service in gateway_endpoints.items():
            self.gateway[name] = self.vpc.add_gateway_endpoint(f"{name}Endpoint", service=service, subnets=[ISOLATED])

    def _flow_logs(self, stack: Stack, log_key: kms.IKey, retention: logs.RetentionDays, role_path: str) -> None:
        self.flow_log_group = logs.LogGroup(
            self, "FlowLogs", encryption_key=log_key, retention=retention, removal_policy=RemovalPolicy.RETAIN,
        )
        policy = iam.ManagedPolicy(self, "FlowLogsPolicy", description="VPC flow logs delivery to their log group",
                                   statements=[iam.PolicyStatement(
                                       actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                                       resources=[self.flow_log_group.log_group_arn])])
        role = iam.Role(
            self, "FlowLogsRole", path=role_path, managed_policies=[policy],
            assumed_by=iam.ServicePrincipal("vpc-flow-logs.amazonaws.com", conditions={
                "StringEquals": {"aws:SourceAccount": stack.account},
                "ArnLike": {"aws:SourceArn": f"arn:{PARTITION}:ec2:{stack.region}:{stack.account}:vpc-flow-log/*"},
            }),
        )
        self.flow_log = ec2.CfnFlowLog(
            self, "FlowLog", resource_id=self.vpc.vpc_id, resource_type="VPC", traffic_type="ALL",
            log_destination_type="cloud-watch-logs", log_group_name=self.flow_log_group.log_group_name,
            deliver_logs_permission_arn=role.role_arn, max_aggregation_interval=60,
            log_format=FLOW_LOG_FORMAT,  # default v2 fields + flow-direction, pkt-dst-aws-service (network_watch.py)
        )
        self.flow_log.node.add_dependency(policy)

    def _close_default_security_group(self, stack: Stack, role_path: str) -> None:
        group_arn = (f"arn:{PARTITION}:ec2:{stack.region}:{stack.account}:security-group/"
                     f"{self.vpc.vpc_default_security_group}")
        executions = f"arn:{PARTITION}:ssm:{stack.region}:{stack.account}:automation-execution/*"
        runbook = f"arn:{PARTITION}:ssm:{stack.region}:*:automation-definition/{CLOSE_DEFAULT_SG_RUNBOOK}:*"
        policy = iam.ManagedPolicy(self, "CloseDefaultSgPolicy", description=f"Run {CLOSE_DEFAULT_SG_RUNBOOK}",
                                   statements=[
            iam.PolicyStatement(sid="Describe", actions=["ec2:DescribeSecurityGroups"], resources=["*"]),
            iam.PolicyStatement(sid="RevokeDefaultSgRules", resources=[group_arn],
                                actions=["ec2:RevokeSecurityGroupIngress", "ec2:RevokeSecurityGroupEgress"]),
            iam.PolicyStatement(sid="FollowAutomation", actions=["ssm:GetAutomationExecution"], resources=[executions]),
            iam.PolicyStatement(sid="StartRunbook", actions=["ssm:StartAutomationExecution"], resources=[runbook]),
        ])
        role = iam.Role(
            self, "CloseDefaultSgRole", path=role_path, managed_policies=[policy],
            assumed_by=iam.ServicePrincipal("ssm.amazonaws.com", conditions={
                "StringEquals": {"aws:SourceAccount": stack.account},
                "ArnLike": {"aws:SourceArn": executions},
            }),
        )
        self.close_default_sg = ssm.CfnAssociation(
            self, "CloseDefaultSg", name=CLOSE_DEFAULT_SG_RUNBOOK, schedule_expression="rate(1 day)",
            parameters={"GroupId": [self.vpc.vpc_default_security_group], "AutomationAssumeRole": [role.role_arn]},
        )
        self.close_default_sg.node.add_dependency(policy)
        nag.acknowledge(self.vpc.node.default_child, [
            ("NIST.800.53.R5-VPCDefaultSecurityGroupClosed",
             (f"The default security group is closed by the SSM association running {CLOSE_DEFAULT_SG_RUNBOOK} "
             "(at deployment, then daily) instead of CDK's Lambda-backed custom resource; nothing uses the group.")),
        ])
        nag.acknowledge(policy, [
            ("AwsSolutions-IAM5", ("ec2:DescribeSecurityGroups supports no resource-level permissions; the revoke "
             "actions are limited to this VPC's default group."), ["Resource::*"]),
            ("AwsSolutions-IAM5", ("The AWS-owned runbook's ARN has account and version wildcards; its executions "
             "have generated ids."), [f"Resource::{runbook}", f"Resource::{executions}"]),
        ])

    def allow_through(self, endpoint: str, statement: iam.PolicyStatement) -> None:
        """Add an Allow to an endpoint policy (an endpoint with a policy denies everything else)."""
        target = self.interface.get(endpoint) or self.gateway[endpoint]
        target.add_to_policy(statement)

    def add_client_endpoint(self, name: str, service: ec2.InterfaceVpcEndpointAwsService, *,
                            client_cidrs: tuple[str, ...], description: str,
                            private_dns: bool = True) -> ec2.InterfaceVpcEndpoint:
        """An interface endpoint for people rather than this tier's functions: its own security
        group admits HTTPS from ``client_cidrs`` only (and nothing goes out)."""
        group = ec2.SecurityGroup(self, f"{name}EndpointSg", vpc=self.vpc, allow_all_outbound=False,
                                  description=description)
        for cidr in client_cidrs:
            if cidr not in self.client_cidrs:
                self.client_cidrs.append(cidr)
            group.add_ingress_rule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(443), f"HTTPS from {cidr}")
        endpoint = ec2.InterfaceVpcEndpoint(self, f"{name}Endpoint", vpc=self.vpc, service=service,
                                            private_dns_enabled=private_dns, security_groups=[group],
                                            open=False, subnets=ISOLATED)
        self.interface[name] = endpoint
        return endpoint
