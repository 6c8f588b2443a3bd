"""The counter API (窓口) of one municipality tier: resident cards (住基カード; docs/card.md).

A private REST API (IAM/SigV4) reachable only through this tier's own ``execute-api``
interface endpoint, whose security group admits HTTPS from the municipalities' networks (the
same networks as ``upload_cidrs``, over the site-to-site VPN or Direct Connect) and the VPC.
Callers: one counter-staff role per municipality (``<prefix>-counter-<code>``, listed by
``jukinet access-review``), and the tier's operator role for suspensions around the clock.
Behind it one function, ``<prefix>-muni-<code>-counter``; the card table and its own CMK; the
card-event signing key (decision 0026: never a municipality's notice-signing key).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from ..bundling import lambda_code
from ..naming import METRICS_NAMESPACE, PARTITION, PROVISION_API_STAGE, SIGNING_ALGORITHM, municipality_tier
from . import keys, nag
from .functions import TierFunction
from .monitoring import PERIOD, custom_metric
from .tables import card_table

NAMES_FILE = "municipality-names.json"  # beside the code: code → name, for the wide-area copy
STAGE = PROVISION_API_STAGE  # the same stage name as the provision API: routes carry their version
DOC = "docs/card.md"
API_TIMEOUT = Duration.seconds(29)
COUNTER_MEMORY_MB = 512
COUNTER_CONCURRENCY = 10
COUNTER_SESSION = Duration.hours(12)  # a counter's working day
# A stolen card tried at many counters, or a terminal replaying answers: refusals of card
# authentication across the tier in five minutes above this raise the alarm.
AUTH_REFUSAL_BURST = 10
TABLE_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                 "dynamodb:Query", "dynamodb:ConditionCheckItem"]
# The CS keeps the tier's register of residents: it reads the items it is about to move
# (BatchGetItem) and puts them whole in transactions of conditional puts (TransactWriteItems is
# authorised as the PutItem of each item). Nothing else: no UpdateItem, DeleteItem or Query.
REGISTER_ACTIONS = ["dynamodb:BatchGetItem", "dynamodb:PutItem"]
# (method, path): every route of lambdas/jukinet/handlers/card_api.py.
ROUTES = (
    ("POST", "/v1/cards"), ("POST", "/v1/cards/{serial}/suspension"), ("POST", "/v1/cards/{serial}/resumption"),
    ("POST", "/v1/cards/{serial}/revocation"), ("POST", "/v1/cards/{serial}/expiry"),
    ("POST", "/v1/cards/{serial}/pin-reset"), ("POST", "/v1/challenges"), ("POST", "/v1/authentications"),
    ("POST", "/v1/challenges/{challenge_id}/pin-failure"),
    ("POST", "/v1/wide-area-copies"), ("GET", "/v1/wide-area-copies/{correlation}"),
    # the special move-out/move-in (docs/second-phase.md part 4)
    ("POST", "/v1/special-move-outs"), ("GET", "/v1/special-move-outs/{resident_code}"),
    ("POST", "/v1/special-move-outs/{resident_code}/cancellation"),
    ("POST", "/v1/special-move-ins"), ("GET", "/v1/special-move-ins/{correlation}"),
    ("POST", "/v1/special-move-ins/{correlation}/move-in"),
    ("POST", "/v1/remote-authentications"), ("GET", "/v1/remote-authentications/{auth_id}"),
    ("POST", "/v1/remote-authentications/{auth_id}/answer"),
    ("POST", "/v1/remote-authentications/{auth_id}/pin-failure"),
)
OPERATOR_ROUTES = (("POST", "/v1/cards/{serial}/suspension"),)
ACCESS_LOG_FORMAT = ('{"requestId":"$context.requestId","ip":"$context.identity.sourceIp",'
                     '"caller":"$context.identity.userArn","vpce":"$context.identity.vpceId",'
                     '"method":"$context.httpMethod","path":"$context.resourcePath","status":"$context.status",'
                     '"errorResponseType":"$context.error.responseType","requestTime":"$context.requestTime"}')


def municipality_names(deployment) -> bytes:  # noqa: ANN001 (config.Deployment)
    """Every municipality of the deployment by code (the issuing and the home municipality of a copy)."""
    names = {m.code: m.name for p in deployment.prefectures for m in p.municipality_tier.municipalities}
    return json.dumps(dict(sorted(names.items())), ensure_ascii=False, indent=0).encode()


def route_arn(method: str, path: str) -> str:
    parts = ["*" if p.startswith("{") else p for p in path.strip("/").split("/")]
    return f"execute-api:/{STAGE}/{method}/{'/'.join(parts)}"


def resource_policy(counter_roles: Sequence[str], operator_roles: Sequence[str],
                    endpoint_id: str) -> iam.PolicyDocument:
    """Counter roles on every route, the operator on suspensions only, nobody outside the endpoint."""
    anyone, invoke = [iam.AnyPrincipal()], ["execute-api:Invoke"]
    operator_only = [route_arn(m, p) for m, p in OPERATOR_ROUTES]
    others = [route_arn(m, p) for m, p in ROUTES if (m, p) not in OPERATOR_ROUTES]
    statements = [
        iam.PolicyStatement(sid="AllowCounterStaff", principals=[iam.ArnPrincipal(a) for a in counter_roles],
                            actions=invoke, resources=[route_arn(m, p) for m, p in ROUTES]),
        iam.PolicyStatement(sid="DenyOutsideTheTiersEndpoint", effect=iam.Effect.DENY, principals=anyone,
                            actions=invoke, resources=["execute-api:/*"],
                            conditions={"StringNotEquals": {"aws:SourceVpce": endpoint_id}}),
        iam.PolicyStatement(sid="DenyCardRoutesToOthers", effect=iam.Effect.DENY, principals=anyone, actions=invoke,
                            resources=others, conditions={"ArnNotLike": {"aws:PrincipalArn": list(counter_roles)}}),
    ]
    if operator_roles:
        statements.insert(1, iam.PolicyStatement(
            sid="AllowOperatorSuspensions", principals=[iam.ArnPrincipal(a) for a in operator_roles],
            actions=invoke, resources=operator_only))
        statements.append(iam.PolicyStatement(
            sid="DenySuspensionsToOthers", effect=iam.Effect.DENY, principals=anyone, actions=invoke,
            resources=operator_only,
            conditions={"ArnNotLike": {"aws:PrincipalArn": [*counter_roles, *operator_roles]}}))
    return iam.PolicyDocument(statements=statements)


class CounterApi(Construct):
    def __init__(self, scope: Construct, id: str, *, stack, client_cidrs: Sequence[str],
                 api_logging_role: bool) -> None:
        super().__init__(scope, id)
        names, prefecture = stack.names, stack.prefecture
        pcode, env = prefecture.code, stack.tier_env
        tier = municipality_tier(pcode)
        municipalities = sorted(m.code for m in prefecture.municipality_tier.municipalities)
        api_name = names.card_api(pcode)
        table_name = names.card_table(pcode)
        role_arn = names.role_arn(env, tier, api_name)
        operator_role = names.people_role(tier, "operator")
        operator_arn = names.people_role_arn(env, tier, "operator")
        counter_arns = [names.counter_role_arn(env, pcode, c) for c in municipalities]

        self.key = stack.symmetric_key("CardKey", purpose="cards", description="the card table",
                                       statements=[keys.use_through_dynamodb(env.account, env.region)])
        self.table = card_table(self, "CardTable", table_name=table_name, key=self.key)
        self.event_key = keys.signing_key(
            self, "CardEventKey", alias=names.key_alias(tier, "card-events"), account=env.account,
            administrators=stack.administrators,
            description=f"{tier}: signs every resident card's lifecycle events (docs/card.md)",
            statements=[
                keys.use_by_roles("CounterApiSigns", env.account, [role_arn], ["kms:Sign"],
                                  conditions={"StringEquals": {"kms:SigningAlgorithm": SIGNING_ALGORITHM}}),
                keys.use_by_roles("TierVerifies", env.account, [stack.role_pattern, operator_arn],
                                  ["kms:GetPublicKey"]),
                # A card carried over to another tier (decision 0050): its new home's counter function
                # checks every event this key signed.
                keys.use_by_roles("CounterFunctionsVerifyCarriedCards", env.account,
                                  [names.role_arn(env, municipality_tier("*"), names.card_api("*"))],
                                  ["kms:GetPublicKey"]),
            ])

        # The tier's execute-api endpoint: the counters' only way in.
        self.endpoint = stack.network.add_client_endpoint(
            "CounterApi", ec2.InterfaceVpcEndpointAwsService.APIGATEWAY,
            client_cidrs=tuple(dict.fromkeys([*client_cidrs, prefecture.municipality_tier.network.cidr])),
            description="execute-api endpoint of the counter API: HTTPS in from the municipal networks only")
        self.endpoint.add_to_policy(iam.PolicyStatement(
            sid="CounterStaffToThisTiersApiOnly", principals=[iam.AnyPrincipal()], actions=["execute-api:Invoke"],
            resources=[f"arn:{PARTITION}:execute-api:{env.region}:{env.account}:*/{STAGE}/*"],
            conditions={"ArnLike": {"aws:PrincipalArn": [*counter_arns, operator_arn]}}))
        # The function reaches its table and key through the tier's endpoints, whose policies
        # admit named resources only.
        stack.network.allow_through("DynamoDb", iam.PolicyStatement(
            sid="CardTable", principals=[iam.AnyPrincipal()], actions=TABLE_ACTIONS,
            resources=[names.table_arn(env, table_name)],
            conditions={"ArnLike": {"aws:PrincipalArn": [stack.role_pattern]}}))
        stack.network.allow_through("Kms", iam.PolicyStatement(
            sid="SignCardEvents", principals=[iam.AnyPrincipal()], actions=["kms:Sign"],
            resources=[names.keys_arn_pattern(env)],
            conditions={"ArnLike": {"aws:PrincipalArn": [role_arn]},
                        "ForAnyValue:StringLike": {"kms:ResourceAliases": [names.key_alias(tier, "card-events")]}}))

        # The wide-area copy (decision 0046): the counter nudges the tier's channel function through
        # its queue and opens the answers to its municipalities' requests; the copy names the
        # municipalities, from a file beside the code (every municipality of the deployment).
        channel_env: dict[str, str] = {}
        channel_statements: list[iam.PolicyStatement] = []
        code = None
        if stack.deployment.channel:
            channel_queue = names.channel_queue(pcode)
            events_aliases = sorted(names.key_alias(municipality_tier(p.code), "card-events")
                                    for p in stack.deployment.prefectures)
            channel_env = {"CARD_EVENT_KEY_ALIAS_TEMPLATE": names.key_alias(municipality_tier("{prefecture}"),
                                                                            "card-events"),
                           "CHANNEL_QUEUE_URL": names.queue_url(env, channel_queue),
                           "CHANNEL_KEY_ID": f"arn:{PARTITION}:kms:{env.region}:{env.account}:{names.channel_alias(pcode)}",
                           "CHANNEL_KEY_ALIAS_PREFIX": names.channel_alias_prefix(),
                           "MUNICIPALITY_NAMES_FILE": NAMES_FILE}
            keys_arn = names.keys_arn_pattern(env)
            channel_statements = [
                iam.PolicyStatement(sid="NudgeChannelFunction", actions=["sqs:SendMessage"],
                                    resources=[names.queue_arn(env, channel_queue)]),
                iam.PolicyStatement(sid="ChannelQueueEncryption", actions=["kms:GenerateDataKey", "kms:Decrypt"],
                                    resources=[keys_arn],
                                    conditions={"StringEquals": {"kms:ViaService": f"sqs.{env.region}.amazonaws.com"},
                                                "ForAnyValue:StringEquals": {"kms:ResourceAliases": [
                                                    names.key_alias(tier, "channel-transport")]}}),
                iam.PolicyStatement(sid="OpenChannelAnswers", actions=["kms:Decrypt"], resources=[keys_arn],
                                    conditions={"StringLike": {"kms:EncryptionContext:to": f"{pcode[:2]}*"},
                                                "StringEquals": {"kms:EncryptionContext:channel": ["answer", "refusal"]},
                                                "ForAnyValue:StringEquals": {"kms:ResourceAliases": [
                                                    names.channel_alias(pcode)]}}),
                # A card carried over from another tier: its events checked with that tier's key (decision 0050).
                iam.PolicyStatement(sid="VerifyCarriedCardEvents", actions=["kms:GetPublicKey"], resources=[keys_arn],
                                    conditions={"ForAnyValue:StringEquals": {"kms:ResourceAliases": events_aliases}}),
            ]
            stack.network.allow_through("Kms", iam.PolicyStatement(
                sid="CounterVerifiesCarriedCards", principals=[iam.AnyPrincipal()], actions=["kms:GetPublicKey"],
                resources=[keys_arn], conditions={"ArnLike": {"aws:PrincipalArn": [role_arn]},
                                                  "ForAnyValue:StringEquals": {"kms:ResourceAliases": events_aliases}}))
            code = lambda_code(extra_files={NAMES_FILE: municipality_names(stack.deployment)})

        self.function = TierFunction(
            self, "Function", function_name=api_name, role_name=api_name, role_path=names.role_path(tier),
            handler="jukinet.handlers.card_api.handler", code=code,
            description=f"Counter API of {tier}: resident cards (docs/card.md)",
            environment={
                "CARD_TABLE_NAME": table_name,
                "CARD_EVENT_KEY_ID": self.event_key.key_arn,
                "MUNICIPALITIES": ",".join(municipalities),
                "COUNTER_ROLE_PREFIX": names.counter_role(""),
                "OPERATOR_ROLES": operator_role,
                "ACCOUNT_ID": env.account,
                "API_ENDPOINT_IDS": self.endpoint.vpc_endpoint_id,
                **channel_env,
                "POWERTOOLS_SERVICE_NAME": names.service_name(tier),
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                "LOG_LEVEL": "INFO",
            },
            timeout=API_TIMEOUT, memory_size=COUNTER_MEMORY_MB, reserved_concurrency=COUNTER_CONCURRENCY,
            network=stack.network, log_key=stack.audit_key, log_retention=stack.log_retention,
            statements=[
                iam.PolicyStatement(sid="CardTable", actions=TABLE_ACTIONS, resources=[self.table.table_arn]),
                iam.PolicyStatement(sid="SignCardEvents", actions=["kms:Sign"], resources=[self.event_key.key_arn]),
                *channel_statements,
            ])
        nag.acknowledge(self.function.policy, [
            ("AwsSolutions-IAM5", ("ENI management (Lambda in a VPC) and X-Ray trace writes support no resource-level "
             "permissions."), ["Resource::*"]),
            ("AwsSolutions-IAM5", ("The channel queue's transport key, the tier's channel key and the tiers' "
             "card-event keys (their public keys only, decision 0050) are found by alias; the wildcard key ARN is "
             "narrowed by kms:ResourceAliases to exactly those aliases."),
             [f"Resource::{names.keys_arn_pattern(env)}"]),
        ], apply_to_children=True)
        nag.acknowledge(self.function.function, [
            ("NIST.800.53.R5-LambdaDLQ", ("Invoked synchronously by API Gateway only: a failure is the counter's 5XX "
             "response (alarmed as counter-api-errors); there is no event to keep.")),
        ])

        self.api = self._rest_api(stack, api_name, counter_arns, [operator_arn], api_logging_role)
        policy = self._counter_policy(names, pcode)
        self.counter_roles = [self._counter_role(names, pcode, code, env.account, policy) for code in municipalities]
        self._alarms(stack)

    def _counter_policy(self, names, pcode: str) -> iam.ManagedPolicy:
        """One policy for every counter role of the tier: invoke this API's routes. Which
        municipality a clerk acts for is the role's name, which the function reads."""
        policy = iam.ManagedPolicy(
            self, "CounterStaffPolicy", managed_policy_name=f"{names.card_api(pcode)}-staff",
            path=names.counter_roles_path(pcode),
            description="Counter staff: invoke the counter API of their own tier only (docs/card.md)",
            statements=[iam.PolicyStatement(
                sid="InvokeCounterApi", actions=["execute-api:Invoke"],
                resources=[self.api.arn_for_execute_api(m, re.sub(r"\{\w+\}", "*", p), STAGE) for m, p in ROUTES])])
        nag.acknowledge(policy, [
            ("AwsSolutions-IAM5", ("The counter API's routes with a path parameter (a card serial or a challenge "
             "id) are matched with '*' in that segment; the API and stage are fixed."))], apply_to_children=True)
        return policy

    def _counter_role(self, names, pcode: str, code: str, account: str, policy: iam.ManagedPolicy) -> iam.Role:
        """One role per municipality's counter staff: assumable in the tier's account (whose IAM
        Identity Center or SAML decides which clerk), invoking this API only."""
        return iam.Role(
            self, f"Counter{code}", role_name=names.counter_role(code), path=names.counter_roles_path(pcode),
            assumed_by=iam.AccountPrincipal(account), max_session_duration=COUNTER_SESSION,
            description=f"Counter staff of municipality {code}: the counter API of their tier only (docs/card.md)",
            managed_policies=[policy])

    def _rest_api(self, stack, api_name: str, counter_arns: list[str], operator_arns: list[str],
                  api_logging_role: bool) -> apigw.RestApi:
        policy = resource_policy(counter_arns, operator_arns, self.endpoint.vpc_endpoint_id)
        self.access_logs = logs.LogGroup(
            self, "ApiAccessLogs", log_group_name=f"/aws/apigateway/{api_name}/access",
            encryption_key=stack.audit_key, retention=stack.log_retention, removal_policy=RemovalPolicy.RETAIN)
        api = apigw.RestApi(
            self, "Api", rest_api_name=api_name,
            description="jukinet counter API (住基カード): private, IAM-authenticated; docs/card.md",
            endpoint_configuration=apigw.EndpointConfiguration(types=[apigw.EndpointType.PRIVATE],
                                                               vpc_endpoints=[self.endpoint]),
            policy=policy, cloud_watch_role=api_logging_role,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN if api_logging_role else None,
            default_method_options=apigw.MethodOptions(authorization_type=apigw.AuthorizationType.IAM),
            deploy_options=apigw.StageOptions(
                stage_name=STAGE, description="Counter API",
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.custom(ACCESS_LOG_FORMAT),
                logging_level=apigw.MethodLoggingLevel.ERROR, data_trace_enabled=False, metrics_enabled=True,
                tracing_enabled=True, throttling_rate_limit=50, throttling_burst_limit=100),
        )
        nag.acknowledge(api, [
            ("AwsSolutions-APIG2", ("Requests are validated by the handler against the models of "
             "lambdas/jukinet/handlers/card_models.py (Powertools, enable_validation; published as "
             "docs/card-openapi.json), which refuses with INVALID_REQUEST naming the field.")),
        ])
        api.latest_deployment.add_to_logical_id({"policy": policy.to_json()})  # type: ignore[union-attr]
        execution_logs = logs.LogGroup(
            self, "ApiExecutionLogs", log_group_name=f"API-Gateway-Execution-Logs_{api.rest_api_id}/{STAGE}",
            encryption_key=stack.audit_key, retention=stack.log_retention, removal_policy=RemovalPolicy.RETAIN)
        api.deployment_stage.node.add_dependency(execution_logs)
        waf = ("A private API reachable only through the tier's execute-api endpoint from the municipalities' own "
               "networks, with SigV4 and a resource policy naming each role; AWS WAF does not attach to private "
               "APIs' traffic inside a VPC the way it does at the edge.")
        nag.acknowledge(api.deployment_stage, [
            ("AwsSolutions-APIG3", waf), ("NIST.800.53.R5-APIGWAssociatedWithWAF", waf),
            ("NIST.800.53.R5-APIGWCacheEnabledAndEncrypted",
             ("Caching is off on purpose: a card's status must be read at every authentication (a suspended card "
              "fails at once, docs/card.md).")),
            ("NIST.800.53.R5-APIGWSSLEnabled",
             "The only backend is a Lambda proxy integration: there is no HTTP backend to present a certificate to."),
        ])
        if api_logging_role:
            nag.acknowledge(api.node.find_child("CloudWatchRole"), [
                ("AwsSolutions-IAM4", ("API Gateway's account-level role for writing logs; the AWS managed policy is "
                 "the one the service documents for it, and the role is assumable only by API Gateway."),
                 ["Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"]),
            ])
        integration = apigw.LambdaIntegration(self.function.function, proxy=True, allow_test_invoke=False,
                                              timeout=API_TIMEOUT)
        resources: dict[str, apigw.IResource] = {"": api.root}
        for method, path in ROUTES:
            parent = ""
            for part in path.strip("/").split("/"):
                current = f"{parent}/{part}"
                if current not in resources:
                    resources[current] = resources[parent].add_resource(part)
                parent = current
            added = resources[path].add_method(method, integration)
            nag.acknowledge(added, [
                ("AwsSolutions-COG4", ("Callers are the municipalities' counter-staff IAM roles, authenticated by "
                 "SigV4 (AWS_IAM) and admitted by the resource policy; there are no end users to sign in.")),
                ("AwsSolutions-APIG4", "Authorization is AWS_IAM on every method (SigV4)."),
            ])
        return api

    def _alarms(self, stack) -> None:
        names, alarms, tier = stack.names, stack.alarms, stack.tier
        service = names.service_name(tier)

        def m(name: str) -> cloudwatch.Metric:
            return custom_metric(name, service=service, tier="municipality")

        alarms.alarm("CardAuthenticationRefusalBurst", name=names.alarm(tier, "card-authentication-refusals"),
                     description=(f"More than {AUTH_REFUSAL_BURST} card authentications refused across the tier's "
                                  "counters in five minutes (replayed or relayed answers, wrong keys, a stolen card "
                                  "tried at many counters)."),
                     metric=m("CardAuthenticationRefusals"), threshold=AUTH_REFUSAL_BURST, doc=DOC)
        alarms.alarm("EndedCardPresented", name=names.alarm(tier, "ended-card-presented"),
                     description="A suspended or revoked card was presented at a counter: a lost or stolen card in "
                                 "use. The function log names the counter.", metric=m("EndedCardPresented"), doc=DOC)
        alarms.alarm("CardUnauthorisedAttempts", name=names.alarm(tier, "card-unauthorised-attempts"),
                     description="The counter API refused a caller (unknown role or endpoint), a counter acting on "
                                 "another municipality's card, or a public key already registered (a cloned key); "
                                 "or this tier refused to carry one of its cards over to another tier (no "
                                 "completed special move-out to the asking municipality).",
                     metric=m("CardUnauthorisedAttempts"), doc=DOC)
        alarms.alarm("CounterApiErrors", name=names.alarm(tier, "counter-api-errors"),
                     description="The counter API answered with 5XX (handler failure, timeout or throttling).",
                     metric=self.api.metric_server_error(period=PERIOD, statistic=cloudwatch.Stats.SUM), doc=DOC)


def widgets_metrics(service: str) -> dict[str, list[cloudwatch.IMetric]]:
    def m(name: str) -> cloudwatch.Metric:
        return custom_metric(name, service=service, tier="municipality")

    return {
        "Cards issued, requests, authentications": [m("CardsIssued"), m("CardRequests"), m("CardAuthentications")],
        "Card refusals (authentication, ended cards, unauthorised), PIN failures": [
            m("CardAuthenticationRefusals"), m("EndedCardPresented"), m("CardUnauthorisedAttempts"),
            m("CardPinFailures")],
        "Wide-area copies: requested, issued, refused, timed out (docs/second-phase.md)": [
            m("WideAreaCopiesRequested"), m("WideAreaCopiesIssued"), m("WideAreaCopiesRefused"),
            m("WideAreaCopiesTimedOut")],
    }


