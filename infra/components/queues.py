"""A tier's inbound queue and its dead-letter queue; the only door between two tiers.

The queue policy admits a message only when BOTH hold — each as an explicit Deny, because
an Allow-only policy admits any endpoint and any principal the sender's IAM allows:

* it came through the sending tier's SQS interface endpoint (``aws:SourceVpce``), and
* it was sent by one of the sending tier's function roles (``aws:PrincipalArn`` by role path).

Consuming (receive, delete, change visibility, purge) is likewise denied to everyone but
this tier's own function roles. TLS is enforced on every action (CDK ``enforceSSL``).

The channel between municipalities (docs/decisions/0041, ``components/channel.py``) adds
routers: the national processor routes channel messages down into each prefecture's inbound
queue. A router is admitted by its exact role ARN (``router_role_arns``), not by its tier's SQS
endpoint: the national stack imports the prefectures' endpoint ids, so the prefecture importing
the national one would be a cycle. Its own tier's endpoint policy still names the queues it may
send to, and what it sends is verified like any message.

One exception, for sending only: the tier's operator role (``redrive_role_arns``) may put a
dead-lettered message back (``jukinet redrive``, docs/decisions/0022-*) from wherever the
operator works. What it sends is checked like any message — the processor verifies the
sender's signature — so the role can return signed messages, not make them up.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from ..naming import PARTITION

MAX_RECEIVE_COUNT = 5
DLQ_RETENTION = Duration.days(14)
# SQS reuses a data key per principal for this long: fewer KMS calls on a busy pipeline.
DATA_KEY_REUSE = Duration.hours(1)
CONSUME_ACTIONS = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:PurgeQueue"]


def visibility_timeout_for(function_timeout: Duration) -> Duration:
    """AWS's guidance for SQS event sources: at least six times the function timeout."""
    return Duration.seconds(6 * function_timeout.to_seconds())


class InboundQueue(Construct):
    def __init__(self, scope: Construct, id: str, *, queue_name: str, dead_letter_queue_name: str, key: kms.IKey,
                 function_timeout: Duration,
                 sender_endpoint_ids: Sequence[str], sender_accounts: Sequence[str],
                 sender_role_patterns: Sequence[str], consumer_role_patterns: Sequence[str],
                 redrive_role_arns: Sequence[str] = (), router_role_arns: Sequence[str] = ()) -> None:
        super().__init__(scope, id)
        env = Stack.of(self)
        # A literal ARN: a reference to the queue would make a cycle with its redrive policy.
        source_arn = f"arn:{PARTITION}:sqs:{env.region}:{env.account}:{queue_name}"
        self.dead_letter_queue = sqs.Queue(
            self, "DeadLetters", queue_name=dead_letter_queue_name, encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            data_key_reuse=DATA_KEY_REUSE, enforce_ssl=True, retention_period=DLQ_RETENTION,
            redrive_allow_policy=sqs.RedriveAllowPolicy(
                redrive_permission=sqs.RedrivePermission.BY_QUEUE,
                source_queues=[sqs.Queue.from_queue_arn(self, "SourceQueueRef", source_arn)]),
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.queue = sqs.Queue(
            self, "Queue", queue_name=queue_name, encryption=sqs.QueueEncryption.KMS, encryption_master_key=key,
            data_key_reuse=DATA_KEY_REUSE, enforce_ssl=True, retention_period=Duration.days(4),
            visibility_timeout=visibility_timeout_for(function_timeout),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letter_queue, max_receive_count=MAX_RECEIVE_COUNT),
            removal_policy=RemovalPolicy.RETAIN,
        )
        everyone = [iam.AnyPrincipal()]
        exempt = [*redrive_role_arns, *router_role_arns]
        self.queue.add_to_resource_policy(iam.PolicyStatement(
            sid="DenySendOutsideSendingTierEndpoint", effect=iam.Effect.DENY, principals=everyone,
            actions=["sqs:SendMessage"], resources=[self.queue.queue_arn],
            conditions={"StringNotEquals": {"aws:SourceVpce": list(sender_endpoint_ids)},
                        **({"ArnNotEquals": {"aws:PrincipalArn": exempt}} if exempt else {})},
        ))
        self.queue.add_to_resource_policy(iam.PolicyStatement(
            sid="DenySendByOtherPrincipals", effect=iam.Effect.DENY, principals=everyone,
            actions=["sqs:SendMessage"], resources=[self.queue.queue_arn],
            conditions={"ArnNotLike": {"aws:PrincipalArn": [*sender_role_patterns, *exempt]}},
        ))
        if router_role_arns:
            self.queue.add_to_resource_policy(iam.PolicyStatement(
                sid="AllowChannelRouters",
                principals=[iam.AccountPrincipal(a) for a in sorted({r.split(":")[4] for r in router_role_arns})],
                actions=["sqs:SendMessage"], resources=[self.queue.queue_arn],
                conditions={"ArnEquals": {"aws:PrincipalArn": list(router_role_arns)}},
            ))
        self.queue.add_to_resource_policy(iam.PolicyStatement(
            sid="DenyConsumeByOtherPrincipals", effect=iam.Effect.DENY, principals=everyone,
            actions=CONSUME_ACTIONS, resources=[self.queue.queue_arn],
            conditions={"ArnNotLike": {"aws:PrincipalArn": list(consumer_role_patterns)}},
        ))
        self.queue.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowSendingTierRoles", principals=[iam.AccountPrincipal(a) for a in sorted(set(sender_accounts))],
            actions=["sqs:SendMessage"], resources=[self.queue.queue_arn],
            conditions={"ArnLike": {"aws:PrincipalArn": list(sender_role_patterns)}},
        ))
