"""The monthly monitoring report read from the embedded AWS (``jukinet monitoring-report``):
the Nagano assembly deployed, a clean stretch of normal look-ups first (the finding: no
unauthorised access), then refused calls — a role no agreement names (refused by API Gateway)
and a recipient asking outside its agreement (refused by the handler) — and the report's
incidents name them, with the alarm raised and its time.

Metrics and alarm transitions are stamped with the process clock (CloudWatch keeps data for two
weeks only), so the report's month is the current one; a run that crosses a month's end reads
both months."""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest

from infra.naming import Names, municipality_tier, prefecture_tier
from jukinet.adapters import aws
from jukinet.clock import month_jst, today_jst
from jukinet.domain.notice import JST
from jukinet_ops.agency_traffic import recipient_principals, sample_residents
from embedded_aws.api import LocalApi
from embedded_aws.monitoring import NotificationLog
from jukinet.handlers.monitoring_report import LOCAL_ALARM_HISTORY
from jukinet.services.monitoring_report import NO_INCIDENT, render_csv, render_markdown
from embedded_aws.schedules import LocalSchedules
from jukinet_ops.monitoring_report import monitoring_report

from ..pipeline.exports import csv_bytes, person, row
from .embedded import deployed_nagano

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    notifications = NotificationLog(tmp_path_factory.mktemp("monitoring") / "notifications.log", truncate=True)
    # The scheduled report reads the alarm transitions from the local record, as under `jukinet up`.
    overrides = {LOCAL_ALARM_HISTORY: str(notifications.path)}
    with deployed_nagano(tmp_path_factory, monitoring=True, notifications=notifications,
                         env_overrides=overrides) as (deployment, env, runner):
        names = Names.of(deployment)
        rng = random.Random(19)
        bucket = names.drop_zone_bucket(deployment.prefectures[0].municipality_tier.env, "202011")
        aws.client("s3").put_object(Bucket=bucket, Key="incoming/residents.csv",
                                    Body=csv_bytes([row(person(rng), "転入", "2003-01-06") for _ in range(12)]))
        runner.run_until_idle(timeout_s=300)
        runner.invoke(names.provision_function("sealer"), {})  # the hourly run: starts the seal chain
        with LocalApi(env, runner, credentials={}, api=names.provision_api()) as api:
            principals = recipient_principals(deployment, runner, api)
            api.principals.update({p.access_key_id: p for p in principals.values()})
            yield deployment, runner, api, principals, sample_residents(deployment, 12), notifications


def _post(api, principal, body):
    response = api.request(principal, "POST", "/v1/lookups", body=json.dumps(body),
                           headers={"Content-Type": "application/json"})
    return response.status


def _reports(deployment, notifications, since: dt.datetime):
    now = dt.datetime.now(dt.UTC)
    months = sorted({month_jst(since), month_jst(now)})
    return [monitoring_report(deployment, m, now=now, notifications=notifications.path) for m in months]


def test_a_clean_stretch_then_refused_calls_are_in_the_report_with_their_evidence(world):
    deployment, runner, api, principals, residents, notifications = world
    started = dt.datetime.now(dt.UTC)
    codes = [r["code"] for r in residents]
    for i in range(0, 9, 3):
        assert _post(api, principals["mhlw-engo"], {"affair_code": "DEMO-T1-ENGO-PENSION",
                                                    "resident_codes": codes[i:i + 3]}) == 200
    # The sealer's hourly run once more, just before: the heartbeat's one-hour period is the
    # clock's hour, and a run crossing the hour (the 23:59 JST test run) found it silent.
    assert runner.invoke(Names.of(deployment).provision_function("sealer"), {}).ok
    runner.monitoring.evaluate(dt.datetime.now(dt.UTC))
    clean = _reports(deployment, notifications, started)
    assert all(r.clean for r in clean), [str(i) for r in clean for i in r.incidents]
    assert NO_INCIDENT in clean[-1].finding and NO_INCIDENT in render_markdown(clean[-1])
    national = [t for r in clean for t in r.tiers if t.tier == "national"]
    assert sum(t.stats.entries for t in national if t.stats) >= 9
    assert not any(t.stats.mismatches or t.seals.missing for t in national if t.stats and t.seals)

    # The attack: a role no agreement names (API Gateway refuses it), and a recipient asking
    # for an affair outside its agreement (the handler refuses it: AFFAIR_NOT_AGREED).
    assert _post(api, principals["stranger"], {"affair_code": "DEMO-T1-ENGO-PENSION",
                                               "resident_codes": codes[:1]}) == 403
    assert _post(api, principals["nenkin"], {"affair_code": "DEMO-T1-ENGO-PENSION",
                                             "resident_codes": codes[:1]}) == 403
    # GatewayRefusals comes from the access log through a metric filter; the report, made within
    # the second of the refusals, must count them (it once cut its window at ``now`` to the whole
    # second, and missed them about half the time).
    runner.monitoring.evaluate(dt.datetime.now(dt.UTC))
    reports = _reports(deployment, notifications, started)
    tiers = [t for r in reports for t in r.tiers if t.tier == "national"]
    assert not all(r.clean for r in reports)
    cw = aws.client("cloudwatch")
    listed = cw.list_metrics(Namespace="Jukinet", MetricName="GatewayRefusals")["Metrics"]
    stats = [cw.get_metric_statistics(Namespace="Jukinet", MetricName="GatewayRefusals", Dimensions=m["Dimensions"],
                                      StartTime=started - dt.timedelta(hours=1),
                                      EndTime=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1), Period=60,
                                      Statistics=["Sum"])["Datapoints"] for m in listed]
    assert sum(t.gateway_refusals for t in tiers) >= 1, (listed, stats, list(api.access_log)[-3:], started)
    assert sum(t.refusals_by_code.get("AFFAIR_NOT_AGREED", 0) for t in tiers) == 1
    raised = {e.alarm for t in tiers for e in t.raised}
    assert {"jukinet-national-provision-unauthorised-attempts", "jukinet-national-provision-gateway-refusals"} <= raised
    incidents = {i.what for r in reports for i in r.incidents}
    assert "UnauthorisedAttempts 1" in incidents and any(w.startswith("gateway refusals") for w in incidents)
    text = render_csv(reports[-1])
    assert "national,refused,AFFAIR_NOT_AGREED,1" in text or len(reports) > 1


def test_the_scheduled_run_on_the_1st_writes_the_previous_month_s_report_to_the_security_officers_bucket(world):
    """Traffic this month (a refused call), then the clock moved to the 1st of the next month,
    09:30 JST: the deployed rules fire as the embedded AWS's scheduler fires them, each processing
    tier's function writes its three files, a second firing keeps them, an explicit re-run
    replaces them (decision 0039)."""
    deployment, runner, api, principals, residents, notifications = world
    names = Names.of(deployment)
    for _ in range(2):  # a refusal within one JST month (a run crossing a month's end refuses again)
        before = dt.datetime.now(dt.UTC)
        assert _post(api, principals["nenkin"], {"affair_code": "DEMO-T1-ENGO-PENSION",
                                                 "resident_codes": [residents[0]["code"]]}) == 403  # AFFAIR_NOT_AGREED
        made = dt.datetime.now(dt.UTC)
        if month_jst(before) == month_jst(made):
            break
    runner.monitoring.evaluate(made)
    month = month_jst(made)
    first = (today_jst(made).replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    fire_at = dt.datetime.combine(first, dt.time(9, 30), tzinfo=JST).astimezone(dt.UTC)
    schedules = LocalSchedules(runner.env, fire_at - dt.timedelta(minutes=1))
    pref = prefecture_tier(deployment.prefectures[0].code)
    ours = {names.monitoring_report_function(t) for t in ("national", pref)}
    due = [(t, e) for t, e in schedules.due(fire_at + dt.timedelta(seconds=30)) if t.rule_name in ours]
    assert sorted(t.rule_name for t, _ in due) == sorted(ours)  # and nothing else's minute is 09:30 on the 1st
    results = {t.rule_name: runner.invoke(t.rule_name, e) for t, e in due}
    assert all(r.ok for r in results.values()), {n: r.error for n, r in results.items()}

    s3 = aws.client("s3")
    national_bucket = names.security_reports_bucket(deployment.national.env, "national")
    keys = [f"monitoring-report/{month}/report.{ext}" for ext in ("md", "html", "csv")]
    national = results[names.monitoring_report_function("national")].response
    assert national["month"] == month and national["written"] == [f"s3://{national_bucket}/{k}" for k in keys]
    files = {k.rsplit(".", 1)[1]: s3.get_object(Bucket=national_bucket, Key=k)["Body"].read().decode() for k in keys}
    assert "所見 (finding)" in files["md"] and national["finding"] in files["md"]
    assert "月次監視報告" in files["html"] and "<h2>所見" in files["html"]
    refused = [line.split(",") for line in files["csv"].splitlines() if ",refused,AFFAIR_NOT_AGREED," in line]
    assert refused and refused[0][:2] == [month, "national"] and int(refused[0][4]) >= 1
    assert [line for line in files["csv"].splitlines() if ",finding," in line]
    # The prefecture's report covers its own tier and its municipality tier, in its own bucket.
    pref_bucket = names.security_reports_bucket(deployment.prefectures[0].env, pref)
    pref_csv = s3.get_object(Bucket=pref_bucket, Key=keys[2])["Body"].read().decode()
    assert {row.split(",")[1] for row in pref_csv.splitlines()[1:] if row.split(",")[1]} == {
        pref, municipality_tier(deployment.prefectures[0].code)}

    # Fired again (EventBridge retries, an operator's stray invoke): what is there is kept.
    events = {t.rule_name: e for t, e in due}
    again = runner.invoke(names.monitoring_report_function("national"),
                          events[names.monitoring_report_function("national")])
    assert again.ok and again.response["written"] == [] and len(again.response["kept"]) == 3
    versions = s3.list_object_versions(Bucket=national_bucket, Prefix=f"monitoring-report/{month}/")["Versions"]
    assert len(versions) == 3
    # Re-run on purpose: a new version of each file, the earlier kept by versioning.
    rerun = runner.invoke(names.monitoring_report_function("national"),
                          {"month": month, "replace": True, "time": events[names.monitoring_report_function("national")]["time"]})
    assert rerun.ok and len(rerun.response["written"]) == 3
    versions = s3.list_object_versions(Bucket=national_bucket, Prefix=f"monitoring-report/{month}/")["Versions"]
    assert len(versions) == 6
    # The reconciliation's reports are not the monitoring function's to touch: its role writes
    # under monitoring-report/ only (tests/infra/test_security_reports.py).
