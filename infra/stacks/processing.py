"""What the prefecture and national tiers share: identity table, inbound queue, processor, alarms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3

import json

from jukinet.domain.ledger import GAP_ALARM_AFTER

from ..bundling import lambda_code
from ..components import keys, nag
from ..components.functions import TierFunction
from ..components.monitoring import PERIOD, custom_metric
from ..components.queues import InboundQueue
from ..components.responsibility import REDRIVE_ROLE
from ..components.tables import identity_table
from ..config import Environment
from ..naming import METRICS_NAMESPACE, NATIONAL, PARTITION, SIGNING_ALGORITHM
from .tier import TierStack

def cdk_partition() -> str:  # noqa: D103
    return PARTITION


PROCESSOR_TIMEOUT = Duration.seconds(60)
PROCESSOR_MEMORY_MB = 1024
BATCH_SIZE = 10
TABLE_ACTIONS = [
    "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query", "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem",
]
# What a caller needs of a symmetric key to encrypt and decrypt through SQS, S3 or envelope sealing.
DATA_KEY_ACTIONS = ["kms:GenerateDataKey", "kms:Decrypt"]


def send_upward_statements(*, sids: tuple[str, str, str], signing_key_arn: str, queue_arn: str, queue_key_pattern: str,
                           queue_key_alias: str, region: str) -> list[iam.PolicyStatement]:
    """What a sending tier's function needs to pass signed messages to the next tier: sign with
    its own key (ECDSA only), send to that tier's inbound queue, and use that queue's transport
    key through SQS only (the key is found by alias in the receiving tier's account)."""
    sign_sid, send_sid, key_sid = sids
    return [
        iam.PolicyStatement(sid=sign_sid, actions=["kms:Sign"], resources=[signing_key_arn],
                            conditions={"StringEquals": {"kms:SigningAlgorithm": SIGNING_ALGORITHM}}),
        iam.PolicyStatement(sid=send_sid, actions=["sqs:SendMessage"], resources=[queue_arn]),
        iam.PolicyStatement(sid=key_sid, actions=DATA_KEY_ACTIONS, resources=[queue_key_pattern],
                            conditions={"StringEquals": {"kms:ViaService": f"sqs.{region}.amazonaws.com"},
                                        "ForAnyValue:StringEquals": {"kms:ResourceAliases": [queue_key_alias]}}),
    ]


@dataclass(frozen=True)
class Senders:
    """Who may put messages into a tier's inbound queue."""

    endpoint_ids: Sequence[str]
    role_patterns_by_account: Mapping[str, Sequence[str]]
    # The channel's routers that send down into this queue (the national processor into a
    # prefecture's): admitted by role ARN, not endpoint (components/queues.py).
    router_role_arns: Sequence[str] = ()

    @property
    def accounts(self) -> list[str]:
        return sorted(self.role_patterns_by_account)

    @property
    def role_patterns(self) -> list[str]:
        return sorted({p for patterns in self.role_patterns_by_account.values() for p in patterns})


LEDGER_WATCH_SCHEDULE = "rate(5 minutes)"
LEDGER_WATCH_FILE = "ledger-watch.json"
RECONCILIATION_SCHEDULE = "cron(30 16 * * ? *)"  # 01:30 JST, every night
RECONCILIATION_FILE = "reconciliation.json"
# 09:30 JST on the 1st (00:30 UTC): after the night's sealer (01:00 JST) and reconciliation
# (01:30 JST) and the last hour's seal grace; 02:30 JST would be 17:30 UTC on the previous
# month's last day, which needs cron's ``L`` (decision 0039).
MONITORING_REPORT_SCHEDULE = "cron(30 0 1 * ? *)"
MONITORING_REPORT_PREFIX = "monitoring-report/"  # = jukinet.services.monitoring_report.REPORT_PREFIX
# What the report reads from CloudWatch: metric sums and alarm history (no resource-level permission).
MONITORING_READ_ACTIONS = ["cloudwatch:GetMetricStatistics", "cloudwatch:ListMetrics", "cloudwatch:DescribeAlarmHistory"]
ISOLATION_READ_ACTIONS = ["ssm:GetParametersByPath", "ssm:GetParameterHistory"]
# Who reads a tier's security reports: its security officers and the chief and deputy, whose
# role carries the security officer's reads (infra/components/responsibility.py).
SECURITY_REPORT_READERS = ("security-officer", "chief-security-officer", "deputy-chief-security-officer")
# The runtime's bound (jukinet/domain/ledger.py), imported: the alarm's description states it.
GAP_ALARM_AFTER_MINUTES = int(GAP_ALARM_AFTER.total_seconds() // 60)


@dataclass(frozen=True)
class WatchedCounts:
    """What a tier's ledger watch compares with its own ledgers: the CS counts of some
    municipalities (their CS state table, in ``env``) and the identity tables of the tiers in
    between (whose dead letters never reach this tier)."""

    env: Environment
    cs_state_table: str
    municipalities: tuple[str, ...]
    tiers_below: tuple[str, ...] = ()
    tiers_below_env: Environment | None = None
    # The municipality tier's table with these municipalities' channel records (``CHANNEL#``,
    # ``CHANNEL-IN#``): the prefecture's nightly reconciliation reads their counts (decision 0047).
    channel_table: str = ""


@dataclass
class Processing:
    table: dynamodb.Table
    inbound: InboundQueue
    processor: TierFunction
    transport_key: kms.Key
    envelope_key: kms.Key
    envelope_context: Mapping[str, str] = field(default_factory=dict)  # what the envelope key's users must send


def build_processing(stack: TierStack, *, tier_label: str, handler: str, description: str, senders: Senders,
                     envelope_context: Mapping[str, str], environment: Mapping[str, str],
                     statements: Sequence[iam.PolicyStatement], concurrency: int,
                     sender_public_keys: tuple[Environment, list[str]],
                     watched: Sequence[WatchedCounts] = ()) -> Processing:
    """Keys, table, inbound queue and processor of a tier; ``statements`` add the tier's own grants.

    ``sender_public_keys``: the senders' account and the alias patterns of their signing keys.
    """
    names, env = stack.names, stack.tier_env
    region = env.region
    at_rest_key = stack.symmetric_key("AtRestKey", purpose="at-rest", description="identity table at rest",
                                      statements=[keys.use_through_dynamodb(env.account, region)])
    sender_statements = [
        keys.use_by_roles(f"SendersEncrypt{i}", account, patterns, DATA_KEY_ACTIONS, via_services=["sqs"],
                          region=region)
        for i, (account, patterns) in enumerate(sorted(senders.role_patterns_by_account.items()))
    ]
    for i, account in enumerate(sorted({r.split(":")[4] for r in senders.router_role_arns})):
        sender_statements.append(keys.use_by_roles(
            f"ChannelRoutersEncrypt{i}", account, [r for r in senders.router_role_arns if r.split(":")[4] == account],
            DATA_KEY_ACTIONS, via_services=["sqs"], region=region))
    transport_key = stack.symmetric_key(
        "TransportKey", purpose="transport", description="inbound queue and its dead-letter queue (SQS SSE-KMS)",
        statements=[*sender_statements, keys.use_by_roles("TierUses", env.account, [stack.role_pattern],
                                                          DATA_KEY_ACTIONS, via_services=["sqs"], region=region)])
    context_condition = {"StringEquals": {f"kms:EncryptionContext:{k}": v for k, v in envelope_context.items()}}
    envelope_key = stack.symmetric_key(
        "EnvelopeKey", purpose="envelope", description="field-level envelope encryption of identity facts",
        statements=[keys.use_by_roles("ProcessorSealsFacts", env.account, [stack.role_pattern], DATA_KEY_ACTIONS,
                                      conditions=context_condition)])
    table = identity_table(stack, "IdentityTable", table_name=names.identity_table(stack.tier), key=at_rest_key)
    inbound = InboundQueue(
        stack, "Inbound", queue_name=names.inbound_queue(stack.tier),
        dead_letter_queue_name=names.dead_letter_queue(names.inbound_queue(stack.tier)), key=transport_key,
        function_timeout=PROCESSOR_TIMEOUT, sender_endpoint_ids=senders.endpoint_ids, sender_accounts=senders.accounts,
        sender_role_patterns=senders.role_patterns, consumer_role_patterns=[stack.role_pattern],
        redrive_role_arns=[names.people_role_arn(env, stack.tier, REDRIVE_ROLE)]
        if stack.deployment.people.holders(stack.tier, REDRIVE_ROLE) else [],
        router_role_arns=senders.router_role_arns,
    )
    sender_env, sender_aliases = sender_public_keys
    all_statements = [
        iam.PolicyStatement(sid="ConsumeInbound", resources=[inbound.queue.queue_arn], actions=[
            "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]),
        iam.PolicyStatement(sid="DeadLetterPoisonMessages", actions=["sqs:SendMessage"],
                            resources=[inbound.dead_letter_queue.queue_arn]),
        iam.PolicyStatement(sid="OwnQueuesEncryption", actions=DATA_KEY_ACTIONS, resources=[transport_key.key_arn],
                            conditions={"StringEquals": {"kms:ViaService": f"sqs.{region}.amazonaws.com"}}),
        iam.PolicyStatement(sid="SealIdentityFacts", actions=DATA_KEY_ACTIONS, resources=[envelope_key.key_arn],
                            conditions=context_condition),
        iam.PolicyStatement(sid="VerifySenders", actions=["kms:GetPublicKey"],
                            resources=[names.keys_arn_pattern(sender_env)],
                            conditions={"ForAnyValue:StringLike": {"kms:ResourceAliases": sender_aliases}}),
        iam.PolicyStatement(sid="IdentityTable", actions=TABLE_ACTIONS,
                            resources=[table.table_arn, f"{table.table_arn}/index/*"]),
        *statements,
    ]
    processor = TierFunction(
        stack, "Processor", function_name=names.processor_function(stack.tier),
        role_name=names.processor_role(stack.tier), role_path=names.role_path(stack.tier), handler=handler,
        description=description,
        environment={
            **environment,
            "TABLE_NAME": table.table_name,
            "DATA_KEY_ID": envelope_key.key_arn,
            "DEAD_LETTER_QUEUE_URL": inbound.dead_letter_queue.queue_url,
            "POWERTOOLS_SERVICE_NAME": names.service_name(stack.tier),
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            "LOG_LEVEL": "INFO",
        },
        timeout=PROCESSOR_TIMEOUT, memory_size=PROCESSOR_MEMORY_MB, reserved_concurrency=concurrency,
        network=stack.network, log_key=stack.audit_key, log_retention=stack.log_retention, statements=all_statements,
    )
    lambda_.EventSourceMapping(
        stack, "InboundMapping", target=processor.function, event_source_arn=inbound.queue.queue_arn,
        batch_size=BATCH_SIZE, report_batch_item_failures=True, max_concurrency=concurrency, enabled=True,
    )
    nag.acknowledge(processor.function, [
        ("NIST.800.53.R5-LambdaDLQ",
         ("Invoked synchronously by an SQS event source mapping, never asynchronously: failed messages go to the "
         "inbound queue's dead-letter queue by its redrive policy, poison messages by the handler itself.")),
    ])
    nag.acknowledge(processor.policy, [
        ("AwsSolutions-IAM5", ("ENI management (Lambda in a VPC) and X-Ray trace writes support no resource-level "
         "permissions."), ["Resource::*"]),
        ("AwsSolutions-IAM5", ("Sender public keys are found by alias across the senders' account; the wildcard key "
         "ARN is narrowed by kms:ResourceAliases to this tier's senders."),
         [f"Resource::{names.keys_arn_pattern(sender_env)}"]),
        ("AwsSolutions-IAM5", "The identity table's two GSIs (counts per sender and month; blind-index search).",
         [r"/^Resource::<IdentityTable[A-F0-9]+\.Arn>\/index\/\*$/"]),
    ], apply_to_children=True)

    alarms, tier = stack.alarms, stack.tier
    alarms.queue_alarms("Inbound", tier_name=f"{names.prefix}-{tier}", queue_label="inbound",
                        dead_letter_queue=inbound.dead_letter_queue, queue=inbound.queue,
                        max_age_seconds=stack.deployment.operations.oldest_message_alarm_seconds)
    fn = processor.function
    alarms.alarm("ProcessorErrors", name=names.alarm(tier, "processor-errors"),
                 description=f"{processor.function_name} failed invocations (a whole batch raised).",
                 metric=fn.metric_errors(period=PERIOD, statistic=cloudwatch.Stats.SUM))
    alarms.alarm("ProcessorThrottles", name=names.alarm(tier, "processor-throttles"),
                 description=f"{processor.function_name} was throttled for 15 minutes: reserved concurrency too low "
                             "or the account limit reached.",
                 metric=fn.metric_throttles(period=PERIOD, statistic=cloudwatch.Stats.SUM),
                 evaluation_periods=3, datapoints_to_alarm=3)
    service = names.service_name(tier)
    alarms.alarm("SequenceGaps", name=names.alarm(tier, "sequence-gaps"),
                 description=f"A gap in a municipality's sequence numbers at the {tier_label} tier has been open for "
                             f"{GAP_ALARM_AFTER_MINUTES} minutes or more (AgedSequenceGaps, from the ledger; a younger "
                             "gap is out-of-order delivery and stays quiet): notices are missing.",
                 metric=custom_metric("AgedSequenceGaps", service=service, tier=tier_label),
                 anchor="sequence-gaps")
    build_ledger_watch(stack, tier_label=tier_label, table=table, watched=watched)
    # The tier's security-reports bucket: its two writers are the nightly reconciliation and the
    # monthly monitoring report, each under its own prefix (decisions 0033, 0039).
    reports = build_security_reports(stack, writers=[
        names.role_arn(env, tier, names.reconciliation_function(tier)),
        names.role_arn(env, tier, names.monitoring_report_function(tier))])
    build_reconciliation(stack, tier_label=tier_label, table=table, watched=watched, reports=reports)
    build_monitoring_report(stack, tier_label=tier_label, reports=reports)
    alarms.alarm("SignatureFailures", name=names.alarm(tier, "signature-failures"),
                 description=f"A message to the {tier_label} tier failed signature verification or came from an "
                             "unknown sender: possible tampering or misconfiguration.",
                 metric=custom_metric("SignatureFailures", service=service, tier=tier_label))
    return Processing(table=table, inbound=inbound, processor=processor, transport_key=transport_key,
                      envelope_key=envelope_key, envelope_context=dict(envelope_context))


def _scheduled_function(stack: TierStack, construct_id: str, *, function_name: str, handler: str, description: str,
                        environment: dict[str, str], timeout: Duration, memory_size: int,
                        statements: list[iam.PolicyStatement], code: lambda_.Code | None, schedule: str,
                        schedule_description: str, retry_attempts: int, max_event_age: Duration,
                        why_no_dlq: str, why_wildcards: str, wildcards: list[str]) -> TierFunction:
    """A tier's function run only by an EventBridge schedule (the ledger watch, the nightly
    reconciliation, the monthly monitoring report): one instance at a time, in the tier's VPC,
    its role named after it; the rule's retries; the cdk-nag findings such a function raises,
    acknowledged with the caller's reasons (``wildcards``: the IAM5 findings the reason covers)."""
    names, tier = stack.names, stack.tier
    function = TierFunction(
        stack, construct_id, function_name=function_name, role_name=function_name,
        role_path=names.role_path(tier), handler=handler, description=description, environment=environment,
        timeout=timeout, memory_size=memory_size, reserved_concurrency=1, network=stack.network,
        log_key=stack.audit_key, log_retention=stack.log_retention, statements=statements, code=code,
    )
    rule = events.Rule(stack, f"{construct_id}Schedule", rule_name=function_name,
                       schedule=events.Schedule.expression(schedule), description=schedule_description)
    rule.add_target(targets.LambdaFunction(function.function, retry_attempts=retry_attempts,
                                           max_event_age=max_event_age))
    nag.acknowledge(function.function, [("NIST.800.53.R5-LambdaDLQ", why_no_dlq)])
    nag.acknowledge(function.policy, [("AwsSolutions-IAM5", why_wildcards, wildcards)], apply_to_children=True)
    return function


def build_ledger_watch(stack: TierStack, *, tier_label: str, table: dynamodb.Table,
                       watched: Sequence[WatchedCounts]) -> TierFunction:
    """The tier's ledger watch (``jukinet.services.ledger_watch``, every five minutes): aged gaps
    that no later message reports, and notices overdue (sent by a CS, not accounted for here
    15 minutes after its last file). CS counts in another account or region are not compared
    (a cross-account read of their tables is not granted; their gaps still are):
    docs/decisions/0030-*."""
    names, env, tier = stack.names, stack.tier_env, stack.tier
    here = (env.account, env.region)
    local = [w for w in watched if (w.env.account, w.env.region) == here
             and (w.tiers_below_env is None or (w.tiers_below_env.account, w.tiers_below_env.region) == here)]
    # Municipalities whose counts are elsewhere are still watched for aged gaps (no table named).
    document = {"sources": [{"cs_state_table": w.cs_state_table if w in local else "",
                             "municipalities": list(w.municipalities),
                             "tiers_below": list(w.tiers_below) if w in local else []} for w in watched]}
    arn = lambda t: f"arn:{cdk_partition()}:dynamodb:{env.region}:{env.account}:table/{t}"  # noqa: E731
    statements = [iam.PolicyStatement(
        sid="ReadOwnLedgers", actions=["dynamodb:GetItem"], resources=[table.table_arn],
        conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["LEDGER#*"]}})]
    below = sorted({t for w in local for t in w.tiers_below})
    cs_tables = sorted({w.cs_state_table for w in local})
    if below:
        statements.append(iam.PolicyStatement(
            sid="ReadLowerTiersLedgers", actions=["dynamodb:GetItem"], resources=[arn(t) for t in below],
            conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["LEDGER#*"]}}))
    if cs_tables:
        statements.append(iam.PolicyStatement(
            sid="ReadCsCounts", actions=["dynamodb:GetItem"], resources=[arn(t) for t in cs_tables],
            conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["MUNI#*"]}}))
        stack.network.allow_through("DynamoDb", iam.PolicyStatement(
            sid="LedgerWatchReadsCounts", principals=[iam.AnyPrincipal()], actions=["dynamodb:GetItem"],
            resources=[arn(t) for t in [*cs_tables, *below]],
            conditions={"ArnLike": {"aws:PrincipalArn": [stack.role_pattern]}}))
    function_name = names.ledger_watch_function(tier)
    watch = _scheduled_function(
        stack, "LedgerWatch", function_name=function_name, handler="jukinet.handlers.ledger_watch.handler",
        description=f"Ledger watch of the {tier_label} tier: aged sequence gaps, notices overdue",
        environment={
            "TABLE_NAME": table.table_name, "TIER": tier_label, "WATCH_FILE": LEDGER_WATCH_FILE,
            "POWERTOOLS_SERVICE_NAME": names.service_name(tier),
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE, "LOG_LEVEL": "INFO",
        },
        timeout=Duration.seconds(120), memory_size=256, statements=statements,
        code=lambda_code(extra_files={LEDGER_WATCH_FILE: json.dumps(document, indent=1).encode()}),
        schedule=LEDGER_WATCH_SCHEDULE, schedule_description=f"Ledger watch of the {tier_label} tier (every five minutes)",
        retry_attempts=1, max_event_age=Duration.minutes(5),
        why_no_dlq=("The scheduled event carries nothing but its time and the next run comes five "
                    "minutes later; a dead-letter copy of the event would add nothing."),
        why_wildcards="ENI management (Lambda in a VPC) and X-Ray trace writes support no resource-level permissions.",
        wildcards=["Resource::*"],
    )
    service = names.service_name(tier)
    stack.alarms.alarm("NoticesOverdue", name=names.alarm(tier, "notices-overdue"),
                       description=f"A municipality's CS counted more notices sent than the {tier_label} tier stored "
                                   f"or dead-lettered, {GAP_ALARM_AFTER_MINUTES} minutes or more after its last file "
                                   "(NoticesOverdue): a last message is lost or stuck.",
                       metric=custom_metric("NoticesOverdue", service=service, tier=tier_label),
                       anchor="notices-overdue")
    return watch


@dataclass
class SecurityReports:
    """A tier's security-reports bucket and its key (``TierScope`` names them for the officers)."""

    bucket: s3.Bucket
    key: kms.Key
    writers: list[str]   # role ARNs that alone may put objects
    readers: list[str]   # role ARNs that alone may get them


def build_security_reports(stack: TierStack, *, writers: Sequence[str]) -> SecurityReports:
    """``<prefix>-sec-reports-<tier>-<account>-<region>`` (decision 0033): reports for the tier's
    security officers. SSE-KMS with its own key, versioned, public access blocked, TLS only; the
    bucket policy lets nobody but ``writers`` put an object and nobody but the security officers
    (and chief, deputy) get one, and no one delete one."""
    names, env, tier = stack.names, stack.tier_env, stack.tier
    readers = [names.people_role_arn(env, tier, kind) for kind in SECURITY_REPORT_READERS]
    key = stack.symmetric_key("SecurityReportsKey", purpose="security-reports",
                              description="security-reports bucket (reconciliation and monitoring reports)",
                              statements=[
                                  keys.use_by_roles("ReportersWrite", env.account, writers, DATA_KEY_ACTIONS,
                                                    via_services=["s3"], region=env.region),
                                  keys.use_by_roles("SecurityOfficersRead", env.account, readers, ["kms:Decrypt"],
                                                    via_services=["s3"], region=env.region),
                              ])
    name = names.security_reports_bucket(env, tier)
    bucket = s3.Bucket(
        stack, "SecurityReports", bucket_name=name, encryption=s3.BucketEncryption.KMS, encryption_key=key,
        bucket_key_enabled=True, block_public_access=s3.BlockPublicAccess.BLOCK_ALL, enforce_ssl=True,
        versioned=True, object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        server_access_logs_bucket=stack.access_logs, server_access_logs_prefix="security-reports/",
        removal_policy=RemovalPolicy.RETAIN)
    objects = bucket.arn_for_objects("*")
    anyone = [iam.AnyPrincipal()]
    bucket.add_to_resource_policy(iam.PolicyStatement(
        sid="OnlyTheReportersWrite", effect=iam.Effect.DENY, principals=anyone,
        actions=["s3:PutObject", "s3:PutObjectAcl", "s3:PutObjectTagging", "s3:RestoreObject"], resources=[objects],
        conditions={"ArnNotLike": {"aws:PrincipalArn": list(writers)}}))
    bucket.add_to_resource_policy(iam.PolicyStatement(
        sid="OnlySecurityOfficersRead", effect=iam.Effect.DENY, principals=anyone,
        actions=["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectAttributes", "s3:GetObjectTagging"],
        resources=[objects], conditions={"ArnNotLike": {"aws:PrincipalArn": readers}}))
    bucket.add_to_resource_policy(iam.PolicyStatement(
        sid="ReportsAreKept", effect=iam.Effect.DENY, principals=anyone,
        actions=["s3:DeleteObject", "s3:DeleteObjectVersion"], resources=[objects]))
    nag.acknowledge(bucket, [
        ("NIST.800.53.R5-S3BucketReplicationEnabled",
         ("Reports derived from counts kept elsewhere (the ledgers, the CS state): the next run writes them again; "
          "the bucket is versioned and no one may delete a report.")),
    ])
    reports = SecurityReports(bucket=bucket, key=key, writers=list(writers), readers=readers)
    stack.security_reports = reports  # type: ignore[attr-defined]  # read by responsibility.scope_of
    return reports


def build_reconciliation(stack: TierStack, *, tier_label: str, table: dynamodb.Table,
                         watched: Sequence[WatchedCounts], reports: SecurityReports) -> TierFunction:
    """The tier's nightly reconciliation (``jukinet.services.reconciliation``, 01:30 JST): the
    previous day's month and the previous month, the ``reconciliation-mismatches`` alarm, the
    report in the tier's security-reports bucket. It reads what the ledger watch reads (the same
    tables, the same keys, the same same-account rule: decision 0030) and writes only under
    ``reconciliation/`` in that bucket (decision 0033)."""
    names, env, tier = stack.names, stack.tier_env, stack.tier
    here = (env.account, env.region)
    function_name = names.reconciliation_function(tier)
    local = [w for w in watched if (w.env.account, w.env.region) == here
             and (w.tiers_below_env is None or (w.tiers_below_env.account, w.tiers_below_env.region) == here)]
    municipality_names = {m.code: m.name for p in stack.deployment.prefectures
                          for m in p.municipality_tier.municipalities}
    channel = {w.cs_state_table: w.channel_table for w in local if w.channel_table and tier != NATIONAL}
    document = {"sources": [{"cs_state_table": w.cs_state_table if w in local else "",
                             "municipalities": {c: municipality_names.get(c, c) for c in w.municipalities},
                             "prefecture_table": (w.tiers_below[0] if w.tiers_below and w in local else ""),
                             **({"channel_table": w.channel_table} if w.cs_state_table in channel and w in local
                                else {})}
                            for w in watched]}
    arn = lambda t: f"arn:{cdk_partition()}:dynamodb:{env.region}:{env.account}:table/{t}"  # noqa: E731
    ledgers = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["LEDGER#*"]}}
    statements = [
        iam.PolicyStatement(sid="ReadOwnLedgers", actions=["dynamodb:GetItem"], resources=[table.table_arn],
                            conditions=ledgers),
        iam.PolicyStatement(sid="WriteReconciliationReports", actions=["s3:PutObject"],
                            resources=[reports.bucket.arn_for_objects("reconciliation/*")]),
        iam.PolicyStatement(sid="EncryptReports", actions=["kms:GenerateDataKey"], resources=[reports.key.key_arn],
                            conditions={"StringEquals": {"kms:ViaService": f"s3.{env.region}.amazonaws.com"}}),
    ]
    below = sorted({t for w in local for t in w.tiers_below})
    cs_tables = sorted({w.cs_state_table for w in local})
    if below:
        statements.append(iam.PolicyStatement(sid="ReadLowerTiersLedgers", actions=["dynamodb:GetItem"],
                                              resources=[arn(t) for t in below], conditions=ledgers))
    if cs_tables:
        statements.append(iam.PolicyStatement(
            sid="ReadCsCounts", actions=["dynamodb:GetItem"], resources=[arn(t) for t in cs_tables],
            conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["MUNI#*"]}}))
    if channel:
        # The channel's requests and answers of this prefecture's municipalities (decision 0047):
        # Query on their partitions only — states and counts are read, the ciphertext bodies in
        # the same items are not opened (no channel key grant).
        numbers = sorted({c[:2] for w in local if w.cs_state_table in channel for c in w.municipalities})
        tables = [arn(t) for t in sorted(set(channel.values()))]
        statements.append(iam.PolicyStatement(
            sid="ReadChannelRecords", actions=["dynamodb:Query"], resources=tables,
            conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [
                key for pp in numbers for key in (f"CHANNEL#{pp}*", f"CHANNEL-IN#{pp}*")]}}))
        stack.network.allow_through("DynamoDb", iam.PolicyStatement(
            sid="ReconciliationReadsChannelRecords", principals=[iam.AnyPrincipal()], actions=["dynamodb:Query"],
            resources=tables, conditions={"ArnLike": {"aws:PrincipalArn": [stack.role_pattern]}}))
    # The tier's S3 gateway endpoint: puts into its own reports bucket, by the tier's functions.
    stack.network.allow_through("S3", iam.PolicyStatement(
        sid="ReconciliationWritesReports", principals=[iam.AnyPrincipal()], actions=["s3:PutObject"],
        resources=[reports.bucket.arn_for_objects("reconciliation/*")],
        conditions={"ArnLike": {"aws:PrincipalArn": [stack.role_pattern]}}))  # the bucket policy narrows it
    function = _scheduled_function(
        stack, "Reconciliation", function_name=function_name, handler="jukinet.handlers.reconciliation.handler",
        description=f"Nightly reconciliation of the {tier_label} tier: report and mismatches",
        environment={
            "TABLE_NAME": table.table_name, "TIER": tier_label, "TIER_NAME": tier,
            "REPORTS_BUCKET": reports.bucket.bucket_name, "SOURCES_FILE": RECONCILIATION_FILE,
            "POWERTOOLS_SERVICE_NAME": names.service_name(tier),
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE, "LOG_LEVEL": "INFO",
        },
        timeout=Duration.minutes(5), memory_size=256, statements=statements,
        code=lambda_code(extra_files={RECONCILIATION_FILE: json.dumps(document, indent=1,
                                                                      ensure_ascii=False).encode()}),
        schedule=RECONCILIATION_SCHEDULE,
        schedule_description=f"Reconciliation of the {tier_label} tier (01:30 JST every night)",
        retry_attempts=2, max_event_age=Duration.hours(1),
        why_no_dlq=("The scheduled event carries nothing but its time; a failed run is retried "
                    "twice, shows in the function's errors, and the next night reconciles the same months again."),
        why_wildcards=("ENI management (Lambda in a VPC) and X-Ray trace writes support no resource-level "
                       "permissions; reports are written under reconciliation/ only, one object per day."),
        wildcards=["Resource::*", r"/^Resource::<SecurityReports[A-F0-9]+\.Arn>\/reconciliation\/\*$/"],
    )
    stack.alarms.alarm("ReconciliationMismatches", name=names.alarm(tier, "reconciliation-mismatches"),
                       description=f"The {tier_label} tier's nightly reconciliation found municipality-months that do "
                                   "not balance (ReconciliationMismatches; the report is in the tier's security-reports "
                                   "bucket under reconciliation/): notices lost, doubled or stuck.",
                       metric=custom_metric("ReconciliationMismatches", service=names.service_name(tier),
                                            tier=tier_label),
                       anchor="reconciliation-mismatches")
    return function


def monitoring_scope(stack: TierStack) -> dict:
    """What a tier's monthly report covers (``REPORT_SCOPE``): the national tier itself (with the
    provision functions' service); a prefecture tier itself and its municipality tier when that
    tier is in the same account and region (its metrics are there; it has no bucket of its own)."""
    from ..naming import municipality_tier, prefecture_tier

    names, tier, prefix = stack.names, stack.tier, stack.names.prefix
    if tier == "national":
        return {"tiers": ["national"], "services": {names.provision_service(): "national",
                                                    f"{prefix}-national": "national"}}
    prefecture = next(p for p in stack.deployment.prefectures if prefecture_tier(p.code) == tier)
    tiers = [tier]
    muni = prefecture.municipality_tier.env
    if (muni.account, muni.region) == (stack.tier_env.account, stack.tier_env.region):
        tiers.append(municipality_tier(prefecture.code))
    return {"tiers": tiers, "services": {f"{prefix}-{t}": t for t in tiers}}


def build_monitoring_report(stack: TierStack, *, tier_label: str, reports: SecurityReports) -> TierFunction:
    """The tier's monthly monitoring report (``jukinet.services.monitoring_report``, the 1st at
    09:30 JST): the previous month's report of its scope as Markdown, HTML and CSV under
    ``monitoring-report/<YYYY-MM>/`` in the tier's security-reports bucket (decision 0039). It
    reads CloudWatch metric sums and alarm history, the isolation records, and — nationally —
    the provision log's seals and statistics; it writes nothing else."""
    names, env, tier = stack.names, stack.tier_env, stack.tier
    function_name = names.monitoring_report_function(tier)
    role_arn = names.role_arn(env, tier, function_name)
    partition = cdk_partition()
    isolation = f"arn:{partition}:ssm:{env.region}:{env.account}:parameter/{names.prefix}/isolation"
    own_reports = reports.bucket.arn_for_objects(f"{MONITORING_REPORT_PREFIX}*")
    statements = [
        iam.PolicyStatement(sid="ReadMetricsAndAlarmHistory", actions=MONITORING_READ_ACTIONS, resources=["*"]),
        iam.PolicyStatement(sid="ReadIsolationRecords", actions=ISOLATION_READ_ACTIONS,
                            resources=[isolation, f"{isolation}/*"]),
        iam.PolicyStatement(sid="WriteMonitoringReports", actions=["s3:PutObject"], resources=[own_reports]),
        iam.PolicyStatement(sid="EncryptReports", actions=["kms:GenerateDataKey"], resources=[reports.key.key_arn],
                            conditions={"StringEquals": {"kms:ViaService": f"s3.{env.region}.amazonaws.com"}}),
    ]
    environment = {
        "TIER": tier_label, "TIER_NAME": tier, "DEPLOYMENT": stack.deployment.name, "PREFIX": names.prefix,
        "REPORTS_BUCKET": reports.bucket.bucket_name,
        "REPORT_SCOPE": json.dumps(monitoring_scope(stack), separators=(",", ":")),
        "POWERTOOLS_SERVICE_NAME": names.service_name(tier), "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
        "LOG_LEVEL": "INFO",
    }
    acknowledged = ["Resource::*", r"/^Resource::<SecurityReports[A-F0-9]+\.Arn>\/monitoring-report\/\*$/",
                    r"/^Resource::arn:.*:ssm:.*:parameter\/.*\/isolation\/\*$/"]
    if tier == "national" and stack.deployment.agencies:
        table = lambda t: f"arn:{partition}:dynamodb:{env.region}:{env.account}:table/{t}"  # noqa: E731
        log, state = table(names.provision_log_table()), table(names.provision_state_table())
        statements += [
            # Seals (partition SEALS, SEAL#<hour>), the day index and the entries the seals name:
            # what the statistics are checked against. Read only; the table policy keeps it append-only.
            iam.PolicyStatement(sid="ReadProvisionLog", actions=["dynamodb:Query", "dynamodb:BatchGetItem"],
                                resources=[log, f"{log}/index/*"]),
            iam.PolicyStatement(sid="ReadProvisionStatistics", actions=["dynamodb:Query"], resources=[state],
                                conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["STAT#*"]}}),
        ]
        environment.update({"PROVISION_LOG_TABLE": names.provision_log_table(),
                            "PROVISION_STATE_TABLE": names.provision_state_table()})
        acknowledged.append(r"/^Resource::arn:.*:dynamodb:.*:table\/.*-provision-log\/index\/\*$/")
    # The tier's endpoints: CloudWatch reads and the isolation records by this role alone; puts
    # under monitoring-report/ (the bucket policy narrows writers to the reporting roles).
    only_this_role = {"ArnLike": {"aws:PrincipalArn": [role_arn]}}
    stack.network.allow_through("Monitoring", iam.PolicyStatement(
        sid="MonitoringReportReads", principals=[iam.AnyPrincipal()], actions=MONITORING_READ_ACTIONS,
        resources=["*"], conditions=only_this_role))
    stack.network.allow_through("Ssm", iam.PolicyStatement(
        sid="MonitoringReportReadsIsolations", principals=[iam.AnyPrincipal()], actions=ISOLATION_READ_ACTIONS,
        resources=[isolation, f"{isolation}/*"], conditions=only_this_role))
    stack.network.allow_through("S3", iam.PolicyStatement(
        sid="MonitoringReportWritesReports", principals=[iam.AnyPrincipal()], actions=["s3:PutObject"],
        resources=[own_reports], conditions=only_this_role))
    return _scheduled_function(
        stack, "MonitoringReport", function_name=function_name, handler="jukinet.handlers.monitoring_report.handler",
        description=f"Monthly monitoring report of the {tier_label} tier (the previous month, on the 1st)",
        environment=environment, timeout=Duration.minutes(5), memory_size=512, statements=statements, code=None,
        schedule=MONITORING_REPORT_SCHEDULE,
        schedule_description=f"Monthly monitoring report of the {tier_label} tier (the 1st, 09:30 JST)",
        retry_attempts=2, max_event_age=Duration.hours(6),
        why_no_dlq=("The scheduled event carries nothing but its time; a failed run is retried "
                    "twice and shows in the function's errors; an operator re-runs the month with "
                    "{\"month\": \"YYYY-MM\"}."),
        why_wildcards=("ENI management, X-Ray trace writes and CloudWatch metric and alarm-history reads "
                       "support no resource-level permissions; reports are written under monitoring-report/ only; "
                       "the isolation records are the parameters under /<prefix>/isolation/; the provision log's "
                       "day index."),
        wildcards=acknowledged,
    )


def narrow_processor_endpoints(stack: TierStack, processing: Processing, *, sqs_sid: str, sqs_resources: list[str],
                               kms_actions: list[str], key_envs: Sequence[Environment]) -> None:
    """Endpoint policies of a processing tier: its roles may send only to ``sqs_resources``,
    use only this system's keys (by alias) in ``key_envs``, and touch only its identity table."""
    names = stack.names
    pattern = [stack.role_pattern]
    stack.network.allow_through("Sqs", iam.PolicyStatement(
        sid=sqs_sid, principals=[iam.AnyPrincipal()], actions=["sqs:SendMessage"], resources=sqs_resources,
        conditions={"ArnLike": {"aws:PrincipalArn": pattern}}))
    stack.network.allow_through("Kms", iam.PolicyStatement(
        sid="ThisSystemsKeysOnly", principals=[iam.AnyPrincipal()], actions=kms_actions,
        resources=sorted({names.keys_arn_pattern(e) for e in key_envs}),
        conditions={"ArnLike": {"aws:PrincipalArn": pattern},
                    "ForAnyValue:StringLike": {"kms:ResourceAliases": [names.all_aliases_pattern()]}}))
    table_arn = processing.table.table_arn
    stack.network.allow_through("DynamoDb", iam.PolicyStatement(
        sid="IdentityTableOnly", principals=[iam.AnyPrincipal()], actions=TABLE_ACTIONS,
        resources=[table_arn, f"{table_arn}/index/*"], conditions={"ArnLike": {"aws:PrincipalArn": pattern}}))
