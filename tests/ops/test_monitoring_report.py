"""The monthly monitoring report from recorded inputs (``jukinet.services.monitoring_report``): what
goes into which tier, what the finding lists, and the three renderings. The same report read
from the embedded AWS: ``tests/e2e/test_monitoring_report_local.py``."""

from __future__ import annotations

import csv
import datetime as dt
import io

from jukinet.services.monitoring_report import (
    NETWORK_WATCH_METRICS,
    NO_INCIDENT,
    AlarmEvent,
    IsolationEvent,
    MetricSum,
    MonitoringInputs,
    SealSummary,
    StatsSummary,
    alarms_from_notifications,
    build_report,
    render_csv,
    render_html,
    render_markdown,
    summary_lines,
)

UTC = dt.UTC
MONTH = "2026-11"
NOW = dt.datetime(2026, 12, 1, 3, 0, tzinfo=UTC)  # 12:00 JST on the 1st: the month is over
TIERS = ["national", "pref-200000", "muni-200000"]
SERVICES = {"jukinet-provision": "national", "jukinet-national": "national", "jukinet-pref-200000": "pref-200000",
            "jukinet-muni-200000": "muni-200000"}


def at(day: int, hour: int = 3) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, 0, tzinfo=UTC)


def clean_inputs() -> MonitoringInputs:
    """A normal month: every alarm's first evaluation (→OK), refusals of over-limit requests
    only, every hour sealed, statistics equal to the log."""
    return MonitoringInputs(
        "nagano-demo", MONTH, NOW, TIERS, SERVICES,
        alarms=[AlarmEvent(at(1), "national", "jukinet-national-provision-api-errors", "INSUFFICIENT_DATA", "OK"),
                AlarmEvent(at(1), "pref-200000", "jukinet-pref-200000-signature-failures", "INSUFFICIENT_DATA",
                           "OK")],
        metrics=[MetricSum("Jukinet", "RefusalsByCode", {"service": "jukinet-provision", "code": "VOLUME_LIMIT_EXCEEDED"},
                           2.0),
                 MetricSum("Jukinet", "SignatureFailures", {"service": "jukinet-pref-200000", "tier": "prefecture"},
                           0.0)],
        seals=SealSummary(made=720, due=720, missing=()),
        stats=StatsSummary(entries=447, sealed=447, missing=0, mismatches=(), final=True),
        alarm_source="CloudWatch alarm history")


def incident_inputs() -> MonitoringInputs:
    inputs = clean_inputs()
    inputs.alarms += [
        AlarmEvent(at(10, 1), "pref-200000", "jukinet-pref-200000-signature-failures", "OK", "ALARM",
                   "Threshold Crossed: 1 datapoint [1.0] was greater than the threshold (0.0) <script>"),
        AlarmEvent(at(10, 2), "pref-200000", "jukinet-pref-200000-signature-failures", "ALARM", "OK",
                   "Threshold Crossed: no datapoints"),
        AlarmEvent(dt.datetime(2026, 10, 31, 12, tzinfo=UTC), "national",  # 21:00 JST on Oct 31: last month
                   "jukinet-national-provision-gateway-refusals", "OK", "ALARM", "last month"),
    ]
    inputs.metrics += [
        MetricSum("Jukinet", "SignatureFailures", {"service": "jukinet-pref-200000", "tier": "prefecture"}, 1.0),
        MetricSum("Jukinet", "RefusalsByCode", {"service": "jukinet-provision", "code": "AFFAIR_NOT_AGREED"}, 3.0),
        MetricSum("Jukinet", "UnauthorisedAttempts", {"service": "jukinet-provision", "tier": "national"}, 3.0),
        MetricSum("Jukinet", "GatewayRefusals", {}, 4.0),
        MetricSum("Jukinet/Network/pref-200000", NETWORK_WATCH_METRICS[0], {}, 5.0),  # a filter: no dimension
        MetricSum("Jukinet", "SomethingElse", {"service": "jukinet-pref-200000", "tier": "prefecture"}, 9.0),
        MetricSum("Jukinet/Security", "BreakGlassUsed-national", {}, 1.0),
    ]
    inputs.isolations = [IsolationEvent("municipality", "202029", "2026-11-12T01:00:00+00:00",
                                        "2026-11-12T02:00:00+00:00", "drill", "operator")]
    inputs.seals = SealSummary(made=718, due=720, missing=("2026-11-20T03", "2026-11-20T04"))
    inputs.stats = StatsSummary(entries=447, sealed=447, missing=0,
                                mismatches=("mhlw-engo DEMO/lookup: counted 487, log holds 447",), final=True)
    return inputs


def tier(report, name):
    return next(t for t in report.tiers if t.tier == name)


def test_a_clean_month_finds_no_unauthorised_access():
    report = build_report(clean_inputs())
    assert report.clean
    assert report.finding == f"{NO_INCIDENT}。 (no unauthorised access found.)"
    national = tier(report, "national")
    assert national.refusals_by_code == {"VOLUME_LIMIT_EXCEEDED": 2}  # refused, but not unauthorised
    assert not national.raised and not national.cleared  # a first evaluation is neither
    assert summary_lines(report)[-1] == f"所見 (finding): {report.finding}"


def test_an_incident_month_lists_each_incident_with_its_evidence_in_its_tier():
    report = build_report(incident_inputs())
    pref, national, muni = tier(report, "pref-200000"), tier(report, "national"), tier(report, "muni-200000")
    assert [e.at for e in pref.raised] == [at(10, 1)] and [e.at for e in pref.cleared] == [at(10, 2)]
    assert not national.raised  # raised last month (JST): not this month's
    assert pref.signature_failures == 1 and pref.network_rejects == {NETWORK_WATCH_METRICS[0]: 5}
    assert national.gateway_refusals == 4 and national.break_glass == 1
    assert national.refusals_by_code == {"AFFAIR_NOT_AGREED": 3, "VOLUME_LIMIT_EXCEEDED": 2}
    assert [i.target for i in muni.isolations] == ["202029"]
    found = {(i.tier, i.what) for i in report.incidents}
    assert found == {
        ("pref-200000", "alarm jukinet-pref-200000-signature-failures raised"),
        ("pref-200000", "signature failures 1"),
        ("pref-200000", f"{NETWORK_WATCH_METRICS[0]} 5"),
        ("national", "UnauthorisedAttempts 3"),
        ("national", "gateway refusals 4"),
        ("national", "break-glass used 1 time(s)"),
        ("national", "2 hour(s) of the provision log not sealed"),
        ("national", "provision statistics differ from the log"),
        ("muni-200000", "municipality 202029 isolated"),
    }
    assert "2026-11-10 10:00 JST" in next(i.evidence for i in report.incidents if "raised" in i.what)
    assert report.finding.startswith("次の9件を認めた (9 incident(s) found): ")


def test_a_metric_not_in_the_network_watch_list_is_not_a_reject():
    report = build_report(incident_inputs())
    assert "SomethingElse" not in tier(report, "pref-200000").network_rejects


def test_the_markdown_has_japanese_headings_with_english_beside_and_the_finding():
    text = render_markdown(build_report(incident_inputs()))
    for heading in ("# 月次監視報告 (monthly monitoring report) — 2026-11", "## 所見 (finding)", "## 階層別 (per tier)",
                    "警報発生 (alarms raised)", "署名不正 (signature failures)", "通信拒否 (flow-log rejects)",
                    "緊急用権限 (break-glass)", "遮断 (isolations)", "封印 (seals)"):
        assert heading in text
    assert "| pref-200000 | 1 | 1 | 0 | 1 | 0 | 5 | 0 | 0 |" in text
    assert "| 2026-11-10 10:00 | jukinet-pref-200000-signature-failures | OK→ALARM |" in text
    assert NO_INCIDENT in render_markdown(build_report(clean_inputs()))


def test_the_html_is_escaped_and_the_csv_has_one_row_per_fact():
    report = build_report(incident_inputs())
    html = render_html(report)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<h2>所見 <small>(finding)</small></h2>" in html
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert {(r["tier"], r["section"], r["item"], r["value"]) for r in rows} >= {
        ("pref-200000", "alarm_raised", "jukinet-pref-200000-signature-failures", "1"),
        ("national", "refused", "AFFAIR_NOT_AGREED", "3"),
        ("pref-200000", "network_rejects", NETWORK_WATCH_METRICS[0], "5"),
        ("national", "seals", "missing", "2"),
        ("", "finding", "incidents", "9"),
    }
    clean = list(csv.DictReader(io.StringIO(render_csv(build_report(clean_inputs())))))
    assert clean[-1]["value"] == "0" and NO_INCIDENT in clean[-1]["detail"]


def test_alarm_transitions_are_read_back_from_the_local_notifications_log(tmp_path):
    path = tmp_path / "notifications.log"
    path.write_text(
        "2026-11-10T01:00:00Z  pref-200000  jukinet-pref-200000-signature-failures  OK→ALARM  Threshold Crossed: 1\n"
        "2026-11-10T02:00:00Z  pref-200000  jukinet-pref-200000-signature-failures  ALARM→OK  Threshold Crossed: 0\n",
        encoding="utf-8")
    events = alarms_from_notifications(path)
    assert [(e.at, e.tier, e.old, e.new) for e in events] == [
        (at(10, 1), "pref-200000", "OK", "ALARM"), (at(10, 2), "pref-200000", "ALARM", "OK")]
    assert events[0].raised and events[1].cleared


class _ListedTwice:
    """A CloudWatch client whose ListMetrics names one dimension set once per datapoint, as the
    embedded AWS does, with two hourly sums of 3 and 4."""

    def get_paginator(self, name):
        metric = {"Namespace": "Jukinet", "MetricName": "UnauthorisedAttempts",
                  "Dimensions": [{"Name": "tier", "Value": "national"}, {"Name": "service", "Value": "p"}]}
        return type("P", (), {"paginate": lambda self, **kw: [{"Metrics": [metric, dict(metric)]}]})()

    def get_metric_statistics(self, **kwargs):
        return {"Datapoints": [{"Sum": 3.0}, {"Sum": 4.0}]}


def test_a_metric_listed_once_per_datapoint_is_summed_once():
    from jukinet.services.monitoring_report import metric_sums

    [total] = metric_sums(_ListedTwice(), "Jukinet", ["UnauthorisedAttempts"], at(1), at(30))
    assert total.total == 7.0 and total.dimensions == {"service": "p", "tier": "national"}


# --- the scheduled run (decision 0039): which month, which keys, never overwriting -------------------


class _Empty:
    """A CloudWatch/SSM client with nothing in it (the inputs are tested above)."""

    def get_paginator(self, _name):
        return self

    def paginate(self, **_kwargs):
        return [{}]

    def get_metric_statistics(self, **_kwargs):
        return {"Datapoints": []}

    def get_parameters_by_path(self, **_kwargs):
        return {"Parameters": []}


class _Bucket:
    def __init__(self):
        self.objects: dict[str, list[str]] = {}

    def put(self, key, text, content_type, *, if_absent=False):
        from jukinet.adapters.reports import ReportExists

        if if_absent and key in self.objects:
            raise ReportExists(f"s3://b/{key}")
        self.objects.setdefault(key, []).append(text)
        return f"s3://b/{key}"


def _scheduled(bucket):
    from jukinet.services.monitoring_report import ReportScope, ScheduledMonitoringReport

    scope = ReportScope("nagano-demo", "jukinet", ("pref-200000", "muni-200000"),
                        {"jukinet-pref-200000": "pref-200000", "jukinet-muni-200000": "muni-200000"})
    return ScheduledMonitoringReport(scope=scope, reports=bucket, clock=lambda: NOW, client=lambda _s: _Empty(),
                                     notifications=None)


def test_the_scheduled_run_reports_the_month_before_its_jst_day_under_stable_keys_and_keeps_what_is_there():
    from jukinet.services.monitoring_report import previous_month

    # 00:30 UTC on Dec 1st is 09:30 JST on Dec 1st: November; 23:00 UTC on Nov 30th is already Dec 1st in Japan.
    assert previous_month(dt.datetime(2026, 12, 1, 0, 30, tzinfo=UTC)) == "2026-11"
    assert previous_month(dt.datetime(2026, 11, 30, 23, 0, tzinfo=UTC)) == "2026-11"
    assert previous_month(dt.datetime(2026, 11, 30, 14, 59, tzinfo=UTC)) == "2026-10"
    assert previous_month(dt.datetime(2027, 1, 1, 0, 30, tzinfo=UTC)) == "2026-12"
    bucket = _Bucket()
    job = _scheduled(bucket)
    run = job.run(dt.datetime(2026, 12, 1, 0, 30, tzinfo=UTC))
    keys = ["monitoring-report/2026-11/report.md", "monitoring-report/2026-11/report.html",
            "monitoring-report/2026-11/report.csv"]
    assert run.month == "2026-11" and run.written == [f"s3://b/{k}" for k in keys] and run.kept == []
    assert NO_INCIDENT in bucket.objects[keys[0]][0] and bucket.objects[keys[2]][0].startswith("month,tier,")
    assert {line.split(",")[1] for line in bucket.objects[keys[2]][0].splitlines()[1:]} == {
        "pref-200000", "muni-200000", ""}
    again = job.run(dt.datetime(2026, 12, 1, 0, 31, tzinfo=UTC))  # a retry: nothing overwritten
    assert again.written == [] and again.kept == [f"s3://b/{k}" for k in keys]
    assert all(len(v) == 1 for v in bucket.objects.values())
    rerun = job.run(dt.datetime(2026, 12, 2, 0, 0, tzinfo=UTC), month="2026-11", replace=True)
    assert len(rerun.written) == 3 and all(len(v) == 2 for v in bucket.objects.values())


def test_the_scheduled_run_refuses_a_month_not_ended_or_malformed():
    import pytest

    job = _scheduled(_Bucket())
    with pytest.raises(ValueError, match="has not ended"):
        job.run(dt.datetime(2026, 12, 1, 0, 30, tzinfo=UTC), month="2026-12")
    for bad in ("2026-13", "2026/11", "26-11"):
        with pytest.raises(ValueError, match="YYYY-MM"):
            job.run(dt.datetime(2026, 12, 1, 0, 30, tzinfo=UTC), month=bad)


def test_the_reported_month_is_always_the_jst_month_before_the_run_and_has_ended():
    from hypothesis import given
    from hypothesis import strategies as st

    from jukinet.clock import month_jst
    from jukinet.services.monitoring_report import month_range, previous_month

    @given(st.datetimes(min_value=dt.datetime(2001, 1, 1), max_value=dt.datetime(2099, 12, 31), timezones=st.just(UTC)))
    def check(now):
        month = previous_month(now)
        start, end = month_range(month)
        assert end <= now and month_jst(end) == month_jst(now)  # ended, and the run's month follows it
        assert month_jst(start) == month and month_jst(end - dt.timedelta(microseconds=1)) == month

    check()


def channel_inputs() -> MonitoringInputs:
    """The channel's month (decision 0047): 長野県's municipality tier sent 5 requests (3 answered,
    1 refused, 1 timed out) and gave 4 answers; its prefecture routed 12 messages and
    dead-lettered 2; dead letters by reason at both."""
    inputs = clean_inputs()
    muni = {"service": "jukinet-muni-200000", "tier": "municipality"}
    pref = {"service": "jukinet-pref-200000", "tier": "prefecture"}
    inputs.metrics += [
        MetricSum("Jukinet", "ChannelRequestsSent", muni, 5.0),
        MetricSum("Jukinet", "ChannelRequestsSettled", muni, 4.0),
        MetricSum("Jukinet", "ChannelRefusalsReceived", muni, 1.0),
        MetricSum("Jukinet", "ChannelRequestsTimedOut", muni, 1.0),
        MetricSum("Jukinet", "ChannelAnswersSent", muni, 4.0),
        MetricSum("Jukinet", "ChannelRouted", pref, 12.0),
        MetricSum("Jukinet", "ChannelDeadLettered", muni, 1.0),  # the alarm's metric: not summed twice
        MetricSum("Jukinet", "ChannelDeadLettersByReason", {**muni, "reason": "deadline_passed"}, 1.0),
        MetricSum("Jukinet", "ChannelDeadLettered", pref, 2.0),
        MetricSum("Jukinet", "ChannelDeadLettersByReason", {**pref, "reason": "not_routable"}, 1.0),
        MetricSum("Jukinet", "ChannelDeadLettersByReason", {**pref, "reason": "deadline_passed"}, 1.0),
    ]
    return inputs


def test_the_channel_per_tier_requests_answers_refusals_timeouts_and_dead_letters_by_reason():
    report = build_report(channel_inputs())
    tiers = {t.tier: t for t in report.tiers}
    assert tiers["muni-200000"].channel_figures == {"requested": 5, "answered": 3, "refused": 1, "timed_out": 1,
                                                    "given": 4, "routed": 0, "dead_lettered": 1}
    assert tiers["muni-200000"].channel_dead == {"deadline_passed": 1}
    assert tiers["pref-200000"].channel_dead == {"deadline_passed": 1, "not_routable": 1}
    assert not tiers["national"].has_channel
    assert report.clean  # channel traffic and its dead letters are reported, not incidents by themselves
    markdown = render_markdown(report)
    assert ("市町村間通信 (channel between municipalities): requests sent 5, answered 3, refused 1, timed out 1; "
            "answers and refusals given 4; dead letters 1 (deadline_passed 1)") in markdown
    assert "routed 12; dead letters 2 (deadline_passed 1, not_routable 1)" in markdown
    assert "市町村間通信" in render_html(report)
    rows = list(csv.reader(io.StringIO(render_csv(report))))
    assert ["2026-11", "pref-200000", "channel_dead_letters", "not_routable", "1", "", ""] in rows
    assert ["2026-11", "muni-200000", "channel", "timed_out", "1", "", ""] in rows
    assert not [r for r in rows if r[1] == "national" and r[2].startswith("channel")]
    lines = summary_lines(report)
    assert len(lines) == len(summary_lines(build_report(clean_inputs())))  # no line more: the demo stays one screen
    assert any("channel: requests sent 5" in line for line in lines)


def copy_inputs() -> MonitoringInputs:
    """The wide-area copies' month (issue 16 item 5): 長野県's municipality tier's counters asked
    for 5 copies — 2 issued, 2 refused (one not in the household, one unknown resident), 1 timed
    out — and its residents' copies answered for issue elsewhere were 3."""
    inputs = clean_inputs()
    muni = {"service": "jukinet-muni-200000", "tier": "municipality"}
    inputs.metrics += [
        MetricSum("Jukinet", "WideAreaCopiesRequested", muni, 5.0),
        MetricSum("Jukinet", "WideAreaCopiesIssued", muni, 2.0),
        MetricSum("Jukinet", "WideAreaCopiesRefused", muni, 2.0),
        MetricSum("Jukinet", "WideAreaCopiesRefusedByCode", {**muni, "code": "not_in_household"}, 1.0),
        MetricSum("Jukinet", "WideAreaCopiesRefusedByCode", {**muni, "code": "unknown_resident"}, 1.0),
        MetricSum("Jukinet", "WideAreaCopiesTimedOut", muni, 1.0),
        MetricSum("Jukinet", "WideAreaCopiesAnsweredForElsewhere", muni, 3.0),
    ]
    return inputs


def test_the_wide_area_copies_per_tier_issued_refused_by_code_timed_out_and_issued_elsewhere():
    report = build_report(copy_inputs())
    tiers = {t.tier: t for t in report.tiers}
    assert tiers["muni-200000"].copy_figures == {"requested": 5, "issued": 2, "refused": 2, "timed_out": 1,
                                                 "issued_elsewhere": 3}
    assert tiers["muni-200000"].copies_refused == {"not_in_household": 1, "unknown_resident": 1}
    assert not tiers["pref-200000"].has_copies and not tiers["national"].has_copies
    assert report.clean  # refusals of copies are the service's answers, not incidents
    markdown = render_markdown(report)
    assert ("広域交付 (wide-area copies of resident records): requested 5, issued 2, refused 2 (not_in_household 1, "
            "unknown_resident 1), timed out 1; residents' copies issued elsewhere 3") in markdown
    assert "広域交付" in render_html(report)
    rows = list(csv.reader(io.StringIO(render_csv(report))))
    assert ["2026-11", "muni-200000", "wide_area_copies", "issued", "2", "", ""] in rows
    assert ["2026-11", "muni-200000", "wide_area_copies_refused", "not_in_household", "1", "", ""] in rows
    lines = summary_lines(report)
    assert len(lines) == len(summary_lines(build_report(clean_inputs())))  # no line more
    assert any("wide-area copies: issued 2, refused 2, timed out 1, issued elsewhere 3" in line for line in lines)
    assert "広域交付" not in render_markdown(build_report(clean_inputs()))


def move_inputs() -> MonitoringInputs:
    """The special moves' month (issue 16 item 5): 長野県's municipality tier filed 4 special
    move-outs (1 cancelled, 2 completed, 1 lapsed) and its counters asked for 3 certificates
    (2 certified and completed, 1 refused: no special move-out)."""
    inputs = clean_inputs()
    muni = {"service": "jukinet-muni-200000", "tier": "municipality"}
    inputs.metrics += [MetricSum("Jukinet", name, muni, value) for name, value in (
        ("SpecialMoveOutsFiled", 4.0), ("SpecialMoveOutsCancelled", 1.0), ("SpecialMoveOutsCompleted", 2.0),
        ("SpecialMoveOutsLapsed", 1.0), ("SpecialMoveCertificatesGiven", 2.0), ("SpecialMoveInsRequested", 3.0),
        ("SpecialMoveInsCertified", 2.0), ("SpecialMoveInsCompleted", 2.0), ("SpecialMoveInsRefused", 1.0))]
    inputs.metrics.append(MetricSum("Jukinet", "SpecialMovesRefusedByCode", {**muni, "code": "no_special_move_out"},
                                    1.0))
    return inputs


def test_the_special_moves_per_tier_filed_completed_lapsed_and_refused_by_code():
    report = build_report(move_inputs())
    tiers = {t.tier: t for t in report.tiers}
    assert tiers["muni-200000"].move_figures == {
        "out_filed": 4, "out_cancelled": 1, "out_completed": 2, "out_lapsed": 1, "in_requested": 3,
        "in_certified": 2, "in_completed": 2, "in_refused": 1, "in_timed_out": 0}
    assert not tiers["pref-200000"].has_moves
    assert report.clean  # a refused special move-in is the service's answer, not an incident
    markdown = render_markdown(report)
    assert ("特例転出・特例転入 (special move-outs/move-ins): move-outs filed 4, cancelled 1, completed 2, lapsed 1; "
            "move-ins requested 3, certified 2, completed 2, refused 1 (no_special_move_out 1), timed out 0") in markdown
    assert "特例転出・特例転入" in render_html(report)
    rows = list(csv.reader(io.StringIO(render_csv(report))))
    assert ["2026-11", "muni-200000", "special_moves", "out_completed", "2", "", ""] in rows
    assert ["2026-11", "muni-200000", "special_moves_refused", "no_special_move_out", "1", "", ""] in rows
    lines = summary_lines(report)
    assert len(lines) == len(summary_lines(build_report(clean_inputs())))  # no line more
    assert any("special moves: out 4 filed, 2 completed; in 2 completed, 1 refused" in line for line in lines)
    assert "特例転出" not in render_markdown(build_report(clean_inputs()))


def test_every_special_move_metric_in_the_report_is_emitted_by_the_runtime():
    import pathlib

    from jukinet.services.monitoring_report import MOVE_METRICS, MOVE_REFUSALS_BY_CODE
    source = (pathlib.Path(__file__).parents[2] / "lambdas/jukinet/services/special_move.py").read_text()
    for name in (*MOVE_METRICS, MOVE_REFUSALS_BY_CODE):
        assert f'"{name}"' in source, name
