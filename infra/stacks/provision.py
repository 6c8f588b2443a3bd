"""The provision API (本人確認情報の提供) in the national stack: docs/provision.md, docs/decisions/0010.

Everything here lives in the national tier's stack, account and VPC:

* keys ``provision-log`` (SSE of both tables), ``provision-batch`` (the batch bucket and
  queue) and ``provision-seal`` (ECC_NIST_P256: signs each day's seal of the log);
* the provision log table (append-only as far as policies can make it: every role that
  touches it carries an explicit Deny of every rewriting action, and so does the table's
  resource policy, for every principal) and the provision state table;
* the batch bucket (``in/<recipient>/`` uploaded by the recipient, ``out/<recipient>/``
  written by the batch function) and the batch queue with its DLQ;
* three functions: ``provision-api`` behind the REST API, ``provision-batch`` on the queue,
  ``provision-sealer`` daily at 01:00 JST. Only they get the code asset with
  ``agreements.json``;
* the private REST API: IAM (SigV4) authentication, an API key per recipient for its usage
  plan's throttle only, a resource policy admitting the configured principals through the
  configured VPC endpoints only, request validation, JSON access logs without bodies;
* alarms (meanings and first responses in docs/provision.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import aws_cdk as cdk
from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct
from jukinet.domain.agreements import AGREEMENTS_FILE, Recipient, agreements_document, role_key

from ..bundling import lambda_code
from ..components import keys, nag
from ..components.functions import TierFunction
from ..components.monitoring import PERIOD, custom_metric
from ..components.queues import DATA_KEY_REUSE, DLQ_RETENTION, visibility_timeout_for
from ..components.security_monitoring import provision_anomaly_alarms
from ..components.tables import provision_log_table, provision_state_table
from ..naming import METRICS_NAMESPACE, NATIONAL, PROVISION_API_STAGE, SIGNING_ALGORITHM
from .processing import DATA_KEY_ACTIONS, Processing
from .tier import TierStack

DOC = "docs/provision.md"
STAGE = PROVISION_API_STAGE
API_TIMEOUT = Duration.seconds(29)  # API Gateway's integration timeout
BATCH_TIMEOUT = Duration.seconds(300)
SEALER_TIMEOUT = Duration.seconds(900)
API_MEMORY_MB = 1024
BATCH_MEMORY_MB = 1024
SEALER_MEMORY_MB = 512
API_CONCURRENCY = 20
BATCH_CONCURRENCY = 10
SEALER_CONCURRENCY = 1
BATCH_MAX_RECEIVE_COUNT = 3
SEAL_SCHEDULE = "cron(10 * * * ? *)"  # every hour at :10 (the hour before, plus late writes)
# Each archived seal is locked (compliance mode) beyond the entries' 7 years: the retention
# checkpoint of an expired day is still checkable against its archived seal.
SEAL_ARCHIVE_LOCK = Duration.days(8 * 366)
SEAL_ARCHIVE_PREFIX = "seals/"
BATCH_OBJECT_RETENTION = Duration.days(30)
IN, OUT = "in/", "out/"
SEAL_HEARTBEAT = Duration.hours(1)

IDENTITY_READ_ACTIONS = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"]
LOG_ACTIONS = ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"]
SEALER_LOG_ACTIONS = ["dynamodb:Query", "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem"]
# Every action that can change or remove an existing item (PutItem can overwrite too: see decision 0010).
LOG_REWRITE_ACTIONS = ["dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
                       "dynamodb:PartiQLUpdate", "dynamodb:PartiQLDelete", "dynamodb:PartiQLInsert"]
# The sealer's one change to an existing item: the TTL it derives from the sealed day (decision 0014).
TTL_ATTRIBUTE = "expires_at"
SEALER_UPDATE_ATTRIBUTES = ["pk", "sk", TTL_ATTRIBUTE]
SEAL_ITEMS = "SEAL*"  # partition keys SEALS, SEAL#<period>, SEALED#<code>: the sealer's alone
ENTRY_ITEMS = "P#*"
STATE_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchGetItem",
                 "dynamodb:BatchWriteItem", "dynamodb:Query"]
SEALER_STATE_ACTIONS = ["dynamodb:GetItem", "dynamodb:Query"]
BATCH_READ_ACTIONS = ["s3:GetObject", "s3:GetObjectVersion"]
QUEUE_CONSUME_ACTIONS = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                         "sqs:GetQueueAttributes"]

# (method, path under the stage) of each route; ``{x}`` is a path parameter.
RECIPIENT_ROUTES = (("POST", "/v1/lookups"), ("POST", "/v1/searches"), ("POST", "/v1/batches"),
                    ("GET", "/v1/batches/{job_id}"))
DISCLOSURE_ROUTES = (("GET", "/v1/disclosures/{resident_code}"),)

# One JSON object per request. Never a body: requests and responses carry identity facts
# (data trace is off too). ``$context.error.messageString`` is ``$context.error.message``
# quoted for JSON.
ACCESS_LOG_FIELDS = (
    ("requestId", '"$context.requestId"'),
    ("requestTime", '"$context.requestTime"'),
    ("httpMethod", '"$context.httpMethod"'),
    ("resourcePath", '"$context.resourcePath"'),
    ("status", '"$context.status"'),
    ("protocol", '"$context.protocol"'),
    ("responseLength", '"$context.responseLength"'),
    ("userArn", '"$context.identity.userArn"'),
    ("caller", '"$context.identity.caller"'),
    ("accountId", '"$context.identity.accountId"'),
    ("vpceId", '"$context.identity.vpceId"'),
    ("sourceIp", '"$context.identity.sourceIp"'),
    ("apiKeyId", '"$context.identity.apiKeyId"'),
    ("errorMessage", "$context.error.messageString"),
    ("errorResponseType", '"$context.error.responseType"'),
    ("integrationErrorMessage", '"$context.integrationErrorMessage"'),
)
ACCESS_LOG_FORMAT = "{" + ",".join(f'"{k}":{v}' for k, v in ACCESS_LOG_FIELDS) + "}"
# Gateway responses that refuse a caller before the handler runs: bad or missing signature,
# expired credentials, a principal or endpoint the resource policy denies, no valid API key.
GATEWAY_REFUSALS = ("ACCESS_DENIED", "INVALID_SIGNATURE", "MISSING_AUTHENTICATION_TOKEN", "EXPIRED_TOKEN",
                    "INVALID_API_KEY")


WAF_REASON = ("A private API, reachable only through the configured VPC endpoints, called only by SigV4-signed "
              "requests of the configured roles and throttled per recipient; the handler validates every body. A web "
              "ACL's managed rules target public web traffic and would add nothing here.")


def _camel(recipient_id: str) -> str:
    return "".join(part.capitalize() for part in recipient_id.split("-"))


def route_arn(method: str, path: str) -> str:
    """The resource-policy form of a route: ``execute-api:/<stage>/<METHOD>/<path>``, parameters as ``*``."""
    parts = ["*" if p.startswith("{") else p for p in path.strip("/").split("/")]
    return f"execute-api:/{STAGE}/{method}/{'/'.join(parts)}"


def resource_policy(recipients: Sequence[Recipient], endpoint_ids: Sequence[str]) -> iam.PolicyDocument:
    """Who may invoke which route, and only through which VPC endpoints.

    Allows name the configured principals (cross-account callers need them). The Denies
    hold whatever an IAM policy in the API's own account says: no call outside the
    configured endpoints, the recipients' routes only for recipients' principals, the
    disclosure route only for the prefectures' disclosure staff.
    """
    principals = sorted({p for r in recipients for p in r.principals})
    disclosure = sorted({p for r in recipients for p in r.disclosure_principals})
    recipient_routes = [route_arn(m, p) for m, p in RECIPIENT_ROUTES]
    disclosure_routes = [route_arn(m, p) for m, p in DISCLOSURE_ROUTES]
    anyone = [iam.AnyPrincipal()]
    invoke = ["execute-api:Invoke"]
    statements = [
        iam.PolicyStatement(sid="AllowRecipients", principals=[iam.ArnPrincipal(p) for p in principals],
                            actions=invoke, resources=recipient_routes),
        iam.PolicyStatement(sid="DenyOutsideConfiguredEndpoints", effect=iam.Effect.DENY, principals=anyone,
                            actions=invoke, resources=["execute-api:/*"],
                            conditions={"StringNotEquals": {"aws:SourceVpce": list(endpoint_ids)}}),
        iam.PolicyStatement(sid="DenyRecipientRoutesToOthers", effect=iam.Effect.DENY, principals=anyone,
                            actions=invoke, resources=recipient_routes,
                            conditions={"ArnNotLike": {"aws:PrincipalArn": principals}}),
    ]
    if disclosure:
        statements[1:1] = [iam.PolicyStatement(
            sid="AllowDisclosureStaff", principals=[iam.ArnPrincipal(p) for p in disclosure], actions=invoke,
            resources=disclosure_routes)]
        statements.append(iam.PolicyStatement(
            sid="DenyDisclosuresToOthers", effect=iam.Effect.DENY, principals=anyone, actions=invoke,
            resources=disclosure_routes, conditions={"ArnNotLike": {"aws:PrincipalArn": disclosure}}))
    else:
        statements.append(iam.PolicyStatement(sid="DenyDisclosuresToAll", effect=iam.Effect.DENY, principals=anyone,
                                              actions=invoke, resources=disclosure_routes))
    return iam.PolicyDocument(statements=statements)


def log_table_policy(log_arn: str, sealer_role: str) -> iam.PolicyDocument:
    """The provision log's resource policy, for every principal (administrators included):
    nothing rewrites or deletes an item; only the sealer may change an item, and only its
    ``expires_at`` (derived from the sealed day); only the sealer writes ``expires_at`` or any
    ``SEAL*`` item — so no writer can make TTL delete an entry or a seal."""
    anyone = [iam.AnyPrincipal()]
    not_sealer = {"ArnNotEquals": {"aws:PrincipalArn": sealer_role}}
    return iam.PolicyDocument(statements=[
        iam.PolicyStatement(sid="ProvisionLogIsAppendOnly", effect=iam.Effect.DENY, principals=anyone,
                            actions=[a for a in LOG_REWRITE_ACTIONS if a != "dynamodb:UpdateItem"],
                            resources=[log_arn]),
        iam.PolicyStatement(sid="OnlyTheSealerUpdates", effect=iam.Effect.DENY, principals=anyone,
                            actions=["dynamodb:UpdateItem"], resources=[log_arn], conditions=not_sealer),
        iam.PolicyStatement(sid="UpdatesChangeOnlyTheExpiry", effect=iam.Effect.DENY, principals=anyone,
                            actions=["dynamodb:UpdateItem"], resources=[log_arn],
                            conditions={"ForAnyValue:StringNotEquals": {"dynamodb:Attributes": SEALER_UPDATE_ATTRIBUTES}}),
        iam.PolicyStatement(sid="OnlyTheSealerSetsExpiry", effect=iam.Effect.DENY, principals=anyone,
                            actions=["dynamodb:PutItem"], resources=[log_arn],
                            conditions={**not_sealer,
                                        "ForAnyValue:StringEquals": {"dynamodb:Attributes": [TTL_ATTRIBUTE]}}),
        iam.PolicyStatement(sid="OnlyTheSealerWritesSeals", effect=iam.Effect.DENY, principals=anyone,
                            actions=["dynamodb:PutItem"], resources=[log_arn],
                            conditions={**not_sealer, "ForAnyValue:StringLike": {"dynamodb:LeadingKeys": [SEAL_ITEMS]}}),
    ])


def _string(**extra: object) -> apigw.JsonSchema:
    return apigw.JsonSchema(type=apigw.JsonSchemaType.STRING, **extra)  # type: ignore[arg-type]


def _optional(schema_type: apigw.JsonSchemaType, **extra: object) -> apigw.JsonSchema:
    return apigw.JsonSchema(type=[schema_type, apigw.JsonSchemaType.NULL], **extra)  # type: ignore[arg-type]


# Request bodies: the gateway refuses only grossly malformed ones; the handler checks the
# rest and answers with the documented error codes.
REQUEST_MODELS: dict[str, tuple[list[str], dict[str, apigw.JsonSchema]]] = {
    "LookupRequest": (["affair_code", "resident_codes"], {
        "affair_code": _string(),
        "resident_codes": apigw.JsonSchema(type=apigw.JsonSchemaType.ARRAY, min_items=1, max_items=100,
                                           items=_string()),
        "fields": _optional(apigw.JsonSchemaType.ARRAY, items=_string()),
    }),
    "SearchRequest": (["affair_code", "kana_name", "birth_date"], {
        "affair_code": _string(), "kana_name": _string(), "birth_date": _string(),
        "sex": _optional(apigw.JsonSchemaType.STRING), "address": _optional(apigw.JsonSchemaType.STRING),
    }),
    "BatchRequest": (["affair_code", "input_key"], {"affair_code": _string(), "input_key": _string()}),
}
BODY_MODEL = {"/v1/lookups": "LookupRequest", "/v1/searches": "SearchRequest", "/v1/batches": "BatchRequest"}


class ProvisionApi(Construct):
    """The provision API and everything behind it (see the module docstring).

    ``prefecture_api_endpoints``: prefecture code → that prefecture tier's execute-api
    endpoint id (an import or configuration), for each prefecture with own-use recipients.
    """

    def __init__(self, stack: TierStack, id: str, *, processing: Processing,
                 prefecture_api_endpoints: Mapping[str, str]) -> None:
        super().__init__(stack, id)
        deployment, names, env = stack.deployment, stack.names, stack.tier_env
        account, region = env.account, env.region
        recipients = sorted(deployment.agencies, key=lambda a: a.recipient_id)
        batch_recipients = [r for r in recipients if r.uses_batch]
        role_arn = {w: names.role_arn(env, NATIONAL, names.provision_role(w)) for w in ("api", "batch", "sealer")}
        pref_endpoints = dict(sorted(prefecture_api_endpoints.items()))

        # --- keys -------------------------------------------------------------------------
        self.log_key = keys.symmetric_key(
            self, "LogKey", alias=names.key_alias(NATIONAL, "provision-log"), account=account,
            administrators=stack.administrators,
            description="national: provision log and provision state tables (DynamoDB SSE-KMS)",
            statements=[keys.use_through_dynamodb(account, region)])
        recipient_roles: dict[str, list[str]] = defaultdict(list)
        for r in batch_recipients:
            for p in r.principals:
                recipient_roles[role_key(p)[0]].append(p)
        self.batch_key = keys.symmetric_key(
            self, "BatchKey", alias=names.key_alias(NATIONAL, "provision-batch"), account=account,
            administrators=stack.administrators,
            description="national: provision batch bucket and batch queue (S3 and SQS SSE-KMS)",
            statements=[
                keys.use_by_roles("ProvisionFunctionsUse", account, [role_arn["api"], role_arn["batch"]],
                                  DATA_KEY_ACTIONS, via_services=["s3", "sqs"], region=region),
                *(keys.use_by_roles(f"BatchRecipientsUseThroughS3{i}", acct, arns, DATA_KEY_ACTIONS,
                                    via_services=["s3"], region=region)
                  for i, (acct, arns) in enumerate(sorted(recipient_roles.items()))),
            ])
        self.seal_key = keys.signing_key(
            self, "SealKey", alias=names.key_alias(NATIONAL, "provision-seal"), account=account,
            administrators=stack.administrators, description="national: signs each day's seal of the provision log",
            statements=[
                keys.use_by_roles("SealerSigns", account, [role_arn["sealer"]], ["kms:Sign"],
                                  conditions={"StringEquals": {"kms:SigningAlgorithm": SIGNING_ALGORITHM}}),
                # The public key is not secret: anyone the account's IAM allows may verify seals.
                iam.PolicyStatement(sid="VerifiersReadPublicKey", principals=[iam.AccountPrincipal(account)],
                                    actions=["kms:GetPublicKey"], resources=["*"]),
            ])

        self.seal_archive_key = keys.symmetric_key(
            self, "SealArchiveKey", alias=names.key_alias(NATIONAL, "provision-seal-archive"), account=account,
            administrators=stack.administrators,
            description="national: the seal archive bucket (off-table copies of the provision log's seals)",
            statements=[
                keys.use_by_roles("SealerArchives", account, [role_arn["sealer"]], DATA_KEY_ACTIONS,
                                  via_services=["s3"], region=region),
                # Reading the archive (jukinet verify by auditors) is granted by IAM, through S3 only.
                iam.PolicyStatement(sid="AccountReadsThroughS3", principals=[iam.AccountPrincipal(account)],
                                    actions=["kms:Decrypt"], resources=["*"],
                                    conditions={"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}),
            ])

        # --- tables -----------------------------------------------------------------------
        log_arn = names.table_arn(env, names.provision_log_table())  # literal: the policy is part of the table
        self.log_table = provision_log_table(
            self, "LogTable", table_name=names.provision_log_table(), key=self.log_key,
            resource_policy=log_table_policy(log_arn, role_arn["sealer"]))
        self.state_table = provision_state_table(self, "StateTable", table_name=names.provision_state_table(),
                                                 key=self.log_key)
        log_resources = [self.log_table.table_arn, f"{self.log_table.table_arn}/index/*"]
        state_arn = self.state_table.table_arn

        # --- batch bucket and queue ---------------------------------------------------------
        bucket_name = names.provision_batch_bucket(env)
        bucket_arn = names.bucket_arn(bucket_name)
        self.bucket = s3.Bucket(
            self, "BatchBucket", bucket_name=bucket_name, encryption=s3.BucketEncryption.KMS,
            encryption_key=self.batch_key, bucket_key_enabled=True, block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True, versioned=True, object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=stack.access_logs, server_access_logs_prefix="provision-batch/",
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(id="in", prefix=IN, expiration=BATCH_OBJECT_RETENTION,
                                 noncurrent_version_expiration=Duration.days(1),
                                 abort_incomplete_multipart_upload_after=Duration.days(1)),
                s3.LifecycleRule(id="out", prefix=OUT, expiration=BATCH_OBJECT_RETENTION,
                                 noncurrent_version_expiration=Duration.days(1),
                                 abort_incomplete_multipart_upload_after=Duration.days(1)),
            ],
        )
        self._bucket_policy(bucket_arn, batch_recipients, [role_arn["api"], role_arn["batch"]])
        nag.acknowledge(self.bucket, [
            ("NIST.800.53.R5-S3BucketReplicationEnabled",
             ("Transient batch files (identity facts in, results out) that expire after 30 days; the provision log "
              "keeps the record. Replicating personal data would only add copies.")),
        ])

        # --- the seal archive: Object Lock, compliance mode, its own key -----------------------
        archive_name = names.provision_seal_archive_bucket(env)
        self.seal_archive = s3.Bucket(
            self, "SealArchive", bucket_name=archive_name, encryption=s3.BucketEncryption.KMS,
            encryption_key=self.seal_archive_key, bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL, enforce_ssl=True, versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED, object_lock_enabled=True,
            object_lock_default_retention=s3.ObjectLockRetention.compliance(SEAL_ARCHIVE_LOCK),
            server_access_logs_bucket=stack.access_logs, server_access_logs_prefix="provision-seals/",
            removal_policy=RemovalPolicy.RETAIN)
        self.seal_archive.add_to_resource_policy(iam.PolicyStatement(
            sid="OnlyTheSealerWritesSeals", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
            actions=["s3:PutObject"], resources=[self.seal_archive.arn_for_objects("*")],
            conditions={"ArnNotLike": {"aws:PrincipalArn": [role_arn["sealer"]]}}))
        nag.acknowledge(self.seal_archive, [
            ("NIST.800.53.R5-S3BucketReplicationEnabled",
             ("Object Lock in compliance mode already makes every copy undeletable for its retention; the seals are "
              "also in the provision log table (point-in-time recovery). A replica would need its own lock "
              "configuration in another region: a deployment decision, not a default.")),
        ])

        queue_name = names.provision_batch_queue()
        source_arn = names.queue_arn(env, queue_name)  # literal: a reference would make a cycle
        self.dead_letters = sqs.Queue(
            self, "BatchDeadLetters", queue_name=names.dead_letter_queue(queue_name),
            encryption=sqs.QueueEncryption.KMS, encryption_master_key=self.batch_key, data_key_reuse=DATA_KEY_REUSE,
            enforce_ssl=True, retention_period=DLQ_RETENTION, removal_policy=RemovalPolicy.RETAIN,
            redrive_allow_policy=sqs.RedriveAllowPolicy(
                redrive_permission=sqs.RedrivePermission.BY_QUEUE,
                source_queues=[sqs.Queue.from_queue_arn(self, "BatchQueueRef", source_arn)]),
        )
        self.queue = sqs.Queue(
            self, "BatchQueue", queue_name=queue_name, encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.batch_key, data_key_reuse=DATA_KEY_REUSE, enforce_ssl=True,
            retention_period=Duration.days(4), visibility_timeout=visibility_timeout_for(BATCH_TIMEOUT),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letters, max_receive_count=BATCH_MAX_RECEIVE_COUNT),
            removal_policy=RemovalPolicy.RETAIN,
        )
        api_and_batch = [role_arn["api"], role_arn["batch"]]
        self.queue.add_to_resource_policy(iam.PolicyStatement(
            sid="DenySendByOtherPrincipals", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
            actions=["sqs:SendMessage"], resources=[self.queue.queue_arn],
            conditions={"ArnNotLike": {"aws:PrincipalArn": api_and_batch}}))
        self.queue.add_to_resource_policy(iam.PolicyStatement(
            sid="DenyConsumeByOtherPrincipals", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
            actions=["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:PurgeQueue"],
            resources=[self.queue.queue_arn],
            conditions={"ArnNotLike": {"aws:PrincipalArn": [role_arn["batch"]]}}))

        # --- functions --------------------------------------------------------------------
        code = lambda_code(extra_files={AGREEMENTS_FILE: agreements_document(deployment.agencies)})
        common_env = {
            "POWERTOOLS_SERVICE_NAME": names.provision_service(),
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            "LOG_LEVEL": "INFO",
        }
        environment = {
            "TABLE_NAME": processing.table.table_name,
            "DATA_KEY_ID": processing.envelope_key.key_arn,
            "PROVISION_LOG_TABLE": self.log_table.table_name,
            "PROVISION_STATE_TABLE": self.state_table.table_name,
            "BATCH_BUCKET": self.bucket.bucket_name,
            "BATCH_QUEUE_URL": self.queue.queue_url,
            "AGREEMENTS_FILE": AGREEMENTS_FILE,
            "PREFECTURE_API_ENDPOINTS": stack.to_json_string(pref_endpoints),
            "SEAL_KEY_ID": self.seal_key.key_arn,
            **common_env,
        }
        append_only = iam.PolicyStatement(sid="ProvisionLogIsAppendOnly", effect=iam.Effect.DENY,
                                          actions=LOG_REWRITE_ACTIONS, resources=log_resources)
        # Writers choose no expiry (TTL would delete for them) and touch no seal (decision 0014).
        writers_choose_no_expiry = iam.PolicyStatement(
            sid="WritersChooseNoExpiry", effect=iam.Effect.DENY, actions=["dynamodb:PutItem"],
            resources=log_resources,
            conditions={"ForAnyValue:StringEquals": {"dynamodb:Attributes": [TTL_ATTRIBUTE]}})
        writers_touch_no_seal = iam.PolicyStatement(
            sid="WritersTouchNoSeal", effect=iam.Effect.DENY, actions=["dynamodb:PutItem"], resources=log_resources,
            conditions={"ForAnyValue:StringLike": {"dynamodb:LeadingKeys": [SEAL_ITEMS]}})
        identity = processing.table.table_arn
        provide = [
            iam.PolicyStatement(sid="ReadIdentityFacts", actions=IDENTITY_READ_ACTIONS,
                                resources=[identity, f"{identity}/index/*"]),
            # Facts and the blind-index key are sealed under the national envelope key (context tier=national).
            iam.PolicyStatement(sid="OpenIdentityFacts", actions=["kms:Decrypt"],
                                resources=[processing.envelope_key.key_arn],
                                conditions={"StringEquals": {"kms:EncryptionContext:tier": "national"}}),
            iam.PolicyStatement(sid="AppendProvisionLog", actions=LOG_ACTIONS, resources=log_resources),
            append_only, writers_choose_no_expiry, writers_touch_no_seal,
            # The disclosure checks the seals with the deployment's key (never one a seal names).
            iam.PolicyStatement(sid="ReadSealPublicKey", actions=["kms:GetPublicKey"],
                                resources=[self.seal_key.key_arn]),
            iam.PolicyStatement(sid="ProvisionState", actions=STATE_ACTIONS, resources=[state_arn]),
            # ListBucket: a missing key must answer 404, not 403.
            iam.PolicyStatement(sid="ListBatchBucket", actions=["s3:ListBucket"], resources=[self.bucket.bucket_arn]),
            iam.PolicyStatement(sid="BatchObjectsAndQueueEncryption", actions=DATA_KEY_ACTIONS,
                                resources=[self.batch_key.key_arn], conditions={"StringEquals": {"kms:ViaService": [
                                    f"s3.{region}.amazonaws.com", f"sqs.{region}.amazonaws.com"]}}),
        ]
        def function(id: str, what: str, *, description: str, environment: Mapping[str, str], timeout: Duration,
                     memory_size: int, reserved_concurrency: int,
                     statements: Sequence[iam.PolicyStatement]) -> TierFunction:
            return TierFunction(
                self, id, function_name=names.provision_function(what), role_name=names.provision_role(what),
                role_path=names.role_path(NATIONAL), handler=f"jukinet.handlers.provision_{what}.handler",
                description=description, environment=environment, timeout=timeout, memory_size=memory_size,
                reserved_concurrency=reserved_concurrency, network=stack.network, log_key=stack.audit_key,
                log_retention=stack.log_retention, statements=statements, code=code)

        # GetObjectVersion: a job reads exactly the input version pinned when it was submitted.
        read_objects = iam.PolicyStatement(sid="ReadBatchObjects", actions=BATCH_READ_ACTIONS, resources=[
            f"{self.bucket.bucket_arn}/{IN}*", f"{self.bucket.bucket_arn}/{OUT}*"])
        queue_tasks = iam.PolicyStatement(sid="QueueBatchTasks", actions=["sqs:SendMessage"],
                                          resources=[self.queue.queue_arn])
        self.api_function = function(
            "ApiFunction", "api",
            description="Provision API: look-ups, searches, batch submission and disclosure (本人確認情報の提供)",
            environment=environment, timeout=API_TIMEOUT, memory_size=API_MEMORY_MB,
            reserved_concurrency=API_CONCURRENCY, statements=[*provide, read_objects, queue_tasks])
        self.batch_function = function(
            "BatchFunction", "batch",
            description="Provision batch (一括提供): one chunk of an uploaded file per message, results to out/",
            environment=environment, timeout=BATCH_TIMEOUT, memory_size=BATCH_MEMORY_MB,
            reserved_concurrency=BATCH_CONCURRENCY,
            statements=[
                *provide, read_objects,
                iam.PolicyStatement(sid="WriteBatchResults", actions=["s3:PutObject"],
                                    resources=[f"{self.bucket.bucket_arn}/{OUT}*"]),
                queue_tasks,
                iam.PolicyStatement(sid="ConsumeBatchTasks", actions=QUEUE_CONSUME_ACTIONS,
                                    resources=[self.queue.queue_arn]),
            ])
        self.sealer = function(
            "Sealer", "sealer",
            description="Seals the provision log every hour (chained, archived) with the national seal key",
            environment={"PROVISION_LOG_TABLE": self.log_table.table_name,
                         "PROVISION_STATE_TABLE": self.state_table.table_name,
                         "SEAL_KEY_ID": self.seal_key.key_arn,
                         "SEAL_ARCHIVE_BUCKET": self.seal_archive.bucket_name, **common_env},
            timeout=SEALER_TIMEOUT, memory_size=SEALER_MEMORY_MB, reserved_concurrency=SEALER_CONCURRENCY,
            statements=[
                iam.PolicyStatement(sid="ReadAndSealProvisionLog", actions=SEALER_LOG_ACTIONS,
                                    resources=log_resources),
                iam.PolicyStatement(sid="SetExpiryFromTheSealedDay", actions=["dynamodb:UpdateItem"],
                                    resources=[self.log_table.table_arn],
                                    conditions={"ForAllValues:StringEquals": {
                                        "dynamodb:Attributes": SEALER_UPDATE_ATTRIBUTES}}),
                iam.PolicyStatement(sid="ProvisionLogIsAppendOnly", effect=iam.Effect.DENY,
                                    actions=[a for a in LOG_REWRITE_ACTIONS if a != "dynamodb:UpdateItem"],
                                    resources=log_resources),
                iam.PolicyStatement(sid="SealerWritesNoEntry", effect=iam.Effect.DENY, actions=["dynamodb:PutItem"],
                                    resources=log_resources,
                                    conditions={"ForAnyValue:StringLike": {"dynamodb:LeadingKeys": [ENTRY_ITEMS]}}),
                iam.PolicyStatement(sid="ArchiveSeals", actions=["s3:PutObject", "s3:GetObject"],
                                    resources=[self.seal_archive.arn_for_objects(f"{SEAL_ARCHIVE_PREFIX}*")]),
                iam.PolicyStatement(sid="ListSealArchive", actions=["s3:ListBucket"],
                                    resources=[self.seal_archive.bucket_arn]),
                iam.PolicyStatement(sid="SealArchiveEncryption", actions=DATA_KEY_ACTIONS,
                                    resources=[self.seal_archive_key.key_arn],
                                    conditions={"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}),
                iam.PolicyStatement(sid="ReadProvisionState", actions=SEALER_STATE_ACTIONS, resources=[state_arn]),
                iam.PolicyStatement(sid="SignSeals", actions=["kms:Sign"], resources=[self.seal_key.key_arn],
                                    conditions={"StringEquals": {"kms:SigningAlgorithm": SIGNING_ALGORITHM}}),
                iam.PolicyStatement(sid="ReadSealPublicKey", actions=["kms:GetPublicKey"],
                                    resources=[self.seal_key.key_arn]),
            ])
        self.functions = (self.api_function, self.batch_function, self.sealer)

        lambda_.EventSourceMapping(
            self, "BatchMapping", target=self.batch_function.function, event_source_arn=self.queue.queue_arn,
            batch_size=1, report_batch_item_failures=True, max_concurrency=BATCH_CONCURRENCY, enabled=True)
        self.seal_rule = events.Rule(
            self, "SealSchedule", rule_name=names.provision_seal_rule(), schedule=events.Schedule.expression(SEAL_SCHEDULE),
            description="Seal the provision log's hours that have ended (every hour at :10)")
        # No input: the scheduled event itself; the sealer seals every hour that has ended.
        self.seal_rule.add_target(targets.LambdaFunction(self.sealer.function, retry_attempts=2,
                                                         max_event_age=Duration.hours(6)))

        # --- the private REST API ----------------------------------------------------------
        endpoint_ids = [*sorted({e for r in recipients for e in r.vpc_endpoint_ids}), *pref_endpoints.values()]
        self.endpoint_ids = endpoint_ids
        self.api = self._rest_api(stack, recipients, endpoint_ids)

        # --- endpoints of the national VPC ----------------------------------------------------
        pattern = [stack.role_pattern]
        stack.network.allow_through("DynamoDb", iam.PolicyStatement(
            sid="ProvisionLog", principals=[iam.AnyPrincipal()], actions=LOG_ACTIONS, resources=log_resources,
            conditions={"ArnLike": {"aws:PrincipalArn": pattern}}))
        # The endpoint admits the tier's roles; the table's resource policy admits the sealer alone.
        stack.network.allow_through("DynamoDb", iam.PolicyStatement(
            sid="ProvisionLogExpiryBySealer", principals=[iam.AnyPrincipal()], actions=["dynamodb:UpdateItem"],
            resources=[self.log_table.table_arn], conditions={"ArnLike": {"aws:PrincipalArn": pattern}}))
        stack.network.allow_through("DynamoDb", iam.PolicyStatement(
            sid="ProvisionState", principals=[iam.AnyPrincipal()], actions=STATE_ACTIONS, resources=[state_arn],
            conditions={"ArnLike": {"aws:PrincipalArn": pattern}}))
        stack.network.allow_through("Sqs", iam.PolicyStatement(
            sid="ProvisionBatchQueue", principals=[iam.AnyPrincipal()],
            actions=["sqs:SendMessage", *QUEUE_CONSUME_ACTIONS], resources=[self.queue.queue_arn],
            conditions={"ArnLike": {"aws:PrincipalArn": pattern}}))
        stack.network.allow_through("S3", iam.PolicyStatement(
            sid="ProvisionBatchBucketOnly", principals=[iam.AnyPrincipal()],
            actions=[*BATCH_READ_ACTIONS, "s3:PutObject", "s3:ListBucket"],
            resources=[bucket_arn, f"{bucket_arn}/*"], conditions={"ArnLike": {"aws:PrincipalArn": pattern}}))
        archive_arn = names.bucket_arn(archive_name)
        stack.network.allow_through("S3", iam.PolicyStatement(
            sid="ProvisionSealArchive", principals=[iam.AnyPrincipal()],
            actions=["s3:GetObject", "s3:PutObject", "s3:ListBucket"], resources=[archive_arn, f"{archive_arn}/*"],
            conditions={"ArnLike": {"aws:PrincipalArn": pattern}}))

        self._acknowledge()
        self._alarms(stack)
        cdk.CfnOutput(stack, "ProvisionApiId", value=self.api.rest_api_id,
                      description="The private provision API (invoke through a configured VPC endpoint)")
        cdk.CfnOutput(stack, "ProvisionApiKeyIds", value=stack.to_json_string(self.api_key_ids),
                      description="Recipient id -> API key id (hand each key's value to its recipient)")

    # ---------------------------------------------------------------------------------------
    def _bucket_policy(self, bucket_arn: str, batch_recipients: Sequence[Recipient], function_roles: list[str]) -> None:
        """Each batch recipient: put under ``in/<id>/``, get under ``out/<id>/``, only through its
        own VPC endpoints; nobody else but the provision functions touches an object; uploads
        only with the batch key (send no encryption header, or this key's ARN)."""
        objects = f"{bucket_arn}/*"
        anyone = [iam.AnyPrincipal()]
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="DenyUploadsNotSseKms", effect=iam.Effect.DENY, principals=anyone, actions=["s3:PutObject"],
            resources=[objects],
            conditions={"StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption": "aws:kms"}}))
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="DenyUploadsWithAnotherKey", effect=iam.Effect.DENY, principals=anyone, actions=["s3:PutObject"],
            resources=[objects],
            conditions={"StringNotEqualsIfExists": {
                "s3:x-amz-server-side-encryption-aws-kms-key-id": self.batch_key.key_arn}}))
        allowed = sorted({*function_roles, *(p for r in batch_recipients for p in r.principals)})
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="DenyObjectsToOthers", effect=iam.Effect.DENY, principals=anyone,
            actions=[*BATCH_READ_ACTIONS, "s3:PutObject"], resources=[objects],
            conditions={"ArnNotLike": {"aws:PrincipalArn": allowed}}))
        for r in batch_recipients:
            cid = _camel(r.recipient_id)
            own_in, own_out = f"{IN}{r.recipient_id}/", f"{OUT}{r.recipient_id}/"
            roles = sorted(r.principals)
            accounts = [iam.AccountPrincipal(a) for a in sorted({role_key(p)[0] for p in roles})]
            who = {"ArnLike": {"aws:PrincipalArn": roles}}
            via = {"StringEquals": {"aws:SourceVpce": sorted(r.vpc_endpoint_ids)}}
            self.bucket.add_to_resource_policy(iam.PolicyStatement(
                sid=f"{cid}UploadsInput", principals=accounts, actions=["s3:PutObject"],
                resources=[f"{bucket_arn}/{own_in}*"], conditions={**who, **via}))
            self.bucket.add_to_resource_policy(iam.PolicyStatement(
                sid=f"{cid}ReadsResults", principals=accounts, actions=["s3:GetObject"],
                resources=[f"{bucket_arn}/{own_out}*"], conditions={**who, **via}))
            self.bucket.add_to_resource_policy(iam.PolicyStatement(
                sid=f"{cid}ListsOwnPrefixes", principals=accounts, actions=["s3:ListBucket"], resources=[bucket_arn],
                conditions={**who, **via, "StringLike": {"s3:prefix": [f"{own_in}*", f"{own_out}*"]}}))
            self.bucket.add_to_resource_policy(iam.PolicyStatement(
                sid=f"{cid}DenyOutsideItsEndpoints", effect=iam.Effect.DENY, principals=anyone,
                actions=["s3:GetObject", "s3:PutObject", "s3:ListBucket"], resources=[bucket_arn, objects],
                conditions={**who, "StringNotEquals": {"aws:SourceVpce": sorted(r.vpc_endpoint_ids)}}))
            self.bucket.add_to_resource_policy(iam.PolicyStatement(
                sid=f"{cid}DenyOtherPrefixes", effect=iam.Effect.DENY, principals=anyone,
                actions=["s3:GetObject", "s3:PutObject"],
                not_resources=[f"{bucket_arn}/{own_in}*", f"{bucket_arn}/{own_out}*"], conditions=who))

    def _rest_api(self, stack: TierStack, recipients: Sequence[Recipient], endpoint_ids: Sequence[str]) -> apigw.RestApi:
        names = stack.names
        policy = resource_policy(recipients, endpoint_ids)
        self.access_logs = logs.LogGroup(
            self, "ApiAccessLogs", log_group_name=f"/aws/apigateway/{names.provision_api()}/access",
            encryption_key=stack.audit_key, retention=stack.log_retention, removal_policy=RemovalPolicy.RETAIN)
        api = apigw.RestApi(
            self, "Api", rest_api_name=names.provision_api(),
            description="jukinet provision API (本人確認情報の提供): private, IAM-authenticated; docs/provision.md",
            endpoint_configuration=apigw.EndpointConfiguration(types=[apigw.EndpointType.PRIVATE]),
            policy=policy, cloud_watch_role=True, cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            api_key_source_type=apigw.ApiKeySourceType.HEADER,
            default_method_options=apigw.MethodOptions(authorization_type=apigw.AuthorizationType.IAM,
                                                       api_key_required=True),
            deploy_options=apigw.StageOptions(
                stage_name=STAGE, description="Provision API",
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.custom(ACCESS_LOG_FORMAT),
                logging_level=apigw.MethodLoggingLevel.ERROR, data_trace_enabled=False, metrics_enabled=True,
                tracing_enabled=True,
                # The stage admits what the recipients' usage plans add up to.
                throttling_rate_limit=sum(r.throttle_rate for r in recipients),
                throttling_burst_limit=sum(r.throttle_burst for r in recipients),
            ),
        )
        nag.acknowledge(api.deployment_stage, [
            ("AwsSolutions-APIG3", WAF_REASON),
            ("NIST.800.53.R5-APIGWAssociatedWithWAF", WAF_REASON),
            ("NIST.800.53.R5-APIGWCacheEnabledAndEncrypted",
             ("Caching is off on purpose: every response holds identity facts for one caller and one agreement; a "
              "cache would keep them outside the provision log and answer without the handler's agreement checks.")),
            ("NIST.800.53.R5-APIGWSSLEnabled",
             ("The only backend is a Lambda proxy integration, invoked through the Lambda API under a resource "
              "permission scoped to this API's methods; there is no HTTP backend to present a client certificate "
              "to.")),
        ])
        nag.acknowledge(api.node.find_child("CloudWatchRole"), [
            ("AwsSolutions-IAM4", ("API Gateway's account-level role for writing execution and access logs; the AWS "
             "managed policy is the one the service documents for it, and the role is assumable only by API "
             "Gateway."), ["Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"]),
        ])
        # A changed resource policy takes effect only with a new deployment.
        api.latest_deployment.add_to_logical_id({"policy": policy.to_json()})  # type: ignore[union-attr]
        # Execution logs (errors only, never bodies) in a group of ours: encrypted, with retention.
        execution_logs = logs.LogGroup(
            self, "ApiExecutionLogs", log_group_name=f"API-Gateway-Execution-Logs_{api.rest_api_id}/{STAGE}",
            encryption_key=stack.audit_key, retention=stack.log_retention, removal_policy=RemovalPolicy.RETAIN)
        api.deployment_stage.node.add_dependency(execution_logs)

        validator = api.add_request_validator(
            "Validator", request_validator_name=f"{names.provision_api()}-body-and-parameters",
            validate_request_body=True, validate_request_parameters=True)
        models = {
            name: api.add_model(name, content_type="application/json", model_name=name,
                                schema=apigw.JsonSchema(schema=apigw.JsonSchemaVersion.DRAFT4, title=name,
                                                        type=apigw.JsonSchemaType.OBJECT, required=required,
                                                        properties=properties))
            for name, (required, properties) in REQUEST_MODELS.items()
        }
        integration = apigw.LambdaIntegration(self.api_function.function, proxy=True, allow_test_invoke=False,
                                              timeout=API_TIMEOUT)
        resources: dict[str, apigw.IResource] = {"": api.root}
        for method, path in (*RECIPIENT_ROUTES, *DISCLOSURE_ROUTES):
            parent = ""
            for part in path.strip("/").split("/"):
                current = f"{parent}/{part}"
                if current not in resources:
                    resources[current] = resources[parent].add_resource(part)
                parent = current
            params = {f"method.request.path.{p.strip('{}')}": True for p in path.split("/") if p.startswith("{")}
            model = BODY_MODEL.get(path) if method == "POST" else None
            added = resources[path].add_method(
                method, integration, request_validator=validator,
                request_models={"application/json": models[model]} if model else None,
                request_parameters=params or None)
            nag.acknowledge(added, [
                ("AwsSolutions-COG4", ("Callers are IAM roles of government bodies, authenticated by SigV4 "
                 "(authorization AWS_IAM) and admitted by the resource policy; there are no end users to sign in.")),
            ])

        self.api_key_ids: dict[str, str] = {}
        for r in recipients:
            cid = _camel(r.recipient_id)
            plan = api.add_usage_plan(
                f"Plan{cid}", name=names.provision_usage_plan(r.recipient_id),
                description=f"{r.name} ({r.name_ja}): throttling only; IAM (SigV4) authenticates",
                throttle=apigw.ThrottleSettings(rate_limit=r.throttle_rate, burst_limit=r.throttle_burst),
                api_stages=[apigw.UsagePlanPerApiStage(api=api, stage=api.deployment_stage)])
            key = api.add_api_key(f"Key{cid}", api_key_name=names.provision_api_key(r.recipient_id),
                                  description=f"{r.name}: selects its usage plan (not a credential)")
            plan.add_api_key(key)
            self.api_key_ids[r.recipient_id] = key.key_id
        return api

    def _acknowledge(self) -> None:
        for fn in self.functions:
            nag.acknowledge(fn.policy, [
                ("AwsSolutions-IAM5", ("ENI management (Lambda in a VPC) and X-Ray trace writes support no "
                 "resource-level permissions."), ["Resource::*"]),
                ("AwsSolutions-IAM5", ("The provision log's by_day index (the hourly seals) and the identity table's "
                 "blind-index search: reads only, the log's index holding only entry hashes."),
                 [r"/^Resource::<ProvisionLogTable[A-F0-9]+\.Arn>\/index\/\*$/",
                  r"/^Resource::<IdentityTable[A-F0-9]+\.Arn>\/index\/\*$/"]),
                ("AwsSolutions-IAM5", ("Objects under the batch bucket's in/ (uploads) and out/ (results) prefixes, "
                 "whose keys are chosen per recipient and job at run time."),
                 [r"/^Resource::<ProvisionBatchBucket[A-F0-9]+\.Arn>\/(in|out)\/\*$/"]),
                ("AwsSolutions-IAM5", ("The seal archive's objects, one per sealed hour (seals/<period>.json), written "
                 "by the sealer only; Object Lock in compliance mode keeps each one unchanged."),
                 [r"/^Resource::<ProvisionSealArchive[A-F0-9]+\.Arn>\/seals\/\*$/"]),
            ], apply_to_children=True)
        nag.acknowledge(self.api_function.function, [
            ("NIST.800.53.R5-LambdaDLQ", ("Invoked synchronously by API Gateway only: a failure is the caller's "
             "5XX response (alarmed as provision-api-errors), there is no event to keep.")),
        ])
        nag.acknowledge(self.batch_function.function, [
            ("NIST.800.53.R5-LambdaDLQ", ("Invoked synchronously by an SQS event source mapping: a task that keeps "
             "failing moves to the batch queue's dead-letter queue by its redrive policy (alarmed).")),
        ])
        nag.acknowledge(self.sealer.function, [
            ("NIST.800.53.R5-LambdaDLQ", ("The scheduled event carries nothing but its time; a run that fails all "
             "retries raises provision-sealer-errors and is repeated for that day by an operator (sealing is "
             "idempotent), so a dead-letter copy of the event would add nothing.")),
        ])

    def _alarms(self, stack: TierStack) -> None:
        names, alarms = stack.names, stack.alarms
        service = names.provision_service()
        alarms.alarm("ProvisionUnauthorisedAttempts", name=names.alarm(NATIONAL, "provision-unauthorised-attempts"),
                     description="The provision API refused a request for facts the caller is not entitled to "
                                 "(unknown caller, endpoint, affair, function, field or agreement period).",
                     metric=custom_metric("UnauthorisedAttempts", service=service, tier=NATIONAL), doc=DOC)
        pattern = logs.FilterPattern.all(
            logs.FilterPattern.string_value("$.status", "=", "403"),
            logs.FilterPattern.any(*(logs.FilterPattern.string_value("$.errorResponseType", "=", t)
                                     for t in GATEWAY_REFUSALS)))
        logs.MetricFilter(self, "GatewayRefusalsFilter", log_group=self.access_logs, filter_pattern=pattern,
                          metric_namespace=METRICS_NAMESPACE, metric_name="GatewayRefusals", metric_value="1",
                          filter_name=f"{names.provision_api()}-gateway-refusals")
        alarms.alarm("ProvisionGatewayRefusals", name=names.alarm(NATIONAL, "provision-gateway-refusals"),
                     description="API Gateway refused provision API calls before the handler (bad signature, "
                                 "principal or endpoint not allowed, no valid API key).",
                     metric=cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name="GatewayRefusals",
                                              statistic=cloudwatch.Stats.SUM, period=PERIOD), doc=DOC)
        alarms.alarm("ProvisionApiErrors", name=names.alarm(NATIONAL, "provision-api-errors"),
                     description="The provision API answered with 5XX (handler failure, timeout or throttled "
                                 "function).",
                     metric=self.api.metric_server_error(period=PERIOD, statistic=cloudwatch.Stats.SUM), doc=DOC)
        alarms.queue_alarms("ProvisionBatch", tier_name=f"{names.prefix}-{NATIONAL}", queue_label="provision-batch",
                            dead_letter_queue=self.dead_letters, doc=DOC)
        alarms.alarm("ProvisionSealerErrors", name=names.alarm(NATIONAL, "provision-sealer-errors"),
                     description="A run of the provision log's hourly sealer failed: an hour may not be sealed.",
                     metric=self.sealer.function.metric_errors(period=PERIOD, statistic=cloudwatch.Stats.SUM),
                     doc=DOC)
        alarms.alarm("ProvisionIsolatedRecipientCalls",
                     name=names.alarm(NATIONAL, "provision-isolated-recipient-calls"),
                     description="A recipient isolated under the emergency plan called the provision API (or one of "
                                 "its queued batch chunks ran) with its own principal: refused, but its credentials "
                                 "are still in use.",
                     metric=custom_metric("IsolatedRecipientCalls", service=service, tier=NATIONAL), doc=DOC)
        alarms.alarm("ProvisionScanSuspected", name=names.alarm(NATIONAL, "provision-scan-suspected"),
                     description="One recipient's requests and batch chunks of the last 10 to 20 minutes look like a "
                                 "walk through the resident-code space (codes close together, or mostly 'not "
                                 "found'); the function log names the recipient.",
                     metric=custom_metric("ScanSuspected", service=service, tier=NATIONAL), doc=DOC)
        # A heartbeat: the sealer reports every run; no report in an hour (stopped, throttled at
        # concurrency 0, its rule disabled, failing) is as bad as a run that sealed nothing.
        # Two hourly periods, both breaching: the sealer runs at :10, so the hour in progress has
        # no report from :00 to :10 by design; one period would raise the alarm every hour then
        # (the embedded AWS counts the period in progress; a run crossing an hour showed it).
        # A stopped sealer is found within 2 hours of its last run.
        alarms.alarm("ProvisionLogNotSealed", name=names.alarm(NATIONAL, "provision-log-not-sealed"),
                     description="No hour of the provision log was sealed in two hours (the sealer did not run, "
                                 "failed or was stopped): entries are protected by their hash chains only.",
                     metric=cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name="ProvisionLogSealed",
                                              dimensions_map={"service": service, "tier": NATIONAL},
                                              statistic=cloudwatch.Stats.SUM, period=SEAL_HEARTBEAT),
                     threshold=1, comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                     evaluation_periods=2, datapoints_to_alarm=2,
                     treat_missing_data=cloudwatch.TreatMissingData.BREACHING, doc=DOC)
        # Once a month: the sealer of a month's last hour compares the statistics with the log.
        alarms.alarm("ProvisionStatsMismatch", name=names.alarm(NATIONAL, "provision-stats-mismatch"),
                     description="The month's provision statistics (the counters provision-stats prints) differ "
                                 "from the provisions the sealed provision log holds for that month; the sealer's "
                                 "log names each row.",
                     metric=custom_metric("ProvisionStatsMismatch", service=service, tier=NATIONAL), doc=DOC)
        alarms.alarm("ProvisionSealerThrottled", name=names.alarm(NATIONAL, "provision-sealer-throttled"),
                     description="The provision log's sealer was throttled (its concurrency set to 0 stops it).",
                     metric=self.sealer.function.metric_throttles(period=PERIOD, statistic=cloudwatch.Stats.SUM),
                     doc=DOC)
        provision_anomaly_alarms(alarms, names=names, recipient_ids=[a.recipient_id for a in stack.deployment.agencies])
