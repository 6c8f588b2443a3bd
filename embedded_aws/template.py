"""Pre-processing a synthesized template so moto's CloudFormation can create it.

Every rewrite is recorded in ``PreparedTemplate.notes`` and documented in
docs/local-mode.md ("Template pre-processing"). The rewrites, in order:

1. ``AWS::CDK::Metadata`` is dropped (analytics only).
2. Custom resources (``Custom::*``, ``AWS::CloudFormation::CustomResource``) are dropped:
   moto would invoke their Lambda through Docker and wait forever for the response.
   Nested stacks (``AWS::CloudFormation::Stack``) are dropped too: moto would create
   their templates as they are, without this pre-processing.
3. Event source mappings: SQS ones are kept but created ``Enabled: false`` (moto's SQS
   invokes the function through Docker on every SendMessage when a mapping is enabled);
   their synthesized ``Enabled`` is recorded so the runner drives exactly those. Mappings
   from DynamoDB streams or Kinesis are dropped: moto invokes those even when disabled.
4. KMS keys that are not symmetric encryption keys (``KeySpec``/``KeyUsage``) are dropped
   and created through the KMS API before the stack (moto's CloudFormation ignores both
   properties and would create a symmetric key). References to them become literals.
5. Resource types moto's CloudFormation has no model for are dropped; the deployer
   creates the ones it knows through the service APIs after the stack (``emulate.py``).
6. ``Fn::GetAtt`` of an attribute moto's model lacks but whose value equals the
   resource's ``Ref`` (a queue's ``QueueUrl``, a key's ``KeyId``, a topic's ``TopicArn``)
   becomes that ``Ref``. Any other ``Ref``/``Fn::GetAtt``/``${...}`` pointing at a
   dropped resource or at an attribute moto's model does not implement, and any ``Ref``
   to a type whose moto model has no physical id, becomes the placeholder string
   ``local-mode-unresolved:<LogicalId>[.<Attribute>]`` (moto would otherwise fail the
   whole stack, silently drop the property, or pass its internal object on).
7. Property formats moto's models misread are converted (``MOTO_QUIRKS``): a KMS key's
   ``Tags`` are given as KMS's ``TagKey``/``TagValue`` (moto's KMS model raises a KeyError
   on CloudFormation's ``Key``/``Value``, which its CloudFormation reports as "Fn::GetAtt
   references undefined resource").
8. One extra output per resource the deployer must finish through the APIs,
   ``LocalModeResolved<LogicalId>``, whose value is ``Fn::ToJsonString`` of the resource's
   properties (and its ``Ref``): moto resolves every intrinsic in it exactly as it did for
   the stack, so the deployer never re-implements CloudFormation's intrinsic functions.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

PLACEHOLDER_PREFIX = "local-mode-unresolved:"
RESOLVED_OUTPUT_PREFIX = "LocalModeResolved"

CDK_METADATA = "AWS::CDK::Metadata"
CUSTOM_RESOURCE = "AWS::CloudFormation::CustomResource"
EVENT_SOURCE_MAPPING = "AWS::Lambda::EventSourceMapping"
KMS_KEY = "AWS::KMS::Key"
NESTED_STACK = "AWS::CloudFormation::Stack"

_SUB_VARIABLE = re.compile(r"\$\{([^!}][^}]*)\}")

def _kms_key_tags(props: dict[str, Any]) -> dict[str, Any]:
    tags = props.get("Tags")
    if isinstance(tags, list):
        props["Tags"] = [{"TagKey": t["Key"], "TagValue": t["Value"]} if "Key" in t else t for t in tags]
    return props


def _rest_api_endpoint_configuration(props: dict[str, Any]) -> dict[str, Any]:
    # moto stores the dict as given and serves it under the API's lower-case names, so
    # CloudFormation's Types/VpcEndpointIds would read back as an empty configuration.
    config = props.get("EndpointConfiguration")
    if isinstance(config, dict):
        props["EndpointConfiguration"] = {key[:1].lower() + key[1:]: value for key, value in config.items()}
    return props


# Per type: make the properties readable by moto's model (step 7).
MOTO_QUIRKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    KMS_KEY: _kms_key_tags,
    "AWS::ApiGateway::RestApi": _rest_api_endpoint_configuration,
}

# Attributes CloudFormation defines as equal to the resource's Ref, which moto lacks.
GETATT_EQUAL_TO_REF = frozenset({
    ("AWS::SQS::Queue", "QueueUrl"),
    ("AWS::KMS::Key", "KeyId"),
    ("AWS::SNS::Topic", "TopicArn"),
})


@lru_cache(maxsize=1)
def moto_cloudformation_models() -> Mapping[str, Any]:
    """Resource type -> moto model class, for the installed moto (what its CloudFormation
    creates). Imported lazily: it loads most of moto (~1.5 s)."""
    from moto.cloudformation.parsing import get_model_map

    models = dict(get_model_map())
    for bogus in ("?", "AWS::SERVICE::RESOURCE"):  # abstract bases registered by moto
        models.pop(bogus, None)
    return models


def moto_has_physical_id(resource_type: str) -> bool:
    """Whether moto's ``Ref`` to this type yields a value (some models, e.g. Lambda
    permissions, have none: the ``Ref`` would yield the model object itself)."""
    model = moto_cloudformation_models().get(resource_type)
    return model is not None and hasattr(model, "physical_resource_id")


def moto_supports_attribute(resource_type: str, attribute: str) -> bool:
    model = moto_cloudformation_models().get(resource_type)
    if model is None:
        return False
    # The base class answers True for everything; only models that override it know.
    return bool(model.has_cfn_attr(attribute))


@dataclass(frozen=True)
class Note:
    """One pre-processing step applied to one resource (or one reference)."""

    logical_id: str
    resource_type: str
    action: str  # dropped-metadata | dropped-nested-stack | dropped-custom-resource | esm-disabled |
    # esm-dropped | kms-key-precreated | dropped-unsupported | getatt-as-ref | placeholder | resolve-output
    detail: str


@dataclass
class PreparedTemplate:
    body: dict[str, Any]
    notes: list[Note] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)  # logical id -> type (not in moto's stack)
    precreate_keys: dict[str, dict[str, Any]] = field(default_factory=dict)  # logical id -> props
    esm_enabled: dict[str, bool] = field(default_factory=dict)  # kept SQS mappings -> synthesized Enabled
    resolved_outputs: dict[str, str] = field(default_factory=dict)  # output key -> logical id
    resolved_properties: dict[str, frozenset[str]] = field(default_factory=dict)  # logical id -> subset resolved
    original_types: dict[str, str] = field(default_factory=dict)  # every logical id -> type


ExportLookup = Callable[[str], tuple[dict[str, Any], Any] | None]  # export name -> (template, value expr)


def is_custom_resource(resource_type: str) -> bool:
    return resource_type.startswith("Custom::") or resource_type == CUSTOM_RESOURCE


def needs_precreated_key(props: Mapping[str, Any]) -> bool:
    spec = props.get("KeySpec", "SYMMETRIC_DEFAULT")
    usage = props.get("KeyUsage", "ENCRYPT_DECRYPT")
    return spec != "SYMMETRIC_DEFAULT" or usage != "ENCRYPT_DECRYPT"


def analyse(template: Mapping[str, Any], *, api_emulated: frozenset[str],
            needs_resolution: Mapping[str, frozenset[str] | None],
            export_lookup: ExportLookup | None = None) -> PreparedTemplate:
    """Decide what happens to each resource (steps 1-5). ``api_emulated``: dropped types the
    deployer creates through the APIs; ``needs_resolution``: kept types whose properties the
    deployer completes through the APIs -> the properties it needs (None: all); a resource
    with none of them present needs nothing. Call ``rewrite`` once pre-created keys exist."""
    if "Transform" in template:
        raise ValueError("templates with a Transform (SAM, macros) cannot be deployed locally")
    prepared = PreparedTemplate(body=copy.deepcopy(dict(template)))
    resources: dict[str, Any] = prepared.body.get("Resources", {})
    models = moto_cloudformation_models()
    prepared.original_types = {lid: r.get("Type", "") for lid, r in resources.items()}

    for lid, resource in resources.items():
        rtype = resource.get("Type", "")
        props = resource.get("Properties", {}) or {}
        if rtype == CDK_METADATA:
            prepared.dropped[lid] = rtype
            prepared.notes.append(Note(lid, rtype, "dropped-metadata", "CDK analytics metadata"))
        elif rtype == NESTED_STACK:
            prepared.dropped[lid] = rtype
            prepared.notes.append(Note(lid, rtype, "dropped-nested-stack",
                                       "nested templates would reach moto without local-mode pre-processing"))
        elif is_custom_resource(rtype):
            prepared.dropped[lid] = rtype
            prepared.notes.append(Note(lid, rtype, "dropped-custom-resource",
                                       "a Lambda-backed custom resource; moto would invoke it through Docker"))
        elif rtype == EVENT_SOURCE_MAPPING:
            source = event_source_service(props.get("EventSourceArn"), template, export_lookup)
            if source == "sqs":
                prepared.esm_enabled[lid] = _as_bool(props.get("Enabled", True))
                props["Enabled"] = False
                resource["Properties"] = props
                prepared.notes.append(Note(lid, rtype, "esm-disabled",
                                           "created disabled; the local runner polls the queue instead"))
            else:
                prepared.dropped[lid] = rtype
                prepared.notes.append(Note(lid, rtype, "esm-dropped",
                                           f"event source {source or 'unknown'}: moto would invoke through Docker"))
        elif rtype == KMS_KEY and needs_precreated_key(props):
            prepared.dropped[lid] = rtype
            prepared.precreate_keys[lid] = props
            prepared.notes.append(Note(lid, rtype, "kms-key-precreated",
                                       f"{props.get('KeySpec', 'SYMMETRIC_DEFAULT')}/"
                                       f"{props.get('KeyUsage', 'ENCRYPT_DECRYPT')} key created through the KMS API"))
        elif rtype not in models:
            prepared.dropped[lid] = rtype
            how = "created through the service API after the stack" if rtype in api_emulated else "not emulated"
            prepared.notes.append(Note(lid, rtype, "dropped-unsupported", f"no moto CloudFormation model; {how}"))

    for lid, resource in resources.items():
        rtype = prepared.original_types[lid]
        props = resource.get("Properties", {}) or {}
        if lid in prepared.dropped:
            wanted: frozenset[str] | None = None
            wants_output = rtype in api_emulated or lid in prepared.precreate_keys
        else:
            wanted = needs_resolution.get(rtype)
            wants_output = rtype in needs_resolution and (wanted is None or any(p in props for p in wanted))
        if wants_output:
            key = RESOLVED_OUTPUT_PREFIX + re.sub(r"[^A-Za-z0-9]", "", lid)
            prepared.resolved_outputs[key] = lid
            if wanted is not None:
                prepared.resolved_properties[lid] = wanted
    return prepared


def rewrite(prepared: PreparedTemplate, literals: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """Steps 6-8: rewrite references, fix property formats, add the resolution outputs. ``literals``: for each
    pre-created resource, its ``Ref`` value and attributes."""
    body = prepared.body
    resources: dict[str, Any] = body.get("Resources", {})
    original = {lid: copy.deepcopy(resources[lid]) for lid in prepared.resolved_outputs.values()}

    def replacement(target: str, attribute: str | None) -> tuple[Any, bool]:
        """(value to use instead of the reference, whether it is a placeholder); (None, False)
        keeps the reference."""
        rtype = prepared.original_types.get(target)
        if rtype is None:
            return None, False  # a parameter
        if target in literals:
            value = literals[target].get(attribute or "Ref")
            if value is not None:
                return value, False
        elif target not in prepared.dropped:
            if attribute is None:
                if moto_has_physical_id(rtype):
                    return None, False
            elif moto_supports_attribute(rtype, attribute):
                return None, False
            elif (rtype, attribute) in GETATT_EQUAL_TO_REF:
                return {"Ref": target}, False
        return f"{PLACEHOLDER_PREFIX}{target}" + (f".{attribute}" if attribute else ""), True

    def on_reference(target: str, attribute: str | None, where: str) -> Any:
        value, placeholder = replacement(target, attribute)
        if placeholder:
            prepared.notes.append(Note(target, prepared.original_types.get(target, ""), "placeholder",
                                       f"{'Fn::GetAtt ' + attribute if attribute else 'Ref'} used by {where}"))
        elif value is not None and target not in literals:
            prepared.notes.append(Note(target, prepared.original_types[target], "getatt-as-ref",
                                       f"Fn::GetAtt {attribute} used by {where}"))
        return value

    kept = {lid: r for lid, r in resources.items() if lid not in prepared.dropped}
    for lid, resource in kept.items():
        resource["Properties"] = _rewrite(resource.get("Properties", {}), lambda t, a, lid=lid: on_reference(t, a, lid))
        quirk = MOTO_QUIRKS.get(resource.get("Type", ""))
        if quirk is not None:
            resource["Properties"] = quirk(resource["Properties"])
        depends = resource.get("DependsOn")
        if isinstance(depends, str):
            depends = [depends]
        if depends is not None:
            depends = [d for d in depends if d not in prepared.dropped]
            if depends:
                resource["DependsOn"] = depends
            else:
                resource.pop("DependsOn")
    body["Resources"] = kept
    outputs = body.get("Outputs", {}) or {}
    for key, output in outputs.items():
        outputs[key] = _rewrite(output, lambda t, a, key=key: on_reference(t, a, f"output {key}"))

    def silent(target: str, attribute: str | None) -> Any:
        # Inside the resolution outputs a reference to a dropped resource is expected
        # (a policy naming its queue policy...) and is not worth a note.
        return replacement(target, attribute)[0]

    for key, lid in prepared.resolved_outputs.items():
        resource = original[lid]
        props = resource.get("Properties", {}) or {}
        if lid in prepared.resolved_properties:
            props = {k: v for k, v in props.items() if k in prepared.resolved_properties[lid]}
        value: dict[str, Any] = {"props": _rewrite(props, silent)}
        if lid not in prepared.dropped:
            value["ref"] = {"Ref": lid}
        output: dict[str, Any] = {"Value": {"Fn::ToJsonString": value}}
        if "Condition" in resource:
            output["Condition"] = resource["Condition"]
        outputs[key] = output
        prepared.notes.append(Note(lid, prepared.original_types[lid], "resolve-output", key))
    if outputs:
        body["Outputs"] = outputs
    return body


def _rewrite(node: Any, on_reference: Callable[[str, str | None], Any]) -> Any:
    """Copy ``node``, replacing references for which ``on_reference(target, attribute)``
    returns a value (None keeps the reference)."""
    if isinstance(node, list):
        return [_rewrite(v, on_reference) for v in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (fn, arg), = node.items()
        if fn == "Ref" and isinstance(arg, str) and not arg.startswith("AWS::"):
            replaced = on_reference(arg, None)
            return node if replaced is None else replaced
        if fn == "Fn::GetAtt":
            target, attribute = (arg.split(".", 1) if isinstance(arg, str) else (arg[0], arg[1]))
            if isinstance(attribute, str):
                replaced = on_reference(target, attribute)
                if replaced is not None:
                    return replaced
            return {fn: _rewrite(arg, on_reference)}
        if fn == "Fn::Sub":
            text, variables = (arg, None) if isinstance(arg, str) else (arg[0], arg[1])
            local = set(variables or {})

            def substitute(match: re.Match[str]) -> str:
                name = match.group(1)
                if name in local or name.startswith("AWS::"):
                    return match.group(0)
                target, _, attribute = name.partition(".")
                replaced = on_reference(target, attribute or None)
                if isinstance(replaced, dict) and set(replaced) == {"Ref"}:
                    return "${" + replaced["Ref"] + "}"
                return match.group(0) if replaced is None else str(replaced)

            text = _SUB_VARIABLE.sub(substitute, text)
            if variables is None:
                return {fn: text}
            return {fn: [text, _rewrite(variables, on_reference)]}
    return {k: _rewrite(v, on_reference) for k, v in node.items()}


def event_source_service(expr: Any, template: Mapping[str, Any], export_lookup: ExportLookup | None,
                         depth: int = 0) -> str | None:
    """The AWS service an EventSourceArn expression points at (sqs, dynamodb, kinesis...)."""
    if depth > 5:
        return None
    if isinstance(expr, str):
        parts = expr.split(":")
        return parts[2] if len(parts) > 2 and parts[0] == "arn" else None
    if not isinstance(expr, dict) or len(expr) != 1:
        return None
    (fn, arg), = expr.items()
    resources = template.get("Resources", {})
    if fn == "Fn::GetAtt":
        target, attribute = (arg.split(".", 1) if isinstance(arg, str) else (arg[0], arg[1]))
        rtype = resources.get(target, {}).get("Type", "")
        if attribute == "StreamArn" and rtype.startswith("AWS::DynamoDB::"):
            return "dynamodb"
        return {"AWS::SQS::Queue": "sqs", "AWS::Kinesis::Stream": "kinesis",
                "AWS::MSK::Cluster": "kafka", "AWS::AmazonMQ::Broker": "mq"}.get(rtype)
    if fn == "Fn::ImportValue" and isinstance(arg, str) and export_lookup is not None:
        found = export_lookup(arg)
        if found is not None:
            return event_source_service(found[1], found[0], export_lookup, depth + 1)
        return None
    if fn in ("Fn::Join", "Fn::Sub"):
        text = repr(arg)
        for service in ("sqs", "dynamodb", "kinesis", "kafka"):
            if f":{service}:" in text:
                return service
    return None


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def is_placeholder(value: Any) -> bool:
    return isinstance(value, str) and PLACEHOLDER_PREFIX in value
