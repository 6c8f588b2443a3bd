"""The prefecture server tier (都道府県サーバ) of one prefecture."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from ..components import keys, nag
from ..components.channel import prefecture_router_statements, verify_channel_senders
from ..components.dashboard import TierDashboard
from ..config import Deployment, Prefecture
from ..naming import NATIONAL, PARTITION, SIGNING_ALGORITHM, Names, municipality_tier, prefecture_tier
from .processing import (
    Senders,
    WatchedCounts,
    build_processing,
    narrow_processor_endpoints,
    send_upward_statements,
)
from .provision import STAGE
from .tier import DYNAMODB, KMS, MONITORING, REPORT_ONLY_ENDPOINTS, S3, SQS, SSM, TierStack


class PrefectureStack(TierStack):
    """Receives the municipalities' signed notices, stores them, forwards them signed to the nation.

    ``sender_endpoint_id``: the municipality tier's SQS endpoint (an import when both tiers
    share account and region, else ``MunicipalityTier.sqs_endpoint_id``).
    """

    def __init__(self, scope: Construct, *, deployment: Deployment, prefecture: Prefecture, host_trail: bool,
                 sender_endpoint_id: str) -> None:
        code = prefecture.code
        tier = prefecture_tier(code)
        super().__init__(
            scope, deployment=deployment, tier=tier, env=prefecture.env, network=prefecture.network,
            stack_name=Names.of(deployment).prefecture_stack(code), host_trail=host_trail,
            description=f"jukinet: prefecture server tier of {prefecture.name_en} ({code})",
            interface_endpoints={"Sqs": SQS, "Kms": KMS, "Monitoring": MONITORING, "Ssm": SSM},
            gateway_endpoints={"DynamoDb": DYNAMODB, "S3": S3}, single_az_endpoints=REPORT_ONLY_ENDPOINTS,
        )
        names, env, region = self.names, prefecture.env, prefecture.env.region
        muni = prefecture.municipality_tier
        national_env = deployment.national.env
        national_queue = names.inbound_queue(NATIONAL)
        processor_role_arn = names.role_arn(env, tier, names.processor_role(tier))

        self.signing_key = keys.signing_key(
            self, "SigningKey", alias=names.signing_alias(code), account=env.account,
            administrators=self.administrators, description=f"{tier}: signs the notices forwarded to the nation",
            statements=[
                keys.use_by_roles("ProcessorSigns", env.account, [processor_role_arn], ["kms:Sign"],
                                  conditions={"StringEquals": {"kms:SigningAlgorithm": SIGNING_ALGORITHM}}),
                keys.use_by_roles("NationalVerifies", national_env.account,
                                  [names.role_arn_pattern(national_env, NATIONAL)], ["kms:GetPublicKey"]),
            ],
        )
        muni_tier = municipality_tier(code)
        # The channel between municipalities (decision 0041): the processor routes channel
        # messages down to its municipality tier's channel queue, and the national router sends
        # channel messages for this prefecture's municipalities into the inbound queue.
        channel = deployment.channel
        channel_queue = names.channel_queue(code)
        national_router = names.role_arn(national_env, NATIONAL, names.processor_role(NATIONAL))
        self.processing = build_processing(
            self, tier_label="prefecture", handler="jukinet.handlers.prefecture_processor.handler",
            description=f"Prefecture server of {prefecture.name_en} ({code}): verify, store, forward",
            senders=Senders(endpoint_ids=[sender_endpoint_id],
                            role_patterns_by_account={muni.env.account: [names.role_arn_pattern(muni.env, muni_tier)]},
                            router_role_arns=[national_router] if channel else []),
            envelope_context={"tier": "prefecture", "prefecture": code},
            environment={
                "PREFECTURE_CODE": code,
                "SIGNING_KEY_ID": self.signing_key.key_arn,
                "SENDER_KEY_ALIAS_PREFIX": names.signing_alias_arn_prefix(muni.env),
                "FORWARD_QUEUE_URL": names.queue_url(national_env, national_queue),
                **({"CHANNEL_QUEUE_URL": names.queue_url(muni.env, channel_queue)} if channel else {}),
            },
            statements=[
                *send_upward_statements(
                    sids=("SignForwardedMessages", "ForwardToNational", "NationalQueueEncryption"),
                    signing_key_arn=self.signing_key.key_arn,
                    queue_arn=names.queue_arn(national_env, national_queue),
                    queue_key_pattern=names.keys_arn_pattern(national_env),
                    queue_key_alias=names.key_alias(NATIONAL, "transport"), region=region),
                *([*prefecture_router_statements(names, prefecture), verify_channel_senders(names, deployment)]
                  if channel else []),
            ],
            concurrency=prefecture.processor_concurrency,
            # Municipality codes start with the prefecture number; the handler checks the exact sender.
            sender_public_keys=(muni.env, [f"{names.signing_alias(code[:2])}*"]),
            watched=[WatchedCounts(muni.env, names.cs_state_table(code), tuple(m.code for m in muni.municipalities),
                                   channel_table=names.card_table(code) if deployment.channel else "")],
        )
        p = self.processing
        nag.acknowledge(p.processor.policy, [
            ("AwsSolutions-IAM5", ("The national queue's key is found by alias in the national account; the wildcard "
             "key ARN is narrowed by kms:ResourceAliases to that one alias."),
             [f"Resource::{names.keys_arn_pattern(national_env)}"]),
            *([("AwsSolutions-IAM5", ("The channel queue's key and the channel senders' public keys are found by "
               "alias in the municipality tiers' account; the wildcard key ARN is narrowed by kms:ResourceAliases "
               "to those aliases."), [f"Resource::{names.keys_arn_pattern(muni.env)}"])] if channel else []),
        ], apply_to_children=True)

        narrow_processor_endpoints(
            self, p, sqs_sid="SendToNationalAndOwnDeadLetters",
            sqs_resources=[names.queue_arn(national_env, national_queue), p.inbound.dead_letter_queue.queue_arn,
                           *([names.queue_arn(muni.env, channel_queue)] if channel else [])],
            kms_actions=["kms:Sign", "kms:GetPublicKey", "kms:GenerateDataKey", "kms:Decrypt"], key_envs=[env, muni.env])

        self.api_endpoint: ec2.InterfaceVpcEndpoint | None = None
        own_use = deployment.own_use_recipients(code)
        if own_use:
            self.api_endpoint = self._provision_api_endpoint(prefecture, [p for r in own_use for p in r.all_principals])
        TierDashboard(self, "Dashboard", stack=self, tier_label="prefecture", processing=self.processing)

    def _provision_api_endpoint(self, prefecture: Prefecture, principals: list[str]) -> ec2.InterfaceVpcEndpoint:
        """The execute-api endpoint through which the prefecture's own staff (its own-use and
        disclosure roles) call the national provision API; the API's resource policy admits it."""
        names, national_env = self.names, self.deployment.national.env
        endpoint = self.network.add_client_endpoint(
            "ExecuteApi", ec2.InterfaceVpcEndpointAwsService.APIGATEWAY, client_cidrs=prefecture.api_clients,
            description="execute-api endpoint: HTTPS in from the prefecture staff networks")
        # The API's id is not known here (the national stack imports this endpoint's id), so the
        # policy names the national account's v1 stages and the prefecture's own roles.
        endpoint.add_to_policy(iam.PolicyStatement(
            sid="OwnUseAndDisclosureStaffToProvisionApi", principals=[iam.AnyPrincipal()],
            actions=["execute-api:Invoke"],
            resources=[f"arn:{PARTITION}:execute-api:{national_env.region}:{national_env.account}:*/{STAGE}/*"],
            conditions={"ArnLike": {"aws:PrincipalArn": sorted(set(principals))}}))
        cdk.CfnOutput(self, "ExecuteApiEndpointId", value=endpoint.vpc_endpoint_id,
                      description="This tier's execute-api endpoint: the national provision API admits it",
                      export_name=names.execute_api_endpoint_export(self.tier))
        return endpoint
