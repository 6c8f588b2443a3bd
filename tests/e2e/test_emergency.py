"""The emergency plan (緊急時対応) on the deployed assembly in the embedded AWS: the synthesized
Nagano assembly deployed into a moto server, the deployed functions run in-process, and
``jukinet isolate`` / ``restore`` (jukinet_ops/emergency.py) acting on the deployed resources
while notices flow. Isolated tiers hold their notices; after restoration they flow on and the
reconciliation balances: nothing lost. Each command's own timing report is printed and must
be well under a minute."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import random

import pytest

from infra.config import load_deployment
from infra.naming import Names, prefecture_tier
from jukinet.adapters import aws
from jukinet_ops.cli import main
from jukinet_ops.emergency import SQS_MAX_RETENTION_S, Emergency, Outcome
from embedded_aws.api import LocalApi, local_principals
from embedded_aws.deploy import deploy_assembly
from embedded_aws.monitoring import LocalMonitoring
from embedded_aws.runner import LocalRunner, replace_environ
from embedded_aws.server import MotoServer, local_credentials
from jukinet_ops.reconcile import reconcile_deployment

from ..dates import months_jst
from ..pipeline.exports import csv_bytes, person, row
from .embedded import E2E_DEPLOYMENT, nagano_assembly

pytestmark = pytest.mark.slow

NAGANO, MATSUMOTO, UEDA, PREFECTURE = "202011", "202029", "202037", "200000"
ISOLATED_AGENCY, OTHER_AGENCY = "chikyosai", "mhlw-engo"
AFFAIRS = {ISOLATED_AGENCY: "DEMO-T1-CHIKYOSAI-PENSION", OTHER_AGENCY: "DEMO-T1-ENGO-PENSION"}
MINUTE = 60.0


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    deployment = load_deployment(E2E_DEPLOYMENT)
    out = nagano_assembly(tmp_path_factory)
    saved = dict(os.environ)
    with MotoServer() as server:
        env = deploy_assembly(out, server.endpoint_url, default_region=deployment.region)
        os.environ.update({"AWS_ENDPOINT_URL": server.endpoint_url, "AWS_DEFAULT_REGION": deployment.region,
                           **local_credentials(server.endpoint_url, deployment.region)})
        aws.reset_clients()
        # The functions' metrics go to the embedded CloudWatch, where the alarms are evaluated.
        with LocalMonitoring(env, stream=open(os.devnull, "w")) as monitoring, \
                LocalRunner(env, log_stream=monitoring.sink, share_modules=True) as runner, \
                LocalApi(env, runner, credentials={}, api=Names.of(deployment).provision_api()) as api:
            runner.monitoring = monitoring
            names = Names.of(deployment)
            agencies = {a.recipient_id: a for a in deployment.agencies}
            wanted = {agencies[i].principals[0]: agencies[i].vpc_endpoint_ids[0] for i in AFFAIRS}
            keys = {agencies[i].principals[0]: api.api_keys[names.provision_api_key(i)] for i in AFFAIRS}
            made = local_principals(wanted, api_keys=keys)
            api.principals.update({p.access_key_id: p for p in made.values()})
            principals = {i: made[agencies[i].principals[0]] for i in AFFAIRS}
            # In-process, the runner plays Lambda's asynchronous Invoke for the restore's re-notification.
            em = Emergency(deployment, invoke_event=runner.invoke_async)
            yield World(deployment, names, runner, api, principals, em, server.endpoint_url)
    replace_environ(saved)
    aws.reset_clients()


class World:
    def __init__(self, deployment, names, runner, api, principals, em, endpoint_url) -> None:
        self.deployment, self.names, self.runner, self.api = deployment, names, runner, api
        self.principals, self.em, self.endpoint_url = principals, em, endpoint_url
        self.prefecture = deployment.prefectures[0]
        self.rng = random.Random(5)
        self.s3, self.sqs = aws.client("s3"), aws.client("sqs")
        self.inbound = names.queue_url(self.prefecture.env, names.inbound_queue(prefecture_tier(PREFECTURE)))
        # The embedded AWS and the functions read the process clock (moved as a whole by
        # scripts/test-any-date); a run may cross a month's end in Japan, so counts are read
        # for every month from the module's start to now.
        self.started = dt.datetime.now(dt.UTC)

    def reconciled(self) -> dict[str, list]:
        """Municipality code → its reconciliation rows, one per month the module ran through."""
        rows: dict[str, list] = {}
        for month in months_jst(self.started, dt.datetime.now(dt.UTC)):
            for r in reconcile_deployment(self.deployment, month, PREFECTURE):
                rows.setdefault(r.municipality, []).append(r)
        return rows

    def drop(self, code: str, key: str, count: int = 1) -> list[str]:
        """An export file of ``count`` move-ins into the municipality's drop zone; their codes."""
        people = [person(self.rng) for _ in range(count)]
        bucket = self.names.drop_zone_bucket(self.prefecture.municipality_tier.env, code)
        self.s3.put_object(Bucket=bucket, Key=f"incoming/{key}",
                           Body=csv_bytes([row(p, "転入", "2003-01-07") for p in people]))
        return [p["resident_code"] for p in people]

    def objects(self, code: str, prefix: str) -> list[str]:
        bucket = self.names.drop_zone_bucket(self.prefecture.municipality_tier.env, code)
        return [o["Key"] for o in self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]

    def stored(self, tier: str, code: str) -> bool:
        """The resident's current item exists in the tier's identity table (read without decrypting)."""
        got = aws.client("dynamodb").get_item(TableName=self.names.identity_table(tier), Key={
            "pk": {"S": f"R#{code}"}, "sk": {"S": "CURRENT"}}, ProjectionExpression="pk")
        return "Item" in got

    def queued(self) -> int:
        got = self.sqs.get_queue_attributes(QueueUrl=self.inbound, AttributeNames=["ApproximateNumberOfMessages",
                                                                                   "MessageRetentionPeriod"])
        return int(got["Attributes"]["ApproximateNumberOfMessages"])

    def retention(self) -> int:
        return int(self.sqs.get_queue_attributes(QueueUrl=self.inbound, AttributeNames=["MessageRetentionPeriod"])[
            "Attributes"]["MessageRetentionPeriod"])

    def balanced(self) -> dict[str, list]:
        rows = self.reconciled()
        assert all(r.balanced for per_month in rows.values() for r in per_month), rows
        return rows

    def lookup(self, agency: str, *, api_key_of: str | None = None) -> tuple[int, dict]:
        """A look-up signed by the agency's role; ``api_key_of``: sent with another agency's key."""
        code = person(self.rng)["resident_code"]
        principal = self.principals[agency]
        if api_key_of is not None:
            principal = dataclasses.replace(principal, api_key=self.principals[api_key_of].api_key)
        response = self.api.request(principal, "POST", "/v1/lookups", body=json.dumps(
            {"affair_code": AFFAIRS[agency], "resident_codes": [code]}), headers={"Content-Type": "application/json"})
        return response.status, response.json()


def _timed(outcome: Outcome) -> Outcome:
    """The command's own timing report: printed, and well under a minute."""
    print(f"\n{outcome.action} {outcome.target}: {outcome.message} (command's own timing: {outcome.seconds:.3f} s)")
    assert outcome.seconds < MINUTE / 2, outcome.seconds
    return outcome


def test_an_isolated_prefecture_holds_its_notices_in_its_queue_and_they_flow_on_after_restore(world):
    pref_tier = prefecture_tier(PREFECTURE)
    isolated = _timed(world.em.isolate("prefecture", PREFECTURE, reason="E2E: prefecture server compromised"))
    assert isolated.changed and world.retention() == SQS_MAX_RETENTION_S

    held = world.drop(NAGANO, "pref-isolated-a.csv", 2) + world.drop(MATSUMOTO, "pref-isolated-b.csv", 1)
    summary = world.runner.run_until_idle(timeout_s=120)
    assert summary.idle
    assert any(h.startswith(f"jukinet-{pref_tier}-inbound: mapping to jukinet-{pref_tier}-processor disabled by an "
                            "operator") for h in summary.held), summary.held
    # The CSs sent (their reports exist), the notices wait in the prefecture's inbound queue, nothing is stored.
    assert world.objects(NAGANO, "reports/pref-isolated-a.csv.summary.json")
    assert world.queued() == 2  # one signed message per file
    assert not any(world.stored(tier, code) for tier in (pref_tier, "national") for code in held)
    nagano = world.reconciled()[NAGANO]
    assert sum(r.sent - r.stored_prefecture for r in nagano) == 2 and not all(r.balanced for r in nagano)

    assert not world.em.isolate("prefecture", PREFECTURE, reason="again").changed  # idempotent
    restored = _timed(world.em.restore("prefecture", PREFECTURE, reason="E2E: server rebuilt"))
    assert restored.record.pending == ["queue-retention"]  # 2 notices still wait: retention stays raised
    assert world.runner.run_until_idle(timeout_s=120).held == ()
    assert all(world.stored(tier, code) for tier in (pref_tier, "national") for code in held)
    assert world.queued() == 0
    world.balanced()

    finished = _timed(world.em.restore("prefecture", PREFECTURE, reason="E2E: queue drained"))
    assert finished.changed and finished.record.pending == []
    assert world.retention() == 4 * 24 * 3600  # the synthesized retention, exactly


def test_an_isolated_municipality_keeps_its_file_in_the_drop_zone_others_flow_and_restore_sends_it(world):
    cs = world.names.cs_function(NAGANO)
    isolated = _timed(world.em.isolate("municipality", NAGANO, reason="E2E: CS of Nagano city compromised"))
    assert isolated.record.previous["reserved_concurrency"] == 2  # as deployed (MunicipalityTier)
    invocations = world.runner.stats[cs].invocations

    waiting = world.drop(NAGANO, "muni-isolated.csv", 2)
    flowing = world.drop(MATSUMOTO, "muni-other.csv", 1)
    summary = world.runner.run_until_idle(timeout_s=120)
    assert summary.idle and any("muni-isolated" not in h and cs in h for h in summary.held), summary.held
    assert world.runner.stats[cs].invocations == invocations  # the isolated CS never ran
    assert world.objects(NAGANO, "incoming/muni-isolated.csv") == ["incoming/muni-isolated.csv"]
    assert world.objects(NAGANO, "reports/muni-isolated.csv") == []
    assert all(world.stored("national", c) for c in flowing)
    assert not any(world.stored(prefecture_tier(PREFECTURE), c) for c in waiting)

    restored = _timed(world.em.restore("municipality", NAGANO, reason="E2E: CS rebuilt, keys rotated"))
    [renotified] = [c for c in restored.changes if c.action == "lambda:InvokeFunction (Event)"]
    # Every file without a newer report (earlier files whose report has the same second too: a duplicate for the CS).
    assert "incoming/muni-isolated.csv" in renotified.after["keys"]
    assert world.runner.run_until_idle(timeout_s=120).held == ()
    assert all(world.stored(tier, c) for tier in (prefecture_tier(PREFECTURE), "national") for c in waiting)
    nagano = world.balanced()[NAGANO]
    # sent once: the second event found it taken
    assert sum(r.stored_national for r in nagano) == sum(r.sent for r in nagano)


def test_an_isolated_agency_is_refused_by_the_gateway_while_others_are_served_until_restored(world):
    assert world.lookup(ISOLATED_AGENCY)[0] == 200
    isolated = _timed(world.em.isolate("agency", ISOLATED_AGENCY, reason="E2E: agency role credentials leaked"))
    assert {c.action for c in isolated.changes} == {"dynamodb:PutItem", "apigateway:UpdateApiKey",
                                                    "s3:PutBucketPolicy"}

    status, body = world.lookup(ISOLATED_AGENCY)
    assert (status, body) == (403, {"message": "Forbidden"})
    line = json.loads(world.api.access_log[-1])  # what the provision-gateway-refusals alarm counts
    assert (line["status"], line["errorResponseType"]) == ("403", "INVALID_API_KEY")
    # The isolated agency's own role with another recipient's enabled key passes the gateway;
    # the provision function refuses the principal itself, and the alarm fires.
    status, body = world.lookup(ISOLATED_AGENCY, api_key_of=OTHER_AGENCY)
    assert status == 403 and body["error"]["code"] == "RECIPIENT_ISOLATED"
    verdicts = world.runner.monitoring.evaluate(dt.datetime.now(dt.UTC))
    assert "jukinet-national-provision-isolated-recipient-calls" in {
        v.name for v in verdicts if v.new_state == "ALARM"}
    status, body = world.lookup(OTHER_AGENCY)
    assert status == 200 and body["results"][0]["outcome"] == "not_found"

    _timed(world.em.restore("agency", ISOLATED_AGENCY, reason="E2E: credentials rotated"))
    status, body = world.lookup(ISOLATED_AGENCY)
    assert status == 200 and body["results"][0]["outcome"] == "not_found"


def test_the_command_line_against_the_embedded_aws(world, capsys):
    url = world.endpoint_url
    assert main(["isolate", "municipality", UEDA, "--reason", "E2E: CLI", "--endpoint-url", url]) == 0
    out = capsys.readouterr().out
    assert f"isolate municipality {UEDA} (上田市): isolated in" in out and "took" in out
    assert main(["isolation-status", "--endpoint-url", url]) == 0
    out = capsys.readouterr().out
    assert f"municipality {UEDA} (上田市): isolated since" in out and "in force" in out

    codes = world.drop(UEDA, "cli.csv", 1)
    assert world.runner.run_until_idle(timeout_s=60).held
    assert main(["restore", "municipality", UEDA, "--reason", "E2E: CLI done", "--endpoint-url", url]) == 0
    out = capsys.readouterr().out
    assert "restored in" in out and "re-notification skipped" in out
    # Through the CLI nothing is invoked through moto: the runner delivers the event it held itself.
    assert world.runner.run_until_idle(timeout_s=60).held == ()
    assert all(world.stored("national", c) for c in codes)
    assert main(["isolation-status", "--endpoint-url", url]) == 0
    assert capsys.readouterr().out.strip() == "no isolation in force"
    world.balanced()
