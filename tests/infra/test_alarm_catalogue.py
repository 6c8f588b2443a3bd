"""``tests/alarm_catalogue.py`` against the synthesized alarms of every deployment: each alarm
kind has an entry (or a stated gap), each entry names fire and quiet tests that exist, and its
bound is the synthesized one."""

from __future__ import annotations

import ast
import functools
import re
from typing import Any

import pytest

from infra.components.monitoring import alarm_kind

from ..alarm_catalogue import CATALOGUE, KNOWN_GAPS
from .conftest import REPO, Synth

pytestmark = pytest.mark.slow

_OPERATORS = {"GreaterThanThreshold": ">", "GreaterThanOrEqualToThreshold": ">=", "LessThanThreshold": "<",
              "LessThanOrEqualToThreshold": "<="}
_BAND = re.compile(r"ANOMALY_DETECTION_BAND\(\w+,\s*([\d.]+)\)")


def _period(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400} day"
    return f"{seconds // 60} min"


def bound(p: dict[str, Any]) -> str:
    """The alarm's bound in words, from its synthesized properties: ``Sum > 0 in 5 min``;
    ``Maximum > 900 in 5 min, 2 of 2 periods``; a metric-math alarm shows its expression; an
    anomaly-detection alarm its band's width; ``missing data breaches`` for a heartbeat."""
    if "Metrics" in p:
        stats = [q for q in p["Metrics"] if "MetricStat" in q]
        period = stats[0]["MetricStat"]["Period"]
        if "ThresholdMetricId" in p:
            [band] = [q["Expression"] for q in p["Metrics"] if q["Id"] == p["ThresholdMetricId"]]
            width = _BAND.fullmatch(band)[1]  # type: ignore[index]
            text = (f"{stats[0]['MetricStat']['Stat']} above the anomaly band ({float(width):g} standard "
                    f"deviations) in {_period(period)}")
        else:
            [returned] = [q for q in p["Metrics"] if q.get("ReturnData", True) and "Expression" in q]
            text = f"{returned['Expression']} {_OPERATORS[p['ComparisonOperator']]} {p['Threshold']:g} in " \
                   f"{_period(returned.get('Period', period))}"
    else:
        text = f"{p['Statistic']} {_OPERATORS[p['ComparisonOperator']]} {p['Threshold']:g} in {_period(p['Period'])}"
    if p["EvaluationPeriods"] > 1 or p.get("DatapointsToAlarm", 1) > 1:
        text += f", {p.get('DatapointsToAlarm', p['EvaluationPeriods'])} of {p['EvaluationPeriods']} periods"
    if p.get("TreatMissingData") == "breaching":
        text += ", missing data breaches"
    return text


@functools.cache
def _functions(path: str) -> frozenset[str]:
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    return frozenset(n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))


def missing_tests(node_ids: tuple[str, ...]) -> list[str]:
    """The node ids that do not name a ``test_`` function defined at the top of an existing file."""
    missing = []
    for node in node_ids:
        path, _, name = node.partition("::")
        if not (path.startswith("tests/") and name.startswith("test_") and "::" not in name
                and (REPO / path).is_file() and name in _functions(path)):
            missing.append(node)
    return missing


def synthesized_kinds(synth: Synth) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for p in synth.props("AWS::CloudWatch::Alarm"):
        kinds.setdefault(alarm_kind(p["AlarmName"]), []).append(p)
    return kinds


def check(catalogue: dict[str, Any], gaps: dict[str, str], kinds: dict[str, list[dict[str, Any]]],
          *, every_kind: set[str] | None = None) -> list[str]:
    """Every problem of the catalogue against one deployment's alarms (empty: all good).
    ``every_kind``: the kinds of all deployments together (a gap or entry must be one of them)."""
    problems = []
    for kind in sorted(set(kinds) - set(catalogue) - set(gaps)):
        problems.append(f"{kind}: synthesized, but neither in CATALOGUE nor in KNOWN_GAPS")
    for kind in sorted(set(catalogue) & set(gaps)):
        problems.append(f"{kind}: has an entry now; remove it from KNOWN_GAPS")
    for kind in sorted((set(catalogue) | set(gaps)) - (every_kind or set(kinds))):
        problems.append(f"{kind}: catalogued but no deployment synthesizes it")
    for kind, reason in gaps.items():
        if not reason.strip():
            problems.append(f"{kind}: a known gap needs its reason")
    for kind, entry in catalogue.items():
        if not entry.fire:
            problems.append(f"{kind}: no fire test")
        if not entry.quiet:
            problems.append(f"{kind}: no quiet test")
        for node in missing_tests((*entry.fire, *entry.quiet)):
            problems.append(f"{kind}: no such test {node}")
        for p in kinds.get(kind, []):
            if bound(p) != entry.bound:
                problems.append(f"{kind}: {p['AlarmName']} is '{bound(p)}', the catalogue says '{entry.bound}'")
    return problems


_ALL = ("nagano-demo", "large-prefecture-test", "multi-account-example")


@pytest.fixture(scope="module")
def all_kinds(request: pytest.FixtureRequest) -> set[str]:
    fixtures = {"nagano-demo": "nagano", "large-prefecture-test": "large", "multi-account-example": "multi_account"}
    return {k for name in _ALL for k in synthesized_kinds(request.getfixturevalue(fixtures[name]))}


def test_every_alarm_kind_has_its_trigger_bound_and_fire_and_quiet_tests(every: Synth, all_kinds: set[str]) -> None:
    kinds = synthesized_kinds(every)
    assert len(kinds) >= 40
    assert check(CATALOGUE, KNOWN_GAPS, kinds, every_kind=all_kinds) == []


def test_the_check_fails_on_a_missing_entry_a_missing_test_a_wrong_bound_and_a_filled_gap(nagano: Synth) -> None:
    kinds = synthesized_kinds(nagano)
    without = {k: e for k, e in CATALOGUE.items() if k != "sequence-gaps"}
    assert check(without, {}, kinds) == ["sequence-gaps: synthesized, but neither in CATALOGUE nor in KNOWN_GAPS"]
    assert check(without, {"sequence-gaps": "not yet"}, kinds) == []
    assert check(CATALOGUE, {"sequence-gaps": "not yet"}, kinds) == \
        ["sequence-gaps: has an entry now; remove it from KNOWN_GAPS"]
    entry = CATALOGUE["signature-failures"]
    broken = {**CATALOGUE, "signature-failures": entry._replace(
        fire=("tests/local/test_monitoring.py::test_no_such_thing",), quiet=())}
    assert check(broken, {}, kinds) == ["signature-failures: no quiet test",
                                        "signature-failures: no such test tests/local/test_monitoring.py::"
                                        "test_no_such_thing"]
    wrong = {**CATALOGUE, "inbound-oldest-message-age": CATALOGUE["inbound-oldest-message-age"]._replace(
        bound="Maximum > 600 in 5 min, 2 of 2 periods")}
    problems = check(wrong, {}, kinds)
    assert problems and all(p.startswith("inbound-oldest-message-age: ") and "Maximum > 900" in p for p in problems)
    assert check({**CATALOGUE, "no-such-alarm": entry}, {}, kinds) == \
        ["no-such-alarm: catalogued but no deployment synthesizes it"]
    assert missing_tests(("tests/local/nope.py::test_x", "tests/infra/test_alarms.py::github_anchors",
                          "tests/infra/test_alarms.py::test_alarm_topics_are_kms_encrypted")) == \
        ["tests/local/nope.py::test_x", "tests/infra/test_alarms.py::github_anchors"]
