"""One CloudWatch dashboard per tier stack, showing the metrics the runtime emits and every alarm of the tier."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from infra.naming import Names

from .conftest import REPO, Synth

pytestmark = pytest.mark.slow

Metric = tuple[str, str, frozenset[tuple[str, str]]]  # namespace, name, dimensions


def _resolve(part: Any, resources: dict[str, Any]) -> str:
    """A token inside the body: a resource's name where it has one, else a marker."""
    if isinstance(part, str):
        return part
    if "Ref" in part:
        if part["Ref"].startswith("AWS::"):
            return part["Ref"]
        props = resources[part["Ref"]].get("Properties", {})
        return next((props[k] for k in ("FunctionName", "Name", "QueueName") if k in props), part["Ref"])
    if "Fn::GetAtt" in part:
        lid, attribute = part["Fn::GetAtt"]
        return str(resources[lid].get("Properties", {}).get(attribute, f"{lid}.{attribute}"))
    raise AssertionError(f"unexpected token {part}")


def dashboards(synth: Synth) -> dict[str, tuple[str, dict[str, Any]]]:
    """Stack → (dashboard name, parsed body)."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for stack, _, res in synth.resources("AWS::CloudWatch::Dashboard"):
        assert stack not in found, f"{stack} has two dashboards"
        body = res["Properties"]["DashboardBody"]
        if isinstance(body, dict):
            resources = synth.templates[stack]["Resources"]
            body = "".join(_resolve(p, resources) for p in body["Fn::Join"][1])
        found[stack] = (res["Properties"]["DashboardName"], json.loads(body))
    return found


def metrics_of(body: dict[str, Any]) -> set[Metric]:
    """Every metric drawn or used by an expression, in CloudWatch's array form
    ``[namespace, name, dim, value, …, {options}]``."""
    found: set[Metric] = set()
    for widget in body["widgets"]:
        for entry in widget["properties"].get("metrics", []):
            fields = [f for f in entry if not isinstance(f, dict)]
            if not fields:
                continue
            namespace, name, *dims = fields
            found.add((namespace, name, frozenset(zip(dims[::2], dims[1::2], strict=True))))
    return found


def expressions_of(body: dict[str, Any]) -> list[str]:
    return [option["expression"] for widget in body["widgets"] for entry in widget["properties"].get("metrics", [])
            for option in entry if isinstance(option, dict) and "expression" in option]


def alarm_widget_arns(body: dict[str, Any]) -> list[str]:
    return [arn for w in body["widgets"] if w["type"] == "alarm" for arn in w["properties"]["alarms"]]


def custom(name: str, service: str, tier: str) -> Metric:
    return ("Jukinet", name, frozenset({("service", service), ("tier", tier)}))


def test_one_dashboard_per_tier_stack_named_after_the_tier(every: Synth) -> None:
    names = Names.of(every.deployment)
    boards = dashboards(every)
    tier_stacks = {s.stack_name: s.tier for s in every.built.stacks if hasattr(s, "tier")}
    assert set(boards) == set(tier_stacks)
    for stack, tier in tier_stacks.items():
        assert boards[stack][0] == f"{names.prefix}-{tier}"
    for widget in (w for _, body in boards.values() for w in body["widgets"]):
        assert 0 <= widget["x"] and widget["x"] + widget["width"] <= 24


def test_alarm_widget_lists_exactly_the_alarms_of_the_tier(every: Synth) -> None:
    boards = dashboards(every)
    stacks = {s.stack_name: s for s in every.built.stacks}
    alarms = [(stacks[stack], res["Properties"]["AlarmName"]) for stack, _, res in every.resources(
        "AWS::CloudWatch::Alarm")]
    assert len(alarms) > 0
    for stack_name, (name, body) in boards.items():
        stack = stacks[stack_name]
        expected = sorted(f"arn:aws:cloudwatch:{s.region}:{s.account}:alarm:{a}" for s, a in alarms
                          if a.startswith(f"{name}-") and (s.account, s.region) == (stack.account, stack.region))
        assert expected and sorted(alarm_widget_arns(body)) == expected, stack_name
        assert all(len(w["properties"]["alarms"]) <= 100 for w in body["widgets"] if w["type"] == "alarm")


def test_the_municipality_dashboard_lists_the_cs_alarms_of_the_cs_stacks(large: Synth) -> None:
    names = Names.of(large.deployment)
    _, body = dashboards(large)[names.municipality_base_stack("010006")]
    arns = alarm_widget_arns(body)
    assert sum("-cs-errors-" in a for a in arns) == sum("-cs-throttles-" in a for a in arns) == 18  # 179 CSs


def _processing_metrics(service: str, tier: str) -> set[Metric]:
    return {custom(n, service, tier) for n in ("NoticesStored", "NoticesDuplicate", "NoticesDeadLettered",
                                               "SignatureFailures", "SequenceGaps", "AgedSequenceGaps",
                                               "NoticesOverdue")}


def _queue(name: str, *metric_names: str) -> set[Metric]:
    return {("AWS/SQS", m, frozenset({("QueueName", name)})) for m in metric_names}


def _function(name: str, *metric_names: str) -> set[Metric]:
    return {("AWS/Lambda", m, frozenset({("FunctionName", name)})) for m in metric_names}


def test_national_dashboard_shows_throughput_queues_processor_security_and_provision(every: Synth) -> None:
    names = Names.of(every.deployment)
    _, body = dashboards(every)[names.national_stack()]
    metrics = metrics_of(body)
    inbound = names.inbound_queue("national")
    expected = (_processing_metrics("jukinet-national", "national")
                | _queue(inbound, "ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage")
                | _queue(f"{inbound}-dlq", "ApproximateNumberOfMessagesVisible")
                | _function("jukinet-national-processor", "Invocations", "Errors", "Throttles", "Duration"))
    provision = {custom(n, "jukinet-provision", "national") for n in (
        "ProvisionRequests", "RecordsProvided", "NotFoundAnswers", "ProvisionRefusals", "UnauthorisedAttempts",
        "OutsideAgreedHours", "SequentialCodes", "BatchRowsProcessed")}
    by_recipient = {("Jukinet", "RecordsProvidedByRecipient",
                     frozenset({("service", "jukinet-provision"), ("recipient", a.recipient_id)}))
                    for a in every.deployment.agencies}
    batch = _queue(names.provision_batch_queue(), "ApproximateNumberOfMessagesVisible",
                   "ApproximateAgeOfOldestMessage") | _queue(f"{names.provision_batch_queue()}-dlq",
                                                             "ApproximateNumberOfMessagesVisible")
    gateway_refusals = ("Jukinet", "GatewayRefusals", frozenset())
    missing = (expected | provision | by_recipient | batch | {gateway_refusals}) - metrics
    assert not missing, missing
    assert len(by_recipient) == len(every.deployment.agencies) > 0


def test_prefecture_dashboard_shows_its_own_tier_and_nothing_of_the_provision_api(every: Synth) -> None:
    names = Names.of(every.deployment)
    boards = dashboards(every)
    for p in every.deployment.prefectures:
        tier = f"pref-{p.code}"
        _, body = boards[names.prefecture_stack(p.code)]
        metrics = metrics_of(body)
        inbound = names.inbound_queue(tier)
        expected = (_processing_metrics(f"jukinet-{tier}", "prefecture")
                    | _queue(inbound, "ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage")
                    | _queue(f"{inbound}-dlq", "ApproximateNumberOfMessagesVisible")
                    | _function(f"jukinet-{tier}-processor", "Invocations", "Errors", "Throttles", "Duration"))
        assert not expected - metrics, expected - metrics
        assert not any(dict(dims).get("service") == "jukinet-provision" for _, _, dims in metrics)


def test_municipality_dashboard_sums_every_cs_of_its_tier(every: Synth) -> None:
    names = Names.of(every.deployment)
    boards = dashboards(every)
    for p in every.deployment.prefectures:
        tier = f"muni-{p.code}"
        _, body = boards[names.municipality_base_stack(p.code)]
        metrics = metrics_of(body)
        functions = {names.cs_function(m.code) for m in p.municipality_tier.municipalities}
        deployed = {f["FunctionName"] for stack in every.built.municipality_stacks[p.code]
                    for f in (r["Properties"] for r in every.templates[stack.stack_name]["Resources"].values()
                              if r["Type"] == "AWS::Lambda::Function")}
        assert functions == deployed
        channel = {names.channel_function(p.code)} if every.deployment.channel else set()  # its own graph
        for metric_name in ("Invocations", "Errors", "Throttles", "Duration"):
            drawn = {dict(dims)["FunctionName"] for ns, name, dims in metrics if (ns, name) == ("AWS/Lambda", metric_name)}
            assert drawn == functions | channel, metric_name
        if every.deployment.channel:  # the channel between municipalities (components/channel.py)
            assert _queue(names.channel_queue(p.code), "ApproximateNumberOfMessagesVisible") <= metrics
            assert _queue(names.dead_letter_queue(names.channel_queue(p.code)),
                          "ApproximateNumberOfMessagesVisible") <= metrics
            assert {custom(n, f"jukinet-{tier}", "municipality") for n in (
                "ChannelRequestsSent", "ChannelAnswersSent", "ChannelRequestsSettled", "ChannelDeadLettered",
                "ChannelRequestsTimedOut", "ChannelRefusalsReceived")} <= metrics
        assert {custom(n, f"jukinet-{tier}", "municipality") for n in ("NoticesSent", "RowsRejected",
                                                                        "DuplicateFiles")} <= metrics
        assert {custom(n, f"jukinet-{tier}", "municipality") for n in (  # the wide-area copy (decision 0046)
            "WideAreaCopiesRequested", "WideAreaCopiesIssued", "WideAreaCopiesRefused",
            "WideAreaCopiesTimedOut")} <= metrics
        assert _queue(names.cs_failure_queue(p.code), "ApproximateNumberOfMessagesVisible") <= metrics
        sums = [e for e in expressions_of(body) if e.startswith(("SUM(", "MAX("))]
        assert len(sums) == 4


def test_every_custom_metric_on_a_dashboard_is_emitted_by_the_runtime(every: Synth) -> None:
    source = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "lambdas").rglob("*.py"))
    emitted = set(re.findall(r'(?:add_metric|single_metric)\(name="(\w+)"', source)) | {"GatewayRefusals"}
    drawn = {name for _, body in dashboards(every).values() for ns, name, _ in metrics_of(body) if ns == "Jukinet"}
    assert drawn and drawn <= emitted, drawn - emitted
