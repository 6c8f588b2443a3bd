"""The monthly monitoring report (月次監視報告): ``jukinet monitoring-report --month YYYY-MM`` and
each processing tier's scheduled run on the 1st (``ScheduledMonitoringReport``, decision 0039).

Per tier of a deployment and one month (JST): the alarms raised and cleared with their times,
refused calls by code, signature failures, gateway refusals, network-watch rejects, break-glass
uses, isolation events, the provision log's seals made or missing and its statistics checked
against the log — and the finding in one sentence: 「不正アクセス等は認められない」 (no unauthorised
access found) or the incidents with their evidence.

Three steps, shared by the CLI (``jukinet_ops.monitoring_report`` adapts a deployment) and
the scheduled function (``handlers.monitoring_report``):

1. ``collect_inputs`` reads the deployed environment (the embedded AWS or an account) into
   ``MonitoringInputs``: plain data, which tests also record by hand;
2. ``build_report(inputs)`` is pure: it sorts the inputs into tiers and decides the finding;
3. ``render_markdown``, ``render_html`` (Jinja2 templates, HTML autoescaped) and
   ``render_csv`` print a ``MonitoringReport``.

Sources: metric sums from CloudWatch ``GetMetricStatistics`` (namespace ``Jukinet`` and
``Jukinet/Security``); alarm transitions from CloudWatch ``DescribeAlarmHistory`` on an account,
or, in the embedded AWS (which does not serve alarm history), from ``.jukinet/notifications.log``,
where the local alarm evaluation records every transition (decision 0031); isolation records
from SSM (``jukinet isolate``); seals and statistics from the provision tables.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..clock import month_jst
from ..domain.metrics import (
    BREAK_GLASS_METRIC_PREFIX,
    METRICS_NAMESPACE,
    NETWORK_WATCH_METRICS,
    SECURITY_NAMESPACE,
    break_glass_metric,
    network_namespace,
)
from ..domain.notice import JST

UTC = dt.UTC
# The network watch's metrics (issue 19 part 1) are summed per tier as "flow-log rejects"; the
# names, namespaces and the break-glass metric are the ones infra builds on (domain/metrics.py).

# Handler metrics the report sums (namespace Jukinet, the tier's `service` or `tier` dimension).
SIGNATURE_FAILURES = "SignatureFailures"
GATEWAY_REFUSALS = "GatewayRefusals"  # the provision API's access-log metric filter (no dimension)
REFUSALS_BY_CODE = "RefusalsByCode"  # dimensions {service, code}: lambdas/jukinet/observability.py
# Evidence of attempted unauthorised access, each an incident when above 0.
UNAUTHORISED_METRICS: tuple[str, ...] = ("UnauthorisedAttempts", "CardUnauthorisedAttempts",
                                         "IsolatedRecipientCalls", "ScanSuspected")

# The channel between municipalities (services/channel.py; decision 0047): what each tier's
# functions count, summed per tier. Dead letters by reason from ChannelDeadLettersByReason
# {service, tier, reason} (observability.count_channel_dead_letter: one datapoint exactly when a
# CHANNEL-DEAD#<month> item is created, so the sums per reason are the table's counts).
CHANNEL_METRICS: tuple[str, ...] = ("ChannelRequestsSent", "ChannelRequestsSettled", "ChannelRefusalsReceived",
                                    "ChannelRequestsTimedOut", "ChannelAnswersSent", "ChannelRouted")
CHANNEL_DEAD_LETTERS_BY_REASON = "ChannelDeadLettersByReason"

# The wide-area copies (services/wide_area_copy.py; issue 16 item 5): requested, issued, refused
# and timed out at the tier's counters (the counter function), answered for issue elsewhere (the
# home's channel function); refusals per code from WideAreaCopiesRefusedByCode {service, tier,
# code} (observability.count_copy_refusal). Per municipality: ``jukinet card-stats``.
COPY_METRICS: tuple[str, ...] = ("WideAreaCopiesRequested", "WideAreaCopiesIssued", "WideAreaCopiesRefused",
                                 "WideAreaCopiesTimedOut", "WideAreaCopiesAnsweredForElsewhere")
COPY_REFUSALS_BY_CODE = "WideAreaCopiesRefusedByCode"

# The special move-outs/move-ins (services/special_move.py; issue 16 item 5): filed and cancelled
# at the tier's counters (A), completed by a 転入通知 and certificates given (A's channel
# function), lapsed when written (the first touch after the period), and at B requested,
# certified, completed, refused, timed out; refusals per code from SpecialMovesRefusedByCode.
# Per municipality and month: ``jukinet card-stats`` (which also counts lapses not yet written).
MOVE_METRICS: tuple[str, ...] = ("SpecialMoveOutsFiled", "SpecialMoveOutsCancelled", "SpecialMoveOutsCompleted",
                                 "SpecialMoveOutsLapsed", "SpecialMoveCertificatesGiven", "SpecialMoveInsRequested",
                                 "SpecialMoveInsCertified", "SpecialMoveInsCompleted", "SpecialMoveInsRefused",
                                 "SpecialMoveInsTimedOut")
MOVE_REFUSALS_BY_CODE = "SpecialMovesRefusedByCode"

NO_INCIDENT = "不正アクセス等は認められない"
NO_INCIDENT_EN = "no unauthorised access found"

_TIER_IN_NAME = re.compile(r"-(national|pref-\d{6}|muni-\d{6})-")


# --- inputs: what the environment says ----------------------------------------------------------


@dataclass(frozen=True)
class AlarmEvent:
    """One alarm state change: ``at`` (UTC), the alarm, its tier, old → new state, reason."""

    at: dt.datetime
    tier: str
    alarm: str
    old: str
    new: str
    reason: str = ""

    @property
    def raised(self) -> bool:
        return self.new == "ALARM" and self.old != "ALARM"

    @property
    def cleared(self) -> bool:
        return self.old == "ALARM" and self.new != "ALARM"


@dataclass(frozen=True)
class MetricSum:
    """A metric summed over the month: name, one dimension set, the sum."""

    namespace: str
    name: str
    dimensions: Mapping[str, str]
    total: float


@dataclass(frozen=True)
class IsolationEvent:
    """One isolation (``jukinet isolate``) that began or ended in the month."""

    kind: str  # municipality | prefecture | agency
    target: str
    isolated_at: str
    restored_at: str | None
    reason: str
    by: str


@dataclass(frozen=True)
class SealSummary:
    """The provision log's hourly seals of the month: made, and the due hours with none
    (from the chain's first seal on: hours before it are not the sealer's to seal)."""

    made: int
    due: int
    missing: tuple[str, ...]


@dataclass(frozen=True)
class StatsSummary:
    """``provision_audit.check_statistics`` in plain data."""

    entries: int
    sealed: int
    missing: int
    mismatches: tuple[str, ...]
    final: bool  # the month has ended: the comparison is exact


@dataclass
class MonitoringInputs:
    deployment: str
    month: str
    generated_at: dt.datetime
    tiers: list[str]  # national, pref-<code>, muni-<code>: the deployment's tiers
    services: Mapping[str, str]  # metric `service` dimension → tier
    alarms: list[AlarmEvent] = field(default_factory=list)
    metrics: list[MetricSum] = field(default_factory=list)
    isolations: list[IsolationEvent] = field(default_factory=list)
    seals: SealSummary | None = None
    stats: StatsSummary | None = None
    alarm_source: str = ""


# --- the report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Incident:
    tier: str
    what: str
    evidence: str

    def __str__(self) -> str:
        return f"{self.tier}: {self.what} ({self.evidence})"


@dataclass
class TierReport:
    tier: str
    raised: list[AlarmEvent] = field(default_factory=list)
    cleared: list[AlarmEvent] = field(default_factory=list)
    refusals_by_code: dict[str, int] = field(default_factory=dict)
    signature_failures: int = 0
    gateway_refusals: int = 0
    network_rejects: dict[str, int] = field(default_factory=dict)
    unauthorised: dict[str, int] = field(default_factory=dict)
    break_glass: int = 0
    isolations: list[IsolationEvent] = field(default_factory=list)
    seals: SealSummary | None = None
    stats: StatsSummary | None = None
    channel: dict[str, int] = field(default_factory=dict)         # CHANNEL_METRICS name → sum
    channel_dead: dict[str, int] = field(default_factory=dict)    # dead-letter reason → count
    copies: dict[str, int] = field(default_factory=dict)          # COPY_METRICS name → sum
    copies_refused: dict[str, int] = field(default_factory=dict)  # refusal code → count
    moves: dict[str, int] = field(default_factory=dict)           # MOVE_METRICS name → sum
    moves_refused: dict[str, int] = field(default_factory=dict)   # refusal code → count

    @property
    def has_moves(self) -> bool:
        return bool(self.moves or self.moves_refused)

    @property
    def move_figures(self) -> dict[str, int]:
        """Special move-outs filed, cancelled, completed, lapsed at the tier's municipalities (A);
        special move-ins requested, certified, completed, refused, timed out at its counters (B)."""
        c = self.moves
        return {"out_filed": c.get("SpecialMoveOutsFiled", 0), "out_cancelled": c.get("SpecialMoveOutsCancelled", 0),
                "out_completed": c.get("SpecialMoveOutsCompleted", 0), "out_lapsed": c.get("SpecialMoveOutsLapsed", 0),
                "in_requested": c.get("SpecialMoveInsRequested", 0), "in_certified": c.get("SpecialMoveInsCertified", 0),
                "in_completed": c.get("SpecialMoveInsCompleted", 0), "in_refused": c.get("SpecialMoveInsRefused", 0),
                "in_timed_out": c.get("SpecialMoveInsTimedOut", 0)}

    @property
    def move_line(self) -> str:
        f = self.move_figures
        by_code = ", ".join(f"{code} {n}" for code, n in sorted(self.moves_refused.items()))
        return (f"move-outs filed {f['out_filed']}, cancelled {f['out_cancelled']}, completed {f['out_completed']}, "
                f"lapsed {f['out_lapsed']}; move-ins requested {f['in_requested']}, certified {f['in_certified']}, "
                f"completed {f['in_completed']}, refused {f['in_refused']}" + (f" ({by_code})" if by_code else "")
                + f", timed out {f['in_timed_out']}")

    @property
    def has_copies(self) -> bool:
        return bool(self.copies or self.copies_refused)

    @property
    def copy_figures(self) -> dict[str, int]:
        """Wide-area copies requested, issued, refused, timed out at the tier's counters (B), and
        its residents' copies answered for issue elsewhere (A)."""
        c = self.copies
        return {"requested": c.get("WideAreaCopiesRequested", 0), "issued": c.get("WideAreaCopiesIssued", 0),
                "refused": c.get("WideAreaCopiesRefused", 0), "timed_out": c.get("WideAreaCopiesTimedOut", 0),
                "issued_elsewhere": c.get("WideAreaCopiesAnsweredForElsewhere", 0)}

    @property
    def copy_line(self) -> str:
        f = self.copy_figures
        by_code = ", ".join(f"{code} {n}" for code, n in sorted(self.copies_refused.items()))
        return (f"requested {f['requested']}, issued {f['issued']}, refused {f['refused']}"
                + (f" ({by_code})" if by_code else "") + f", timed out {f['timed_out']}; "
                f"residents' copies issued elsewhere {f['issued_elsewhere']}")

    @property
    def has_channel(self) -> bool:
        return bool(self.channel or self.channel_dead)

    @property
    def channel_figures(self) -> dict[str, int]:
        """Requests sent, answered, refused, timed out (the requester's side), answers and
        refusals given (the home side), messages routed (prefecture, national)."""
        c = self.channel
        refused = c.get("ChannelRefusalsReceived", 0)
        return {"requested": c.get("ChannelRequestsSent", 0),
                "answered": c.get("ChannelRequestsSettled", 0) - refused, "refused": refused,
                "timed_out": c.get("ChannelRequestsTimedOut", 0), "given": c.get("ChannelAnswersSent", 0),
                "routed": c.get("ChannelRouted", 0), "dead_lettered": sum(self.channel_dead.values())}

    @property
    def channel_line(self) -> str:
        f = self.channel_figures
        parts = []
        if f["requested"] or f["answered"] or f["refused"] or f["timed_out"]:
            parts.append(f"requests sent {f['requested']}, answered {f['answered']}, refused {f['refused']}, "
                         f"timed out {f['timed_out']}")
        if f["given"]:
            parts.append(f"answers and refusals given {f['given']}")
        if f["routed"]:
            parts.append(f"routed {f['routed']}")
        dead = ", ".join(f"{reason} {n}" for reason, n in sorted(self.channel_dead.items()))
        parts.append(f"dead letters {f['dead_lettered']}" + (f" ({dead})" if dead else ""))
        return "; ".join(parts)

    @property
    def refusals(self) -> int:
        return sum(self.refusals_by_code.values())

    @property
    def network_rejects_total(self) -> int:
        return sum(self.network_rejects.values())


@dataclass
class MonitoringReport:
    deployment: str
    month: str
    generated_at: dt.datetime
    tiers: list[TierReport]
    incidents: list[Incident]
    alarm_source: str = ""

    @property
    def clean(self) -> bool:
        return not self.incidents

    @property
    def finding(self) -> str:
        """The finding in one sentence (Japanese, English beside)."""
        if self.clean:
            return f"{NO_INCIDENT}。 ({NO_INCIDENT_EN}.)"
        return (f"次の{len(self.incidents)}件を認めた ({len(self.incidents)} incident(s) found): "
                + "; ".join(str(i) for i in self.incidents) + ".")


def _tier_of(dimensions: Mapping[str, str], services: Mapping[str, str]) -> str | None:
    if "service" in dimensions and dimensions["service"] in services:
        return services[dimensions["service"]]
    if dimensions.get("tier") == "national" or not dimensions:
        return "national"  # the provision functions and the API's access-log filter
    return None


def build_report(inputs: MonitoringInputs) -> MonitoringReport:
    """Sort the month's inputs into tiers and decide the finding (no AWS request)."""
    tiers = {t: TierReport(t) for t in inputs.tiers}

    def tier(name: str | None) -> TierReport | None:
        return tiers.get(name) if name else None

    for event in sorted(inputs.alarms, key=lambda e: e.at):
        t = tier(event.tier)
        if t is None or month_jst(event.at) != inputs.month:
            continue
        if event.raised:
            t.raised.append(event)
        elif event.cleared:
            t.cleared.append(event)
    for m in inputs.metrics:
        total = int(round(m.total))
        if not total:
            continue
        if m.namespace == SECURITY_NAMESPACE and m.name.startswith(BREAK_GLASS_METRIC_PREFIX):
            if (t := tier(m.name.removeprefix(BREAK_GLASS_METRIC_PREFIX))) is not None:
                t.break_glass += total
            continue
        network_tier = m.namespace.removeprefix(f"{METRICS_NAMESPACE}/Network/")
        t = tier(network_tier if network_tier != m.namespace else _tier_of(m.dimensions, inputs.services))
        if t is None:
            continue
        if m.name == REFUSALS_BY_CODE:
            code = m.dimensions.get("code", "?")
            t.refusals_by_code[code] = t.refusals_by_code.get(code, 0) + total
        elif m.name == SIGNATURE_FAILURES:
            t.signature_failures += total
        elif m.name == GATEWAY_REFUSALS:
            t.gateway_refusals += total
        elif m.name in NETWORK_WATCH_METRICS:
            t.network_rejects[m.name] = t.network_rejects.get(m.name, 0) + total
        elif m.name in UNAUTHORISED_METRICS:
            t.unauthorised[m.name] = t.unauthorised.get(m.name, 0) + total
        elif m.name in CHANNEL_METRICS:
            t.channel[m.name] = t.channel.get(m.name, 0) + total
        elif m.name == CHANNEL_DEAD_LETTERS_BY_REASON:
            reason = m.dimensions["reason"]
            t.channel_dead[reason] = t.channel_dead.get(reason, 0) + total
        elif m.name in COPY_METRICS:
            t.copies[m.name] = t.copies.get(m.name, 0) + total
        elif m.name == COPY_REFUSALS_BY_CODE:
            code = m.dimensions.get("code", "?")
            t.copies_refused[code] = t.copies_refused.get(code, 0) + total
        elif m.name in MOVE_METRICS:
            t.moves[m.name] = t.moves.get(m.name, 0) + total
        elif m.name == MOVE_REFUSALS_BY_CODE:
            code = m.dimensions.get("code", "?")
            t.moves_refused[code] = t.moves_refused.get(code, 0) + total
    for iso in inputs.isolations:
        name = {"agency": "national", "prefecture": f"pref-{iso.target}",
                "municipality": f"muni-{iso.target[:2]}"}.get(iso.kind, "national")
        if iso.kind == "municipality":  # the municipality tier of its prefecture: muni-<prefecture code>
            name = next((t for t in tiers if t.startswith("muni-") and t[5:7] == iso.target[:2]), name)
        if (t := tier(name)) is not None:
            t.isolations.append(iso)
    if "national" in tiers:
        tiers["national"].seals = inputs.seals
        tiers["national"].stats = inputs.stats
    return MonitoringReport(inputs.deployment, inputs.month, inputs.generated_at, list(tiers.values()),
                            incidents(tiers.values()), inputs.alarm_source)


def _jst(at: dt.datetime) -> str:
    return at.astimezone(JST).strftime("%Y-%m-%d %H:%M")


def incidents(tiers: Iterable[TierReport]) -> list[Incident]:
    """What the finding lists: every alarm raised, every sign of unauthorised access (refusals
    counted as unauthorised attempts, signature failures, gateway refusals, network-watch
    rejects, break-glass uses, isolations), every hour left unsealed and every statistics row
    that differs from the log. Refusals of well-formed but over-limit or invalid requests are
    reported by code, not listed."""
    found: list[Incident] = []
    for t in tiers:
        for e in t.raised:
            found.append(Incident(t.tier, f"alarm {e.alarm} raised", f"{_jst(e.at)} JST; its reason in the alarm table"))
        for name, n in sorted(t.unauthorised.items()):
            found.append(Incident(t.tier, f"{name} {n}", f"metric {name}, sum over the month"))
        if t.signature_failures:
            found.append(Incident(t.tier, f"signature failures {t.signature_failures}",
                                  "metric SignatureFailures; messages in the tier's DLQ"))
        if t.gateway_refusals:
            found.append(Incident(t.tier, f"gateway refusals {t.gateway_refusals}",
                                  "metric GatewayRefusals (the API's access log)"))
        for name, n in sorted(t.network_rejects.items()):
            found.append(Incident(t.tier, f"{name} {n}", "flow logs (network watch)"))
        if t.break_glass:
            found.append(Incident(t.tier, f"break-glass used {t.break_glass} time(s)",
                                  "metric BreakGlassUsed (CloudTrail AssumeRole)"))
        for iso in t.isolations:
            found.append(Incident(t.tier, f"{iso.kind} {iso.target} isolated",
                                  f"{iso.isolated_at} by {iso.by}: {iso.reason}"
                                  + (f"; restored {iso.restored_at}" if iso.restored_at else "; still isolated")))
        if t.seals and t.seals.missing:
            found.append(Incident(t.tier, f"{len(t.seals.missing)} hour(s) of the provision log not sealed",
                                  ", ".join(t.seals.missing[:5]) + ("…" if len(t.seals.missing) > 5 else "")))
        if t.stats and (t.stats.mismatches or t.stats.missing):
            found.append(Incident(t.tier, "provision statistics differ from the log",
                                  "; ".join(t.stats.mismatches[:5]) or f"{t.stats.missing} entries named by a seal are gone"))
    return found


# --- collecting from a deployed environment ------------------------------------------------------


def month_range(month: str) -> tuple[dt.datetime, dt.datetime]:
    """The month's JST start and end, in UTC."""
    start = dt.datetime.strptime(month, "%Y-%m").replace(tzinfo=JST)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return start.astimezone(UTC), end.astimezone(UTC)


def metric_sums(cloudwatch: Any, namespace: str, names: Iterable[str], start: dt.datetime,
                end: dt.datetime) -> list[MetricSum]:
    """Each listed metric of ``namespace``, per dimension set (``ListMetrics``), summed over
    ``[start, end)`` (``GetMetricStatistics``, hourly sums: at most 744 datapoints a month)."""
    out: list[MetricSum] = []
    for name in names:
        found: dict[tuple, list] = {}  # each dimension set once (the embedded AWS lists one per datapoint)
        for page in cloudwatch.get_paginator("list_metrics").paginate(Namespace=namespace, MetricName=name):
            for metric in page.get("Metrics", []):
                dims = sorted(metric.get("Dimensions", []), key=lambda d: d["Name"])
                found.setdefault(tuple((d["Name"], d["Value"]) for d in dims), dims)
        for dims in found.values():
            points = cloudwatch.get_metric_statistics(Namespace=namespace, MetricName=name, Dimensions=dims,
                                                      StartTime=start, EndTime=end, Period=3600,
                                                      Statistics=["Sum"]).get("Datapoints", [])
            total = sum(p.get("Sum", 0) for p in points)
            out.append(MetricSum(namespace, name, {d["Name"]: d["Value"] for d in dims}, total))
    return out


def alarms_from_history(cloudwatch: Any, prefix: str, start: dt.datetime, end: dt.datetime) -> list[AlarmEvent]:
    """State changes of the deployment's alarms (``DescribeAlarmHistory``, CloudWatch keeps
    30 days: generate the report within a month of the month's end)."""
    events = []
    for page in cloudwatch.get_paginator("describe_alarm_history").paginate(
            HistoryItemType="StateUpdate", StartDate=start, EndDate=end):
        for item in page.get("AlarmHistoryItems", []):
            name = item.get("AlarmName", "")
            if not name.startswith(prefix):
                continue
            data = json.loads(item.get("HistoryData") or "{}")
            old = data.get("oldState", {}).get("stateValue", "")
            new = data.get("newState", {}).get("stateValue", "")
            match = _TIER_IN_NAME.search(name)
            events.append(AlarmEvent(item["Timestamp"].astimezone(UTC), match[1] if match else "", name, old, new,
                                     data.get("newState", {}).get("stateReason", "")))
    return events


def alarms_from_notifications(path: Path) -> list[AlarmEvent]:
    """The embedded AWS's record of alarm transitions, ``.jukinet/notifications.log``
    (``embedded_aws.monitoring.NotificationLog``): ``time  tier  alarm  old→new  reason``."""
    events = []
    if not path.is_file():
        return events
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("  ", 4)
        if len(parts) < 4 or "→" not in parts[3]:
            continue
        old, new = parts[3].split("→", 1)
        at = dt.datetime.strptime(parts[0], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        events.append(AlarmEvent(at, parts[1], parts[2], old, new, parts[4] if len(parts) > 4 else ""))
    return events


def isolation_events(store: Any, month: str) -> list[IsolationEvent]:
    """Every isolation that began or ended in the month, from each target's record history
    (SSM parameter versions: ``emergency.RecordStore``), each once in its latest version."""
    latest: dict[str, Any] = {}
    for _, record in store.all():
        for version in store.history(record.kind, record.target):
            latest[version.id] = version
    events = []
    for r in latest.values():
        if r.status == "isolating" and not r.changes:
            continue  # stopped before its first change
        for at in (r.isolated_at, r.restored_at):
            if at and month_jst(dt.datetime.fromisoformat(at.replace("Z", "+00:00"))) == month:
                events.append(IsolationEvent(r.kind, r.target, r.isolated_at, r.restored_at, r.reason, r.isolated_by))
                break
    return sorted(events, key=lambda e: e.isolated_at)


def seal_summary(log: Any, month: str, now: dt.datetime) -> SealSummary:
    from ..domain.provision import next_period, period_end
    from .provision_audit import MAX_WRITE_LAG, SEAL_GRACE, month_days

    days = month_days(month)
    seals = log.seals(f"{days[0]}T00", f"{days[-1]}T23")
    first = log.first_seal()
    due, missing = 0, []
    period = f"{days[0]}T00"
    while period[:7] == month:
        if period_end(period) + MAX_WRITE_LAG + SEAL_GRACE <= now and first is not None and period >= first.period:
            due += 1
            if period not in seals:
                missing.append(period)
        period = next_period(period)
    return SealSummary(len(seals), due, tuple(missing))


@dataclass(frozen=True)
class ReportScope:
    """What one report covers: the deployment's name and resource prefix, its tiers (national,
    pref-<code>, muni-<code>) and the metric ``service`` dimension of each. ``jukinet
    monitoring-report`` covers every tier of a deployment (``jukinet_ops.monitoring_report``);
    a tier's scheduled function its own (its environment, written by synth)."""

    deployment: str
    prefix: str
    tiers: tuple[str, ...]
    services: Mapping[str, str]  # service → tier


@dataclass(frozen=True)
class _Isolation:
    kind: str
    target: str
    status: str
    changes: list
    isolated_at: str
    restored_at: str | None
    reason: str
    isolated_by: str

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.target}@{self.isolated_at}"


class IsolationHistory:
    """Read-only view of the isolation records ``jukinet isolate`` keeps as SSM parameters
    ``/<prefix>/isolation/<kind>/<target>`` (``jukinet_ops.emergency.RecordStore`` writes them):
    each record and its versions, only the fields the report shows."""

    def __init__(self, ssm: Any, prefix: str) -> None:
        self.ssm, self.root = ssm, f"/{prefix}/isolation"

    @staticmethod
    def _record(value: str) -> _Isolation:
        d = json.loads(value)
        return _Isolation(d.get("kind", ""), d.get("target", ""), d.get("status", ""), d.get("changes") or [],
                          d.get("isolated_at", ""), d.get("restored_at"), d.get("reason", ""),
                          d.get("isolated_by", ""))

    def all(self) -> Iterable[tuple[str, _Isolation]]:
        request: dict[str, Any] = {"Path": self.root, "Recursive": True}
        while True:
            page = self.ssm.get_parameters_by_path(**request)
            for p in page.get("Parameters", []):
                yield p["Name"], self._record(p["Value"])
            if not page.get("NextToken"):
                return
            request["NextToken"] = page["NextToken"]

    def history(self, kind: str, target: str) -> list[_Isolation]:
        found: list[_Isolation] = []
        request: dict[str, Any] = {"Name": f"{self.root}/{kind}/{target}"}
        while True:
            page = self.ssm.get_parameter_history(**request)
            found += [self._record(p["Value"]) for p in page.get("Parameters", [])]
            if not page.get("NextToken"):
                return found
            request["NextToken"] = page["NextToken"]


def collect_inputs(scope: ReportScope, month: str, *, now: dt.datetime, notifications: Path | None = None,
                   client: Callable[[str], Any] | None = None, isolations: Any = None,
                   provision_log: Any = None) -> MonitoringInputs:
    """Read the month's inputs for ``scope`` from the deployed environment, with ``now`` from
    the caller. ``notifications``: read alarm transitions from this local record (the embedded
    AWS) instead of CloudWatch's alarm history. ``client``: ``service → boto3 client`` (default:
    the runtime's factory — ``AWS_ENDPOINT_URL`` points it at the embedded AWS). ``isolations``:
    the isolation records (default: ``IsolationHistory`` over SSM). ``provision_log``: the
    national provision log (seals and statistics), or None when the scope has none. One account
    and region: tiers in other accounts are read with their own credentials (a run per account)."""
    from ..adapters import aws
    from .provision_audit import check_statistics

    client = client or aws.client
    tiers = list(scope.tiers)
    start, month_end = month_range(month)
    # Up to now, inclusive: GetMetricStatistics cuts EndTime to whole seconds and excludes it, so
    # ``now`` itself would drop the datapoints of the current second (a refusal just made).
    end = min(month_end, now.replace(microsecond=0) + dt.timedelta(seconds=1))
    cloudwatch = client("cloudwatch")
    handler_metrics = [SIGNATURE_FAILURES, GATEWAY_REFUSALS, REFUSALS_BY_CODE, *UNAUTHORISED_METRICS,
                       *CHANNEL_METRICS, CHANNEL_DEAD_LETTERS_BY_REASON, *COPY_METRICS, COPY_REFUSALS_BY_CODE, *MOVE_METRICS, MOVE_REFUSALS_BY_CODE]
    metrics = metric_sums(cloudwatch, METRICS_NAMESPACE, handler_metrics, start, end)
    for name in tiers:
        metrics += metric_sums(cloudwatch, network_namespace(name), NETWORK_WATCH_METRICS, start, end)
    metrics += metric_sums(cloudwatch, SECURITY_NAMESPACE, [break_glass_metric(t) for t in tiers], start, end)
    if notifications is not None:
        alarms, source = alarms_from_notifications(notifications), f"local record {notifications.name}"
    else:
        # One pass over the account's history; each alarm goes to the tier its name carries.
        alarms = alarms_from_history(cloudwatch, scope.prefix, start, end)
        source = "CloudWatch alarm history"
    store = isolations if isolations is not None else IsolationHistory(client("ssm"), scope.prefix)
    isolation_list = isolation_events(store, month)
    seals = stats = None
    if provision_log is not None:
        seals = seal_summary(provision_log, month, now)
        check = check_statistics(provision_log, month, now=now)
        final = month_range(month)[1] + dt.timedelta(hours=2) <= now
        stats = StatsSummary(check.entries, check.sealed, check.missing, tuple(str(m) for m in check.mismatches),
                             final)
    return MonitoringInputs(scope.deployment, month, now, tiers, dict(scope.services), alarms, metrics,
                            isolation_list, seals, stats, source)


def monitoring_report(scope: ReportScope, month: str, *, now: dt.datetime, notifications: Path | None = None,
                      client: Callable[[str], Any] | None = None, isolations: Any = None,
                      provision_log: Any = None) -> MonitoringReport:
    """Collect, then build (the CLI and the scheduled function call this, then the renderers)."""
    return build_report(collect_inputs(scope, month, now=now, notifications=notifications, client=client,
                                       isolations=isolations, provision_log=provision_log))


# --- renderers -----------------------------------------------------------------------------------

_MARKDOWN = """\
# 月次監視報告 (monthly monitoring report) — {{ r.month }}

- 配備 (deployment): `{{ r.deployment }}`
- 作成 (generated): {{ jst(r.generated_at) }} JST; 警報の記録 (alarm source): {{ r.alarm_source }}

## 所見 (finding)

{{ r.finding }}

## 階層別 (per tier)

| 階層 (tier) | 警報発生 (alarms raised) | 警報解除 (cleared) | 拒否 (refused calls) | 署名不正 (signature failures) | ゲートウェイ拒否 (gateway refusals) | 通信拒否 (flow-log rejects) | 緊急用権限 (break-glass) | 遮断 (isolations) |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
{% for t in r.tiers -%}
| {{ t.tier }} | {{ t.raised|length }} | {{ t.cleared|length }} | {{ t.refusals }} | {{ t.signature_failures }} | {{ t.gateway_refusals }} | {{ t.network_rejects_total }} | {{ t.break_glass }} | {{ t.isolations|length }} |
{% endfor %}
{% for t in r.tiers if t.raised or t.cleared or t.refusals_by_code or t.seals or t.isolations or t.has_channel or t.has_copies or t.has_moves %}
### {{ t.tier }}
{% if t.raised or t.cleared %}
| 時刻 JST (time) | 警報 (alarm) | 状態 (state) |
| --- | --- | --- |
{% for e in (t.raised + t.cleared)|sort(attribute="at") -%}
| {{ jst(e.at) }} | {{ e.alarm }} | {{ e.old }}→{{ e.new }} |
{% endfor %}{% endif %}
{%- if t.refusals_by_code %}
拒否の内訳 (refused calls by code): {% for code, n in t.refusals_by_code|dictsort %}{{ code }} {{ n }}{{ ", " if not loop.last }}{% endfor %}
{% endif %}
{%- if t.isolations %}
{% for i in t.isolations %}- 遮断 (isolation): {{ i.kind }} {{ i.target }} {{ i.isolated_at }} – {{ i.restored_at or "継続中 (still isolated)" }}: {{ i.reason }}
{% endfor %}{% endif %}
{%- if t.has_channel %}
市町村間通信 (channel between municipalities): {{ t.channel_line }}
{% endif %}
{%- if t.has_copies %}
広域交付 (wide-area copies of resident records): {{ t.copy_line }}
{% endif %}
{%- if t.has_moves %}
特例転出・特例転入 (special move-outs/move-ins): {{ t.move_line }}
{% endif %}
{%- if t.seals %}
封印 (seals): {{ t.seals.made }} 作成 (made), {{ t.seals.missing|length }} 欠落 (missing) / {{ t.seals.due }} 期限到来 (due)
{% endif %}
{%- if t.stats %}
提供統計と記録の照合 (statistics vs. the log): {{ t.stats.entries }} 件 (provisions), {% if t.stats.mismatches %}不一致 {{ t.stats.mismatches|length }} (mismatches): {{ t.stats.mismatches|join("; ") }}{% else %}一致 (equal){% endif %}{% if not t.stats.final %} — 月途中 (month not over){% endif %}
{% endif %}
{% endfor %}"""

_HTML = """\
<!DOCTYPE html>
<html lang="ja">
<head><meta charset="utf-8"><title>月次監視報告 {{ r.month }} — {{ r.deployment }}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #999;padding:.2em .5em}
td.n{text-align:right}.bad{color:#b00}.ok{color:#070}</style></head>
<body>
<h1>月次監視報告 <small>(monthly monitoring report)</small> — {{ r.month }}</h1>
<p>配備 (deployment): <code>{{ r.deployment }}</code>; 作成 (generated): {{ jst(r.generated_at) }} JST;
警報の記録 (alarm source): {{ r.alarm_source }}</p>
<h2>所見 <small>(finding)</small></h2>
{% if r.clean %}<p class="ok">{{ r.finding }}</p>{% else %}<p class="bad">{{ r.incidents|length }} 件 (incidents):</p>
<ul>{% for i in r.incidents %}<li>{{ i.tier }}: {{ i.what }} — {{ i.evidence }}</li>{% endfor %}</ul>{% endif %}
<h2>階層別 <small>(per tier)</small></h2>
<table><tr><th>階層 (tier)</th><th>警報発生 (alarms raised)</th><th>警報解除 (cleared)</th><th>拒否 (refused calls)</th>
<th>署名不正 (signature failures)</th><th>ゲートウェイ拒否 (gateway refusals)</th><th>通信拒否 (flow-log rejects)</th>
<th>緊急用権限 (break-glass)</th><th>遮断 (isolations)</th></tr>
{% for t in r.tiers %}<tr><td>{{ t.tier }}</td><td class="n">{{ t.raised|length }}</td><td class="n">{{ t.cleared|length }}</td>
<td class="n">{{ t.refusals }}</td><td class="n">{{ t.signature_failures }}</td><td class="n">{{ t.gateway_refusals }}</td>
<td class="n">{{ t.network_rejects_total }}</td><td class="n">{{ t.break_glass }}</td><td class="n">{{ t.isolations|length }}</td></tr>
{% endfor %}</table>
{% for t in r.tiers if t.raised or t.cleared or t.refusals_by_code or t.seals or t.isolations or t.has_channel or t.has_copies or t.has_moves %}
<h3>{{ t.tier }}</h3>
{% if t.raised or t.cleared %}<table><tr><th>時刻 JST (time)</th><th>警報 (alarm)</th><th>状態 (state)</th><th>理由 (reason)</th></tr>
{% for e in (t.raised + t.cleared)|sort(attribute="at") %}<tr><td>{{ jst(e.at) }}</td><td>{{ e.alarm }}</td><td>{{ e.old }}→{{ e.new }}</td><td>{{ e.reason }}</td></tr>
{% endfor %}</table>{% endif %}
{% if t.refusals_by_code %}<p>拒否の内訳 (refused calls by code): {% for code, n in t.refusals_by_code|dictsort %}{{ code }} {{ n }}{{ ", " if not loop.last }}{% endfor %}</p>{% endif %}
{% for i in t.isolations %}<p>遮断 (isolation): {{ i.kind }} {{ i.target }} {{ i.isolated_at }} – {{ i.restored_at or "継続中 (still isolated)" }}: {{ i.reason }}</p>{% endfor %}
{% if t.has_channel %}<p>市町村間通信 (channel between municipalities): {{ t.channel_line }}</p>{% endif %}
{% if t.has_copies %}<p>広域交付 (wide-area copies of resident records): {{ t.copy_line }}</p>{% endif %}
{% if t.has_moves %}<p>特例転出・特例転入 (special move-outs/move-ins): {{ t.move_line }}</p>{% endif %}
{% if t.seals %}<p>封印 (seals): {{ t.seals.made }} 作成 (made), {{ t.seals.missing|length }} 欠落 (missing) / {{ t.seals.due }} 期限到来 (due)</p>{% endif %}
{% if t.stats %}<p>提供統計と記録の照合 (statistics vs. the log): {{ t.stats.entries }} 件 (provisions),
{% if t.stats.mismatches %}<span class="bad">不一致 (mismatches): {{ t.stats.mismatches|join("; ") }}</span>{% else %}<span class="ok">一致 (equal)</span>{% endif %}
{% if not t.stats.final %} — 月途中 (month not over){% endif %}</p>{% endif %}
{% endfor %}
</body></html>
"""


def _environment(autoescape: bool):
    import jinja2

    # Markdown passes raw HTML through to whoever renders it: text from the environment (alarm
    # reasons, isolation reasons) has its angle brackets escaped there too.
    finalize = None if autoescape else (lambda v: v.replace("<", "&lt;").replace(">", "&gt;")
                                        if isinstance(v, str) else v)
    env = jinja2.Environment(autoescape=autoescape, undefined=jinja2.StrictUndefined, trim_blocks=False,
                             keep_trailing_newline=True, finalize=finalize)
    env.globals["jst"] = _jst
    return env


def render_markdown(report: MonitoringReport) -> str:
    text = _environment(False).from_string(_MARKDOWN).render(r=report)
    return re.sub(r"\n{3,}", "\n\n", text).rstrip() + "\n"


def render_html(report: MonitoringReport) -> str:
    return _environment(True).from_string(_HTML).render(r=report)


CSV_HEADER = ["month", "tier", "section", "item", "value", "time_jst", "detail"]


def render_csv(report: MonitoringReport) -> str:
    """One row per fact (month, tier, section, item, value, time, detail); the header row is
    Japanese-free so spreadsheets and scripts read it alike; sections: alarm_raised,
    alarm_cleared, refused, signature_failures, gateway_refusals, network_rejects,
    unauthorised, break_glass, isolation, seals, stats_mismatch, channel, channel_dead_letters,
    wide_area_copies, wide_area_copies_refused, finding."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_HEADER)
    m = report.month
    for t in report.tiers:
        for e in t.raised:
            w.writerow([m, t.tier, "alarm_raised", e.alarm, 1, _jst(e.at), e.reason])
        for e in t.cleared:
            w.writerow([m, t.tier, "alarm_cleared", e.alarm, 1, _jst(e.at), e.reason])
        for code, n in sorted(t.refusals_by_code.items()):
            w.writerow([m, t.tier, "refused", code, n, "", ""])
        w.writerow([m, t.tier, "signature_failures", "SignatureFailures", t.signature_failures, "", ""])
        w.writerow([m, t.tier, "gateway_refusals", "GatewayRefusals", t.gateway_refusals, "", ""])
        for name in NETWORK_WATCH_METRICS:
            w.writerow([m, t.tier, "network_rejects", name, t.network_rejects.get(name, 0), "", ""])
        for name, n in sorted(t.unauthorised.items()):
            w.writerow([m, t.tier, "unauthorised", name, n, "", ""])
        w.writerow([m, t.tier, "break_glass", "BreakGlassUsed", t.break_glass, "", ""])
        for i in t.isolations:
            w.writerow([m, t.tier, "isolation", f"{i.kind} {i.target}", 1, i.isolated_at,
                        f"{i.reason}; restored {i.restored_at or '-'}"])
        if t.has_channel:
            for item, n in t.channel_figures.items():
                if item != "dead_lettered":
                    w.writerow([m, t.tier, "channel", item, n, "", ""])
            for reason, n in sorted(t.channel_dead.items()):
                w.writerow([m, t.tier, "channel_dead_letters", reason, n, "", ""])
        if t.has_copies:
            for item, n in t.copy_figures.items():
                w.writerow([m, t.tier, "wide_area_copies", item, n, "", ""])
            for code, n in sorted(t.copies_refused.items()):
                w.writerow([m, t.tier, "wide_area_copies_refused", code, n, "", ""])
        if t.has_moves:
            for item, n in t.move_figures.items():
                w.writerow([m, t.tier, "special_moves", item, n, "", ""])
            for code, n in sorted(t.moves_refused.items()):
                w.writerow([m, t.tier, "special_moves_refused", code, n, "", ""])
        if t.seals:
            w.writerow([m, t.tier, "seals", "made", t.seals.made, "", ""])
            w.writerow([m, t.tier, "seals", "missing", len(t.seals.missing), "", " ".join(t.seals.missing)])
        if t.stats:
            for row in t.stats.mismatches:
                w.writerow([m, t.tier, "stats_mismatch", row.split(":", 1)[0], 1, "", row])
    w.writerow([m, "", "finding", "incidents", len(report.incidents), "", report.finding])
    return out.getvalue()


def write_report(report: MonitoringReport, out_dir: Path) -> list[Path]:
    """``monitoring-<month>.md``, ``.html`` and ``.csv`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix, render in ((".md", render_markdown), (".html", render_html), (".csv", render_csv)):
        path = out_dir / f"monitoring-{report.month}{suffix}"
        path.write_text(render(report), encoding="utf-8")
        paths.append(path)
    return paths


def summary_lines(report: MonitoringReport, shown: int = 8) -> list[str]:
    """One screen: per tier one line, then the finding — the sentence, or the first ``shown``
    incidents one a line (the demo's last output)."""
    lines = [f"月次監視報告 (monitoring report) {report.month} — {report.deployment}"]
    for t in report.tiers:
        parts = [f"alarms raised {len(t.raised)}, cleared {len(t.cleared)}", f"refused {t.refusals}"]
        if t.signature_failures:
            parts.append(f"signature failures {t.signature_failures}")
        if t.gateway_refusals:
            parts.append(f"gateway refusals {t.gateway_refusals}")
        parts.append(f"flow-log rejects {t.network_rejects_total}")
        if t.break_glass:
            parts.append(f"break-glass {t.break_glass}")
        if t.isolations:
            parts.append(f"isolations {len(t.isolations)}")
        if t.seals:
            parts.append(f"seals {t.seals.made} made, {len(t.seals.missing)} missing")
        if t.stats:
            parts.append("statistics = log" if not t.stats.mismatches else f"statistics ≠ log ({len(t.stats.mismatches)})")
        if t.has_channel:
            parts.append(f"channel: {t.channel_line}")
        if t.has_copies:
            f = t.copy_figures
            parts.append(f"wide-area copies: issued {f['issued']}, refused {f['refused']}, timed out {f['timed_out']}, "
                         f"issued elsewhere {f['issued_elsewhere']}")
        if t.has_moves:
            f = t.move_figures
            parts.append(f"special moves: out {f['out_filed']} filed, {f['out_completed']} completed; in "
                         f"{f['in_completed']} completed, {f['in_refused']} refused")
        lines.append(f"  {t.tier:<12} " + "; ".join(parts))
    if report.clean:
        lines.append(f"所見 (finding): {report.finding}")
        return lines
    lines.append(f"所見 (finding): {len(report.incidents)}件 ({len(report.incidents)} incident(s)):")
    lines += [f"  - {i}"[:160] for i in report.incidents[:shown]]
    if len(report.incidents) > shown:
        lines.append(f"  … and {len(report.incidents) - shown} more in the report")
    return lines


# --- the scheduled run (decision 0039) ---------------------------------------------------------

REPORT_PREFIX = "monitoring-report/"
REPORT_FILES: tuple[tuple[str, Callable[[MonitoringReport], str], str], ...] = (
    ("report.md", render_markdown, "text/markdown; charset=utf-8"),
    ("report.html", render_html, "text/html; charset=utf-8"),
    ("report.csv", render_csv, "text/csv; charset=utf-8"),
)


def previous_month(now: dt.datetime) -> str:
    """The month (JST) before the one ``now`` falls in: on the 1st, the month just ended."""
    from ..clock import today_jst

    return (today_jst(now).replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")


def report_keys(month: str) -> list[str]:
    """``monitoring-report/<YYYY-MM>/report.md``, ``.html``, ``.csv``."""
    return [f"{REPORT_PREFIX}{month}/{name}" for name, _, _ in REPORT_FILES]


@dataclass
class MonitoringReportRun:
    at: dt.datetime
    month: str
    report: MonitoringReport | None = None
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # already there: not overwritten


class ScheduledMonitoringReport:
    """A processing tier's monthly run: the previous month's report of its ``scope`` (its own
    tier, and the prefecture's municipality tier) into its security-reports bucket, three files
    under ``monitoring-report/<YYYY-MM>/``. A file already there is kept (conditional write),
    unless the run is asked to ``replace`` (the bucket is versioned: the earlier copy stays)."""

    def __init__(self, *, scope: ReportScope, reports: Any, clock: Callable[[], dt.datetime],
                 notifications: Path | None = None, client: Callable[[str], Any] | None = None,
                 provision_log: Any = None) -> None:
        self.scope, self.reports, self.clock = scope, reports, clock
        self.notifications, self.client, self.provision_log = notifications, client, provision_log

    def run(self, now: dt.datetime | None = None, *, month: str | None = None,
            replace: bool = False) -> MonitoringReportRun:
        from ..adapters.reports import ReportExists

        now = now or self.clock()
        month = month or previous_month(now)
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
            raise ValueError(f"month {month!r} must be YYYY-MM")
        if month_range(month)[1] > now:
            raise ValueError(f"month {month} has not ended at {now.isoformat()}: the report is of an ended month")
        run = MonitoringReportRun(now, month)
        run.report = monitoring_report(self.scope, month, now=now, notifications=self.notifications,
                                       client=self.client, provision_log=self.provision_log)
        for key, (_, render, content_type) in zip(report_keys(month), REPORT_FILES, strict=True):
            try:
                run.written.append(self.reports.put(key, render(run.report), content_type, if_absent=not replace))
            except ReportExists as exc:
                run.kept.append(str(exc))
        return run


__all__ = ["NETWORK_WATCH_METRICS", "IsolationHistory", "ReportScope", "ScheduledMonitoringReport", "AlarmEvent", "IsolationEvent", "MetricSum", "MonitoringInputs",
           "MonitoringReport", "SealSummary", "StatsSummary", "TierReport", "build_report", "collect_inputs",
           "monitoring_report", "render_csv", "render_html", "render_markdown", "summary_lines", "write_report"]
