"""Finishing a stack through the service APIs where moto's CloudFormation stops short.

Two registries, keyed by resource type:

* ``API_CREATED``: types moto's CloudFormation has no model for, created here from the
  resource's properties as moto resolved them (see ``template.py`` step 8).
* ``EXTRA_PROPERTIES``: types moto creates but whose properties it partly ignores; the
  ignored ones that matter are applied here (``RESOLVED_PROPERTIES`` says which properties
  each needs resolved).

``MOTO_HONOURED`` lists, per type, the properties moto's CloudFormation model reads (from
moto 5.2.5's ``create_from_cloudformation_json``); together with what the handlers apply,
anything else present in a template is reported as not emulated.

To support a new type: add a handler ``(ctx, logical_id, resolved) -> detail`` to the right
registry; raise ``NotEmulatedError`` for a part that cannot be reproduced.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .iam_policy import as_list

from .model import BucketNotification, NotEmulated
from .template import PLACEHOLDER_PREFIX, is_placeholder


class NotEmulatedError(Exception):
    """This resource (or part of it) cannot be reproduced locally; the message says why."""


@dataclass
class ApplyContext:
    stack_name: str
    account: str
    region: str
    client: Callable[[str], Any]
    not_emulated: list[NotEmulated] = field(default_factory=list)
    bucket_notifications: list[BucketNotification] = field(default_factory=list)
    dead_letter_targets: dict[str, str] = field(default_factory=dict)  # function ARN -> target ARN
    created: dict[str, str] = field(default_factory=dict)  # logical id -> id of what a handler created
    current: tuple[str, str] = ("", "")  # (logical id, type) being applied

    def note(self, feature: str, reason: str) -> None:
        lid, rtype = self.current
        self.not_emulated.append(NotEmulated(self.stack_name, lid or None, rtype or None, feature, reason))

    def generated_name(self, logical_id: str, max_length: int = 255) -> str:
        # CloudFormation's pattern <stack>-<logical id>-<random>, with a stable suffix.
        suffix = hashlib.sha256(f"{self.stack_name}/{logical_id}".encode()).hexdigest()[:12].upper()
        return f"{self.stack_name}-{logical_id}"[: max_length - 13] + "-" + suffix


Handler = Callable[[ApplyContext, str, dict[str, Any]], str]


def _policy(document: Any) -> str:
    return document if isinstance(document, str) else json.dumps(document)


def _bool(value: Any) -> bool:
    return value.strip().lower() == "true" if isinstance(value, str) else bool(value)


def _require(value: Any, what: str) -> Any:
    if value is None or is_placeholder(value):
        raise NotEmulatedError(f"{what} refers to a resource that does not exist locally ({value})")
    return value


def _created(ctx: ApplyContext, value: Any, what: str) -> Any:
    """``value``, or, for a reference to a resource an earlier handler created through the
    API (moto's CloudFormation never saw it, so the reference is a placeholder), its id."""
    if isinstance(value, str) and value.startswith(PLACEHOLDER_PREFIX):
        found = ctx.created.get(value[len(PLACEHOLDER_PREFIX):])
        if found is not None:
            return found
    return _require(value, what)


# -- types moto's CloudFormation does not create ------------------------------------------------


def _queue_policy(ctx: ApplyContext, lid: str, resolved: dict[str, Any]) -> str:
    props = resolved["props"]
    urls = as_list(props.get("Queues") or props.get("Queue"))
    for url in urls:
        ctx.client("sqs").set_queue_attributes(QueueUrl=_require(url, "Queues"),
                                               Attributes={"Policy": _policy(props["PolicyDocument"])})
    ctx.note("queue policy enforcement", "stored on the queue; moto does not evaluate resource policies")
    return ", ".join(urls)


def without_conditional_statements(document: Any, effects: tuple[str, ...]) -> tuple[dict[str, Any], list[str]]:
    """The policy without its statements that have a Condition and one of ``effects``, and a
    description of each removed statement. Moto evaluates bucket policies (object
    operations) and key policies (DescribeKey) but ignores Condition blocks: a statement
    whose condition it cannot check counts as matching, so CDK's ``enforceSSL`` statement
    (Deny unless aws:SecureTransport) would deny every object request."""
    policy = json.loads(document) if isinstance(document, str) else dict(document)
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    kept, removed = [], []
    for index, statement in enumerate(statements):
        if "Condition" in statement and statement.get("Effect") in effects:
            keys = sorted({k for operator in statement["Condition"].values() if isinstance(operator, dict)
                           for k in operator})
            removed.append(f"{statement.get('Effect')} statement {statement.get('Sid', index)} "
                           f"(condition on {', '.join(keys)})")
        else:
            kept.append(statement)
    return dict(policy, Statement=kept), removed


def _bucket_policy(ctx: ApplyContext, lid: str, resolved: dict[str, Any]) -> str:
    props = resolved["props"]
    bucket = _require(props.get("Bucket"), "Bucket")
    policy, removed = without_conditional_statements(props["PolicyDocument"], ("Allow", "Deny"))
    if policy["Statement"]:
        ctx.client("s3").put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    for description in removed:
        ctx.note("bucket policy condition", f"{description} left out: moto ignores conditions and would "
                                            f"apply it to every request")
    ctx.note("bucket policy enforcement", "moto checks unconditional bucket policy statements on object "
                                          "requests only, and only for principal *")
    return bucket


def _topic_policy(ctx: ApplyContext, lid: str, resolved: dict[str, Any]) -> str:
    props = resolved["props"]
    topics = as_list(props.get("Topics") or props.get("TopicArn"))
    for arn in topics:
        ctx.client("sns").set_topic_attributes(TopicArn=_require(arn, "Topics"), AttributeName="Policy",
                                               AttributeValue=_policy(props["PolicyDocument"]))
    ctx.note("topic policy enforcement", "stored on the topic; moto does not evaluate resource policies")
    return ", ".join(topics)


def _sns_subscription(ctx: ApplyContext, lid: str, resolved: dict[str, Any]) -> str:
    props = resolved["props"]
    protocol = props.get("Protocol", "")
    if protocol == "lambda":
        raise NotEmulatedError("SNS → Lambda delivery: moto would invoke the function through Docker, "
                               "and the local runner does not drive SNS")
    if protocol in ("http", "https"):  # a chat webhook (Operations.alarm_chat_url)
        raise NotEmulatedError("SNS → HTTP(S) delivery: moto would POST to the endpoint over the network; what "
                               "would be sent is in .jukinet/notifications.log")
    attributes = {}
    for key in ("FilterPolicy", "RedrivePolicy", "DeliveryPolicy"):
        if key in props:
            attributes[key] = _policy(props[key])
    for key in ("FilterPolicyScope", "RawMessageDelivery"):
        if key in props:
            attributes[key] = str(props[key]).lower() if isinstance(props[key], bool) else str(props[key])
    response = ctx.client("sns").subscribe(TopicArn=_require(props.get("TopicArn"), "TopicArn"), Protocol=protocol,
                                           Endpoint=_require(props.get("Endpoint"), "Endpoint"),
                                           Attributes=attributes, ReturnSubscriptionArn=True)
    return str(response["SubscriptionArn"])


_ALARM_INTS = ("Period", "EvaluationPeriods", "DatapointsToAlarm")


def _alarm(ctx: ApplyContext, lid: str, resolved: dict[str, Any]) -> str:
    props = dict(resolved["props"])
    name = props.pop("AlarmName", None) or ctx.generated_name(lid)
    request: dict[str, Any] = {"AlarmName": name}
    for key, value in props.items():
        if key == "Tags":
            request["Tags"] = value
        elif key in _ALARM_INTS:
            request[key] = int(value)
        elif key == "Threshold":
            request[key] = float(value)
        elif key == "ActionsEnabled":
            request[key] = _bool(value)
        elif key == "Metrics":
            request[key] = [_metric_query(q) for q in value]
        else:
            request[key] = value
    ctx.client("cloudwatch").put_metric_alarm(**request)
    ctx.note("alarm evaluation", "moto never evaluates it; LocalMonitoring (embedded_aws/monitoring/, used "
                                 "by the demo) evaluates it from the metrics the functions emit")
    return name


def _metric_query(query: dict[str, Any]) -> dict[str, Any]:
    q = dict(query)
    if "ReturnData" in q:
        q["ReturnData"] = _bool(q["ReturnData"])
    if "Period" in q:
        q["Period"] = int(q["Period"])
    if "MetricStat" in q:
        q["MetricStat"] = dict(q["MetricStat"], Period=int(q["MetricStat"]["Period"]))
    return q


def _trail(ctx: ApplyContext, lid: str, resolved: dict[str, Any]) -> str:
    props = resolved["props"]
    name = props.get("TrailName") or ctx.generated_name(lid, 128)
    request: dict[str, Any] = {"Name": name, "S3BucketName": _require(props.get("S3BucketName"), "S3BucketName")}
    mapping = {"S3KeyPrefix": "S3KeyPrefix", "SnsTopicName": "SnsTopicName",
               "IncludeGlobalServiceEvents": "IncludeGlobalServiceEvents", "IsMultiRegionTrail": "IsMultiRegionTrail",
               "EnableLogFileValidation": "EnableLogFileValidation",
               "CloudWatchLogsLogGroupArn": "CloudWatchLogsLogGroupArn",
               "CloudWatchLogsRoleArn": "CloudWatchLogsRoleArn", "KMSKeyId": "KmsKeyId",
               "IsOrganizationTrail": "IsOrganizationTrail", "Tags": "TagsList"}
    for cfn, api in mapping.items():
        if cfn in props:
            value = props[cfn]
            request[api] = _bool(value) if cfn.startswith(("Is", "Include", "Enable")) else value
    client = ctx.client("cloudtrail")
    client.create_trail(**request)
    selectors = {k: props[k] for k in ("EventSelectors", "AdvancedEventSelectors") if k in props}
    if selectors:
        client.put_event_selectors(TrailName=name, **selectors)
    if _bool(props.get("IsLogging", False)):
        client.start_logging(Name=name)
    ctx.note("trail delivery", "the trail exists but moto records no events and writes no log files")
    return name


def _metric_filter(ctx: ApplyContext, lid: str, resolved: dict[str, Any]) -> str:
    props = resolved["props"]
    name = props.get("FilterName") or ctx.generated_name(lid, 512)
    transformations = []
    for t in props.get("MetricTransformations", []):
        item = {"metricName": t["MetricName"], "metricNamespace": t["MetricNamespace"],
                "metricValue": str(t["MetricValue"])}
        if "DefaultValue" in t:
            item["defaultValue"] = float(t["DefaultValue"])
        transformations.append(item)
    ctx.client("logs").put_metric_filter(logGroupName=_require(props.get("LogGroupName"), "LogGroupName"),
                                         filterName=name, filterPattern=props.get("FilterPattern", ""),
                                         metricTransformations=transformations)
    ctx.note("metric filter evaluation", "stored; moto never applies it: LocalMonitoring applies it to the log "
                                         "groups' events (the functions' logs through its sink, the local API's "
                                         "access logs)")
    return name


def _event_invoke_config(ctx: ApplyContext, lid: str, resolved: dict[str, Any]) -> str:
    props = resolved["props"]
    request: dict[str, Any] = {"FunctionName": _require(props.get("FunctionName"), "FunctionName")}
    if props.get("Qualifier") not in (None, "$LATEST"):
        request["Qualifier"] = props["Qualifier"]
    for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds"):
        if key in props:
            request[key] = int(props[key])
    if "DestinationConfig" in props:
        request["DestinationConfig"] = props["DestinationConfig"]
        ctx.note("asynchronous invocation destinations", "stored; the runner does not send to destinations")
    ctx.client("lambda").put_function_event_invoke_config(**request)
    return str(request["FunctionName"])


# API Gateway REST APIs: moto's CloudFormation creates RestApi, Resource, Method (with
# its Integration's Type, Uri and IntegrationHttpMethod only) and Deployment; it has no
# model for Stage, ApiKey, UsagePlan, UsagePlanKey. The API is served by
# embedded_aws/api/ (LocalApi), which reads all of this back from moto.


def _apigw_stage(ctx: ApplyContext, lid: str, resolved: dict[str, Any]) -> str:
    props = resolved["props"]
    api_id = _require(props.get("RestApiId"), "RestApiId")
    client = ctx.client("apigateway")
    deployment = props.get("DeploymentId")
    if deployment is None or is_placeholder(deployment):
        # moto's Deployment model has no physical id, so the Ref became a placeholder.
        deployments = client.get_deployments(restApiId=api_id).get("items", [])
        if not deployments:
            raise NotEmulatedError(f"REST API {api_id} has no deployment")
        deployment = max(deployments, key=lambda d: d["createdDate"])["id"]
    name = props["StageName"]
    request: dict[str, Any] = {"restApiId": api_id, "stageName": name, "deploymentId": deployment}
    if "Description" in props:
        request["description"] = props["Description"]
    if props.get("Variables"):
        request["variables"] = props["Variables"]
    if "TracingEnabled" in props:
        request["tracingEnabled"] = _bool(props["TracingEnabled"])
    client.create_stage(**request)
    operations = []
    log = props.get("AccessLogSetting") or {}
    for key, path in (("DestinationArn", "destinationArn"), ("Format", "format")):
        if key in log:
            operations.append({"op": "replace", "path": f"/accessLogSettings/{path}", "value": log[key]})
    settings = {"ThrottlingRateLimit": "throttling/rateLimit", "ThrottlingBurstLimit": "throttling/burstLimit",
                "LoggingLevel": "logging/loglevel", "DataTraceEnabled": "logging/dataTrace",
                "MetricsEnabled": "metrics/enabled", "CachingEnabled": "caching/enabled"}
    for setting in props.get("MethodSettings", []):
        where = f"{setting.get('ResourcePath', '/*')}/{setting.get('HttpMethod', '*')}"
        for key, path in settings.items():
            if key in setting:
                value = setting[key]
                operations.append({"op": "replace", "path": f"{where}/{path}",
                                   "value": str(value).lower() if isinstance(value, bool) else str(value)})
    if operations:
        client.update_stage(restApiId=api_id, stageName=name, patchOperations=operations)
    if props.get("MethodSettings"):
        ctx.note("API Gateway method settings", "stored on the stage; throttling, caching and execution "
                                                "logging are not applied locally")
    ctx.created[lid] = name
    return f"{api_id}/{name}"


def _apigw_api_key(ctx: ApplyContext, lid: str, resolved: dict[str, Any]) -> str:
    props = resolved["props"]
    request: dict[str, Any] = {"name": props.get("Name") or ctx.generated_name(lid, 1024),
                               "enabled": _bool(props.get("Enabled", False))}
    for cfn, api in (("Value", "value"), ("Description", "description"), ("CustomerId", "customerId")):
        if cfn in props:
            request[api] = props[cfn]
    if props.get("StageKeys"):
        request["stageKeys"] = [{"restApiId": _require(k.get("RestApiId"), "RestApiId"),
                                 "stageName": _created(ctx, k.get("StageName"), "StageName")}
                                for k in props["StageKeys"]]
    key_id = str(ctx.client("apigateway").create_api_key(**request)["id"])
    ctx.created[lid] = key_id
    return key_id


def _apigw_usage_plan(ctx: ApplyContext, lid: str, resolved: dict[str, Any]) -> str:
    props = resolved["props"]
    request: dict[str, Any] = {"name": props.get("UsagePlanName") or ctx.generated_name(lid, 1024)}
    if "Description" in props:
        request["description"] = props["Description"]
    stages = []
    for item in props.get("ApiStages", []):
        stage = {"apiId": _require(item.get("ApiId"), "ApiId"), "stage": _created(ctx, item.get("Stage"), "Stage")}
        if item.get("Throttle"):
            stage["throttle"] = {path: _throttle(t) for path, t in item["Throttle"].items()}
        stages.append(stage)
    request["apiStages"] = stages
    if props.get("Throttle"):
        request["throttle"] = _throttle(props["Throttle"])
    if props.get("Quota"):
        quota = props["Quota"]
        request["quota"] = {k.lower(): (int(v) if k in ("Limit", "Offset") else v) for k, v in quota.items()}
    if props.get("Throttle") or props.get("Quota") or any(s.get("throttle") for s in stages):
        ctx.note("API Gateway throttling and quotas", "the usage plan's limits are stored; the local API "
                                                      "neither throttles nor counts requests")
    plan_id = str(ctx.client("apigateway").create_usage_plan(**request)["id"])
    ctx.created[lid] = plan_id
    return plan_id


def _throttle(throttle: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "BurstLimit" in throttle:
        out["burstLimit"] = int(throttle["BurstLimit"])
    if "RateLimit" in throttle:
        out["rateLimit"] = float(throttle["RateLimit"])
    return out


def _apigw_usage_plan_key(ctx: ApplyContext, lid: str, resolved: dict[str, Any]) -> str:
    props = resolved["props"]
    plan = _created(ctx, props.get("UsagePlanId"), "UsagePlanId")
    key = _created(ctx, props.get("KeyId"), "KeyId")
    ctx.client("apigateway").create_usage_plan_key(usagePlanId=plan, keyId=key,
                                                   keyType=props.get("KeyType", "API_KEY"))
    return f"{plan}/{key}"


API_CREATED: dict[str, Handler] = {
    "AWS::SQS::QueuePolicy": _queue_policy,
    "AWS::SQS::QueueInlinePolicy": _queue_policy,
    "AWS::S3::BucketPolicy": _bucket_policy,
    "AWS::SNS::TopicPolicy": _topic_policy,
    "AWS::SNS::TopicInlinePolicy": _topic_policy,
    "AWS::SNS::Subscription": _sns_subscription,
    "AWS::CloudWatch::Alarm": _alarm,
    "AWS::CloudTrail::Trail": _trail,
    "AWS::Logs::MetricFilter": _metric_filter,
    "AWS::Lambda::EventInvokeConfig": _event_invoke_config,
    "AWS::ApiGateway::Stage": _apigw_stage,
    "AWS::ApiGateway::ApiKey": _apigw_api_key,
    "AWS::ApiGateway::UsagePlan": _apigw_usage_plan,
    "AWS::ApiGateway::UsagePlanKey": _apigw_usage_plan_key,
}


# -- types moto creates but partly ignores -------------------------------------------------------


def _filter_rules(cfn_filter: Any) -> list[dict[str, str]]:
    if not isinstance(cfn_filter, dict):
        return []
    return [{"Name": r["Name"].lower(), "Value": r["Value"]}
            for r in cfn_filter.get("S3Key", {}).get("Rules", [])]


def _bucket(ctx: ApplyContext, lid: str, resolved: dict[str, Any]) -> str:
    props, bucket = resolved["props"], resolved["ref"]
    s3 = ctx.client("s3")
    applied = []
    if "VersioningConfiguration" in props:
        s3.put_bucket_versioning(Bucket=bucket,
                                 VersioningConfiguration={"Status": props["VersioningConfiguration"]["Status"]})
        applied.append("versioning")
    if "PublicAccessBlockConfiguration" in props:
        block = {k: _bool(v) for k, v in props["PublicAccessBlockConfiguration"].items()}
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=block)
        applied.append("public access block")
    if "OwnershipControls" in props:
        s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=props["OwnershipControls"])
        applied.append("ownership controls")
    if "CorsConfiguration" in props:
        rules = []
        for rule in props["CorsConfiguration"].get("CorsRules", []):
            renames = {"ExposedHeaders": "ExposeHeaders", "Id": "ID", "MaxAge": "MaxAgeSeconds"}
            rules.append({renames.get(k, k): (int(v) if k == "MaxAge" else v) for k, v in rule.items()})
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
        applied.append("CORS")
    if "LifecycleConfiguration" in props:
        s3.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": [_lifecycle_rule(r) for r in
                                                             props["LifecycleConfiguration"].get("Rules", [])]})
        applied.append("lifecycle rules")
        ctx.note("lifecycle execution", "rules are stored; moto never expires or transitions objects")
    if "LoggingConfiguration" in props:
        ctx.note("server access logging", "moto writes no access logs")
    if "ObjectLockEnabled" in props or "ObjectLockConfiguration" in props:
        ctx.note("object lock", "moto's CloudFormation cannot create a bucket with object lock enabled")
    if "NotificationConfiguration" in props:
        applied += _bucket_notifications(ctx, lid, bucket, props["NotificationConfiguration"])
    return bucket + (f" ({', '.join(applied)})" if applied else "")


def _bucket_notifications(ctx: ApplyContext, lid: str, bucket: str, config: dict[str, Any]) -> list[str]:
    api: dict[str, Any] = {}
    for cfn_key, api_key, arn_key, target in (("QueueConfigurations", "QueueConfigurations", "QueueArn", "Queue"),
                                              ("TopicConfigurations", "TopicConfigurations", "TopicArn", "Topic")):
        for index, item in enumerate(config.get(cfn_key, [])):
            entry: dict[str, Any] = {arn_key: _require(item.get(target), target), "Events": [item["Event"]]}
            rules = _filter_rules(item.get("Filter"))
            if rules:
                entry["Filter"] = {"Key": {"FilterRules": rules}}
            api.setdefault(api_key, []).append(entry)
            if target == "Queue":  # moto's S3 sends these events itself; the runner polls the queue
                named = {r["Name"]: r["Value"] for r in rules}
                ctx.bucket_notifications.append(BucketNotification(
                    stack=ctx.stack_name, bucket_logical_id=lid, bucket=bucket, function_arn="",
                    event=item["Event"], prefix=named.get("prefix", ""), suffix=named.get("suffix", ""),
                    configuration_id=f"{lid}-queue-{index}", queue_arn=entry["QueueArn"]))
    if _bool(config.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled", False)):
        api["EventBridgeConfiguration"] = {}
    for index, item in enumerate(config.get("LambdaConfigurations", [])):
        # Not given to moto: its S3 would invoke the function through Docker on every put.
        rules = {r["Name"]: r["Value"] for r in _filter_rules(item.get("Filter"))}
        ctx.bucket_notifications.append(BucketNotification(
            stack=ctx.stack_name, bucket_logical_id=lid, bucket=bucket,
            function_arn=_require(item.get("Function"), "Function"), event=item["Event"],
            prefix=rules.get("prefix", ""), suffix=rules.get("suffix", ""),
            configuration_id=f"{lid}-lambda-{index}"))
    if api:
        ctx.client("s3").put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=api)
    lambdas = len(config.get("LambdaConfigurations", []))
    done = [f"{len(v)} {k[:-14].lower()} notification(s)" for k, v in api.items() if isinstance(v, list)]
    if lambdas:
        done.append(f"{lambdas} Lambda notification(s) for the runner")
    return done


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"Status": rule.get("Status", "Enabled")}
    if "Id" in rule:
        out["ID"] = rule["Id"]
    conditions: dict[str, Any] = {}
    if "Prefix" in rule:
        conditions["Prefix"] = rule["Prefix"]
    if rule.get("TagFilters"):
        conditions["Tags"] = rule["TagFilters"]
    for key in ("ObjectSizeGreaterThan", "ObjectSizeLessThan"):
        if key in rule:
            conditions[key] = int(rule[key])
    if len(conditions) > 1 or ("Tags" in conditions and len(conditions["Tags"]) > 1):
        out["Filter"] = {"And": conditions}
    elif "Tags" in conditions:
        out["Filter"] = {"Tag": conditions["Tags"][0]}
    else:
        out["Filter"] = conditions or {"Prefix": ""}
    expiration: dict[str, Any] = {}
    if "ExpirationInDays" in rule:
        expiration["Days"] = int(rule["ExpirationInDays"])
    if "ExpirationDate" in rule:
        expiration["Date"] = rule["ExpirationDate"]
    if "ExpiredObjectDeleteMarker" in rule:
        expiration["ExpiredObjectDeleteMarker"] = _bool(rule["ExpiredObjectDeleteMarker"])
    if expiration:
        out["Expiration"] = expiration
    noncurrent = dict(rule.get("NoncurrentVersionExpiration", {}))
    if "NoncurrentVersionExpirationInDays" in rule:
        noncurrent["NoncurrentDays"] = rule["NoncurrentVersionExpirationInDays"]
    if noncurrent:
        out["NoncurrentVersionExpiration"] = {k: int(v) for k, v in noncurrent.items()}
    if rule.get("Transitions"):
        out["Transitions"] = [{"StorageClass": t["StorageClass"],
                               **({"Days": int(t["TransitionInDays"])} if "TransitionInDays" in t else {}),
                               **({"Date": t["TransitionDate"]} if "TransitionDate" in t else {})}
                              for t in rule["Transitions"]]
    if rule.get("NoncurrentVersionTransitions"):
        out["NoncurrentVersionTransitions"] = [
            {"StorageClass": t["StorageClass"], "NoncurrentDays": int(t["TransitionInDays"]),
             **({"NewerNoncurrentVersions": int(t["NewerNoncurrentVersions"])}
                if "NewerNoncurrentVersions" in t else {})}
            for t in rule["NoncurrentVersionTransitions"]]
    if "AbortIncompleteMultipartUpload" in rule:
        out["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])}
    return out


def _table(ctx: ApplyContext, lid: str, resolved: dict[str, Any]) -> str:
    props, table = resolved["props"], resolved["ref"]
    ddb = ctx.client("dynamodb")
    applied = []
    ttl = props.get("TimeToLiveSpecification")
    if ttl and _bool(ttl.get("Enabled", False)):
        ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": ttl["AttributeName"]})
        applied.append("TTL")
        ctx.note("TTL expiry", "the TTL setting is stored; moto never deletes expired items")
    pitr = props.get("PointInTimeRecoverySpecification")
    if pitr and _bool(pitr.get("PointInTimeRecoveryEnabled", False)):
        ddb.update_continuous_backups(TableName=table, PointInTimeRecoverySpecification={
            "PointInTimeRecoveryEnabled": True})
        applied.append("point-in-time recovery")
    sse = props.get("SSESpecification") or {}
    if _bool(sse.get("SSEEnabled", False)):
        ctx.note("encryption at rest", "the table records its KMS key; moto never calls KMS for table data")
    return table + (f" ({', '.join(applied)})" if applied else "")


def _key(ctx: ApplyContext, lid: str, resolved: dict[str, Any]) -> str:
    """KMS keys: moto's CloudFormation keeps the policy as a dict; store it as the JSON KMS
    returns. Pre-created keys (no ``ref`` from the stack) get their policy, state and tags here."""
    props = resolved["props"]
    key_id = resolved.get("ref") or resolved["key_id"]
    kms = ctx.client("kms")
    if "KeyPolicy" in props:
        policy, removed = without_conditional_statements(props["KeyPolicy"], ("Deny",))
        kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=json.dumps(policy))
        for description in removed:
            ctx.note("key policy condition", f"{description} left out: moto ignores conditions")
        ctx.note("key policy enforcement", "stored; moto evaluates no key policy statement except a Deny "
                                           "of DescribeKey, and no grants")
    if "ref" not in resolved:  # pre-created: CloudFormation did not see it at all
        if props.get("Tags"):
            kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": t["Key"], "TagValue": t["Value"]} for t in props["Tags"]])
        if not _bool(props.get("Enabled", True)):
            kms.disable_key(KeyId=key_id)
    return key_id


def _function(ctx: ApplyContext, lid: str, resolved: dict[str, Any]) -> str:
    """A function's DeadLetterConfig (moto has no notion of it): recorded for the runner,
    which sends asynchronous events that failed every attempt there, as Lambda does."""
    name = resolved["ref"]
    target = (resolved["props"].get("DeadLetterConfig") or {}).get("TargetArn")
    if target:
        service = str(_require(target, "DeadLetterConfig.TargetArn")).split(":")[2]
        if service not in ("sqs", "sns"):
            raise NotEmulatedError(f"dead-letter target {target} is neither SQS nor SNS")
        ctx.dead_letter_targets[f"arn:aws:lambda:{ctx.region}:{ctx.account}:function:{name}"] = target
        return f"{name} (dead letters to {target.split(':')[-1]}, sent by the runner)"
    return name


def _rest_api(ctx: ApplyContext, lid: str, resolved: dict[str, Any]) -> str:
    """A REST API's resource policy and binary media types (moto's CloudFormation reads
    only Name, Description and EndpointConfiguration)."""
    props, api_id = resolved["props"], resolved["ref"]
    operations = []
    if props.get("Policy"):
        operations.append({"op": "replace", "path": "/policy", "value": _policy(props["Policy"])})
    for media_type in props.get("BinaryMediaTypes", []):
        operations.append({"op": "add", "path": "/binaryMediaTypes/" + media_type.replace("/", "~1"),
                           "value": media_type})
    if operations:
        ctx.client("apigateway").update_rest_api(restApiId=api_id, patchOperations=operations)
    if props.get("Policy"):
        ctx.note("API Gateway resource policy enforcement", "stored on the API; evaluated only when the API is "
                                                            "served by embedded_aws.api.LocalApi")
    return api_id


EXTRA_PROPERTIES: dict[str, Handler] = {
    "AWS::S3::Bucket": _bucket,
    "AWS::DynamoDB::Table": _table,
    "AWS::KMS::Key": _key,
    "AWS::Lambda::Function": _function,
    "AWS::ApiGateway::RestApi": _rest_api,
}

# Which properties of those types the deployer needs resolved (None: all of them).
RESOLVED_PROPERTIES: dict[str, frozenset[str] | None] = {
    "AWS::S3::Bucket": None,
    "AWS::DynamoDB::Table": frozenset({"TimeToLiveSpecification", "PointInTimeRecoverySpecification",
                                       "SSESpecification"}),
    "AWS::KMS::Key": None,
    "AWS::Lambda::Function": frozenset({"DeadLetterConfig"}),
    "AWS::ApiGateway::RestApi": frozenset({"Policy", "BinaryMediaTypes"}),
}

# Properties moto 5.2.5's CloudFormation models read, per type (the rest are ignored by moto).
MOTO_HONOURED: dict[str, frozenset[str]] = {
    "AWS::S3::Bucket": frozenset({"BucketName", "BucketEncryption", "Tags"}),
    "AWS::DynamoDB::Table": frozenset({
        "TableName", "KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes", "LocalSecondaryIndexes",
        "ProvisionedThroughput", "StreamSpecification", "Tags", "DeletionProtectionEnabled", "SSESpecification",
        "WarmThroughput", "BillingMode"}),
    "AWS::Lambda::Function": frozenset({
        "Code", "FunctionName", "Handler", "Role", "Runtime", "Description", "MemorySize", "Publish", "Timeout",
        "VpcConfig", "Environment", "ReservedConcurrentExecutions", "Tags"}),
    "AWS::KMS::Key": frozenset({"KeyPolicy", "Description", "Tags", "EnableKeyRotation", "Enabled"}),
    "AWS::Logs::LogGroup": frozenset({"LogGroupName", "RetentionInDays", "Tags"}),
    "AWS::ApiGateway::RestApi": frozenset({"Name", "Description", "EndpointConfiguration"}),
    # Of Integration only Type, Uri and IntegrationHttpMethod.
    "AWS::ApiGateway::Method": frozenset({"RestApiId", "ResourceId", "HttpMethod", "AuthorizationType",
                                          "ApiKeyRequired", "Integration"}),
}

# Properties the handlers above apply, per type.
APPLIED_HERE: dict[str, frozenset[str]] = {
    "AWS::S3::Bucket": frozenset({"VersioningConfiguration", "PublicAccessBlockConfiguration", "OwnershipControls",
                                  "CorsConfiguration", "LifecycleConfiguration", "NotificationConfiguration",
                                  "LoggingConfiguration", "ObjectLockEnabled", "ObjectLockConfiguration"}),
    "AWS::DynamoDB::Table": frozenset({"TimeToLiveSpecification", "PointInTimeRecoverySpecification"}),
    # The runner reads Handler, Environment, Timeout, MemorySize back from moto; these it
    # deliberately replaces (see runner.py), reported separately.
    "AWS::Lambda::Function": frozenset({"Architectures", "DeadLetterConfig"}),
    "AWS::KMS::Key": frozenset({"KeySpec", "KeyUsage"}),  # via pre-creation
    "AWS::ApiGateway::RestApi": frozenset({"Policy", "BinaryMediaTypes"}),
}

# Why an ignored property matters, where there is more to say than "ignored".
IGNORED_PROPERTY_REASONS: dict[tuple[str, str], str] = {
    ("AWS::Lambda::Function", "Layers"): "the runner does not put layer contents on the import path",
    ("AWS::Lambda::Function", "LoggingConfig"): "logs go to the local process, not CloudWatch Logs",
    ("AWS::Lambda::Function", "TracingConfig"): "no X-Ray",
    ("AWS::Lambda::Function", "KmsKeyArn"): "environment variables are not encrypted",
    ("AWS::DynamoDB::Table", "ContributorInsightsSpecification"): "no Contributor Insights",
    ("AWS::DynamoDB::Table", "KinesisStreamSpecification"): "no Kinesis change stream",
    ("AWS::KMS::Key", "MultiRegion"): "single-region key",
    ("AWS::KMS::Key", "PendingWindowInDays"): "deletion is immediate",
    ("AWS::Logs::LogGroup", "KmsKeyId"): "log group is not encrypted",
    ("AWS::ApiGateway::Method", "RequestValidatorId"): "requests are not validated locally",
    ("AWS::ApiGateway::Method", "RequestModels"): "requests are not validated locally",
    ("AWS::ApiGateway::Method", "RequestParameters"): "requests are not validated locally",
    ("AWS::ApiGateway::Method", "AuthorizerId"): "only AWS_IAM authorization is emulated (embedded_aws.api)",
}


def ignored_properties(resource_type: str, props: dict[str, Any]) -> list[tuple[str, str]]:
    """(property, reason) for each property neither moto nor local mode reproduces."""
    honoured = MOTO_HONOURED.get(resource_type)
    if honoured is None:
        return []
    applied = APPLIED_HERE.get(resource_type, frozenset())
    return [(p, IGNORED_PROPERTY_REASONS.get((resource_type, p), "ignored by moto's CloudFormation"))
            for p in sorted(props) if p not in honoured and p not in applied]
