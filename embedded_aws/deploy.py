"""Deploying a synthesized cloud assembly (``cdk.out``) into the embedded AWS.

What runs locally is the assembly itself, never a second description of the resources:
the bootstrap bucket and version parameter a ``cdk bootstrap`` would have created, the
file assets published as the CDK CLI publishes them, then each stack created by
CloudFormation (moto's) from its synthesized template, in dependency order. Where moto's
CloudFormation stops short, the template is pre-processed (``template.py``) and the rest is
done through the service APIs (``emulate.py``). Everything local mode cannot reproduce is
returned in ``DeployedEnvironment.not_emulated``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from jukinet.adapters import aws

from . import emulate
from .assembly import StackArtifact, package_asset, read_assembly, substitute_placeholders
from .emulate import API_CREATED, EXTRA_PROPERTIES, ApplyContext, NotEmulatedError
from .model import (
    BucketNotification,
    DeployedEnvironment,
    EventSourceMappingSpec,
    NotEmulated,
    ResourceStatus,
    StackReport,
)
from .server import DEFAULT_ACCOUNT_ID, local_client
from .template import (
    EVENT_SOURCE_MAPPING,
    NESTED_STACK,
    PLACEHOLDER_PREFIX,
    RESOLVED_OUTPUT_PREFIX,
    PreparedTemplate,
    analyse,
    is_custom_resource,
    moto_cloudformation_models,
    rewrite,
)

__all__ = [
    "BucketNotification",
    "DeployError",
    "DeployedEnvironment",
    "EventSourceMappingSpec",
    "NotEmulated",
    "ResourceStatus",
    "StackReport",
    "deploy_assembly",
]

DEFAULT_REGION = "ap-northeast-1"
# What a current `cdk bootstrap` writes to /cdk-bootstrap/<qualifier>/version.
BOOTSTRAP_VERSION = 30

_CUSTOM_RESOURCE_HINTS = {
    "Custom::S3BucketNotifications": "use the bucket's NotificationConfiguration property (CfnBucket) instead "
                                     "of bucket.add_event_notification",
    "Custom::LogRetention": "give the function a LogGroup (logGroup=) instead of logRetention=",
    "Custom::S3AutoDeleteObjects": "only matters when the stack is deleted",
    "Custom::AWS": "AwsCustomResource calls are not made",
    "Custom::CrossRegionExportWriter": "cross-region references do not resolve",
}


class DeployError(RuntimeError):
    """A stack could not be created in the embedded AWS."""


def deploy_assembly(cdk_out_dir: str | os.PathLike[str], endpoint_url: str, *,
                    default_region: str = DEFAULT_REGION,
                    parameters: Mapping[str, Mapping[str, str]] | None = None,
                    stacks: list[str] | None = None,
                    on_progress: Callable[[str], None] | None = None) -> DeployedEnvironment:
    """Deploy every stack of the assembly (or only ``stacks``, by stack name or artifact id,
    plus what they depend on). Environment-agnostic stacks go to moto's default account and
    ``default_region``. ``parameters``: stack name -> {parameter: value} for parameters
    without a default."""
    started = time.perf_counter()
    progress = on_progress or (lambda _msg: None)
    # Importing moto's CloudFormation models takes ~1.5 s: overlap it with the asset upload.
    threading.Thread(target=moto_cloudformation_models, daemon=True).start()
    assembly = read_assembly(cdk_out_dir)
    ordered = _select(assembly.in_dependency_order(), stacks)
    exports = _export_index(ordered)
    env = DeployedEnvironment(endpoint_url=endpoint_url, stacks={}, event_source_mappings=[],
                              bucket_notifications=[], not_emulated=[], asset_buckets={})
    published: set[tuple[str, str]] = set()
    packaged: dict[str, bytes] = {}
    types_seen: set[str] = set()
    lambda_props: list[dict[str, Any]] = []

    for artifact in ordered:
        account = artifact.account or DEFAULT_ACCOUNT_ID
        region = artifact.region or default_region
        clients: dict[str, Any] = {}

        def client(service: str, account: str = account, region: str = region, clients: dict = clients) -> Any:
            if service not in clients:
                clients[service] = local_client(endpoint_url, service, region, account)
            return clients[service]

        t0 = time.perf_counter()
        progress(f"{artifact.stack_name}: bootstrap and assets")
        _bootstrap(artifact, account, region, client, env)
        for item in artifact.docker_image_assets:
            env.not_emulated.append(NotEmulated(artifact.stack_name, None, None, f"Docker image asset {item}",
                                                "container images are not built or run locally"))
        _publish_assets(artifact, account, region, endpoint_url, published, packaged)
        env.timings[f"assets:{artifact.stack_name}"] = time.perf_counter() - t0

        template = artifact.template()
        for resource in template.get("Resources", {}).values():
            types_seen.add(resource.get("Type", ""))
            if resource.get("Type") == "AWS::Lambda::Function":
                lambda_props.append(resource.get("Properties", {}))
        prepared = analyse(template, api_emulated=frozenset(API_CREATED),
                           needs_resolution=emulate.RESOLVED_PROPERTIES, export_lookup=exports.get)
        literals = _precreate_keys(prepared, client)
        body = rewrite(prepared, literals)

        progress(f"{artifact.stack_name}: creating stack")
        t1 = time.perf_counter()
        report, physical = _create_stack(artifact, body, account, region, endpoint_url,
                                         (parameters or {}).get(artifact.stack_name, {}))
        env.timings[f"stack:{artifact.stack_name}"] = time.perf_counter() - t1

        progress(f"{artifact.stack_name}: completing through the service APIs")
        t2 = time.perf_counter()
        _complete(artifact, template, prepared, report, physical, literals, client, env)
        env.timings[f"complete:{artifact.stack_name}"] = time.perf_counter() - t2
        report.seconds = time.perf_counter() - t0
        env.stacks[artifact.stack_name] = report
        env.template_notes[artifact.stack_name] = prepared.notes

    env.not_emulated += _environment_notes(types_seen, lambda_props)
    env.timings["total"] = time.perf_counter() - started
    return env


def _select(ordered: list[StackArtifact], wanted: list[str] | None) -> list[StackArtifact]:
    if not wanted:
        return ordered
    by_key = {s.stack_name: s for s in ordered} | {s.artifact_id: s for s in ordered}
    missing = [w for w in wanted if w not in by_key]
    if missing:
        raise DeployError(f"no such stack(s) in the assembly: {', '.join(missing)}")
    needed: set[str] = set()

    def add(stack: StackArtifact) -> None:
        if stack.artifact_id not in needed:
            needed.add(stack.artifact_id)
            for dep in stack.dependencies:
                if dep in by_key:
                    add(by_key[dep])

    for w in wanted:
        add(by_key[w])
    return [s for s in ordered if s.artifact_id in needed]


def _export_index(stacks: list[StackArtifact]) -> dict[str, tuple[dict[str, Any], Any]]:
    index: dict[str, tuple[dict[str, Any], Any]] = {}
    for stack in stacks:
        template = stack.template()
        for output in (template.get("Outputs") or {}).values():
            name = (output.get("Export") or {}).get("Name")
            if isinstance(name, str):
                index[name] = (template, output.get("Value"))
    return index


# -- bootstrap and assets ----------------------------------------------------------------------


def _bootstrap(artifact: StackArtifact, account: str, region: str, client: Callable[[str], Any],
               env: DeployedEnvironment) -> None:
    """What `cdk bootstrap` leaves in an environment and the stacks rely on: the version
    parameter their BootstrapVersion parameter reads (SSM), and the assets bucket."""
    if artifact.bootstrap_version_parameter:
        version = max(BOOTSTRAP_VERSION, artifact.required_bootstrap_version)
        client("ssm").put_parameter(Name=artifact.bootstrap_version_parameter, Value=str(version),
                                    Type="String", Overwrite=True)
    for asset in artifact.file_assets:
        for dest in asset.destinations:
            dest_region = dest.get("region") or region
            bucket = substitute_placeholders(dest["bucketName"], account, dest_region)
            env.asset_buckets.setdefault((account, dest_region), bucket)


def _ensure_bucket(s3: Any, bucket: str, region: str) -> None:
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    except ClientError as exc:
        if aws.error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def _publish_assets(artifact: StackArtifact, account: str, region: str, endpoint_url: str,
                    published: set[tuple[str, str]], packaged: dict[str, bytes]) -> None:
    for asset in artifact.file_assets:
        for dest in asset.destinations:
            dest_region = dest.get("region") or region
            bucket = substitute_placeholders(dest["bucketName"], account, dest_region)
            key = substitute_placeholders(dest["objectKey"], account, dest_region)
            if (bucket, key) in published:
                continue
            s3 = local_client(endpoint_url, "s3", dest_region, account)
            if not any(b == bucket for b, _ in published):
                _ensure_bucket(s3, bucket, dest_region)
            if asset.asset_id not in packaged:
                packaged[asset.asset_id] = package_asset(asset)
            s3.put_object(Bucket=bucket, Key=key, Body=packaged[asset.asset_id])
            published.add((bucket, key))


# -- the stack -----------------------------------------------------------------------------------


def _precreate_keys(prepared: PreparedTemplate, client: Callable[[str], Any]) -> dict[str, dict[str, str]]:
    literals: dict[str, dict[str, str]] = {}
    for lid, props in prepared.precreate_keys.items():
        request: dict[str, Any] = {"KeySpec": props.get("KeySpec", "SYMMETRIC_DEFAULT"),
                                   "KeyUsage": props.get("KeyUsage", "ENCRYPT_DECRYPT")}
        if isinstance(props.get("Description"), str):
            request["Description"] = props["Description"]
        meta = client("kms").create_key(**request)["KeyMetadata"]
        literals[lid] = {"Ref": meta["KeyId"], "KeyId": meta["KeyId"], "Arn": meta["Arn"]}
    return literals


def _create_stack(artifact: StackArtifact, body: dict[str, Any], account: str, region: str, endpoint_url: str,
                  given: Mapping[str, str]) -> tuple[StackReport, dict[str, tuple[str, str]]]:
    cfn = local_client(endpoint_url, "cloudformation", region, account, retry=False)
    params = []
    for name, spec in (body.get("Parameters") or {}).items():
        if name in given:
            params.append({"ParameterKey": name, "ParameterValue": str(given[name])})
        elif "Default" not in spec:
            raise DeployError(f"{artifact.stack_name}: parameter {name} has no default; pass it in parameters=")
    try:
        stack_id = cfn.create_stack(StackName=artifact.stack_name, TemplateBody=json.dumps(body), Parameters=params,
                                    Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM",
                                                  "CAPABILITY_AUTO_EXPAND"])["StackId"]
    except ClientError as exc:
        hint = ""
        if "references undefined resource" in str(exc):
            # moto looks resources up with Mapping.get, which turns a KeyError raised while
            # creating the resource into "undefined".
            hint = (" (the resource exists in the template: moto's model most likely failed on one of its "
                    "properties; see template.MOTO_QUIRKS and the moto server log)")
        raise DeployError(f"{artifact.stack_name}: moto's CloudFormation rejected the template: {exc}{hint}") from exc
    deadline = time.monotonic() + 60
    while True:  # moto creates synchronously; this only guards against a future change
        stack = cfn.describe_stacks(StackName=stack_id)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise DeployError(f"{artifact.stack_name}: stack ended in {stack['StackStatus']}")
    report = StackReport(artifact_id=artifact.artifact_id, stack_name=artifact.stack_name, stack_id=stack_id,
                         account=account, region=region, status=stack["StackStatus"])
    for output in stack.get("Outputs", []):
        report.outputs[output["OutputKey"]] = output.get("OutputValue", "")
    physical: dict[str, tuple[str, str]] = {}
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack_id):
        for summary in page["StackResourceSummaries"]:
            if summary.get("LogicalResourceId"):
                physical[summary["LogicalResourceId"]] = (summary.get("PhysicalResourceId", ""),
                                                          summary.get("ResourceType", ""))
    return report, physical


def _complete(artifact: StackArtifact, template: Mapping[str, Any], prepared: PreparedTemplate, report: StackReport,
              physical: Mapping[str, tuple[str, str]], literals: Mapping[str, Mapping[str, str]],
              client: Callable[[str], Any], env: DeployedEnvironment) -> None:
    """Apply what moto's CloudFormation skipped, and record the state of every resource."""
    resolved: dict[str, dict[str, Any]] = {}
    for key in list(report.outputs):
        if key.startswith(RESOLVED_OUTPUT_PREFIX) and key in prepared.resolved_outputs:
            resolved[prepared.resolved_outputs[key]] = json.loads(report.outputs.pop(key))
    ctx = ApplyContext(stack_name=artifact.stack_name, account=report.account, region=report.region, client=client)
    resources = template.get("Resources", {})
    states: dict[str, ResourceStatus] = {}

    def run(lid: str, rtype: str, handler: emulate.Handler, values: dict[str, Any]) -> tuple[bool, str]:
        ctx.current = (lid, rtype)
        try:
            return True, handler(ctx, lid, values)
        except NotEmulatedError as exc:
            ctx.note(rtype, str(exc))
            return False, str(exc)
        except ClientError as exc:
            ctx.note(rtype, f"the service API refused it: {exc}")
            return False, str(exc)

    # 1. Pre-created keys and kept resources whose ignored properties we apply.
    for lid, rtype in prepared.original_types.items():
        props = resources[lid].get("Properties", {}) or {}
        if lid in prepared.precreate_keys:
            values = dict(resolved.get(lid, {"props": {}}), key_id=literals[lid]["KeyId"])
            run(lid, rtype, EXTRA_PROPERTIES[rtype], values)
            states[lid] = ResourceStatus(lid, rtype, "PRECREATED_VIA_API", literals[lid]["KeyId"],
                                         "created through the KMS API (KeySpec/KeyUsage)")
            continue
        if lid in prepared.dropped:
            continue
        if lid not in physical:
            if "Condition" in resources[lid]:
                states[lid] = ResourceStatus(lid, rtype, "SKIPPED", None, "condition false")
            else:
                states[lid] = ResourceStatus(lid, rtype, "NOT_EMULATED", None,
                                             "moto's CloudFormation did not create it")
                env.not_emulated.append(NotEmulated(artifact.stack_name, lid, rtype, rtype,
                                                    "moto's CloudFormation did not create it"))
            continue
        physical_id = physical[lid][0]
        detail = ""
        if lid in resolved and rtype in EXTRA_PROPERTIES:
            _ok, detail = run(lid, rtype, EXTRA_PROPERTIES[rtype], resolved[lid])
        state = "CREATED"
        if rtype == EVENT_SOURCE_MAPPING:
            spec = _mapping_spec(artifact.stack_name, lid, physical_id, prepared.esm_enabled.get(lid, True), client)
            env.event_source_mappings.append(spec)
            if spec.enabled:
                state, detail = "DRIVEN_BY_RUNNER", "created disabled; the local runner polls the queue"
            else:
                detail = "disabled in the template"
        ctx.current = (lid, rtype)
        for prop, reason in emulate.ignored_properties(rtype, props):
            ctx.note(f"property {prop}", reason)
        states[lid] = ResourceStatus(lid, rtype, state, physical_id, detail)

    # 2. Resources dropped from the template, those that refer to another one after it (an API
    #    key before the usage-plan key naming it: the reference is a placeholder until then).
    for lid, rtype in _referenced_first(prepared.dropped, resolved):
        if lid in states:
            continue
        ctx.current = (lid, rtype)
        if rtype == "AWS::CDK::Metadata":
            states[lid] = ResourceStatus(lid, rtype, "SKIPPED", None, "CDK metadata")
        elif is_custom_resource(rtype):
            hint = _CUSTOM_RESOURCE_HINTS.get(rtype, "replace it with native CloudFormation where possible")
            ctx.note("custom resource", f"Lambda-backed custom resources are not run (moto would invoke "
                                        f"the handler through Docker); {hint}")
            states[lid] = ResourceStatus(lid, rtype, "NOT_EMULATED", None, "custom resource not run")
        elif rtype == NESTED_STACK:
            ctx.note("nested stack", "nested stacks are not deployed locally; use sibling stacks")
            states[lid] = ResourceStatus(lid, rtype, "NOT_EMULATED", None, "nested stack")
        elif rtype == EVENT_SOURCE_MAPPING:
            ctx.note("event source mapping", "only SQS mappings are driven locally; moto would invoke "
                                             "stream mappings through Docker even when disabled")
            states[lid] = ResourceStatus(lid, rtype, "NOT_EMULATED", None, "non-SQS event source")
        elif rtype in API_CREATED and lid in resolved:
            ok, detail = run(lid, rtype, API_CREATED[rtype], resolved[lid])
            states[lid] = ResourceStatus(lid, rtype, "CREATED_VIA_API" if ok else "NOT_EMULATED",
                                         detail if ok else None, "" if ok else detail)
        elif rtype in API_CREATED:
            states[lid] = ResourceStatus(lid, rtype, "SKIPPED", None, "condition false")
        else:
            ctx.note(rtype, "moto's CloudFormation has no model for this type and local mode does not emulate it")
            states[lid] = ResourceStatus(lid, rtype, "NOT_EMULATED", None, "unsupported type")

    report.resources = [states[lid] for lid in prepared.original_types if lid in states]
    env.not_emulated += ctx.not_emulated
    env.bucket_notifications += ctx.bucket_notifications
    env.dead_letter_targets.update(ctx.dead_letter_targets)


def _referenced_first(dropped: Mapping[str, str], resolved: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``dropped`` in template order, except that a resource comes after every dropped resource
    its resolved properties refer to (by placeholder)."""
    text = {lid: json.dumps(resolved.get(lid, {}), default=str) for lid in dropped}
    ordered: list[tuple[str, str]] = []
    placed: set[str] = set()

    def place(lid: str, trail: frozenset[str]) -> None:
        if lid in placed or lid in trail:
            return
        for other in dropped:
            if other != lid and f"{PLACEHOLDER_PREFIX}{other}" in text[lid]:
                place(other, trail | {lid})
        placed.add(lid)
        ordered.append((lid, dropped[lid]))

    for lid in dropped:
        place(lid, frozenset())
    return ordered


def _mapping_spec(stack: str, lid: str, uuid: str, enabled: bool,
                  client: Callable[[str], Any]) -> EventSourceMappingSpec:
    mapping = client("lambda").get_event_source_mapping(UUID=uuid)
    return EventSourceMappingSpec(stack=stack, logical_id=lid, uuid=uuid, function_arn=mapping["FunctionArn"],
                                  event_source_arn=mapping["EventSourceArn"], enabled=enabled)


def _environment_notes(types: set[str], functions: list[dict[str, Any]]) -> list[NotEmulated]:
    notes = []

    def add(feature: str, reason: str) -> None:
        notes.append(NotEmulated(None, None, None, feature, reason))

    if any(t.startswith("AWS::IAM::") for t in types) or functions:
        add("IAM enforcement", "roles and policies are created but never evaluated: every call a function makes "
                               "to the embedded AWS is allowed")
    if "AWS::EC2::VPCEndpoint" in types or any("VpcConfig" in f for f in functions):
        add("VPC isolation", "functions run on the host network; subnets, security groups and VPC endpoint "
                             "policies constrain nothing")
    if functions:
        add("Lambda concurrency", "the runner invokes one function at a time; ReservedConcurrentExecutions and "
                                  "MaximumConcurrency have no effect and no two invocations ever race")
        add("Lambda timeouts", "durations are measured and over-runs reported, but an invocation is never cut off")
        add("Lambda runtime", "code runs in this process on the host's Python and CPU, with the host's installed "
                              "third-party packages instead of the bundled (arm64) ones")
        add("CloudWatch Logs and metrics", "function output goes to the local process; EMF metrics are not ingested")
    if "AWS::KMS::Key" in types:
        add("KMS-backed server-side encryption", "services record their KMS key but moto never calls KMS for "
                                                 "S3/SQS/DynamoDB data; only calls the code makes itself use KMS")
    return notes
