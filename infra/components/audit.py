"""Audit: one CloudTrail trail per account, and the access-log bucket of a tier.

Why one trail per account rather than one per tier: tiers that share an account would
record every management event once per trail (CloudTrail charges for every copy after the
first, and allows five trails per region), while the data events of all tiers in the
account can be selected by one trail through the deployment's name prefix. So the
composition gives each account exactly one trail, hosted by the highest tier in it.

The trail: all regions, log-file validation, KMS encryption with the host tier's audit key,
delivery to an encrypted CloudWatch Logs group, management events plus data events for this
system's DynamoDB tables, Lambda functions, drop-zone objects and provision batch files. Its
bucket: TLS only, versioned, access-logged, public access blocked, KMS-encrypted.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ..config import Environment
from ..naming import PARTITION, Names
from . import keys, nag


def access_log_bucket(scope: Construct, id: str, *, retention_days: int) -> s3.Bucket:
    """Target of S3 server access logs (S3 delivers those with SSE-S3 only, hence no KMS here)."""
    bucket = s3.Bucket(
        scope, id, encryption=s3.BucketEncryption.S3_MANAGED, block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True, versioned=True, object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        removal_policy=RemovalPolicy.RETAIN,
        lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(retention_days),
                                          noncurrent_version_expiration=Duration.days(30))],
    )
    nag.acknowledge(bucket, [
        ("AwsSolutions-S1", "This is the access-log bucket itself; logging it into itself would loop."),
        ("NIST.800.53.R5-S3BucketLoggingEnabled",
         "This is the access-log bucket itself; logging it into itself would loop."),
        ("NIST.800.53.R5-S3DefaultEncryptionKMS", "S3 server access logging delivers only to SSE-S3 buckets."),
        ("NIST.800.53.R5-S3BucketReplicationEnabled",
         "Access logs are operational records; cross-region replication is an organisation-level backup decision."),
    ])
    return bucket


def data_event_selectors(names: Names, env: Environment) -> list[cloudtrail.CfnTrail.AdvancedEventSelectorProperty]:
    def data(name: str, resource_type: str, *arn_prefixes: str) -> cloudtrail.CfnTrail.AdvancedEventSelectorProperty:
        return cloudtrail.CfnTrail.AdvancedEventSelectorProperty(name=name, field_selectors=[
            cloudtrail.CfnTrail.AdvancedFieldSelectorProperty(field="eventCategory", equal_to=["Data"]),
            cloudtrail.CfnTrail.AdvancedFieldSelectorProperty(field="resources.type", equal_to=[resource_type]),
            cloudtrail.CfnTrail.AdvancedFieldSelectorProperty(field="resources.ARN", starts_with=list(arn_prefixes)),
        ])

    return [
        cloudtrail.CfnTrail.AdvancedEventSelectorProperty(name="Management events", field_selectors=[
            cloudtrail.CfnTrail.AdvancedFieldSelectorProperty(field="eventCategory", equal_to=["Management"])]),
        data("Identity and state tables", "AWS::DynamoDB::Table",
             f"arn:{PARTITION}:dynamodb:{env.region}:{env.account}:table/{names.prefix}-"),
        data("Functions", "AWS::Lambda::Function",
             f"arn:{PARTITION}:lambda:{env.region}:{env.account}:function:{names.function_prefix()}"),
        # What crosses the boundary between the network and the systems beside it: the
        # municipalities' exports, and the recipients' batch files (national account only).
        data("Drop zones and provision batch files", "AWS::S3::Object",
             f"arn:{PARTITION}:s3:::{names.drop_zone_bucket_prefix(env)}",
             f"{names.bucket_arn(names.provision_batch_bucket(env))}/"),
    ]


class AccountTrail(Construct):
    def __init__(self, scope: Construct, id: str, *, names: Names, env: Environment, key: kms.Key,
                 access_logs: s3.IBucket, log_retention: logs.RetentionDays, service_role_path: str) -> None:
        super().__init__(scope, id)
        trail_name = names.trail()
        trail_arn = names.trail_arn(env, trail_name)
        for statement in keys.use_by_cloudtrail(env.account, trail_arn):
            key.add_to_resource_policy(statement)

        self.bucket = s3.Bucket(
            self, "Bucket", encryption=s3.BucketEncryption.KMS, encryption_key=key, bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL, enforce_ssl=True, versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED, server_access_logs_bucket=access_logs,
            server_access_logs_prefix="cloudtrail-bucket/", removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[s3.LifecycleRule(noncurrent_version_expiration=Duration.days(365))],
        )
        cloudtrail_principal = iam.ServicePrincipal("cloudtrail.amazonaws.com")
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudTrailAclCheck", principals=[cloudtrail_principal], actions=["s3:GetBucketAcl"],
            resources=[self.bucket.bucket_arn], conditions={"StringEquals": {"aws:SourceArn": trail_arn}}))
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudTrailWrite", principals=[cloudtrail_principal], actions=["s3:PutObject"],
            resources=[self.bucket.arn_for_objects(f"AWSLogs/{env.account}/*")],
            conditions={"StringEquals": {"aws:SourceArn": trail_arn, "s3:x-amz-acl": "bucket-owner-full-control"}}))
        nag.acknowledge(self.bucket, [
            ("NIST.800.53.R5-S3BucketReplicationEnabled",
             ("Trail logs are integrity-protected by log-file validation and versioning; copying them to a separate "
             "log-archive account is an organisation-level control outside this application.")),
        ])

        self.log_group = logs.LogGroup(self, "Logs", encryption_key=key, retention=log_retention,
                                       removal_policy=RemovalPolicy.RETAIN)
        policy = iam.ManagedPolicy(self, "DeliveryPolicy", description="CloudTrail delivery to CloudWatch Logs",
                                   statements=[iam.PolicyStatement(
                                       actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                                       resources=[self.log_group.log_group_arn])])
        role = iam.Role(self, "DeliveryRole", path=service_role_path, managed_policies=[policy],
                        assumed_by=iam.ServicePrincipal("cloudtrail.amazonaws.com", conditions={
                            "StringEquals": {"aws:SourceArn": trail_arn}}))

        self.trail = cloudtrail.CfnTrail(
            self, "Trail", trail_name=trail_name, is_logging=True, s3_bucket_name=self.bucket.bucket_name,
            enable_log_file_validation=True, include_global_service_events=True, is_multi_region_trail=True,
            kms_key_id=key.key_arn, cloud_watch_logs_log_group_arn=self.log_group.log_group_arn,
            cloud_watch_logs_role_arn=role.role_arn, advanced_event_selectors=data_event_selectors(names, env),
        )
        assert self.bucket.policy is not None
        self.trail.add_resource_dependency(self.bucket.policy.node.default_child)  # type: ignore[arg-type]
        self.trail.node.add_dependency(policy)
        self.trail_arn = trail_arn
