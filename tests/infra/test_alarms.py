"""Alarms: each to the tier's encrypted topic, each documented in docs/operations.md."""

from __future__ import annotations

import re

import pytest

from infra.components.counter import AUTH_REFUSAL_BURST
from infra.components.security_monitoring import (
    CIS_CONTROLS,
    SEQUENTIAL_CODES_THRESHOLD,
    TRAIL_CONTROLS,
    VOLUME_ANOMALY_KIND,
    cis_alarm_kind,
)

from .conftest import REPO, Synth

pytestmark = pytest.mark.slow

_TIER = re.compile(r"^jukinet-(national|pref-\d{6}|muni-\d{6})-")
_SPAN = re.compile(r"-\d{6}-\d{6}$")
_RECIPIENT = re.compile(rf"^({VOLUME_ANOMALY_KIND})-[a-z][a-z0-9-]*$")


def alarm_kind(name: str) -> str:
    """``jukinet-pref-200000-sequence-gaps`` → ``sequence-gaps``; ``…-cs-errors-202011-202100`` → ``cs-errors``;
    ``…-provision-volume-anomaly-nenkin`` → ``provision-volume-anomaly``."""
    return _RECIPIENT.sub(r"\1", _SPAN.sub("", _TIER.sub("", name)))


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
                "sequence-gaps", "signature-failures"}
    provision = {"provision-unauthorised-attempts", "provision-gateway-refusals", "provision-api-errors",
                 "provision-batch-dlq-not-empty", "provision-sealer-errors", "provision-log-not-sealed",
                 "provision-sealer-throttled", "provision-outside-agreed-hours",
                 "provision-sequential-codes", "provision-not-found-ratio", "provision-volume-anomaly",
                 "provision-isolated-recipient-calls", "provision-scan-suspected"}
    # the national tier hosts the demo account's trail
    cis = {cis_alarm_kind(c) for c in (*CIS_CONTROLS, *TRAIL_CONTROLS)}
    people = {"break-glass-used"}  # every tier whose configuration names security officers (docs/security.md)
    assert kinds_by_tier["national"] == expected | provision | cis | people
    assert kinds_by_tier["pref-200000"] == expected | people
    counter = {"card-authentication-refusals", "ended-card-presented", "card-unauthorised-attempts",
               "counter-api-errors"}  # the counter API (docs/card.md)
    assert kinds_by_tier["muni-200000"] == {"cs-failed-events-dlq-not-empty", "cs-errors", "cs-throttles"} | people \
        | counter


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
        doc = next((d for d in ("docs/provision.md", "docs/card.md") if f"See {d}." in p["AlarmDescription"]),
                   "docs/operations.md")
        assert p["AlarmDescription"].endswith(f"See {doc}.")
        text = docs[doc]
        assert f"### `{kind}`" in text, (kind, doc)
        section = text.split(f"### `{kind}`", 1)[1].split("\n### ", 1)[0]
        assert "**Meaning**" in section and "**First response**" in section, kind
