"""The channel between municipalities (issue 16, part 1; docs/decisions/0041, 0042): the
infrastructure of one municipality tier, and the grants the routers and signing keys need.

Per municipality tier (built into its base stack by ``MunicipalityChannel``):

* the **channel queue** ``<prefix>-muni-<code>-channel`` and its dead-letter queue, SSE-KMS
  under the tier's **channel-transport key** (``alias/<prefix>/muni-<code>/channel-transport``),
  TLS only. Only the prefecture's processor (the router that routes down) may send; only the
  channel function may consume. The router is admitted by its role ARN, not by its tier's SQS
  endpoint: the prefecture stack imports this tier's endpoint id, so the reverse import would
  be a cycle (the same holds for the national router at each prefecture's inbound queue);
  the prefecture's endpoint policy still lets its roles send only to named queues;
* the **channel key** ``alias/<prefix>/channel/<prefecture number>``: bodies addressed to this
  tier's municipalities are sealed under a data key of it. Its policy is decision 0041's shape:
  ``kms:Decrypt`` only to this tier's channel function and only with
  ``kms:EncryptionContext:to`` like ``<prefecture number>*``; ``kms:GenerateDataKey`` to each
  municipality tier's channel function with ``kms:EncryptionContext:from`` like its own
  prefecture number. Routers (prefecture, national processors) and the CS functions get
  neither: they carry bodies they cannot open;
* the **channel function** ``<prefix>-muni-<code>-channel`` (``handlers/channel_endpoint.py``):
  event source the channel queue; it answers requests addressed to the tier's municipalities,
  settles answers to their requests and signs with the municipalities' notice-signing keys
  (decision 0042), sending to the prefecture's inbound queue;
* alarms ``channel-dlq-not-empty`` (messages waiting in the DLQ: AWS/SQS, also those SQS moved
  after failed receives), ``channel-dead-letters`` (``ChannelDeadLettered``: each message the
  function dead-lettered with its reason, counted once per content; decision 0047) and
  ``channel-errors`` (docs/operations.md).

Everything crossing a tier boundary is a name from ``naming`` (no stack references).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from ..config import Deployment, Environment, Prefecture
from ..naming import METRICS_NAMESPACE, NATIONAL, SIGNING_ALGORITHM, Names, municipality_tier, prefecture_tier
from . import keys, nag
from .functions import TierFunction
from .monitoring import PERIOD, custom_metric
from .tables import BY_HOUSEHOLD
from .queues import CONSUME_ACTIONS, DATA_KEY_REUSE, DLQ_RETENTION, MAX_RECEIVE_COUNT, visibility_timeout_for

CHANNEL_TIMEOUT = Duration.seconds(30)  # = the default deadline of a request (domain/channel.py)
CHANNEL_MEMORY_MB = 512
CHANNEL_CONCURRENCY = 5
CHANNEL_BATCH_SIZE = 10
DATA_KEY_ACTIONS = ["kms:GenerateDataKey", "kms:Decrypt"]
# What the channel function reads and writes in the card table (adapters/channel_store.py,
# adapters/kms.py TableKeyPins, adapters/card_store.py CardStore.register).
CHANNEL_TABLE_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"]
TRANSPORT_PURPOSE = "channel-transport"
ANSWER_KINDS = ["answer", "refusal"]


def channel_role_arn(names: Names, env: Environment, prefecture_code: str) -> str:
    return names.role_arn(env, municipality_tier(prefecture_code), names.channel_function(prefecture_code))


def channel_table_partitions(prefecture_code: str) -> list[str]:
    """The card-table partitions the channel function may touch (``dynamodb:LeadingKeys``): its
    municipalities' requests and answers, the dead-letter counts, the pinned keys, and the
    register of residents it answers from (read; the statement cannot split actions by key); for
    the wide-area copy (decision 0046) the counter's recorded requests it sends (``COPY#``), its
    record of copies answered for issue elsewhere (``COPY-ELSEWHERE#``) and the cards whose
    status a card proof needs (``CARD#``); for the special move-out/move-in (part 4, decision 0049)
    B's recorded requests it sends (``SPECIAL-IN#``) and A's records of the move-outs it answers from
    and completes (``SPECIAL-OUT#``). The card authentications at B's counter it checks are read
    under their own statement (``ReadCardAuthentications``: ``GetItem`` only) — a channel function
    that could write a ``CHALLENGE#`` item could forge the proof itself."""
    pp = prefecture_code[:2]
    return [f"CHANNEL#{pp}*", f"CHANNEL-IN#{pp}*", "CHANNEL-DEAD#*", "META", "RESIDENT#*", f"COPY#{pp}*",
            f"COPY-ELSEWHERE#{pp}*", "CARD#*", f"SPECIAL-IN#{pp}*", f"SPECIAL-OUT#{pp}*",
            *card_across_tiers_partitions(pp)]


def card_across_tiers_partitions(pp: str) -> list[str]:
    """Cards across tiers (decision 0050): the challenges the home tier issues to counters of other
    tiers (``REMOTE-CHALLENGE#``: never ``CHALLENGE#``, the authentications at the tier's own
    counters, which it may only read — decision 0049), its records and counts of what it answered them (``CALL#``, ``STAT#`` of
    its municipalities) and the card requests its counter recorded for it to send (``CARDREQ#``). A
    carry-over is agreed on the old home's special move-out record (``SPECIAL-OUT#``, above)."""
    return ["REMOTE-CHALLENGE#*", f"CALL#{pp}*", f"STAT#{pp}*", f"CARDREQ#{pp}*"]


LOCAL_RECORD_READ_ACTIONS = ["dynamodb:GetItem", "dynamodb:Query"]


def counter_role_arn(names: Names, env: Environment, prefecture_code: str) -> str:
    """The tier's counter function (handlers/card_api.py): it nudges the channel function and
    opens the answers to its municipalities' requests (decision 0046)."""
    return names.role_arn(env, municipality_tier(prefecture_code), names.card_api(prefecture_code))


def sender_aliases(names: Names, deployment: Deployment) -> list[str]:
    """The signing-key aliases of every municipality that may send on the channel."""
    return sorted({f"{names.signing_alias(p.code[:2])}*" for p in deployment.prefectures})


def verify_channel_senders(names: Names, deployment: Deployment) -> iam.PolicyStatement:
    """``VerifyChannelSenders`` of a router or a channel function: the public key of any
    municipality's signing key (a channel message may come from anywhere; decision 0041's
    consequence), found by alias in the municipality tiers' account (config requires one)."""
    muni_env = deployment.prefectures[0].municipality_tier.env
    return iam.PolicyStatement(sid="VerifyChannelSenders", actions=["kms:GetPublicKey"],
                               resources=[names.keys_arn_pattern(muni_env)],
                               conditions={"ForAnyValue:StringLike": {
                                   "kms:ResourceAliases": sender_aliases(names, deployment)}})


def signing_key_statements(names: Names, deployment: Deployment, prefecture: Prefecture) -> list[iam.PolicyStatement]:
    """What a municipality's notice-signing key (in a CS stack) adds for the channel: its own
    tier's channel function may ``kms:Sign`` (ECDSA only; decision 0042), and every channel hop
    may read its public key — each prefecture's and the national processor (the routers) and
    every municipality tier's channel function. No statement when the deployment has no channel."""
    if not deployment.channel:
        return []
    env = prefecture.municipality_tier.env
    national_env = deployment.national.env
    pref_account = deployment.prefectures[0].env.account  # config: one account for the channel's tiers
    routers = [names.role_arn(Environment(pref_account, env.region), prefecture_tier("*"),
                              names.processor_role(prefecture_tier("*")))]
    channel_functions = [names.role_arn(env, municipality_tier("*"), names.channel_function("*"))]
    national_router = names.role_arn(national_env, NATIONAL, names.processor_role(NATIONAL))
    statements = [
        keys.use_by_roles("ChannelFunctionSigns", env.account, [channel_role_arn(names, env, prefecture.code)],
                          ["kms:Sign"], conditions={"StringEquals": {"kms:SigningAlgorithm": SIGNING_ALGORITHM}}),
        keys.use_by_roles("ChannelHopsVerify", env.account, [*routers, *channel_functions], ["kms:GetPublicKey"]),
    ]
    if national_env.account == env.account:
        statements[1] = keys.use_by_roles("ChannelHopsVerify", env.account,
                                          [*routers, *channel_functions, national_router], ["kms:GetPublicKey"])
    else:
        statements.append(keys.use_by_roles("NationalRouterVerifies", national_env.account, [national_router],
                                            ["kms:GetPublicKey"]))
    return statements


def prefecture_router_statements(names: Names, prefecture: Prefecture) -> list[iam.PolicyStatement]:
    """The prefecture processor's route down: send to its municipality tier's channel queue and
    use that queue's transport key through SQS only (found by alias in the tier's account)."""
    muni_env = prefecture.municipality_tier.env
    return [
        iam.PolicyStatement(sid="RouteDownToMunicipalities", actions=["sqs:SendMessage"],
                            resources=[names.queue_arn(muni_env, names.channel_queue(prefecture.code))]),
        iam.PolicyStatement(sid="ChannelQueueEncryption", actions=DATA_KEY_ACTIONS,
                            resources=[names.keys_arn_pattern(muni_env)],
                            conditions={"StringEquals": {"kms:ViaService": f"sqs.{muni_env.region}.amazonaws.com"},
                                        "ForAnyValue:StringEquals": {"kms:ResourceAliases": [
                                            names.key_alias(municipality_tier(prefecture.code),
                                                            TRANSPORT_PURPOSE)]}}),
    ]


def prefecture_inbound_template(names: Names, deployment: Deployment) -> str:
    """PREFECTURE_INBOUND_URL_TEMPLATE of the national processor: ``{prefecture}`` → a prefecture
    code gives that prefecture's inbound queue URL (config: the prefectures share one account)."""
    env = deployment.prefectures[0].env
    template = names.queue_url(env, names.inbound_queue(prefecture_tier("{prefecture}")))
    for p in deployment.prefectures:
        expected = names.queue_url(p.env, names.inbound_queue(prefecture_tier(p.code)))
        if template.format(prefecture=p.code) != expected:
            raise ValueError(f"prefecture {p.code}: its inbound queue {expected} does not follow {template}")
    return template


def national_router_statements(names: Names, deployment: Deployment) -> list[iam.PolicyStatement]:
    """The national processor's way down: send to each prefecture's inbound queue and use its
    transport key through SQS only."""
    env = deployment.prefectures[0].env
    return [
        iam.PolicyStatement(sid="RouteDownToPrefectures", actions=["sqs:SendMessage"],
                            resources=[names.queue_arn(p.env, names.inbound_queue(prefecture_tier(p.code)))
                                       for p in deployment.prefectures]),
        iam.PolicyStatement(sid="PrefectureQueuesEncryption", actions=DATA_KEY_ACTIONS,
                            resources=[names.keys_arn_pattern(env)],
                            conditions={"StringEquals": {"kms:ViaService": f"sqs.{env.region}.amazonaws.com"},
                                        "ForAnyValue:StringEquals": {"kms:ResourceAliases": [
                                            names.key_alias(prefecture_tier(p.code), "transport")
                                            for p in deployment.prefectures]}}),
    ]


class MunicipalityChannel(Construct):
    """The channel queue, keys, function and alarms of one municipality tier (``stack``: its
    ``MunicipalityBaseStack``)."""

    def __init__(self, scope: Construct, id: str, *, stack) -> None:  # noqa: ANN001 (MunicipalityBaseStack)
        super().__init__(scope, id)
        deployment, prefecture, names = stack.deployment, stack.prefecture, stack.names
        code, env, region = prefecture.code, stack.tier_env, stack.tier_env.region
        tier, pref_tier = stack.tier, prefecture_tier(code)
        pref_env = prefecture.env
        function_name = names.channel_function(code)
        role_arn = channel_role_arn(names, env, code)
        router_arn = names.role_arn(pref_env, pref_tier, names.processor_role(pref_tier))
        counter_arn = counter_role_arn(names, env, code)
        local_table = names.local_record_table(code)
        queue_name = names.channel_queue(code)
        prefecture_queue = names.inbound_queue(pref_tier)
        card_table = names.card_table(code)
        pp = code[:2]
        card_events_alias = names.key_alias(tier, "card-events")
        # Cards of this tier at counters of other tiers (decision 0050): the channel function writes
        # a card's pin_locked and moved events, signed with the tier's card-event key.
        stack.counter.event_key.add_to_resource_policy(keys.use_by_roles(
            "ChannelFunctionSignsCardEvents", env.account, [role_arn], ["kms:Sign"],
            conditions={"StringEquals": {"kms:SigningAlgorithm": SIGNING_ALGORITHM}}))

        # --- keys -----------------------------------------------------------------------------
        self.transport_key = stack.symmetric_key(
            "ChannelTransportKey", purpose=TRANSPORT_PURPOSE,
            description="the channel queue and its dead-letter queue (SQS SSE-KMS)", statements=[
                keys.use_by_roles("PrefectureRouterSends", pref_env.account, [router_arn], DATA_KEY_ACTIONS,
                                  via_services=["sqs"], region=region),
                keys.use_by_roles("ChannelFunctionUses", env.account, [role_arn], DATA_KEY_ACTIONS,
                                  via_services=["sqs"], region=region),
                keys.use_by_roles("CounterNudges", env.account, [counter_arn], DATA_KEY_ACTIONS,
                                  via_services=["sqs"], region=region),
            ])
        seal_statements = [
            keys.use_by_roles(f"ChannelFunctionOf{p.code[:2]}Seals", p.municipality_tier.env.account,
                              [channel_role_arn(names, p.municipality_tier.env, p.code)], ["kms:GenerateDataKey"],
                              conditions={"StringLike": {"kms:EncryptionContext:from": f"{p.code[:2]}*"}})
            for p in sorted(deployment.prefectures, key=lambda p: p.code)
        ]
        self.key = keys.symmetric_key(
            self, "ChannelKey", alias=names.channel_alias(code), account=env.account,
            administrators=stack.administrators,
            description=f"{tier}: seals the channel bodies addressed to the municipalities of prefecture {pp}",
            statements=[
                keys.use_by_roles("ChannelFunctionOpens", env.account, [role_arn], ["kms:Decrypt"],
                                  conditions={"StringLike": {"kms:EncryptionContext:to": f"{pp}*"}}),
                # The counter reads the outcome of its municipalities' requests (decision 0046):
                # answers and refusals addressed to this tier only, never a request's body.
                keys.use_by_roles("CounterOpensAnswers", env.account, [counter_arn], ["kms:Decrypt"],
                                  conditions={"StringLike": {"kms:EncryptionContext:to": f"{pp}*"},
                                              "StringEquals": {"kms:EncryptionContext:channel": ANSWER_KINDS}}),
                *seal_statements,
            ])

        # --- queues -----------------------------------------------------------------------------
        source_arn = names.queue_arn(env, queue_name)  # literal: a reference would cycle with the redrive
        self.dead_letter_queue = sqs.Queue(
            self, "DeadLetters", queue_name=names.dead_letter_queue(queue_name), encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.transport_key, data_key_reuse=DATA_KEY_REUSE, enforce_ssl=True,
            retention_period=DLQ_RETENTION,
            redrive_allow_policy=sqs.RedriveAllowPolicy(
                redrive_permission=sqs.RedrivePermission.BY_QUEUE,
                source_queues=[sqs.Queue.from_queue_arn(self, "SourceQueueRef", source_arn)]),
            removal_policy=RemovalPolicy.RETAIN)
        self.queue = sqs.Queue(
            self, "Queue", queue_name=queue_name, encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.transport_key, data_key_reuse=DATA_KEY_REUSE, enforce_ssl=True,
            retention_period=Duration.days(1), visibility_timeout=visibility_timeout_for(CHANNEL_TIMEOUT),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letter_queue, max_receive_count=MAX_RECEIVE_COUNT),
            removal_policy=RemovalPolicy.RETAIN)
        everyone = [iam.AnyPrincipal()]
        # The tier's operator may send too: ``jukinet redrive`` returns dead letters here (decision
        # 0047; the function verifies every message's signature, so it returns, never makes up).
        operator_arn = names.people_role_arn(env, tier, "operator")
        self.queue.add_to_resource_policy(iam.PolicyStatement(
            sid="DenySendByOtherPrincipals", effect=iam.Effect.DENY, principals=everyone,
            actions=["sqs:SendMessage"], resources=[self.queue.queue_arn],
            conditions={"ArnNotEquals": {"aws:PrincipalArn": [router_arn, counter_arn, operator_arn]}}))
        self.queue.add_to_resource_policy(iam.PolicyStatement(
            sid="DenyConsumeByOtherPrincipals", effect=iam.Effect.DENY, principals=everyone,
            actions=CONSUME_ACTIONS, resources=[self.queue.queue_arn],
            conditions={"ArnNotEquals": {"aws:PrincipalArn": [role_arn]}}))
        for queue in (self.queue, self.dead_letter_queue):  # a purge would erase requests unreconciled
            queue.add_to_resource_policy(iam.PolicyStatement(
                sid="DenyPurgeToEveryone", effect=iam.Effect.DENY, principals=everyone, actions=["sqs:PurgeQueue"],
                resources=[queue.queue_arn]))
        self.queue.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowPrefectureRouter", principals=[iam.AccountPrincipal(pref_env.account)],
            actions=["sqs:SendMessage"], resources=[self.queue.queue_arn],
            conditions={"ArnEquals": {"aws:PrincipalArn": router_arn}}))

        # --- the function -------------------------------------------------------------------------
        keys_arn = names.keys_arn_pattern(env)
        self.function = TierFunction(
            self, "Function", function_name=function_name, role_name=function_name, role_path=names.role_path(tier),
            handler="jukinet.handlers.channel_endpoint.handler",
            description=f"Channel of {tier}: answers requests to its municipalities, settles their answers",
            environment={
                "PREFECTURE_CODE": code,
                "TABLE_NAME": card_table,
                "CHANNEL_KEY_ID": self.key.key_arn,
                "CHANNEL_KEY_ALIAS_PREFIX": names.channel_alias_prefix(),
                "SIGNING_KEY_ALIAS_PREFIX": names.signing_alias(""),
                "SENDER_KEY_ALIAS_PREFIX": names.signing_alias_arn_prefix(env),
                "OUTBOUND_QUEUE_URL": names.queue_url(pref_env, prefecture_queue),
                "DEAD_LETTER_QUEUE_URL": self.dead_letter_queue.queue_url,
                "LOCAL_RECORDS_TABLE_NAME": local_table,
                "CARD_EVENT_KEY_ID": stack.counter.event_key.key_arn,
                "POWERTOOLS_SERVICE_NAME": names.service_name(tier),
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                "LOG_LEVEL": "INFO",
            },
            timeout=CHANNEL_TIMEOUT, memory_size=CHANNEL_MEMORY_MB, reserved_concurrency=CHANNEL_CONCURRENCY,
            network=stack.network, log_key=stack.audit_key, log_retention=stack.log_retention,
            statements=[
                iam.PolicyStatement(sid="ConsumeChannelQueue", resources=[self.queue.queue_arn], actions=[
                    "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes"]),
                iam.PolicyStatement(sid="DeadLetterChannelMessages", actions=["sqs:SendMessage"],
                                    resources=[self.dead_letter_queue.queue_arn]),
                iam.PolicyStatement(sid="ChannelQueueEncryption", actions=DATA_KEY_ACTIONS,
                                    resources=[self.transport_key.key_arn],
                                    conditions={"StringEquals": {"kms:ViaService": f"sqs.{region}.amazonaws.com"}}),
                iam.PolicyStatement(sid="SendToPrefecture", actions=["sqs:SendMessage"],
                                    resources=[names.queue_arn(pref_env, prefecture_queue)]),
                iam.PolicyStatement(sid="PrefectureQueueEncryption", actions=DATA_KEY_ACTIONS,
                                    resources=[names.keys_arn_pattern(pref_env)],
                                    conditions={"StringEquals": {"kms:ViaService": f"sqs.{region}.amazonaws.com"},
                                                "ForAnyValue:StringEquals": {"kms:ResourceAliases": [
                                                    names.key_alias(pref_tier, "transport")]}}),
                iam.PolicyStatement(sid="SignAsOwnMunicipalities", actions=["kms:Sign"], resources=[keys_arn],
                                    conditions={"StringEquals": {"kms:SigningAlgorithm": SIGNING_ALGORITHM},
                                                "ForAnyValue:StringEquals": {"kms:ResourceAliases": sorted(
                                                    names.signing_alias(m.code)
                                                    for m in prefecture.municipality_tier.municipalities)}}),
                verify_channel_senders(names, deployment),
                iam.PolicyStatement(sid="SignCardEvents", actions=["kms:Sign"],
                                    resources=[stack.counter.event_key.key_arn],
                                    conditions={"StringEquals": {"kms:SigningAlgorithm": SIGNING_ALGORITHM}}),
                iam.PolicyStatement(sid="SealForReaders", actions=["kms:GenerateDataKey"], resources=[keys_arn],
                                    conditions={"StringLike": {"kms:EncryptionContext:from": f"{pp}*"},
                                                "ForAnyValue:StringEquals": {"kms:ResourceAliases": sorted(
                                                    names.channel_alias(p.code) for p in deployment.prefectures)}}),
                iam.PolicyStatement(sid="OpenBodiesAddressedHere", actions=["kms:Decrypt"],
                                    resources=[self.key.key_arn],
                                    conditions={"StringLike": {"kms:EncryptionContext:to": f"{pp}*"}}),
                iam.PolicyStatement(sid="ChannelRecords", actions=CHANNEL_TABLE_ACTIONS,
                                    resources=[names.table_arn(env, card_table)],
                                    conditions={"ForAllValues:StringLike": {
                                        "dynamodb:LeadingKeys": channel_table_partitions(code)}}),
                # A's check of a special move-in's card authentication at B's counter (decision 0049): read only.
                iam.PolicyStatement(sid="ReadCardAuthentications", actions=["dynamodb:GetItem"],
                                    resources=[names.table_arn(env, card_table)],
                                    conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["CHALLENGE#*"]},
                                                "Null": {"dynamodb:LeadingKeys": "false"}}),
                # A's answer to a wide-area copy: read its municipalities' local records (decision 0046).
                iam.PolicyStatement(sid="ReadLocalRecords", actions=LOCAL_RECORD_READ_ACTIONS,
                                    resources=[names.table_arn(env, local_table),
                                               f"{names.table_arn(env, local_table)}/index/{BY_HOUSEHOLD}"],
                                    conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"MUNI#{pp}*"]},
                                                "Null": {"dynamodb:LeadingKeys": "false"}}),
            ])
        lambda_.EventSourceMapping(
            self, "QueueMapping", target=self.function.function, event_source_arn=self.queue.queue_arn,
            batch_size=CHANNEL_BATCH_SIZE, report_batch_item_failures=True, max_concurrency=CHANNEL_CONCURRENCY,
            enabled=True)
        nag.acknowledge(self.function.function, [
            ("NIST.800.53.R5-LambdaDLQ",
             ("Invoked synchronously by an SQS event source mapping, never asynchronously: failed messages go to the "
              "channel queue's dead-letter queue by its redrive policy, undeliverable ones by the handler itself.")),
        ])
        nag.acknowledge(self.function.policy, [
            ("AwsSolutions-IAM5", ("ENI management (Lambda in a VPC) and X-Ray trace writes support no resource-level "
             "permissions."), ["Resource::*"]),
            ("AwsSolutions-IAM5", ("Signing keys (this tier's municipalities), the senders' public keys and the "
             "channel keys of the reader tiers are found by alias; the wildcard key ARN is narrowed by "
             "kms:ResourceAliases to exactly those aliases."), [f"Resource::{keys_arn}"]),
            ("AwsSolutions-IAM5", ("The prefecture's inbound-queue key is found by alias in the prefecture's account; "
             "the wildcard key ARN is narrowed by kms:ResourceAliases to that one alias."),
             [f"Resource::{names.keys_arn_pattern(pref_env)}"]),
        ], apply_to_children=True)

        # --- what the tier's endpoints let the function do ---------------------------------------
        stack.network.allow_through("DynamoDb", iam.PolicyStatement(
            sid="ChannelReadsLocalRecords", principals=everyone, actions=LOCAL_RECORD_READ_ACTIONS,
            resources=[names.table_arn(env, local_table), f"{names.table_arn(env, local_table)}/index/{BY_HOUSEHOLD}"],
            conditions={"ArnLike": {"aws:PrincipalArn": [role_arn]}}))
        stack.network.allow_through("Sqs", iam.PolicyStatement(
            sid="CounterNudgesChannel", principals=everyone, actions=["sqs:SendMessage"],
            resources=[self.queue.queue_arn], conditions={"ArnLike": {"aws:PrincipalArn": [counter_arn]}}))
        stack.network.allow_through("Kms", iam.PolicyStatement(
            sid="CounterOpensAnswers", principals=everyone, actions=["kms:Decrypt"], resources=[keys_arn],
            conditions={"ArnLike": {"aws:PrincipalArn": [counter_arn]},
                        "ForAnyValue:StringLike": {"kms:ResourceAliases": [names.channel_alias(code)]}}))
        stack.network.allow_through("Sqs", iam.PolicyStatement(
            sid="ChannelDeadLetters", principals=everyone, actions=["sqs:SendMessage"],
            resources=[names.queue_arn(env, names.dead_letter_queue(queue_name))],
            conditions={"ArnLike": {"aws:PrincipalArn": [role_arn]}}))
        stack.network.allow_through("Kms", iam.PolicyStatement(
            sid="ChannelKeysByAlias", principals=everyone,
            actions=["kms:Sign", "kms:GetPublicKey", "kms:GenerateDataKey", "kms:Decrypt"], resources=[keys_arn],
            conditions={"ArnLike": {"aws:PrincipalArn": [role_arn]},
                        "ForAnyValue:StringLike": {"kms:ResourceAliases": [
                            f"{names.signing_alias('')}*", f"{names.channel_alias_prefix()}*", card_events_alias]}}))

        # --- alarms -------------------------------------------------------------------------------
        tier_name = f"{names.prefix}-{tier}"
        stack.alarms.queue_alarms("Channel", tier_name=tier_name, queue_label="channel",
                                  dead_letter_queue=self.dead_letter_queue)
        stack.alarms.alarm("ChannelDeadLetters", name=names.alarm(tier, "channel-dead-letters"),
                           description=f"{function_name} dead-lettered a channel message with its reason "
                                       "(ChannelDeadLettered: unverifiable, past its deadline, not openable here, a "
                                       "reused correlation id, an answer to no request).",
                           metric=custom_metric("ChannelDeadLettered", service=names.service_name(tier),
                                                tier="municipality"))
        stack.alarms.alarm("ChannelErrors", name=names.alarm(tier, "channel-errors"),
                           description=f"{function_name} failed invocations (a whole batch raised: KMS, DynamoDB "
                                       "or SQS unavailable or refusing).",
                           metric=self.function.function.metric_errors(period=PERIOD,
                                                                       statistic=cloudwatch.Stats.SUM))
