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

from infra.naming import Names
from jukinet.adapters import aws
from jukinet.clock import month_jst
from jukinet_ops.agency_traffic import recipient_principals, sample_residents
from jukinet_ops.local.api import LocalApi
from jukinet_ops.local.monitoring import NotificationLog
from jukinet.services.monitoring_report import NO_INCIDENT, render_csv, render_markdown
from jukinet_ops.monitoring_report import monitoring_report

from ..pipeline.exports import csv_bytes, person, row
from .embedded import deployed_nagano

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    notifications = NotificationLog(tmp_path_factory.mktemp("monitoring") / "notifications.log", truncate=True)
    with deployed_nagano(tmp_path_factory, monitoring=True, notifications=notifications) as (deployment, env, runner):
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
