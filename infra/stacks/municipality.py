"""The municipality tier of one prefecture: a base stack and the CS stacks in chunks.

One VPC per tier, shared by every CS of the prefecture (docs/decisions/0002); per
municipality: its own function, role, signing key and drop-zone bucket. A municipality
costs ``RESOURCES_PER_MUNICIPALITY`` resources (measured by tests/infra), so the CSs are
split over stacks of at most ``MunicipalityTier.max_per_stack`` (docs/decisions/0003).

The drop zone is a bucket per municipality (docs/decisions/0004): the existing resident
registry system puts its export under ``incoming/`` — only as that municipality's writer role
(``<prefix>-dropzone-writer-<code>``) and only through this tier's S3 endpoints, the gateway
endpoint or, when ``upload_cidrs`` are configured, an interface endpoint reached over the
site-to-site VPN or Direct Connect (docs/decisions/0013); S3 notifies the municipality's inbox
queue, which the CS consumes in batches (decision 0051: several files per invocation; the
notification is set on the L1 bucket — CDK's ``addEventNotification`` would need a
Lambda-backed custom resource); the CS writes its rejection report under ``reports/``.
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct
from jukinet.domain import inbox

from ..components import keys, nag
from ..components.channel import MunicipalityChannel, signing_key_statements
from ..components.counter import REGISTER_ACTIONS, CounterApi
from ..components.dashboard import TierDashboard
from ..components.functions import TierFunction
from ..components.local_records import LocalRecordStore, cs_environment, cs_statements
from ..components.monitoring import PERIOD
from ..components.queues import DATA_KEY_REUSE, DLQ_RETENTION
from ..components.tables import cs_state_table
from ..config import Deployment, Municipality, Prefecture
from ..naming import (
    METRICS_NAMESPACE,
    PARTITION,
    SIGNING_ALGORITHM,
    Names,
    cs_state_partition,
    municipality_tier,
    prefecture_tier,
)
from .processing import DATA_KEY_ACTIONS, send_upward_statements
from .tier import DYNAMODB, KMS, S3, SQS, TierStack, cdk_env

CS_TIMEOUT = Duration.minutes(5)
CS_MEMORY_MB = 512
STATE_ACTIONS = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                 "dynamodb:Query", "dynamodb:ConditionCheckItem"]
# What the CS's event source mapping does on its inbox (the function's role, from the Lambda service).
INBOX_CONSUMER_ACTIONS = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                          "sqs:GetQueueAttributes"]
# Held exports wait as S3 events for as long as SQS keeps anything (an isolated CS, decision 0051).
INBOX_RETENTION = Duration.days(14)
# The fewest concurrent invocations an SQS event source mapping takes (ScalingConfig).
INBOX_MAX_CONCURRENCY = 2
# Exports hold identity facts: keep them only as long as reconciliation needs them.
INCOMING_RETENTION = Duration.days(30)
REPORTS_RETENTION = Duration.days(90)
NONCURRENT_RETENTION = Duration.days(7)
# Signing key + alias, drop-zone bucket + policy, writer role (its policy inline), inbox queue +
# event source mapping, function, role, policy, log group (tests/infra measure it). One inbox
# policy per stack and two alarms per ten municipalities come on top: 40 make 449 (decision 0051).
RESOURCES_PER_MUNICIPALITY = 11
# CloudWatch metric math takes at most 10 metrics per alarm.
FUNCTIONS_PER_ALARM = 10
INCOMING, REPORTS = "incoming/", "reports/"


class MunicipalityBaseStack(TierStack):
    """What the CSs of one prefecture share: VPC and endpoints, keys, state table, failed-event queue."""

    def __init__(self, scope: Construct, *, deployment: Deployment, prefecture: Prefecture, host_trail: bool,
                 api_logging_role: bool = False) -> None:
        code = prefecture.code
        tier = municipality_tier(code)
        muni = prefecture.municipality_tier
        names = Names.of(deployment)
        super().__init__(
            scope, deployment=deployment, tier=tier, env=muni.env, network=muni.network,
            stack_name=names.municipality_base_stack(code), host_trail=host_trail,
            description=f"jukinet: municipality tier of {prefecture.name_en} ({code}) - shared resources",
            interface_endpoints={"Sqs": SQS, "Kms": KMS}, gateway_endpoints={"S3": S3, "DynamoDb": DYNAMODB},
        )
        env, region = muni.env, muni.env.region
        pref_env = prefecture.env
        self.prefecture = prefecture
        self.at_rest_key = self.symmetric_key(
            "AtRestKey", purpose="at-rest", description="CS state table, drop zones, failed-event queue", statements=[
                keys.use_through_dynamodb(env.account, region),
                keys.use_by_roles("CsUseThroughS3AndSqs", env.account, [self.role_pattern], DATA_KEY_ACTIONS,
                                  via_services=["s3", "sqs"], region=region),
                keys.use_by_roles("ExistingSystemsUseDropZones", env.account,
                                  [names.drop_zone_writers_pattern(env, code)], DATA_KEY_ACTIONS,
                                  via_services=["s3"], region=region),
                # S3 sends each drop zone's events to its CS's inbox, encrypted with this key
                # (the form AWS documents for S3 event notifications to an SSE-KMS queue; which
                # bucket may send to which queue is the queue policy's, decision 0051).
                iam.PolicyStatement(sid="DropZoneEventsToInboxes", principals=[iam.ServicePrincipal("s3.amazonaws.com")],
                                    actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=["*"]),
            ])
        self.state_table = cs_state_table(self, "StateTable", table_name=names.cs_state_table(code),
                                          key=self.at_rest_key)
        self.failed_events = sqs.Queue(
            self, "CsFailedEvents", queue_name=names.cs_failure_queue(code), encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.at_rest_key, data_key_reuse=DATA_KEY_REUSE, enforce_ssl=True,
            retention_period=DLQ_RETENTION, removal_policy=RemovalPolicy.RETAIN,
        )
        nag.acknowledge(self.failed_events, [
            ("AwsSolutions-SQS3", ("This queue is itself the dead-letter target of the CS inboxes (S3 events that "
             "failed their last attempt, with the reason) and of the CS functions' asynchronous invocations.")),
        ])
        self.alarms.queue_alarms("CsFailedEvents", tier_name=f"{names.prefix}-{tier}", queue_label="cs-failed-events",
                                 dead_letter_queue=self.failed_events)
        # S3 server access logs of every drop zone of this tier (the buckets live in the CS stacks).
        self.access_logs.add_to_resource_policy(iam.PolicyStatement(
            sid="DropZoneAccessLogs", principals=[iam.ServicePrincipal("logging.s3.amazonaws.com")],
            actions=["s3:PutObject"], resources=[self.access_logs.arn_for_objects("dropzones/*")],
            conditions={"StringEquals": {"aws:SourceAccount": env.account},
                        "ArnLike": {"aws:SourceArn": f"arn:{PARTITION}:s3:::{names.drop_zone_bucket_prefix(env)}*"}}))

        pattern = [self.role_pattern]
        self.network.allow_through("Sqs", iam.PolicyStatement(
            sid="SendToOwnPrefectureOnly", principals=[iam.AnyPrincipal()], actions=["sqs:SendMessage"],
            resources=[names.queue_arn(pref_env, names.inbound_queue(prefecture_tier(code)))],
            conditions={"ArnLike": {"aws:PrincipalArn": pattern}}))
        self.network.allow_through("Sqs", iam.PolicyStatement(
            sid="KeepFailedInboxEvents", principals=[iam.AnyPrincipal()], actions=["sqs:SendMessage"],
            resources=[names.queue_arn(env, names.cs_failure_queue(code))],
            conditions={"ArnLike": {"aws:PrincipalArn": pattern}}))
        self.network.allow_through("Kms", iam.PolicyStatement(
            sid="SignWithOwnKeysOnly", principals=[iam.AnyPrincipal()], actions=["kms:Sign"],
            resources=[names.keys_arn_pattern(env)],
            conditions={"ArnLike": {"aws:PrincipalArn": pattern},
                        "ForAnyValue:StringLike": {"kms:ResourceAliases": [f"{names.signing_alias('')}*"]}}))
        self.network.allow_through("S3", iam.PolicyStatement(
            sid="DropZonesOnly", principals=[iam.AnyPrincipal()], actions=["s3:GetObject", "s3:PutObject"],
            resources=[f"arn:{PARTITION}:s3:::{names.drop_zone_bucket_prefix(env)}*/*"],
            conditions={"ArnLike": {"aws:PrincipalArn": pattern}}))
        self.network.allow_through("S3", iam.PolicyStatement(
            sid="WritersPutExportsOnly", principals=[iam.AnyPrincipal()], actions=["s3:PutObject"],
            resources=[f"arn:{PARTITION}:s3:::{names.drop_zone_bucket_prefix(env)}*/{INCOMING}*"],
            conditions={"ArnLike": {"aws:PrincipalArn": [names.drop_zone_writers_pattern(env, code)]}}))
        # Exports from the existing systems outside the VPC (over the VPN / Direct Connect): an S3
        # interface endpoint that admits HTTPS from their networks only and carries only writers'
        # PutObject into incoming/. No private DNS: the gateway endpoint serves the VPC itself;
        # writers address this one by its endpoint-specific name.
        self.upload_endpoint: ec2.InterfaceVpcEndpoint | None = None
        if muni.upload_cidrs:
            self.upload_endpoint = self.network.add_client_endpoint(
                "DropZoneUploads", ec2.InterfaceVpcEndpointAwsService.S3, client_cidrs=muni.upload_cidrs,
                private_dns=False,
                description="S3 endpoint for exports of the existing registry systems: HTTPS in from their networks only")
            self.upload_endpoint.add_to_policy(iam.PolicyStatement(
                sid="WritersPutExportsOnly", principals=[iam.AnyPrincipal()], actions=["s3:PutObject"],
                resources=[f"arn:{PARTITION}:s3:::{names.drop_zone_bucket_prefix(env)}*/{INCOMING}*"],
                conditions={"ArnLike": {"aws:PrincipalArn": [names.drop_zone_writers_pattern(env, code)]}}))
        self.upload_endpoint_ids = [self.network.gateway["S3"].vpc_endpoint_id] + (
            [self.upload_endpoint.vpc_endpoint_id] if self.upload_endpoint else [])
        self.network.allow_through("DynamoDb", iam.PolicyStatement(
            sid="StateTableOnly", principals=[iam.AnyPrincipal()], actions=STATE_ACTIONS,
            resources=[self.state_table.table_arn], conditions={"ArnLike": {"aws:PrincipalArn": pattern}}))
        # The counter API and the resident cards (docs/card.md). ``api_logging_role``: this stack
        # sets the account's API Gateway logging role (no other API of the deployment does here).
        self.counter = CounterApi(self, "Counter", stack=self, client_cidrs=muni.upload_cidrs,
                                  api_logging_role=api_logging_role)
        # The channel between municipalities (components/channel.py; decisions 0041, 0042).
        self.channel = MunicipalityChannel(self, "Channel", stack=self) if deployment.channel else None
        # Where the resident record lives: each change with the fields never sent upward (decision 0044).
        self.local_records = LocalRecordStore(self, "LocalRecords", stack=self)
        TierDashboard(self, "Dashboard", stack=self, tier_label="municipality",
                      cs_function_names=[names.cs_function(m.code) for m in muni.municipalities],
                      cs_failed_events=self.failed_events, counter_service=names.service_name(tier),
                      channel=self.channel)


class CommunicationServer(Construct):
    """コミュニケーションサーバ of one municipality: drop zone → function → signed notices up."""

    def __init__(self, scope: Construct, id: str, *, base: MunicipalityBaseStack, municipality: Municipality) -> None:
        super().__init__(scope, id)
        self.code = municipality.code
        deployment, prefecture, names = base.deployment, base.prefecture, base.names
        code, pcode = municipality.code, prefecture.code
        env, pref_env = base.tier_env, prefecture.env
        region = env.region
        tier, pref_tier = base.tier, prefecture_tier(pcode)
        role_name = names.cs_role(code)
        function_name = names.cs_function(code)
        bucket_name = names.drop_zone_bucket(env, code)
        bucket_arn = names.bucket_arn(bucket_name)
        prefecture_queue = names.inbound_queue(pref_tier)

        self.signing_key = keys.signing_key(
            self, "SigningKey", alias=names.signing_alias(code), account=env.account,
            administrators=deployment.operations.key_administrators,
            description=f"{code} {municipality.name}: signs the CS's update notices",
            statements=[
                keys.use_by_roles("CsSigns", env.account, [names.role_arn(env, tier, role_name)], ["kms:Sign"],
                                  conditions={"StringEquals": {"kms:SigningAlgorithm": SIGNING_ALGORITHM}}),
                keys.use_by_roles("PrefectureVerifies", pref_env.account,
                                  [names.role_arn_pattern(pref_env, pref_tier)], ["kms:GetPublicKey"]),
                # The channel function signs as this municipality; every channel hop verifies.
                *signing_key_statements(names, deployment, prefecture),
            ],
        )
        self.bucket = s3.Bucket(
            self, "DropZone", bucket_name=bucket_name, encryption=s3.BucketEncryption.KMS,
            encryption_key=base.at_rest_key, bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True, versioned=True, object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(id="incoming", prefix=INCOMING, expiration=INCOMING_RETENTION,
                                 noncurrent_version_expiration=NONCURRENT_RETENTION),
                s3.LifecycleRule(id="reports", prefix=REPORTS, expiration=REPORTS_RETENTION,
                                 noncurrent_version_expiration=NONCURRENT_RETENTION),
            ],
        )
        nag.acknowledge(self.bucket, [
            ("NIST.800.53.R5-S3BucketReplicationEnabled",
             ("A transient drop zone: the export's notices are stored by the prefecture and national tiers within "
             "minutes; objects expire after 30/90 days. Replicating personal data would only add copies.")),
        ])
        # One writer per municipality: the existing system's only way to put an export. Any
        # principal of the tier's account that its own IAM lets assume it (one-hour sessions);
        # the bucket refuses every other PutObject into incoming/, and any not through the tier's
        # S3 endpoints — so a file in incoming/ came from this municipality's system, privately.
        writer_arn = names.drop_zone_writer_arn(env, pcode, code)
        # Its policy is inline (a property of the role, not a resource of its own: decision 0051
        # needs the resource for the inbox).
        self.writer = iam.Role(
            self, "Writer", role_name=names.drop_zone_writer(code), path=names.drop_zone_writers_path(pcode),
            assumed_by=iam.AccountPrincipal(env.account), max_session_duration=Duration.hours(1),
            description=f"Municipality {code}: its existing registry system puts exports into incoming/",
            inline_policies={names.drop_zone_writer(code): iam.PolicyDocument(statements=[
                iam.PolicyStatement(sid="PutExportsIntoIncoming", actions=["s3:PutObject"],
                                    resources=[f"{bucket_arn}/{INCOMING}*"])])})
        nag.acknowledge(self.writer, [
            ("AwsSolutions-IAM5", ("Exports of this one municipality under its own drop zone's incoming/ prefix; "
             "the file names are the existing system's."), [f"Resource::{bucket_arn}/{INCOMING}*"]),
            ("NIST.800.53.R5-IAMNoInlinePolicy", "One statement of this role alone; inline: stack size (decision 0051)"),
        ])
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="ExportsOnlyFromThisMunicipalitysWriter", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
            actions=["s3:PutObject"], resources=[f"{bucket_arn}/{INCOMING}*"],
            conditions={"ArnNotEquals": {"aws:PrincipalArn": writer_arn}}))
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="ExportsOnlyThroughTheTiersEndpoints", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
            actions=["s3:PutObject"], resources=[f"{bucket_arn}/{INCOMING}*"],
            conditions={"StringNotEquals": {"aws:SourceVpce": base.upload_endpoint_ids}}))
        cfn_bucket: s3.CfnBucket = self.bucket.node.default_child  # type: ignore[assignment]
        cfn_bucket.logging_configuration = s3.CfnBucket.LoggingConfigurationProperty(
            destination_bucket_name=base.access_logs.bucket_name, log_file_prefix=f"dropzones/{code}/")

        # The CS's inbox (decision 0051): the drop zone's S3 events, taken by the CS in batches. Its
        # policy is the CS stack's, shared by the stack's inboxes (``inbox_policy``).
        inbox_name = names.cs_inbox_queue(code)
        self.inbox = sqs.Queue(
            self, "Inbox", queue_name=inbox_name, encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=base.at_rest_key,
            data_key_reuse=DATA_KEY_REUSE, retention_period=INBOX_RETENTION,
            visibility_timeout=Duration.seconds(inbox.VISIBILITY_TIMEOUT_S),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=inbox.MAX_RECEIVE_COUNT, queue=sqs.Queue.from_queue_arn(
                self, "FailedEvents", names.queue_arn(env, names.cs_failure_queue(pcode)))),
        )
        inbox_arn = names.queue_arn(env, inbox_name)

        self.cs = TierFunction(
            self, "Cs", function_name=function_name, role_name=role_name, role_path=names.role_path(tier),
            handler="jukinet.handlers.municipality_cs.handler",
            description=f"CS of {code} {municipality.name}: export file in, signed notices to the prefecture",
            environment={
                "MUNICIPALITY_CODE": code,
                "STATE_TABLE_NAME": names.cs_state_table(pcode),
                "SIGNING_KEY_ID": self.signing_key.key_arn,
                "OUTBOUND_QUEUE_URL": names.queue_url(pref_env, prefecture_queue),
                "DROP_ZONE_BUCKET": bucket_name,
                "CARD_TABLE_NAME": names.card_table(pcode),
                "FAILED_EVENTS_QUEUE_URL": names.queue_url(env, names.cs_failure_queue(pcode)),
                **cs_environment(names, pcode),
                "POWERTOOLS_SERVICE_NAME": names.service_name(tier),
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                "LOG_LEVEL": "INFO",
            },
            timeout=CS_TIMEOUT, memory_size=CS_MEMORY_MB,
            reserved_concurrency=prefecture.municipality_tier.cs_reserved_concurrency,
            network=base.network, log_key=base.audit_key, log_retention=base.log_retention,
            dead_letter_queue=base.failed_events,
            statements=[
                iam.PolicyStatement(sid="ReadIncomingExports", actions=["s3:GetObject"],
                                    resources=[f"{bucket_arn}/{INCOMING}*"]),
                iam.PolicyStatement(sid="WriteReports", actions=["s3:PutObject"],
                                    resources=[f"{bucket_arn}/{REPORTS}*"]),
                iam.PolicyStatement(sid="DropZoneEncryption", actions=DATA_KEY_ACTIONS,
                                    resources=[base.at_rest_key.key_arn], conditions={
                                        "StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"},
                                        "StringLike": {"kms:EncryptionContext:aws:s3:arn": f"{bucket_arn}*"}}),
                iam.PolicyStatement(sid="OwnStatePartitionOnly", actions=STATE_ACTIONS,
                                    resources=[names.table_arn(env, names.cs_state_table(pcode))], conditions={
                                        "ForAllValues:StringEquals": {
                                            "dynamodb:LeadingKeys": [cs_state_partition(code)]}}),
                *send_upward_statements(
                    sids=("SignNotices", "SendToPrefecture", "PrefectureQueueEncryption"),
                    signing_key_arn=self.signing_key.key_arn,
                    queue_arn=names.queue_arn(pref_env, prefecture_queue),
                    queue_key_pattern=names.keys_arn_pattern(pref_env),
                    queue_key_alias=names.key_alias(pref_tier, "transport"), region=region),
                # The tier's register of residents for the counter API: each resident's latest notice only.
                iam.PolicyStatement(sid="RecordResidentsForCards", actions=REGISTER_ACTIONS,
                                    resources=[names.table_arn(env, names.card_table(pcode))], conditions={
                                        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["RESIDENT#*"]}}),
                *cs_statements(names, env, pcode, code),
                iam.PolicyStatement(sid="ReportFailedEvents", actions=["sqs:SendMessage"],
                                    resources=[base.failed_events.queue_arn]),
                iam.PolicyStatement(sid="TakeInboxEvents", actions=INBOX_CONSUMER_ACTIONS, resources=[inbox_arn]),
                iam.PolicyStatement(sid="FailedEventsEncryption", actions=DATA_KEY_ACTIONS,
                                    resources=[base.at_rest_key.key_arn], conditions={
                                        "StringEquals": {"kms:ViaService": f"sqs.{region}.amazonaws.com"}}),
            ],
        )
        nag.acknowledge(self.cs.policy, [
            ("AwsSolutions-IAM5", ("ENI management (Lambda in a VPC) and X-Ray trace writes support no resource-level "
             "permissions."), ["Resource::*"]),
            ("AwsSolutions-IAM5", "Objects under this municipality's own drop-zone prefixes only.",
             [f"Resource::{bucket_arn}/{INCOMING}*", f"Resource::{bucket_arn}/{REPORTS}*"]),
            ("AwsSolutions-IAM5", ("The prefecture's queue key is found by alias in the prefecture's account; the "
             "wildcard key ARN is narrowed by kms:ResourceAliases to that one alias."),
             [f"Resource::{names.keys_arn_pattern(pref_env)}"]),
        ], apply_to_children=True)

        # S3 → inbox → CS without CDK's notification custom resource: the queue policy first, then
        # the bucket configuration that S3 validates against it (it sends a test event).
        cfn_bucket.add_property_override("NotificationConfiguration.QueueConfigurations", [{
            "Event": "s3:ObjectCreated:*",
            "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": INCOMING}]}},
            "Queue": self.inbox.queue_arn,
        }])
        cfn_bucket.add_dependency(self.inbox.node.default_child)  # type: ignore[arg-type]  # (and the policy: the stack)
        # Files that arrive together are taken together: up to BATCH_SIZE events, gathered for up
        # to BATCHING_WINDOW_S; at most two invocations at once, which the reserved concurrency
        # (at least 2) always admits, so the mapping is never throttled (decision 0051).
        self.mapping = lambda_.EventSourceMapping(
            self, "InboxMapping", target=self.cs.function, event_source_arn=self.inbox.queue_arn,
            batch_size=inbox.BATCH_SIZE, max_batching_window=Duration.seconds(inbox.BATCHING_WINDOW_S),
            report_batch_item_failures=True, max_concurrency=INBOX_MAX_CONCURRENCY, enabled=True)


def inbox_policy(scope: Construct, base: MunicipalityBaseStack,
                 servers: Sequence[CommunicationServer]) -> sqs.CfnQueuePolicy:
    """One policy for the inboxes of a CS stack (decision 0051: a policy per inbox would push a
    40-CS stack's template past CloudFormation's 1,000,000 bytes). Only S3, on behalf of one of
    this tier's drop zones, may send; no principal of any account may send otherwise (an event
    cannot be made up); only this tier's CS roles may receive, hide or delete an event — each CS's
    own IAM names its own inbox only, and a CS ignores an event that names another drop zone.
    TLS only."""
    names, env, tier = base.names, base.tier_env, base.tier
    inboxes = names.queue_arn(env, names.cs_inbox_queue("*"))
    drop_zones = f"arn:{PARTITION}:s3:::{names.drop_zone_bucket_prefix(env)}*"
    document = iam.PolicyDocument(statements=[
        iam.PolicyStatement(sid="TlsOnly", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
                            actions=["sqs:*"], resources=[inboxes],
                            conditions={"Bool": {"aws:SecureTransport": "false"}}),
        iam.PolicyStatement(sid="DropZoneEvents", principals=[iam.ServicePrincipal("s3.amazonaws.com")],
                            actions=["sqs:SendMessage"], resources=[inboxes],
                            conditions={"ArnLike": {"aws:SourceArn": drop_zones},
                                        "StringEquals": {"aws:SourceAccount": env.account}}),
        iam.PolicyStatement(sid="NoOtherSender", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
                            actions=["sqs:SendMessage"], resources=[inboxes],
                            conditions={"ArnNotLike": {"aws:SourceArn": drop_zones}}),
        iam.PolicyStatement(sid="OnlyCsTake", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
                            actions=["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                                     "sqs:PurgeQueue"], resources=[inboxes],
                            conditions={"ArnNotLike": {"aws:PrincipalArn": names.role_arn(env, tier, names.cs_role("*"))}}),
    ])
    return sqs.CfnQueuePolicy(scope, "InboxPolicy", queues=[s.inbox.queue_url for s in servers],
                              policy_document=document)


class MunicipalityStack(cdk.Stack):
    """One chunk of a prefecture's CSs (see ``MunicipalityTier.groups``)."""

    def __init__(self, scope: Construct, *, base: MunicipalityBaseStack, index: int,
                 municipalities: Sequence[Municipality]) -> None:
        names, prefecture = base.names, base.prefecture
        first, last = municipalities[0].code, municipalities[-1].code
        super().__init__(scope, names.municipality_stack(prefecture.code, index),
                         stack_name=names.municipality_stack(prefecture.code, index), env=cdk_env(base.tier_env),
                         description=f"jukinet: municipality CSs {first}-{last} of {prefecture.name_en} "
                                     f"({len(municipalities)} municipalities)")
        cdk.Tags.of(self).add(f"{names.prefix}:tier", base.tier)
        cdk.Tags.of(self).add(f"{names.prefix}:deployment", base.deployment.name)
        self.add_stack_dependency(base)
        self.servers = [CommunicationServer(self, f"Cs{m.code}", base=base, municipality=m) for m in municipalities]
        self.inbox_policy = inbox_policy(self, base, self.servers)
        for server in self.servers:  # S3 checks the queue's policy when the notification is configured
            server.bucket.node.default_child.add_dependency(self.inbox_policy)  # type: ignore[union-attr]
        self._group_alarms(base)

    def _group_alarms(self, base: MunicipalityBaseStack) -> None:
        """Errors and throttles of up to ten CS functions per alarm (metric math's limit)."""
        names = base.names
        for start in range(0, len(self.servers), FUNCTIONS_PER_ALARM):
            group = self.servers[start:start + FUNCTIONS_PER_ALARM]
            span = f"{group[0].code}-{group[-1].code}"
            for what, metric_name, periods in (("errors", "Errors", 1), ("throttles", "Throttles", 3)):
                metrics = {f"m{i}": cloudwatch.Metric(namespace="AWS/Lambda", metric_name=metric_name,
                                                      dimensions_map={"FunctionName": s.cs.function_name},
                                                      statistic=cloudwatch.Stats.SUM, period=PERIOD)
                           for i, s in enumerate(group)}
                alarm = cloudwatch.Alarm(
                    self, f"Cs{what.title()}{span}", alarm_name=names.alarm(base.tier, f"cs-{what}-{span}"),
                    alarm_description=(f"CS functions {span}: {metric_name} summed over the group "
                                       f"({'any failed attempt' if what == 'errors' else 'throttled for 15 minutes'}). "
                                       f"See docs/operations.md#cs-{what}."),
                    metric=cloudwatch.MathExpression(expression="SUM(FILL(METRICS(), 0))", using_metrics=metrics,
                                                     period=PERIOD, label=f"{metric_name} {span}"),
                    threshold=0, comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                    evaluation_periods=periods, datapoints_to_alarm=periods,
                    treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                )
                alarm.add_alarm_action(actions.SnsAction(base.alarms.topic))
                alarm.add_ok_action(actions.SnsAction(base.alarms.topic))
