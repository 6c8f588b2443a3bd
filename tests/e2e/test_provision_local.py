"""The provision API end to end on the embedded AWS: the synthesized Nagano assembly deployed
into a moto server, residents stored through the deployed tiers, and the deployed private API
served by ``LocalApi`` — called with SigV4 signatures by the configured recipients."""

from __future__ import annotations

import datetime as dt
import json
import random
import time

import pytest

from infra.naming import Names
from jukinet.adapters import aws
from jukinet.clock import month_jst
from jukinet.domain.codes import ResidentCode
from jukinet_ops.agency_traffic import recipient_principals, sample_residents
from embedded_aws.api import LocalApi
from jukinet_ops.provision import monthly_statistics, provision_tables

from ..pipeline.exports import csv_bytes, person, row
from .embedded import deployed_nagano

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with deployed_nagano(tmp_path_factory, monitoring=True) as (deployment, env, runner):
        names = Names.of(deployment)
        rng = random.Random(11)
        people = [person(rng) for _ in range(30)]
        bucket = names.drop_zone_bucket(deployment.prefectures[0].municipality_tier.env, "202011")
        aws.client("s3").put_object(Bucket=bucket, Key="incoming/residents.csv",
                                    Body=csv_bytes([row(p, "転入", "2003-01-06") for p in people]))
        runner.run_until_idle(timeout_s=300)
        with LocalApi(env, runner, credentials={}, api=names.provision_api()) as api:
            principals = recipient_principals(deployment, runner, api)
            api.principals.update({p.access_key_id: p for p in principals.values()})
            yield deployment, runner, api, principals, sample_residents(deployment, 30)


def _post(api, principal, path, body, headers=None):
    response = api.request(principal, "POST", path, body=json.dumps(body),
                           headers={"Content-Type": "application/json", **(headers or {})})
    return response.status, response.json()


PROVISION_SIGNALS = {"provision-unauthorised-attempts", "provision-gateway-refusals", "provision-sequential-codes",
                     "provision-not-found-ratio", "provision-outside-agreed-hours", "provision-scan-suspected"}


def _in_alarm(verdicts) -> set[str]:
    return {v.name.removeprefix("jukinet-national-") for v in verdicts if v.new_state == "ALARM"}


def test_alarms_stay_quiet_on_normal_traffic_and_fire_on_exactly_the_attack(world):
    """First in the module: later tests make refused calls on purpose, which these alarms count."""
    _, runner, api, principals, residents = world
    codes = [r["code"] for r in residents]
    for i in range(0, 12, 3):  # normal: a permitted recipient, its affair, real residents
        status, _ = _post(api, principals["mhlw-engo"], "/v1/lookups",
                          {"affair_code": "DEMO-T1-ENGO-PENSION", "resident_codes": codes[i:i + 3]})
        assert status == 200
    quiet = runner.monitoring.evaluate(dt.datetime.now(dt.UTC))
    assert not _in_alarm(quiet) & PROVISION_SIGNALS

    # An attack: a role no agreement names, an affair outside the agreement, a walk through
    # consecutive resident codes with a permitted recipient's credentials — all within one of
    # the alarms' 5-minute periods (wait for the next one if this one is about to end).
    into = time.time() % 300
    if into > 270:
        time.sleep(300 - into + 1)
    _post(api, principals["stranger"], "/v1/lookups", {"affair_code": "DEMO-T1-ENGO-PENSION",
                                                       "resident_codes": codes[:1]})
    _post(api, principals["nenkin"], "/v1/lookups", {"affair_code": "DEMO-T1-ENGO-PENSION",
                                                     "resident_codes": codes[:1]})
    walk = [ResidentCode.from_body(f"{7_000_000_000 + i:010d}").value for i in range(100)]
    for i in range(0, 100, 10):
        _post(api, principals["mhlw-engo"], "/v1/lookups", {"affair_code": "DEMO-T1-ENGO-PENSION",
                                                            "resident_codes": walk[i:i + 10]})
    fired = _in_alarm(runner.monitoring.evaluate(dt.datetime.now(dt.UTC))) & PROVISION_SIGNALS
    assert fired == PROVISION_SIGNALS - {"provision-outside-agreed-hours"}


def test_a_signed_look_up_gets_only_the_affairs_fields_and_a_provision_id(world):
    _, _, api, principals, residents = world
    status, body = _post(api, principals["nenkin"], "/v1/lookups",
                         {"affair_code": "DEMO-T1-NENKIN-ADDRESS", "resident_codes": [residents[0]["code"]]})
    assert status == 200, body
    assert body["provision_id"].startswith("P-")
    (result,) = body["results"]
    assert result["outcome"] == "provided"
    assert set(result["facts"]) == {"resident_code", "name", "address", "status", "change_information"}


def test_the_gateway_refuses_a_role_no_agreement_names_and_a_foreign_endpoint(world):
    _, _, api, principals, residents = world
    status, body = _post(api, principals["stranger"], "/v1/lookups",
                         {"affair_code": "DEMO-T1-ENGO-PENSION", "resident_codes": [residents[0]["code"]]})
    assert status == 403 and "not authorized" in body["message"]
    status, body = _post(api, principals["mhlw-engo"], "/v1/lookups",
                         {"affair_code": "DEMO-T1-ENGO-PENSION", "resident_codes": [residents[0]["code"]]},
                         headers={"X-Jukinet-Local-Source-Vpce": "vpce-0bad0000000000bad"})
    assert status == 403 and "explicit deny" in body["message"]
    assert any('"status":"403"' in line.replace(" ", "") or '"status": "403"' in line for line in api.access_log)


def test_the_handler_refuses_an_affair_outside_the_agreement_with_its_code(world):
    _, _, api, principals, residents = world
    status, body = _post(api, principals["fsa"], "/v1/lookups",
                         {"affair_code": "DEMO-T1-ENGO-PENSION", "resident_codes": [residents[0]["code"]]})
    assert (status, body["error"]["code"]) == (403, "AFFAIR_NOT_AGREED")


def test_the_prefectures_own_use_and_its_disclosure(world):
    _, _, api, principals, residents = world
    code = residents[25]["code"]  # no other test of this module looks it up
    status, body = _post(api, principals["nagano-pref"], "/v1/lookups",
                         {"affair_code": "DEMO-PREF-PASSPORT", "resident_codes": [code]})
    assert status == 200 and body["function"] == "own_use", body
    response = api.request(principals["nagano-pref:disclosure"], "GET", f"/v1/disclosures/{code}")
    assert response.status == 200, response.body
    disclosure = response.json()
    assert [p["function"] for p in disclosure["provisions"]] == ["own_use"]
    assert disclosure["chain"]["verified"] is True


def test_a_batch_runs_through_the_deployed_queue_and_function(world):
    deployment, runner, api, principals, residents = world
    names = Names.of(deployment)
    codes = [r["code"] for r in residents]
    key = "in/chikyosai/e2e.csv"
    aws.client("s3").put_object(Bucket=names.provision_batch_bucket(deployment.national.env), Key=key,
                                Body=("\n".join(codes + ["12345678901"]) + "\n").encode())
    status, accepted = _post(api, principals["chikyosai"], "/v1/batches",
                             {"affair_code": "DEMO-T1-CHIKYOSAI-PENSION", "input_key": key})
    assert status == 202, accepted
    runner.run_until_idle(timeout_s=120)
    response = api.request(principals["chikyosai"], "GET", f"/v1/batches/{accepted['job_id']}")
    job = response.json()
    assert job["status"] == "complete", job
    assert job["outcomes"]["provided"] == len(codes) and job["outcomes"]["invalid_code"] == 1
    # Statistics are kept by month in Japan time; created_at is UTC (at 00:30 JST on the 1st
    # the two months differ).
    month = month_jst(dt.datetime.fromisoformat(job["created_at"]))
    rows = monthly_statistics(provision_tables(deployment).log(), month, deployment.agencies)
    by_recipient = {(r.recipient_id, r.function): r.records for r in rows if not r.is_total}
    assert by_recipient[("chikyosai", "batch")] == len(codes)

