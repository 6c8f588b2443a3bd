"""Detection: the CIS monitoring set on every account trail, and the provision API's anomaly alarms.

The CIS patterns are checked three ways: each exactly once on each trail's log group with an
alarm on its metric; against the events each CIS recommendation names (an independent table
here, so a dropped event fails); and by evaluating them — with a small evaluator of the JSON
filter-pattern syntax they use — on sample CloudTrail records that must and must not match.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from infra.components.security_monitoring import (
    CIS_CONTROLS,
    CIS_NAMESPACE,
    NOT_FOUND_MIN_ANSWERS,
    NOT_FOUND_RATIO_PERCENT,
    SEQUENTIAL_CODES_THRESHOLD,
    TRAIL_CONTROLS,
    VOLUME_STD_DEVS,
)
from infra.naming import Names

from .conftest import REPO, Synth

pytestmark = pytest.mark.slow

# CIS AWS Foundations 4.x: the metric's events (``$.eventName`` values), from the benchmark.
CIS_EVENTS: dict[str, set[str]] = {
    "IamPolicyChanges": {"DeleteGroupPolicy", "DeleteRolePolicy", "DeleteUserPolicy", "PutGroupPolicy",
                         "PutRolePolicy", "PutUserPolicy", "CreatePolicy", "DeletePolicy", "CreatePolicyVersion",
                         "DeletePolicyVersion", "AttachRolePolicy", "DetachRolePolicy", "AttachUserPolicy",
                         "DetachUserPolicy", "AttachGroupPolicy", "DetachGroupPolicy"},
    "CloudTrailConfigChanges": {"CreateTrail", "UpdateTrail", "DeleteTrail", "StartLogging", "StopLogging"},
    "KmsKeyDisabledOrScheduledForDeletion": {"DisableKey", "ScheduleKeyDeletion"},
    "S3BucketPolicyChanges": {"PutBucketAcl", "PutBucketPolicy", "PutBucketCors", "PutBucketLifecycle",
                              "PutBucketReplication", "DeleteBucketPolicy", "DeleteBucketCors",
                              "DeleteBucketLifecycle", "DeleteBucketReplication"},
    "ConfigChanges": {"StopConfigurationRecorder", "DeleteDeliveryChannel", "PutDeliveryChannel",
                      "PutConfigurationRecorder"},
    "SecurityGroupChanges": {"AuthorizeSecurityGroupIngress", "AuthorizeSecurityGroupEgress",
                             "RevokeSecurityGroupIngress", "RevokeSecurityGroupEgress", "CreateSecurityGroup",
                             "DeleteSecurityGroup"},
    "NaclChanges": {"CreateNetworkAcl", "CreateNetworkAclEntry", "DeleteNetworkAcl", "DeleteNetworkAclEntry",
                    "ReplaceNetworkAclEntry", "ReplaceNetworkAclAssociation"},
    "NetworkGatewayChanges": {"CreateCustomerGateway", "DeleteCustomerGateway", "AttachInternetGateway",
                              "CreateInternetGateway", "DeleteInternetGateway", "DetachInternetGateway"},
    "RouteTableChanges": {"CreateRoute", "CreateRouteTable", "ReplaceRoute", "ReplaceRouteTableAssociation",
                          "DeleteRouteTable", "DeleteRoute", "DisassociateRouteTable"},
    "VpcChanges": {"CreateVpc", "DeleteVpc", "ModifyVpcAttribute", "AcceptVpcPeeringConnection",
                   "CreateVpcPeeringConnection", "DeleteVpcPeeringConnection", "RejectVpcPeeringConnection",
                   "AttachClassicLinkVpc", "DetachClassicLinkVpc", "DisableVpcClassicLink", "EnableVpcClassicLink"},
    "ConsoleSignInWithoutMfa": {"ConsoleLogin"},
    "ConsoleSignInFailures": {"ConsoleLogin"},
    "UnauthorizedApiCalls": set(),
    "RootAccountUsage": set(),
}


# --- a small evaluator of CloudWatch Logs JSON filter patterns (the subset CIS uses) ---------------

_TOKEN = re.compile(r'\s*(\(|\)|&&|\|\||NOT EXISTS|!=|=|"[^"]*"|[^\s()=!&|"]+)')


def _tokens(text: str) -> list[str]:
    found, pos = [], 0
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        assert m, f"cannot read the pattern at {text[pos:]!r}"
        found.append(m.group(1))
        pos = m.end()
    return found


def _lookup(event: dict[str, Any], selector: str) -> tuple[bool, Any]:
    value: Any = event
    for part in selector.removeprefix("$.").split("."):
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _equals(value: Any, expected: str) -> bool:
    text = str(value)
    regex = "^" + ".*".join(re.escape(p) for p in expected.split("*")) + "$"
    return re.match(regex, text) is not None


def matches(pattern: str, event: dict[str, Any]) -> bool:
    """``{ … }`` with ``&&``, ``||`` (``&&`` binding tighter), parentheses, ``=``/``!=`` (a ``*``
    is a wildcard) and ``NOT EXISTS``. A comparison on a missing field is false."""
    tokens = _tokens(pattern.strip().removeprefix("{").removesuffix("}"))
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def either() -> bool:
        result = both()
        while peek() == "||":
            take()
            result = both() or result
        return result

    def both() -> bool:
        result = term()
        while peek() == "&&":
            take()
            result = term() and result
        return result

    def term() -> bool:
        if peek() == "(":
            take()
            result = either()
            assert take() == ")"
            return result
        selector, op = take(), take()
        exists, value = _lookup(event, selector)
        if op == "NOT EXISTS":
            return not exists
        expected = take().strip('"')
        if not exists:
            return False
        return _equals(value, expected) if op == "=" else not _equals(value, expected)

    result = either()
    assert pos == len(tokens), f"unread tokens {tokens[pos:]}"
    return result


def _event(name: str, source: str = "ec2.amazonaws.com", **extra: Any) -> dict[str, Any]:
    return {"eventName": name, "eventSource": source, "eventType": "AwsApiCall",
            "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::123456789012:assumed-role/ops/alice"},
            **extra}


_SIGN_IN = {"eventType": "AwsConsoleSignIn", "eventSource": "signin.amazonaws.com"}
# metric -> (records that must match, records that must not)
SAMPLES: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {
    "UnauthorizedApiCalls": (
        [_event("DescribeInstances", errorCode="Client.UnauthorizedOperation"),
         _event("GetObject", "s3.amazonaws.com", errorCode="AccessDenied"),
         _event("Decrypt", "kms.amazonaws.com", errorCode="AccessDeniedException")],
        [_event("DescribeInstances"), _event("GetItem", "dynamodb.amazonaws.com", errorCode="ThrottlingException")]),
    "ConsoleSignInWithoutMfa": (
        [_event("ConsoleLogin", userIdentity={"type": "IAMUser"}, additionalEventData={"MFAUsed": "No"},
                responseElements={"ConsoleLogin": "Success"}, **_SIGN_IN)],
        [_event("ConsoleLogin", userIdentity={"type": "IAMUser"}, additionalEventData={"MFAUsed": "Yes"},
                responseElements={"ConsoleLogin": "Success"}, **_SIGN_IN),
         _event("ConsoleLogin", userIdentity={"type": "AssumedRole"}, additionalEventData={"MFAUsed": "No"},
                responseElements={"ConsoleLogin": "Success"}, **_SIGN_IN),
         _event("ConsoleLogin", userIdentity={"type": "IAMUser"}, additionalEventData={"MFAUsed": "No"},
                responseElements={"ConsoleLogin": "Failure"}, **_SIGN_IN)]),
    "RootAccountUsage": (
        [_event("ConsoleLogin", userIdentity={"type": "Root"}, **_SIGN_IN),
         _event("CreateAccessKey", "iam.amazonaws.com", userIdentity={"type": "Root"})],
        [_event("AssumeRole", "sts.amazonaws.com", eventType="AwsServiceEvent", userIdentity={"type": "Root"}),
         _event("PutObject", "s3.amazonaws.com", userIdentity={"type": "Root", "invokedBy": "s3.amazonaws.com"}),
         _event("CreateAccessKey", "iam.amazonaws.com")]),
    "IamPolicyChanges": (
        [_event("PutRolePolicy", "iam.amazonaws.com"), _event("AttachRolePolicy", "iam.amazonaws.com")],
        [_event("CreateRole", "iam.amazonaws.com"), _event("GetRolePolicy", "iam.amazonaws.com")]),
    "CloudTrailConfigChanges": (
        [_event("StopLogging", "cloudtrail.amazonaws.com"), _event("DeleteTrail", "cloudtrail.amazonaws.com")],
        [_event("LookupEvents", "cloudtrail.amazonaws.com"), _event("GetTrailStatus", "cloudtrail.amazonaws.com")]),
    "ConsoleSignInFailures": (
        [_event("ConsoleLogin", errorMessage="Failed authentication", **_SIGN_IN)],
        [_event("ConsoleLogin", responseElements={"ConsoleLogin": "Success"}, **_SIGN_IN)]),
    "KmsKeyDisabledOrScheduledForDeletion": (
        [_event("ScheduleKeyDeletion", "kms.amazonaws.com"), _event("DisableKey", "kms.amazonaws.com")],
        [_event("EnableKey", "kms.amazonaws.com"), _event("Decrypt", "kms.amazonaws.com")]),
    "S3BucketPolicyChanges": (
        [_event("PutBucketPolicy", "s3.amazonaws.com"), _event("DeleteBucketPolicy", "s3.amazonaws.com")],
        [_event("GetBucketPolicy", "s3.amazonaws.com"), _event("PutObject", "s3.amazonaws.com")]),
    "ConfigChanges": (
        [_event("StopConfigurationRecorder", "config.amazonaws.com")],
        [_event("DescribeConfigurationRecorders", "config.amazonaws.com")]),
    "SecurityGroupChanges": (
        [_event("AuthorizeSecurityGroupIngress"), _event("DeleteSecurityGroup")],
        [_event("DescribeSecurityGroups")]),
    "NaclChanges": ([_event("CreateNetworkAclEntry")], [_event("DescribeNetworkAcls")]),
    "NetworkGatewayChanges": ([_event("AttachInternetGateway")], [_event("DescribeInternetGateways")]),
    "RouteTableChanges": (
        [_event("CreateRoute"), _event("DisassociateRouteTable")],
        # API Gateway v2 has a CreateRoute of its own: not a route table.
        [_event("CreateRoute", "apigateway.amazonaws.com"), _event("DescribeRouteTables")]),
    "VpcChanges": (
        [_event("CreateVpcPeeringConnection"), _event("ModifyVpcAttribute")],
        [_event("DescribeVpcs"), _event("CreateVpcEndpoint")]),
}


def trail_hosts(synth: Synth) -> dict[str, str]:
    """Stack → logical id of the log group its trail delivers to."""
    hosts = {}
    for stack, _, res in synth.resources("AWS::CloudTrail::Trail"):
        hosts[stack] = res["Properties"]["CloudWatchLogsLogGroupArn"]["Fn::GetAtt"][0]
    return hosts


def test_the_evaluator_reads_the_cis_syntax() -> None:
    assert matches('{ ($.a = "x") || ($.b = y*) }', {"b": "yes"})
    assert not matches('{ $.a = "x" && $.b NOT EXISTS }', {"a": "x", "b": 1})
    assert matches("{ ($.a = 1) && (($.b = 2) || ($.b = 3)) }", {"a": 1, "b": 3})
    assert not matches('{ $.a != "x" }', {})


def test_every_cis_control_is_one_filter_on_each_trails_log_group_with_an_alarm(every: Synth) -> None:
    hosts = trail_hosts(every)
    assert hosts and len(hosts) == len(every.deployment.accounts())
    by_tier = {s.stack_name: s.tier for s in every.built.stacks if hasattr(s, "tier")}
    assert {c.metric for c in CIS_CONTROLS} == set(CIS_EVENTS) and len(CIS_CONTROLS) == 14
    for stack, template in every.templates.items():
        resources = template["Resources"]
        cis_filters = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Logs::MetricFilter"
                       and r["Properties"]["MetricTransformations"][0]["MetricNamespace"] == CIS_NAMESPACE]
        if stack not in hosts:
            assert not cis_filters, stack
            continue
        topics = [lid for lid, r in resources.items() if r["Type"] == "AWS::SNS::Topic"]
        assert len(topics) == 1
        alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
        assert len(cis_filters) == len(CIS_CONTROLS) + len(TRAIL_CONTROLS)
        for control in CIS_CONTROLS:
            [f] = [f for f in cis_filters if f["FilterPattern"] == control.pattern]
            assert f["LogGroupName"] == {"Ref": hosts[stack]}
            assert f["MetricTransformations"] == [{"MetricName": control.metric, "MetricNamespace": CIS_NAMESPACE,
                                                   "MetricValue": "1"}]
            [alarm] = [a for a in alarms if a.get("Namespace") == CIS_NAMESPACE
                       and a.get("MetricName") == control.metric]
            assert alarm["AlarmName"] == f"jukinet-{by_tier[stack]}-cis-{control.kind}"
            assert alarm["Statistic"] == "Sum" and alarm["Period"] == 300 and "Dimensions" not in alarm
            assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"
            assert alarm["AlarmActions"] == [{"Ref": topics[0]}]
            assert f"CIS {control.cis} / Security Hub {control.security_hub}" in alarm["AlarmDescription"]


@pytest.mark.parametrize("control", CIS_CONTROLS, ids=lambda c: c.metric)
def test_each_cis_pattern_names_the_benchmarks_events_and_matches_exactly_its_trigger(control: Any) -> None:
    named = set(re.findall(r"\$\.eventName = \"?(\w+)\"?", control.pattern))
    assert named == CIS_EVENTS[control.metric]
    positives, negatives = SAMPLES[control.metric]
    for event in positives:
        assert matches(control.pattern, event), event
    for event in negatives:
        assert not matches(control.pattern, event), event
    # and no other control's trigger sets it off (the root and refused-call patterns look at who
    # acted and how it ended, not at what was done: another sample by root or refused counts too)
    for other in CIS_CONTROLS:
        if other is control:
            continue
        for event in SAMPLES[other.metric][0]:
            if control.metric in ("RootAccountUsage", "UnauthorizedApiCalls") and (
                    event.get("userIdentity", {}).get("type") == "Root" or "errorCode" in event):
                continue
            assert not matches(control.pattern, event), (other.metric, event)


def test_key_policy_and_alias_changes_raise_an_alarm_on_every_trail(every: Synth) -> None:
    """The attack: someone with key administration re-points a sender's signing-key alias or
    rewrites a key policy. CIS 4.7 only sees disabling and deletion; this filter sees the rest."""
    [control] = TRAIL_CONTROLS
    hosts = trail_hosts(every)
    by_tier = {s.stack_name: s.tier for s in every.built.stacks if hasattr(s, "tier")}
    for stack in hosts:
        resources = every.templates[stack]["Resources"]
        [f] = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Logs::MetricFilter"
               and r["Properties"]["FilterPattern"] == control.pattern]
        assert f["LogGroupName"] == {"Ref": hosts[stack]}
        [alarm] = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"
                   and r["Properties"].get("MetricName") == control.metric]
        assert alarm["AlarmName"] == f"jukinet-{by_tier[stack]}-kms-key-policy-or-alias-changes"
        assert alarm["Threshold"] == 0 and alarm["Period"] == 300 and alarm["AlarmActions"]
    for name in ("PutKeyPolicy", "UpdateAlias", "CreateAlias", "DeleteAlias"):
        assert matches(control.pattern, _event(name, "kms.amazonaws.com")), name
    for name in ("Sign", "GetPublicKey", "Decrypt", "GenerateDataKey"):
        assert not matches(control.pattern, _event(name, "kms.amazonaws.com")), name
    assert not matches(control.pattern, _event("UpdateAlias", "ec2.amazonaws.com"))
    for other in CIS_CONTROLS:
        for event in SAMPLES[other.metric][0]:
            assert not matches(control.pattern, event), (other.metric, event)


# --- the provision API's anomalies ---------------------------------------------------------------

def _national(synth: Synth) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    template = synth.templates[Names.of(synth.deployment).national_stack()]
    alarms = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    return template, alarms


def _by_name(alarms: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [alarm] = [a for a in alarms if a["AlarmName"] == name]
    return alarm


PROVISION_DIMS = [{"Name": "service", "Value": "jukinet-provision"}, {"Name": "tier", "Value": "national"}]


def test_outside_hours_and_sequential_codes_alarm_on_the_handlers_metrics(every: Synth) -> None:
    _, alarms = _national(every)
    outside = _by_name(alarms, "jukinet-national-provision-outside-agreed-hours")
    assert (outside["Namespace"], outside["MetricName"]) == ("Jukinet", "OutsideAgreedHours")
    assert sorted(outside["Dimensions"], key=lambda d: d["Name"]) == PROVISION_DIMS
    assert outside["Threshold"] == 0 and outside["ComparisonOperator"] == "GreaterThanThreshold"
    sequential = _by_name(alarms, "jukinet-national-provision-sequential-codes")
    assert (sequential["Namespace"], sequential["MetricName"]) == ("Jukinet", "SequentialCodes")
    assert sorted(sequential["Dimensions"], key=lambda d: d["Name"]) == PROVISION_DIMS
    assert sequential["Statistic"] == "Sum" and sequential["Period"] == 300
    assert sequential["Threshold"] == SEQUENTIAL_CODES_THRESHOLD == 20
    assert sequential["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def _metric_math(expression: str, **values: float) -> float:
    """Evaluate the alarm's expression for one period (IF and arithmetic only)."""
    def IF(condition: bool, yes: float, no: float) -> float:  # metric math's name
        return yes if condition else no
    return float(eval(expression, {"IF": IF, "__builtins__": {}}, values))  # our own expression, no builtins


def test_not_found_ratio_alarms_on_a_majority_of_unknown_codes_among_enough_answers(every: Synth) -> None:
    _, alarms = _national(every)
    alarm = _by_name(alarms, "jukinet-national-provision-not-found-ratio")
    assert alarm["Threshold"] == NOT_FOUND_RATIO_PERCENT == 50
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    [expression] = [q for q in alarm["Metrics"] if "Expression" in q]
    stats = {q["Id"]: q["MetricStat"] for q in alarm["Metrics"] if "MetricStat" in q}
    assert {s["Metric"]["MetricName"] for s in stats.values()} == {"RecordsProvided", "NotFoundAnswers"}
    for stat in stats.values():
        assert sorted(stat["Metric"]["Dimensions"], key=lambda d: d["Name"]) == PROVISION_DIMS
        assert stat["Stat"] == "Sum" and stat["Period"] == 900
    ids = {s["Metric"]["MetricName"]: i for i, s in stats.items()}

    def ratio(found: float, missing: float) -> float:
        return _metric_math(expression["Expression"], **{ids["RecordsProvided"]: found,
                                                         ids["NotFoundAnswers"]: missing})

    assert NOT_FOUND_MIN_ANSWERS == 50
    assert ratio(10, 60) > alarm["Threshold"]     # probing: 86 % of 70 answers unknown
    assert ratio(400, 30) <= alarm["Threshold"]   # normal work
    assert ratio(5, 30) <= alarm["Threshold"]     # too few answers to judge
    assert ratio(25, 25) <= alarm["Threshold"]    # exactly half: not more than half


def test_one_anomaly_detection_alarm_per_configured_recipient(every: Synth) -> None:
    _, alarms = _national(every)
    anomaly = [a for a in alarms if "ThresholdMetricId" in a]
    recipients = {a.recipient_id for a in every.deployment.agencies}
    assert recipients and len(anomaly) == len(recipients)
    seen = set()
    for alarm in anomaly:
        assert alarm["ComparisonOperator"] == "GreaterThanUpperThreshold"
        assert alarm["EvaluationPeriods"] == 1 and alarm["TreatMissingData"] == "notBreaching"
        queries = {q["Id"]: q for q in alarm["Metrics"]}
        band = queries[alarm["ThresholdMetricId"]]
        m = re.fullmatch(r"ANOMALY_DETECTION_BAND\((\w+), (\d+(?:\.\d+)?)\)", band["Expression"])
        assert m and float(m[2]) == VOLUME_STD_DEVS
        stat = queries[m[1]]["MetricStat"]
        assert stat["Metric"]["Namespace"] == "Jukinet"
        assert stat["Metric"]["MetricName"] == "RecordsProvidedByRecipient"
        dims = {d["Name"]: d["Value"] for d in stat["Metric"]["Dimensions"]}
        assert set(dims) == {"service", "recipient"} and dims["service"] == "jukinet-provision"
        assert stat["Stat"] == "Sum" and stat["Period"] == 86400
        assert alarm["AlarmName"] == f"jukinet-national-provision-volume-anomaly-{dims['recipient']}"
        seen.add(dims["recipient"])
    assert seen == recipients


def test_the_alarmed_provision_metrics_are_the_ones_the_handler_emits() -> None:
    source = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "lambdas").rglob("*.py"))
    emitted = set(re.findall(r'(?:add_metric|single_metric)\(name="(\w+)"', source))
    assert {"OutsideAgreedHours", "SequentialCodes", "RecordsProvided", "NotFoundAnswers",
            "RecordsProvidedByRecipient"} <= emitted
    handler = (REPO / "lambdas/jukinet/services/provision_observability.py").read_text(encoding="utf-8")
    assert 'metric.add_dimension(name="recipient"' in handler


def test_operations_md_names_every_cis_metric() -> None:
    text = Path(REPO / "docs/operations.md").read_text(encoding="utf-8")
    for control in (*CIS_CONTROLS, *TRAIL_CONTROLS):
        kind = f"cis-{control.kind}" if control.benchmark else control.kind
        section = text.split(f"### `{kind}`", 1)[1].split("\n### ", 1)[0]
        assert f"`{control.metric}`" in section and control.security_hub in section, control.metric


# --- a normal month of the system's own management events: every trail filter stays quiet ------

def _normal_month_of_management_events() -> list[dict[str, Any]]:
    """What the account trail records in a month of normal operation (no deployment, no incident):
    the tiers' functions assuming their roles and using their keys, metrics and logs; operators
    signing in through SSO (``MFAUsed: No``, the identity provider did the MFA) or as IAM users
    with MFA, assuming their own operator/auditor roles and reading; AWS's own service events
    (key rotation, by the root identity with ``eventType: AwsServiceEvent``); throttled calls
    retried. Every record is delivered twice and the whole set out of order, as CloudTrail may."""
    account = "123456789012"
    function = {"type": "AssumedRole", "arn": f"arn:aws:sts::{account}:assumed-role/jukinet-national-processor/x"}
    operator = {"type": "AssumedRole", "arn": f"arn:aws:sts::{account}:assumed-role/jukinet-national-operator/ito"}
    events: list[dict[str, Any]] = []
    for day in range(1, 31):
        stamp = f"2026-11-{day:02d}T0{day % 10}:00:00Z"
        for name in ("Decrypt", "GenerateDataKey", "Sign", "Verify", "GetPublicKey", "DescribeKey"):
            events.append(_event(name, "kms.amazonaws.com", userIdentity=function, eventTime=stamp))
        events.append(_event("AssumeRole", "sts.amazonaws.com", eventTime=stamp,
                             userIdentity={"type": "AWSService", "invokedBy": "lambda.amazonaws.com"},
                             requestParameters={"roleArn": f"arn:aws:iam::{account}:role/jukinet-national-processor"}))
        events.append(_event("PutMetricData", "monitoring.amazonaws.com", userIdentity=function, eventTime=stamp))
        events.append(_event("CreateLogStream", "logs.amazonaws.com", userIdentity=function, eventTime=stamp))
        events.append(_event("DescribeTable", "dynamodb.amazonaws.com", userIdentity=function,
                             errorCode="ThrottlingException", eventTime=stamp))  # retried: not a refusal
        events.append(_event("ConsoleLogin", eventTime=stamp, userIdentity={"type": "AssumedRole"},
                             additionalEventData={"MFAUsed": "No"}, responseElements={"ConsoleLogin": "Success"},
                             **_SIGN_IN))
        events.append(_event("ConsoleLogin", eventTime=stamp, userIdentity={"type": "IAMUser"},
                             additionalEventData={"MFAUsed": "Yes"}, responseElements={"ConsoleLogin": "Success"},
                             **_SIGN_IN))
        events.append(_event("AssumeRole", "sts.amazonaws.com", eventTime=stamp, userIdentity=operator,
                             requestParameters={"roleArn": f"arn:aws:iam::{account}:role/jukinet/national-people/"
                                                           "jukinet-national-operator", "roleSessionName": "ito"}))
        for name, source in (("DescribeAlarms", "monitoring"), ("GetQueueAttributes", "sqs"),
                             ("DescribeStacks", "cloudformation"), ("LookupEvents", "cloudtrail"),
                             ("GetTrailStatus", "cloudtrail"), ("DescribeSecurityGroups", "ec2"),
                             ("DescribeVpcs", "ec2"), ("DescribeRouteTables", "ec2"), ("GetBucketPolicy", "s3"),
                             ("ListAliases", "kms"), ("GetKeyPolicy", "kms"), ("GetRolePolicy", "iam"),
                             ("DescribeConfigurationRecorders", "config")):
            events.append(_event(name, f"{source}.amazonaws.com", userIdentity=operator, eventTime=stamp))
        events.append(_event("RotateKey", "kms.amazonaws.com", eventType="AwsServiceEvent", eventTime=stamp,
                             userIdentity={"type": "Root", "accountId": account}))
        events.append(_event("PutObject", "s3.amazonaws.com", eventTime=stamp,
                             userIdentity={"type": "Root", "invokedBy": "s3.amazonaws.com"}))
    delivered = events + events  # each at least once: twice here
    random.Random(19).shuffle(delivered)  # and in no particular order
    return delivered


def test_a_normal_month_of_the_systems_management_events_matches_no_trail_filter() -> None:
    """The quiet half of every CIS control, the key-administration control and each tier's
    break-glass filter (their fire halves: the per-control tests above and
    tests/infra/test_responsibility.py): nothing a normal month records is counted."""
    from infra.components.responsibility import break_glass_filter_pattern
    from embedded_aws.monitoring import parse_filter_pattern

    events = _normal_month_of_management_events()
    assert len(events) > 1500
    for control in (*CIS_CONTROLS, *TRAIL_CONTROLS):
        hits = [e for e in events if matches(control.pattern, e)]
        assert hits == [], (control.metric, hits[:1])
    for tier in ("national", "pref-200000", "muni-200000"):
        pattern = parse_filter_pattern(break_glass_filter_pattern("123456789012", f"jukinet-{tier}-break-glass"))
        assert not [e for e in events if pattern.matches(json.dumps(e))], tier
    # the same month with one incident in it is not quiet (the evaluator sees these records)
    assert matches(CIS_CONTROLS[0].pattern, {**events[0], "errorCode": "AccessDenied"})
