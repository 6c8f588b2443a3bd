"""``jukinet isolate`` / ``restore`` / ``isolation-status`` (jukinet_ops/emergency.py) against
moto: the resources one municipality, one prefecture and one agency have in the stacks, under
their deployed names (nagano-demo), and nothing else. What each isolation changes, that the
record keeps who/when/why and the previous state before anything changes, that restoring puts
back exactly what was there, and that both commands are idempotent."""

from __future__ import annotations

import io
import json
import time
import zipfile

import boto3
import pytest
from moto import mock_aws

from infra.config import load_deployment
from infra.naming import NATIONAL, Names, prefecture_tier
from jukinet_ops import emergency
from jukinet_ops.cli import main
from jukinet_ops.emergency import ISOLATION_TAG, SQS_MAX_RETENTION_S, Emergency, EmergencyError

REGION = "ap-northeast-1"
NAGANO, MATSUMOTO, PREFECTURE = "202011", "202029", "200000"
BATCH_AGENCY, OTHER_AGENCY = "chikyosai", "mhlw-engo"
RETENTION_4_DAYS = 345_600
BUCKET_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Sid": "DenyInsecure", "Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::x/*",
     "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}


class World:
    def __init__(self) -> None:
        self.deployment = load_deployment("nagano-demo")
        self.names = Names.of(self.deployment)
        prefecture = self.deployment.prefectures[0]
        self.muni_env, self.pref_env = prefecture.municipality_tier.env, prefecture.env
        self.lam = boto3.client("lambda", region_name=REGION)
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.apigw = boto3.client("apigateway", region_name=REGION)
        self.dynamodb = boto3.client("dynamodb", region_name=REGION)
        self.ssm = boto3.client("ssm", region_name=REGION)
        role = boto3.client("iam", region_name=REGION).create_role(
            RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as z:
            z.writestr("h.py", "def handler(event, context):\n    return None\n")
        self.buckets: dict[str, str] = {}
        self.notifications: dict[str, dict] = {}
        for muni in (NAGANO, MATSUMOTO):  # the CS and its drop zone with the S3 -> CS notification
            fn = self.lam.create_function(FunctionName=self.names.cs_function(muni), Runtime="python3.12", Role=role,
                                          Handler="h.handler", Code={"ZipFile": code.getvalue()})
            self.lam.put_function_concurrency(FunctionName=fn["FunctionName"], ReservedConcurrentExecutions=2)
            bucket = self.names.drop_zone_bucket(self.muni_env, muni)
            self.s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
            self.s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
                "LambdaFunctionConfigurations": [{
                    "Id": f"cs-{muni}", "LambdaFunctionArn": fn["FunctionArn"], "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "incoming/"}]}}}]})
            self.buckets[muni] = bucket
            self.notifications[muni] = self.notification(muni)
        tier = prefecture_tier(PREFECTURE)  # the prefecture's inbound queue and processor mapping
        self.queue_url = self.sqs.create_queue(QueueName=self.names.inbound_queue(tier), Attributes={
            "MessageRetentionPeriod": str(RETENTION_4_DAYS)})["QueueUrl"]
        processor = self.lam.create_function(
            FunctionName=self.names.processor_function(tier), Runtime="python3.12", Role=role, Handler="h.handler",
            Code={"ZipFile": code.getvalue()})
        self.mapping = self.lam.create_event_source_mapping(
            EventSourceArn=Names.queue_arn(self.pref_env, self.names.inbound_queue(tier)),
            FunctionName=processor["FunctionName"], Enabled=True, BatchSize=10)
        self.keys = {a: self.apigw.create_api_key(name=self.names.provision_api_key(a), enabled=True)["id"]
                     for a in (BATCH_AGENCY, OTHER_AGENCY)}
        self.batch_bucket = self.names.provision_batch_bucket(self.deployment.national.env)
        self.s3.create_bucket(Bucket=self.batch_bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        self.s3.put_bucket_policy(Bucket=self.batch_bucket, Policy=json.dumps(BUCKET_POLICY))
        self.state_table = self.names.provision_state_table()  # where the isolation mark goes
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName=self.state_table, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}])
        self.invoked: list[tuple[str, dict]] = []

    def emergency(self, **kwargs) -> Emergency:
        kwargs.setdefault("invoke_event", lambda fn, event: self.invoked.append((fn, event)))
        return Emergency(self.deployment, poll_s=0.01, **kwargs)

    def concurrency(self, muni: str):
        return self.lam.get_function_concurrency(FunctionName=self.names.cs_function(muni)).get(
            "ReservedConcurrentExecutions")

    def notification(self, muni: str) -> dict:
        got = self.s3.get_bucket_notification_configuration(Bucket=self.buckets[muni])
        return {k: v for k, v in got.items() if k != "ResponseMetadata"}

    def mapping_state(self) -> str:
        return self.lam.get_event_source_mapping(UUID=self.mapping["UUID"])["State"]

    def queue_tags(self) -> dict:
        return self.sqs.list_queue_tags(QueueUrl=self.queue_url).get("Tags", {})

    def retention(self) -> int:
        return int(self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=[
            "MessageRetentionPeriod"])["Attributes"]["MessageRetentionPeriod"])

    def key_enabled(self, agency: str) -> bool:
        return self.apigw.get_api_key(apiKey=self.keys[agency])["enabled"]

    def marked(self, agency: str) -> bool:
        """What the provision functions check on every request (RecipientState.isolated)."""
        from jukinet.adapters import aws
        from jukinet.adapters.recipient_state import RecipientState

        aws.reset_clients()
        return RecipientState(self.state_table).isolated(agency)

    def batch_policy(self) -> dict:
        return json.loads(self.s3.get_bucket_policy(Bucket=self.batch_bucket)["Policy"])


@pytest.fixture
def world(monkeypatch):
    for var in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # An enabled mapping would have moto "invoke" the processor on every send: never through Docker here.
    with mock_aws(config={"lambda": {"use_docker": False}}):
        yield World()


# -- municipality ---------------------------------------------------------------------------------


def test_isolating_a_municipality_stops_its_cs_records_the_previous_state_first_and_is_idempotent(world):
    em = world.emergency()
    outcome = em.isolate("municipality", NAGANO, reason="INC-1: suspected compromise of the CS")

    assert outcome.changed and outcome.seconds < 60
    assert world.concurrency(NAGANO) == 0
    assert world.notification(NAGANO).get("LambdaFunctionConfigurations", []) == []
    record = outcome.record
    assert world.concurrency(MATSUMOTO) == 2 and world.notification(MATSUMOTO) == world.notifications[MATSUMOTO]
    assert {c.action for c in outcome.changes} == {"lambda:PutFunctionConcurrency", "s3:PutBucketNotificationConfiguration"}

    stored = em.store.get("municipality", NAGANO)
    assert stored == record
    assert (stored.status, stored.reason, stored.isolated_by) == (
        "isolated", "INC-1: suspected compromise of the CS", "arn:aws:sts::123456789012:user/moto")
    assert stored.previous["reserved_concurrency"] == 2
    assert stored.previous["notifications"] == world.notifications[NAGANO]["LambdaFunctionConfigurations"]
    assert stored.isolate_seconds is not None and stored.isolate_seconds < 60
    history = em.store.history("municipality", NAGANO)
    assert [h.status for h in history] == ["isolating", "isolated"]  # the way back was written first
    assert history[0].previous == stored.previous and history[0].changes == []

    again = em.isolate("municipality", NAGANO, reason="INC-1 again")
    assert not again.changed and "already isolated" in again.message and "nothing changed" in again.message
    assert em.store.get("municipality", NAGANO) == stored  # isolate twice = once
    assert len(em.store.history("municipality", NAGANO)) == 2


def test_restoring_a_municipality_puts_back_exactly_what_was_there_and_renotifies_unreported_files(world):
    em = world.emergency()
    s3, bucket = world.s3, world.buckets[NAGANO]
    s3.put_object(Bucket=bucket, Key="incoming/done.csv", Body=b"a")  # processed before the isolation
    time.sleep(1.1)  # listings give times to the second: a report of the same second is no proof
    s3.put_object(Bucket=bucket, Key="reports/done.csv.summary.json", Body=b"{}")
    s3.put_object(Bucket=bucket, Key="reports/again.csv.summary.json", Body=b"{}")  # an older file of that name
    em.isolate("municipality", NAGANO, reason="INC-2")
    s3.put_object(Bucket=bucket, Key="incoming/held.csv", Body=b"b")  # arrived while isolated: no event
    s3.put_object(Bucket=bucket, Key="incoming/again.csv", Body=b"c")  # newer than its name's report
    s3.put_object(Bucket=bucket, Key="incoming/sub/dir name.csv", Body=b"d")

    outcome = em.restore("municipality", NAGANO, reason="INC-2 closed: CS rebuilt")

    assert outcome.changed and outcome.seconds < 60
    assert world.concurrency(NAGANO) == 2
    assert world.notification(NAGANO) == world.notifications[NAGANO]
    invoked = {(fn, e["Records"][0]["s3"]["object"]["key"]) for fn, e in world.invoked}
    cs = world.names.cs_function(NAGANO)
    assert invoked == {(cs, "incoming/held.csv"), (cs, "incoming/again.csv"), (cs, "incoming/sub/dir+name.csv")}
    event = world.invoked[0][1]["Records"][0]
    assert (event["eventSource"], event["eventName"], event["s3"]["bucket"]["name"]) == (
        "aws:s3", "ObjectCreated:Put", bucket)
    record = em.store.get("municipality", NAGANO)
    assert (record.status, record.restore_reason, record.pending) == ("restored", "INC-2 closed: CS rebuilt", [])
    assert record.restore_seconds is not None
    assert any(c["action"] == "lambda:InvokeFunction (Event)" and c["after"]["files"] == 3
               for c in record.restore_changes)

    again = em.restore("municipality", NAGANO, reason="again")
    assert not again.changed and "not isolated" in again.message
    assert len(world.invoked) == 3


def test_restore_without_an_isolation_is_a_no_op_with_a_message(world):
    outcome = world.emergency().restore("municipality", MATSUMOTO, reason="nothing to do")
    assert not outcome.changed and outcome.message.startswith("not isolated (no isolation record)")
    assert world.emergency().store.get("municipality", MATSUMOTO) is None


def test_an_isolation_interrupted_half_way_is_restored_from_its_record(world, monkeypatch):
    em = world.emergency()
    real = emergency._MunicipalityControls._notifications
    calls = []

    def failing(self):  # the second read (while applying) fails: concurrency already 0, notification not removed
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("network gone")
        return real(self)

    monkeypatch.setattr(emergency._MunicipalityControls, "_notifications", failing)
    with pytest.raises(RuntimeError):
        em.isolate("municipality", NAGANO, reason="INC-3")
    monkeypatch.setattr(emergency._MunicipalityControls, "_notifications", real)
    assert world.concurrency(NAGANO) == 0
    assert em.store.get("municipality", NAGANO).status == "isolating"

    resumed = em.isolate("municipality", NAGANO, reason="INC-3 retry")  # completes what was left
    assert resumed.changed and world.notification(NAGANO).get("LambdaFunctionConfigurations", []) == []
    assert em.store.get("municipality", NAGANO).previous["reserved_concurrency"] == 2  # not the 0 it set itself
    em.restore("municipality", NAGANO, reason="INC-3 closed")
    assert world.concurrency(NAGANO) == 2 and world.notification(NAGANO) == world.notifications[NAGANO]


def test_status_lists_isolations_and_reports_a_control_that_drifted_until_isolate_reapplies_it(world):
    em = world.emergency()
    assert em.status() == []
    em.isolate("municipality", NAGANO, reason="INC-4")
    em.isolate("agency", OTHER_AGENCY, reason="INC-5: key leaked")
    [agency, muni] = em.status()
    assert (agency.record.target, muni.record.target) == (OTHER_AGENCY, NAGANO)
    assert agency.drift == [] and muni.drift == []

    world.lam.put_function_concurrency(FunctionName=world.names.cs_function(NAGANO), ReservedConcurrentExecutions=2)
    world.s3.put_bucket_notification_configuration(Bucket=world.buckets[NAGANO],
                                                   NotificationConfiguration=world.notifications[NAGANO])
    drift = next(line for line in em.status() if line.record.kind == "municipality").drift
    assert len(drift) == 2 and "reserved concurrency is 2" in drift[0] and "notification" in drift[1]

    repaired = em.isolate("municipality", NAGANO, reason="INC-4: re-apply after a deployment")
    assert repaired.changed and "re-applied 2 control(s)" in repaired.message
    assert world.concurrency(NAGANO) == 0 and all(line.drift == [] for line in em.status())
    record = em.store.get("municipality", NAGANO)
    assert record.previous["reserved_concurrency"] == 2 and record.reason == "INC-4"

    em.restore("agency", OTHER_AGENCY, reason="key rotated")
    assert [line.record.target for line in em.status()] == [NAGANO]
    assert len(em.status(include_restored=True)) == 2


# -- prefecture -----------------------------------------------------------------------------------


def test_isolating_a_prefecture_disables_its_mapping_and_holds_notices_up_to_14_days(world):
    em = world.emergency()
    outcome = em.isolate("prefecture", PREFECTURE, reason="INC-6: prefecture server compromised")
    assert outcome.changed and outcome.seconds < 60
    assert world.mapping_state() == "Disabled"
    assert world.retention() == SQS_MAX_RETENTION_S
    assert world.queue_tags() == {ISOLATION_TAG: outcome.record.id}  # what the local runner reads
    assert outcome.record.previous | {"mapping_arn": None} == {
        "function": "jukinet-pref-200000-processor", "queue": "jukinet-pref-200000-inbound",
        "mapping_uuid": world.mapping["UUID"], "mapping_arn": None, "mapping_state": "Enabled",
        "retention_s": RETENTION_4_DAYS}
    assert not em.isolate("prefecture", PREFECTURE, reason="again").changed

    world.sqs.send_message(QueueUrl=world.queue_url, MessageBody="a held notice")  # a CS keeps sending
    restored = em.restore("prefecture", PREFECTURE, reason="INC-6 closed")
    assert world.mapping_state() == "Enabled" and world.queue_tags() == {}
    # The queue still holds a notice: lowering the retention now could delete older ones.
    assert world.retention() == SQS_MAX_RETENTION_S
    assert restored.record.pending == ["queue-retention"] and "pending: queue-retention" in restored.message
    [line] = em.status()
    assert line.record.status == "restored" and line.drift == []

    assert not em.restore("prefecture", PREFECTURE, reason="queue not empty yet").changed
    [message] = world.sqs.receive_message(QueueUrl=world.queue_url)["Messages"]  # the processor consumes it
    world.sqs.delete_message(QueueUrl=world.queue_url, ReceiptHandle=message["ReceiptHandle"])
    finished = em.restore("prefecture", PREFECTURE, reason="queue drained")
    assert finished.changed and "pending steps completed" in finished.message
    assert world.retention() == RETENTION_4_DAYS
    assert em.store.get("prefecture", PREFECTURE).pending == [] and em.status() == []


def test_a_new_isolation_while_the_retention_is_still_raised_keeps_the_original_retention(world):
    em = world.emergency()
    em.isolate("prefecture", PREFECTURE, reason="INC-7")
    world.sqs.send_message(QueueUrl=world.queue_url, MessageBody="held")
    em.restore("prefecture", PREFECTURE, reason="INC-7 closed")
    outcome = em.isolate("prefecture", PREFECTURE, reason="INC-8")
    assert outcome.record.previous["retention_s"] == RETENTION_4_DAYS


# -- agency ----------------------------------------------------------------------------------------


def test_isolating_an_agency_disables_its_key_denies_its_batch_prefixes_and_restores_exactly(world):
    em = world.emergency()
    outcome = em.isolate("agency", BATCH_AGENCY, reason="INC-9: role credentials leaked")
    assert outcome.changed and outcome.seconds < 60
    assert not world.key_enabled(BATCH_AGENCY) and world.key_enabled(OTHER_AGENCY)
    policy = world.batch_policy()
    assert policy["Statement"][0] == BUCKET_POLICY["Statement"][0]
    deny = policy["Statement"][1]
    assert deny["Sid"] == "JukinetIsolationChikyosai" and deny["Effect"] == "Deny"
    assert deny["Resource"] == [f"arn:aws:s3:::{world.batch_bucket}/in/chikyosai/*",
                                f"arn:aws:s3:::{world.batch_bucket}/out/chikyosai/*"]
    assert deny["Condition"]["ArnLike"]["aws:PrincipalArn"] == [
        "arn:aws:iam::123456789012:role/jukinet-demo-agency/chikyosai-batch"]
    assert outcome.record.previous["api_key_enabled"] is True
    assert not em.isolate("agency", BATCH_AGENCY, reason="again").changed
    assert len(world.batch_policy()["Statement"]) == 2

    restored = em.restore("agency", BATCH_AGENCY, reason="INC-9 closed: credentials rotated")
    assert restored.changed
    assert world.key_enabled(BATCH_AGENCY)
    assert world.batch_policy() == BUCKET_POLICY


def test_an_agency_whose_key_was_already_disabled_stays_disabled_after_restore(world):
    world.apigw.update_api_key(apiKey=world.keys[OTHER_AGENCY],
                               patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}])
    em = world.emergency()
    outcome = em.isolate("agency", OTHER_AGENCY, reason="INC-10")
    assert [c.action for c in outcome.changes] == ["dynamodb:PutItem"]  # the mark only
    assert outcome.record.previous["api_key_enabled"] is False
    em.restore("agency", OTHER_AGENCY, reason="INC-10 closed")
    assert not world.key_enabled(OTHER_AGENCY)


def test_isolating_an_agency_marks_its_principals_refused_whatever_key_they_send_and_restore_clears_it(world):
    em = world.emergency()
    assert not world.marked(OTHER_AGENCY)
    outcome = em.isolate("agency", OTHER_AGENCY, reason="INC-11: role credentials leaked")
    assert "dynamodb:PutItem" in [c.action for c in outcome.changes]
    assert world.marked(OTHER_AGENCY) and not world.marked(BATCH_AGENCY)
    # Someone clears the mark behind the operators' back: isolation-status shows the drift,
    # and isolating again puts it back.
    world.dynamodb.put_item(TableName=world.state_table, Item={
        "pk": {"S": f"ISOLATED#{OTHER_AGENCY}"}, "sk": {"S": "ISOLATED"}, "isolated": {"BOOL": False}})
    [line] = em.status()
    assert any("isolation mark" in d for d in line.drift)
    assert em.isolate("agency", OTHER_AGENCY, reason="again").changed and world.marked(OTHER_AGENCY)
    em.restore("agency", OTHER_AGENCY, reason="INC-11 closed: credentials rotated")
    assert not world.marked(OTHER_AGENCY)


# -- refusals and the command line -----------------------------------------------------------------


@pytest.mark.parametrize(("kind", "target", "reason", "expected"), [
    ("municipality", NAGANO, "  ", "a reason is required"),
    ("municipality", "131016", "x", "unknown municipality '131016'"),
    ("prefecture", "130001", "x", "unknown prefecture '130001' (this deployment has 200000)"),
    ("agency", "nobody", "x", "unknown agency 'nobody' (recipients of this deployment: chikyosai, mhlw-engo"),
    ("tier", "x", "x", "kind must be one of municipality, prefecture, agency"),
])
def test_refused_before_anything_changes(world, kind, target, reason, expected):
    with pytest.raises(EmergencyError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        world.emergency().isolate(kind, target, reason=reason)
    assert world.ssm.describe_parameters()["Parameters"] == []


def test_the_commands_through_the_cli(world, capsys):
    assert main(["isolate", "municipality", NAGANO, "--reason", "INC-11"]) == 0
    out = capsys.readouterr().out
    assert f"isolate municipality {NAGANO} (長野市): isolated in" in out
    assert "changed  lambda:PutFunctionConcurrency jukinet-cs-202011: 2 -> 0" in out
    assert "record   /jukinet/isolation/municipality/202011 (status isolated" in out
    assert world.concurrency(NAGANO) == 0

    assert main(["isolation-status"]) == 0
    out = capsys.readouterr().out
    assert f"municipality {NAGANO} (長野市): isolated since" in out and "reason: INC-11" in out
    assert "in force" in out

    world.lam.put_function_concurrency(FunctionName=world.names.cs_function(NAGANO), ReservedConcurrentExecutions=2)
    assert main(["isolation-status", "--json"]) == 1  # drift
    [line] = json.loads(capsys.readouterr().out)
    assert "reserved concurrency is 2" in line["drift"][0]

    assert main(["restore", "municipality", NAGANO, "--reason", "INC-11 closed", "--json"]) == 0
    restored = json.loads(capsys.readouterr().out)
    assert restored["changed"] and restored["record"]["status"] == "restored" and restored["seconds"] < 60
    assert main(["restore", "municipality", NAGANO, "--reason", "again"]) == 0
    assert "not isolated" in capsys.readouterr().out
    assert main(["isolate", "agency", "nobody", "--reason", "x"]) == 2
    assert "unknown agency" in capsys.readouterr().err


def test_a_tier_name_the_records_use_is_the_deployment_prefix(world):
    em = world.emergency()
    assert em.store.parameter("prefecture", PREFECTURE) == "/jukinet/isolation/prefecture/200000"
    assert NATIONAL == "national"  # agencies' records live with the national tier (its account and region)
    assert em.target("agency", BATCH_AGENCY).account == world.deployment.national.env.account
