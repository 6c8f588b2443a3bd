"""The national server tier (全国サーバ, 指定情報処理機関)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from constructs import Construct

from ..components import nag
from ..components.channel import national_router_statements, prefecture_inbound_template, verify_channel_senders
from ..components.dashboard import TierDashboard
from ..config import Deployment
from ..naming import NATIONAL, Names, prefecture_tier
from .processing import Senders, WatchedCounts, build_processing, narrow_processor_endpoints
from .provision import ProvisionApi
from .tier import DYNAMODB, KMS, MONITORING, REPORT_ONLY_ENDPOINTS, S3, SQS, SSM, TierStack


class NationalStack(TierStack):
    """Receives the prefectures' signed notices and keeps the nationwide copy; serves the
    provision API to the configured recipients (``provision.py``) when there are any.

    ``sender_endpoint_ids``: each prefecture tier's SQS endpoint (imports or configuration).
    ``prefecture_api_endpoints``: prefecture code → its tier's execute-api endpoint id, for the
    prefectures with own-use recipients (imports or configuration).
    """

    def __init__(self, scope: Construct, *, deployment: Deployment, host_trail: bool,
                 sender_endpoint_ids: Sequence[str], prefecture_api_endpoints: Mapping[str, str] | None = None) -> None:
        national = deployment.national
        provides = bool(deployment.agencies)
        super().__init__(
            scope, deployment=deployment, tier=NATIONAL, env=national.env, network=national.network,
            stack_name=Names.of(deployment).national_stack(), host_trail=host_trail,
            description="jukinet: national server tier", interface_endpoints={"Sqs": SQS, "Kms": KMS, "Monitoring": MONITORING, "Ssm": SSM},
            gateway_endpoints={"DynamoDb": DYNAMODB, "S3": S3}, single_az_endpoints=REPORT_ONLY_ENDPOINTS,
        )
        names, env = self.names, national.env
        patterns: dict[str, list[str]] = defaultdict(list)
        for p in deployment.prefectures:
            patterns[p.env.account].append(names.role_arn_pattern(p.env, prefecture_tier(p.code)))
        prefecture_env = deployment.prefectures[0].env  # one account for all prefectures (config validates)
        codes = [p.code for p in deployment.prefectures]
        # The channel between municipalities (decision 0041): route down to each prefecture's
        # inbound queue; verify the originating municipality of every channel message.
        channel = deployment.channel
        muni_envs = [p.municipality_tier.env for p in deployment.prefectures]
        self.processing = build_processing(
            self, tier_label="national", handler="jukinet.handlers.national_processor.handler",
            description="National server: verify and store the prefectures' notices",
            senders=Senders(endpoint_ids=list(sender_endpoint_ids), role_patterns_by_account=dict(patterns)),
            envelope_context={"tier": "national"},
            environment={
                "SENDER_KEY_ALIAS_PREFIX": names.signing_alias_arn_prefix(prefecture_env),
                "ALLOWED_PREFECTURES": ",".join(codes),
                **({"PREFECTURE_INBOUND_URL_TEMPLATE": prefecture_inbound_template(names, deployment)}
                   if channel else {}),
            },
            statements=[*national_router_statements(names, deployment), verify_channel_senders(names, deployment)]
            if channel else [],
            concurrency=national.processor_concurrency,
            sender_public_keys=(prefecture_env, [names.signing_alias(c) for c in codes]),
            watched=[WatchedCounts(p.municipality_tier.env, names.cs_state_table(p.code),
                                   tuple(m.code for m in p.municipality_tier.municipalities),
                                   (names.identity_table(prefecture_tier(p.code)),), p.env)
                     for p in deployment.prefectures],
        )
        if channel:
            nag.acknowledge(self.processing.processor.policy, [
                ("AwsSolutions-IAM5", ("The prefectures' inbound-queue keys and the channel senders' public keys are "
                 "found by alias in the prefectures' and municipality tiers' account; the wildcard key ARN is "
                 "narrowed by kms:ResourceAliases to those aliases."),
                 sorted({f"Resource::{names.keys_arn_pattern(e)}" for e in [prefecture_env, *muni_envs]})),
            ], apply_to_children=True)
        narrow_processor_endpoints(
            self, self.processing, sqs_sid="OwnDeadLettersOnly",
            sqs_resources=[self.processing.inbound.dead_letter_queue.queue_arn,
                           *(names.queue_arn(p.env, names.inbound_queue(prefecture_tier(p.code)))
                             for p in deployment.prefectures if channel)],
            kms_actions=["kms:GetPublicKey", "kms:GenerateDataKey", "kms:Decrypt", *(["kms:Sign"] if provides else [])],
            key_envs=[env, prefecture_env, *(muni_envs if channel else [])])
        self.provision: ProvisionApi | None = None
        if provides:
            self.provision = ProvisionApi(self, "Provision", processing=self.processing,
                                          prefecture_api_endpoints=prefecture_api_endpoints or {})
        TierDashboard(self, "Dashboard", stack=self, tier_label="national", processing=self.processing,
                      provision=self.provision)
