"""The one way to build a function: role, customer-managed policy, log group, Lambda.

Permissions are written out explicitly, statement by statement, in one customer-managed
policy per function; the function sees its role through ``without_policy_updates()`` so that
no CDK grant can add an unreviewed statement (or an inline policy) behind our back. The
role name and path are fixed (``naming``) so that other tiers' queue and key policies can
name the role without a cross-stack reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from ..bundling import ARCHITECTURE, RUNTIME, lambda_code
from .network import ISOLATED, TierNetwork

ENI_ACTIONS = [
    "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
]


class TierFunction(Construct):
    def __init__(self, scope: Construct, id: str, *, function_name: str, role_name: str, role_path: str,
                 handler: str, description: str, environment: Mapping[str, str], timeout: Duration,
                 memory_size: int, reserved_concurrency: int, network: TierNetwork, log_key: kms.IKey,
                 log_retention: logs.RetentionDays, statements: Sequence[iam.PolicyStatement],
                 dead_letter_queue: sqs.IQueue | None = None, code: lambda_.Code | None = None) -> None:
        """``code``: the function's code asset; default the shared bundle (``bundling.lambda_code``)."""
        super().__init__(scope, id)
        self.function_name = function_name
        self.timeout = timeout
        self.log_group = logs.LogGroup(
            self, "Logs", log_group_name=f"/aws/lambda/{function_name}", encryption_key=log_key,
            retention=log_retention, removal_policy=RemovalPolicy.RETAIN,
        )
        common = [
            iam.PolicyStatement(sid="WriteOwnLogs", actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                                resources=[self.log_group.log_group_arn]),
            # Lambda attaches the function to the VPC through ENIs it manages with these
            # actions; EC2 offers no resource-level permission for them at validation time.
            iam.PolicyStatement(sid="AttachToVpc", actions=ENI_ACTIONS, resources=["*"]),
            iam.PolicyStatement(sid="WriteTraces", actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                                resources=["*"]),
        ]
        self.policy = iam.ManagedPolicy(self, "Policy", description=f"Permissions of {function_name}",
                                        statements=[*common, *statements])
        self.role = iam.Role(
            self, "Role", role_name=role_name, path=role_path, description=f"Execution role of {function_name}",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), managed_policies=[self.policy],
        )
        self.function = lambda_.Function(
            self, "Function",
            function_name=function_name,
            description=description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            code=code or lambda_code(),
            handler=handler,
            role=self.role.without_policy_updates(),
            environment=dict(environment),
            timeout=timeout,
            memory_size=memory_size,
            reserved_concurrent_executions=reserved_concurrency,
            vpc=network.vpc,
            vpc_subnets=ISOLATED,
            security_groups=[network.functions_sg],
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=lambda_.ApplicationLogLevel.INFO,
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            dead_letter_queue=dead_letter_queue,
        )
        # The role's policy must be attached before Lambda validates the VPC permissions.
        self.function.node.add_dependency(self.policy)
