"""The cost projection (bench/projection.py) counts what the stacks really hold.

Its fixed monthly cost scales per-tier counts (KMS keys, interface endpoints, alarms and the
metrics they watch, dashboards, SQS event sources) to the country. Each count is checked here
against the synthesized nagano-demo, tier by tier, so adding a key or an alarm to a stack
fails this test until the projection (and docs/performance.md, which prints it) says so.
"""

from __future__ import annotations

from typing import Any

import pytest

from infra.stacks.municipality import MunicipalityBaseStack, MunicipalityStack
from infra.stacks.national import NationalStack
from infra.stacks.prefecture import PrefectureStack

from ..projection import load_projection

pytestmark = pytest.mark.slow





p = load_projection()
KINDS = {"national": NationalStack, "prefecture": PrefectureStack, "municipality_tier": MunicipalityBaseStack,
         "municipality_cs": MunicipalityStack}


def _resources(nagano, kind: str, resource_type: str) -> list[dict[str, Any]]:
    names = [s.stack_name for s in nagano.built.stacks if type(s) is KINDS[kind]]
    assert names, f"no {kind} stack in the synthesized nagano-demo"
    return [r for name in names for r in nagano.templates[name]["Resources"].values() if r["Type"] == resource_type]


def _count(nagano, kind: str, resource_type: str) -> int:
    return len(_resources(nagano, kind, resource_type))


def _alarm_metrics(alarm: dict[str, Any]) -> int:
    """CloudWatch prices an alarm per metric it evaluates: a metric-math alarm's MetricStats."""
    stats = [m for m in alarm["Properties"].get("Metrics", []) if "MetricStat" in m]
    return len(stats) or 1


def test_the_synthesized_shape_is_the_projection_s_nagano(nagano):
    assert len(nagano.built.prefectures) == p.NAGANO.prefectures == 1
    assert len(nagano.deployment.prefectures[0].municipality_tier.municipalities) == p.NAGANO_MUNICIPALITIES


@pytest.mark.parametrize("kind", ["national", "prefecture", "municipality_tier"])
def test_kms_keys_per_tier(nagano, kind):
    assert _count(nagano, kind, "AWS::KMS::Key") == p.KMS_KEYS[kind]


def test_one_kms_key_per_municipality_in_the_cs_stacks(nagano):
    per_municipality = p.KMS_KEYS["per_municipality"]
    assert _count(nagano, "municipality_cs", "AWS::KMS::Key") == p.NAGANO_MUNICIPALITIES * per_municipality
    assert p.kms_keys(p.NAGANO) == len(nagano.props("AWS::KMS::Key"))


@pytest.mark.parametrize("kind", ["national", "prefecture", "municipality_tier"])
def test_interface_endpoints_per_tier(nagano, kind):
    interface = [r for r in _resources(nagano, kind, "AWS::EC2::VPCEndpoint")
                 if r["Properties"].get("VpcEndpointType") == "Interface"]
    assert len(interface) == len(p.INTERFACE_ENDPOINTS[kind])
    # each in every AZ of its VPC (one private subnet per AZ), but the monthly report's, in one
    single = [e for e in interface if ".monitoring" in str(e["Properties"]["ServiceName"])
              or ".ssm" in str(e["Properties"]["ServiceName"])]
    assert len(single) == len([e for e in p.INTERFACE_ENDPOINTS[kind] if e in p.SINGLE_AZ_ENDPOINTS])
    for endpoint in interface:
        assert len(endpoint["Properties"]["SubnetIds"]) == (1 if endpoint in single else p.AZS)


def test_endpoint_azs_of_nagano_are_the_synthesized_ones(nagano):
    synthesized = sum(len(props["SubnetIds"]) for props in nagano.props("AWS::EC2::VPCEndpoint")
                      if props.get("VpcEndpointType") == "Interface")
    assert p.endpoint_azs(p.NAGANO) == synthesized


@pytest.mark.parametrize("kind", ["national", "prefecture", "municipality_tier"])
def test_single_alarms_per_tier(nagano, kind):
    assert _count(nagano, kind, "AWS::CloudWatch::Alarm") == p.ALARMS[kind]


@pytest.mark.parametrize("kind", ["national", "prefecture", "municipality_tier"])
def test_alarm_metrics_per_tier(nagano, kind):
    assert sum(_alarm_metrics(a) for a in _resources(nagano, kind, "AWS::CloudWatch::Alarm")) == p.ALARM_METRICS[kind]


def test_grouped_cs_alarms_and_every_alarm_metric(nagano):
    assert _count(nagano, "municipality_cs", "AWS::CloudWatch::Alarm") == p.cs_alarms(p.NAGANO)
    alarms = [{"Properties": props} for props in nagano.props("AWS::CloudWatch::Alarm")]
    assert p.alarm_counts(p.NAGANO) == (len(alarms), sum(_alarm_metrics(a) for a in alarms))


@pytest.mark.parametrize("kind", ["national", "prefecture", "municipality_tier"])
def test_dashboards_per_tier(nagano, kind):
    assert _count(nagano, kind, "AWS::CloudWatch::Dashboard") == p.DASHBOARDS[kind]


def test_sqs_event_sources(nagano):
    for kind in ("national", "prefecture"):
        assert _count(nagano, kind, "AWS::Lambda::EventSourceMapping") == p.SQS_EVENT_SOURCES[kind]
    assert p.event_sources(p.NAGANO) == len(nagano.props("AWS::Lambda::EventSourceMapping"))


def _functions(nagano, kind: str) -> dict[str, list[tuple[int, int]]]:
    """handler (jukinet.handlers.<name>) → (memory MB, reserved concurrency) of each of its functions."""
    found: dict[str, list[tuple[int, int]]] = {}
    for function in _resources(nagano, kind, "AWS::Lambda::Function"):
        props = function["Properties"]
        name = str(props.get("Handler")).removeprefix("jukinet.handlers.").removesuffix(".handler")
        found.setdefault(name, []).append((props.get("MemorySize"), props.get("ReservedConcurrentExecutions")))
    return found


@pytest.mark.parametrize("kind", ["national", "prefecture", "municipality_tier"])
def test_functions_their_memory_and_reserved_concurrency_per_tier(nagano, kind):
    assert _functions(nagano, kind) == {name: [spec] for name, spec in p.FUNCTIONS[kind].items()}


def test_one_cs_function_per_municipality_with_its_memory_and_reservation(nagano):
    assert _functions(nagano, "municipality_cs") == {
        name: [spec] * p.NAGANO_MUNICIPALITIES for name, spec in p.FUNCTIONS["per_municipality"].items()}
    reserved = sum(props.get("ReservedConcurrentExecutions", 0) for props in nagano.props("AWS::Lambda::Function"))
    assert p.reserved_concurrency(p.NAGANO_MUNICIPALITIES, 1) == reserved


def test_rotating_keys_are_the_symmetric_ones(nagano):
    keys = nagano.props("AWS::KMS::Key")
    symmetric = [k for k in keys if k.get("KeySpec", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT"]
    assert p.symmetric_keys(p.NAGANO) == len(symmetric) == len([k for k in keys if k.get("EnableKeyRotation")])


def test_the_country_s_counts_scale_the_synthesized_tiers(nagano):
    # The country cannot be synthesized here, but each of its fixed counts is the national tier, a prefecture
    # tier and its municipality tier 47 times, and each municipality 1,741 times: from the synth, not constants.
    def scaled(resource_type: str, measure=len) -> float:
        per = {kind: measure(_resources(nagano, kind, resource_type)) for kind in KINDS}
        return (per["national"] + p.PREFECTURES * (per["prefecture"] + per["municipality_tier"])
                + p.MUNICIPALITIES * per["municipality_cs"] / p.NAGANO_MUNICIPALITIES)

    def reservations(functions: list[dict[str, Any]]) -> int:
        return sum(f["Properties"].get("ReservedConcurrentExecutions", 0) for f in functions)

    def endpoint_azs(endpoints: list[dict[str, Any]]) -> int:
        return sum(len(e["Properties"]["SubnetIds"]) for e in endpoints
                   if e["Properties"].get("VpcEndpointType") == "Interface")

    assert p.kms_keys(p.COUNTRY) == scaled("AWS::KMS::Key")
    assert p.dashboards(p.COUNTRY) == scaled("AWS::CloudWatch::Dashboard")
    assert p.event_sources(p.COUNTRY) == scaled("AWS::Lambda::EventSourceMapping")
    assert p.reserved_concurrency(p.MUNICIPALITIES, p.PREFECTURES) == scaled("AWS::Lambda::Function", reservations)
    assert p.COUNTRY.own_use_prefectures == p.PREFECTURES  # so every prefecture tier has Nagano's endpoints
    assert p.endpoint_azs(p.COUNTRY) == scaled("AWS::EC2::VPCEndpoint", endpoint_azs)
    alarms, metrics = p.alarm_counts(p.COUNTRY)
    tiers = {kind: _resources(nagano, kind, "AWS::CloudWatch::Alarm") for kind in ("national", "prefecture",
                                                                                  "municipality_tier")}
    assert alarms - p.cs_alarms(p.COUNTRY) == len(tiers["national"]) + p.PREFECTURES * (
        len(tiers["prefecture"]) + len(tiers["municipality_tier"]))
    per_cs = sum(_alarm_metrics(a) for a in _resources(nagano, "municipality_cs", "AWS::CloudWatch::Alarm"))
    assert metrics == sum(_alarm_metrics(a) for a in tiers["national"]) + p.PREFECTURES * sum(
        _alarm_metrics(a) for a in tiers["prefecture"] + tiers["municipality_tier"]) + (
        p.MUNICIPALITIES * per_cs / p.NAGANO_MUNICIPALITIES)
