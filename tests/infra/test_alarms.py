"""Alarms: each to the tier's encrypted topic, each documented in docs/operations.md."""

from __future__ import annotations

import json
import re

import pytest

from infra.components.network_watch import DNS_KIND, LEAVING_KIND, REJECTS_KIND
from infra.components.counter import AUTH_REFUSAL_BURST
from infra.components.security_monitoring import (
    CIS_CONTROLS,
    SEQUENTIAL_CODES_THRESHOLD,
    TRAIL_CONTROLS,
    cis_alarm_kind,
)

from infra.components.monitoring import alarm_kind

from .conftest import REPO, Synth

pytestmark = pytest.mark.slow

_TIER = re.compile(r"^jukinet-(national|pref-\d{6}|muni-\d{6})-")
_LINK = re.compile(r"See (docs/[a-z-]+\.md)#([a-z0-9-]+)\.$")


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a document's headings: lower case, punctuation (backticks
    included) dropped, spaces to hyphens."""
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_alarm_topics_are_kms_encrypted(every: Synth) -> None:
    topics = every.props("AWS::SNS::Topic")
    assert len(topics) == 1 + 2 * len(every.deployment.prefectures)
    assert all("KmsMasterKeyId" in t for t in topics)


def test_every_alarm_notifies_its_tiers_topic_on_alarm_and_on_recovery(every: Synth) -> None:
    for _, _, res in every.resources("AWS::CloudWatch::Alarm"):
        p = res["Properties"]
        assert len(p["AlarmActions"]) == 1 and p["OKActions"] == p["AlarmActions"]
        # Counts of bad things: no data is good news. The sealer's heartbeat: no data is the alarm.
        heartbeat = p["AlarmName"].endswith("-provision-log-not-sealed")
        assert p["TreatMissingData"] == ("breaching" if heartbeat else "notBreaching")


def test_processing_tiers_alarm_on_dead_letters_age_errors_throttles_gaps_and_signatures(nagano: Synth) -> None:
    kinds_by_tier: dict[str, set[str]] = {}
    for _, _, res in nagano.resources("AWS::CloudWatch::Alarm"):
        name = res["Properties"]["AlarmName"]
        kinds_by_tier.setdefault(_TIER.match(name)[1], set()).add(alarm_kind(name))  # type: ignore[index]
    expected = {"inbound-dlq-not-empty", "inbound-oldest-message-age", "processor-errors", "processor-throttles",
                "sequence-gaps", "notices-overdue", "reconciliation-mismatches", "signature-failures"}
    provision = {"provision-unauthorised-attempts", "provision-gateway-refusals", "provision-api-errors",
                 "provision-batch-dlq-not-empty", "provision-sealer-errors", "provision-log-not-sealed",
                 "provision-sealer-throttled", "provision-outside-agreed-hours",
                 "provision-sequential-codes", "provision-not-found-ratio", "provision-volume-anomaly",
                 "provision-isolated-recipient-calls", "provision-scan-suspected", "provision-stats-mismatch"}
    # the national tier hosts the demo account's trail
    cis = {cis_alarm_kind(c) for c in (*CIS_CONTROLS, *TRAIL_CONTROLS)}
    people = {"break-glass-used"}  # every tier whose configuration names security officers (docs/security.md)
    network = {REJECTS_KIND, LEAVING_KIND, DNS_KIND}  # every tier's network watch (network_watch.py)
    assert kinds_by_tier["national"] == expected | provision | cis | people | network
    assert kinds_by_tier["pref-200000"] == expected | people | network
    counter = {"card-authentication-refusals", "ended-card-presented", "card-unauthorised-attempts",
               "counter-api-errors"}  # the counter API (docs/card.md)
    channel = {"channel-dlq-not-empty", "channel-dead-letters", "channel-errors"}  # the channel (channel.py)
    assert kinds_by_tier["muni-200000"] == {"cs-failed-events-dlq-not-empty", "cs-errors", "cs-throttles"} | people \
        | counter | network | channel


def test_custom_metric_alarms_use_the_dimensions_the_handlers_emit(nagano: Synth) -> None:
    """Handler metrics: {service, tier} exactly; the access-log metric filter's GatewayRefusals has none."""
    for _, _, res in nagano.resources("AWS::CloudWatch::Alarm"):
        p = res["Properties"]
        if p.get("Namespace") != "Jukinet":
            continue
        if p["MetricName"] == "SequentialCodes":
            assert p["Threshold"] == SEQUENTIAL_CODES_THRESHOLD
            assert p["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        elif p["MetricName"] == "ProvisionLogSealed":  # a heartbeat: fewer than one seal an hour
            assert p["Threshold"] == 1 and p["ComparisonOperator"] == "LessThanThreshold"
        elif p["MetricName"] == "CardAuthenticationRefusals":  # a burst across the tier's counters
            assert p["Threshold"] == AUTH_REFUSAL_BURST and p["ComparisonOperator"] == "GreaterThanThreshold"
        else:
            assert p["Threshold"] == 0 and p["ComparisonOperator"] == "GreaterThanThreshold"
        if p["MetricName"] == "GatewayRefusals":
            assert "Dimensions" not in p
            continue
        dims = {d["Name"]: d["Value"] for d in p["Dimensions"]}
        tier = "national" if "national" in p["AlarmName"] else "prefecture"
        if "-muni-" in p["AlarmName"]:  # the counter function, tier dimension "municipality"
            assert dims == {"tier": "municipality", "service": "jukinet-muni-200000"}
        elif "-provision-" in p["AlarmName"]:
            assert dims == {"tier": "national", "service": "jukinet-provision"}
        else:
            assert dims == {"tier": tier,
                            "service": "jukinet-national" if tier == "national" else "jukinet-pref-200000"}


def test_every_cs_function_is_watched_by_exactly_one_errors_and_one_throttles_alarm(every: Synth) -> None:
    cs_functions = {f["FunctionName"] for f in every.props("AWS::Lambda::Function")
                    if f["Handler"] == "jukinet.handlers.municipality_cs.handler"}
    for metric in ("Errors", "Throttles"):
        watched: list[str] = []
        for _, _, res in every.resources("AWS::CloudWatch::Alarm"):
            queries = res["Properties"].get("Metrics", [])
            stats = [q["MetricStat"]["Metric"] for q in queries if "MetricStat" in q]
            if stats and all(m["MetricName"] == metric for m in stats):
                assert len(stats) <= 10  # metric math's limit per alarm
                watched += [m["Dimensions"][0]["Value"] for m in stats]
        assert sorted(watched) == sorted(cs_functions), metric


def test_every_alarm_kind_has_a_meaning_and_first_response_in_operations_md(every: Synth) -> None:
    """In docs/operations.md, or for the provision API's alarms in docs/provision.md and the
    counter API's in docs/card.md (the doc the alarm's description names)."""
    docs = {doc: (REPO / doc).read_text(encoding="utf-8")
            for doc in ("docs/operations.md", "docs/provision.md", "docs/card.md")}
    for p in every.props("AWS::CloudWatch::Alarm"):
        kind = alarm_kind(p["AlarmName"])
        doc = next((d for d in ("docs/provision.md", "docs/card.md") if f"See {d}#" in p["AlarmDescription"]),
                   "docs/operations.md")
        assert p["AlarmDescription"].endswith(f"See {doc}#{kind}.")
        text = docs[doc]
        assert f"### `{kind}`" in text, (kind, doc)
        section = text.split(f"### `{kind}`", 1)[1].split("\n### ", 1)[0]
        assert "**Meaning**" in section and "**First response**" in section, kind


def test_every_alarm_description_links_to_a_runbook_section_that_exists(every: Synth) -> None:
    """Every AWS::CloudWatch::Alarm of every stack: an AlarmDescription ending in a link
    ``See docs/<doc>.md#<anchor>.`` whose anchor is a heading of that document (an operator
    reading the notification lands on the meaning and first response)."""
    alarms = every.props("AWS::CloudWatch::Alarm")
    assert alarms
    anchors: dict[str, set[str]] = {}
    for p in alarms:
        match = _LINK.search(p.get("AlarmDescription", ""))
        assert match, (p["AlarmName"], p.get("AlarmDescription"))
        doc, anchor = match.groups()
        if doc not in anchors:
            anchors[doc] = github_anchors((REPO / doc).read_text(encoding="utf-8"))
        assert anchor in anchors[doc], (p["AlarmName"], doc, anchor)


def test_sequence_gaps_alarm_watches_aged_gaps_and_a_ledger_watch_runs_every_five_minutes(nagano: Synth) -> None:
    """The gap alarm is on AgedSequenceGaps (a gap older than the bound), not on every gap; each
    processing tier has a ledger watch on a five-minute schedule, whose metrics both alarms read."""
    from infra.stacks.processing import LEDGER_WATCH_SCHEDULE

    by_name = {p["AlarmName"]: p for p in nagano.props("AWS::CloudWatch::Alarm")}
    for tier in ("national", "pref-200000"):
        assert by_name[f"jukinet-{tier}-sequence-gaps"]["MetricName"] == "AgedSequenceGaps"
        assert by_name[f"jukinet-{tier}-notices-overdue"]["MetricName"] == "NoticesOverdue"
    watches = {f["FunctionName"]: f for f in nagano.props("AWS::Lambda::Function")
               if f["Handler"] == "jukinet.handlers.ledger_watch.handler"}
    assert set(watches) == {"jukinet-national-ledger-watch", "jukinet-pref-200000-ledger-watch"}
    rules = [r for r in nagano.props("AWS::Events::Rule") if r.get("Name", "").endswith("-ledger-watch")]
    assert len(rules) == 2 and {r["ScheduleExpression"] for r in rules} == {LEDGER_WATCH_SCHEDULE}


def test_each_tier_notifies_its_own_kms_encrypted_topic_and_the_configured_subscribers(every: Synth) -> None:
    """Per stack: every alarm's AlarmActions and OKActions are exactly the tier's own topic
    (``jukinet-<tier>-alarms``, KmsMasterKeyId set), whether the topic is in the stack (Ref) or
    in the tier's base stack (Fn::ImportValue); each topic has an ``email`` subscription to
    ``Operations.alarm_email`` and an ``https`` one to ``Operations.alarm_chat_url`` when configured."""
    ops = every.deployment.operations
    for stack, template in every.templates.items():
        resources = template.get("Resources", {})
        topics = {lid: r["Properties"] for lid, r in resources.items() if r["Type"] == "AWS::SNS::Topic"}
        for props in topics.values():
            assert props["KmsMasterKeyId"] and props["TopicName"].endswith("-alarms")
        for lid, res in resources.items():
            if res["Type"] != "AWS::CloudWatch::Alarm":
                continue
            p = res["Properties"]
            tier = _TIER.match(p["AlarmName"])[1]  # type: ignore[index]
            assert p["AlarmActions"] == p["OKActions"] and len(p["AlarmActions"]) == 1, lid
            [action] = p["AlarmActions"]
            if "Ref" in action:
                assert topics[action["Ref"]]["TopicName"] == f"jukinet-{tier}-alarms", (stack, lid)
            else:
                assert "Fn::ImportValue" in action and "Alarms" in json.dumps(action), (stack, lid)
        subscriptions = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::SNS::Subscription"]
        for topic_id in topics:
            mine = {(s["Protocol"], s["Endpoint"]) for s in subscriptions if s["TopicArn"] == {"Ref": topic_id}}
            expected = set()
            if ops.alarm_email:
                expected.add(("email", ops.alarm_email))
            if ops.alarm_chat_url:
                expected.add(("https", ops.alarm_chat_url))
            assert mine == expected, (stack, topic_id)
    if every.name == "multi-account-example":
        assert ops.alarm_chat_url and ops.alarm_chat_url.startswith("https://")
