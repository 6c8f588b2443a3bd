"""Local mode end to end on a toy CDK app: synth → deploy into moto → run the functions.

The app is built here (one synth for the module, ~5 s plus ~4 s to load aws-cdk-lib) so
the engine is tested on CDK's real output, not on a hand-written template.
"""

from __future__ import annotations

import json
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from embedded_aws.deploy import DeployedEnvironment, deploy_assembly
from embedded_aws.runner import LocalRunner
from embedded_aws.server import MotoServer

pytestmark = pytest.mark.slow

REGION = "ap-northeast-1"
ACCOUNT = "123456789012"
SIGNING_ALIAS = "alias/toy/signing/000001"
MARKER = "deployed-toy-code-v1"

HANDLER_CODE = textwrap.dedent('''
    """Toy handlers: SQS records and S3 drops become DynamoDB items."""
    import json
    import os
    import urllib.parse

    import boto3

    MARKER = "{marker}"
    ROLE_AT_IMPORT = os.environ["ROLE"]  # module-level state, as Powertools reads its settings
    _clients = {{}}


    def _client(service):
        key = (service, os.environ.get("AWS_ENDPOINT_URL"), os.environ["AWS_REGION"])
        if key not in _clients:
            _clients[key] = boto3.client(service, region_name=os.environ["AWS_REGION"])
        return _clients[key]


    def _count(pk, context, receives="0"):
        _client("dynamodb").update_item(
            TableName=os.environ["TABLE_NAME"], Key={{"pk": {{"S": pk}}}},
            UpdateExpression="ADD seen :one SET fn = :fn, #role = :role, marker = :marker, #module = :module, "
                             "receives = :receives, role_at_import = :role_at_import",
            ExpressionAttributeNames={{"#role": "role", "#module": "module"}},
            ExpressionAttributeValues={{":one": {{"N": "1"}}, ":fn": {{"S": context.function_name}},
                                        ":role": {{"S": os.environ["ROLE"]}}, ":marker": {{"S": MARKER}},
                                        ":module": {{"S": __file__}}, ":receives": {{"S": receives}},
                                        ":role_at_import": {{"S": ROLE_AT_IMPORT}}}})


    def sqs_handler(event, context):
        failures = []
        for record in event["Records"]:
            body = json.loads(record["body"])
            _count("attempt#" + body["id"], context, record["attributes"]["ApproximateReceiveCount"])
            if body.get("fail"):
                failures.append({{"itemIdentifier": record["messageId"]}})
                continue
            signature = _client("kms").sign(KeyId=os.environ["SIGNING_KEY"], Message=b"x" * 32,
                                            MessageType="DIGEST", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
            _count("ok#" + body["id"], context)
            assert signature
        return {{"batchItemFailures": failures}}


    def audit_handler(event, context):
        for record in event["Records"]:
            _count("audit#" + json.loads(record["body"])["id"], context)


    def s3_handler(event, context):
        for record in event["Records"]:
            key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
            _count("s3#" + key, context)
            if "poison" in key:
                raise ValueError("cannot read " + key)
''').format(marker=MARKER)


def build_toy_app(outdir: Path, code_dir: Path) -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_dynamodb as dynamodb
    from aws_cdk import aws_iam as iam
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk import aws_lambda_event_sources as sources
    from aws_cdk import aws_s3 as s3
    from aws_cdk import aws_s3_notifications as s3n
    from aws_cdk import aws_sqs as sqs

    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(app, "Toy", env=cdk.Environment(account=ACCOUNT, region=REGION))
    key = kms.Key(stack, "DataKey", enable_key_rotation=True)
    signing = kms.Key(stack, "SigningKey", key_spec=kms.KeySpec.ECC_NIST_P256, key_usage=kms.KeyUsage.SIGN_VERIFY)
    signing.add_alias(SIGNING_ALIAS)
    dlq = sqs.Queue(stack, "Dlq", encryption_master_key=key)
    queue = sqs.Queue(stack, "Inbox", encryption_master_key=key,
                      dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=2))
    table = dynamodb.Table(stack, "Table",
                           partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
                           billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST, time_to_live_attribute="expires",
                           encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED, encryption_key=key)
    code = lambda_.Code.from_asset(str(code_dir))

    def function(name: str, handler: str, role: str, **options: object) -> lambda_.Function:
        fn = lambda_.Function(stack, name, runtime=lambda_.Runtime.PYTHON_3_12,
                              architecture=lambda_.Architecture.ARM_64, handler=handler, code=code,
                              memory_size=256, timeout=cdk.Duration.seconds(30),
                              environment={"TABLE_NAME": table.table_name, "ROLE": role, "SIGNING_KEY": SIGNING_ALIAS},
                              **options)
        table.grant_read_write_data(fn)
        return fn

    processor = function("Processor", "toy_handlers.app.sqs_handler", "processor")
    signing.grant(processor, "kms:Sign")
    processor.add_event_source(sources.SqsEventSource(queue, batch_size=5, report_batch_item_failures=True,
                                                      max_concurrency=2))
    failed_drops = sqs.Queue(stack, "FailedDrops")
    drop_zone_fn = function("DropZoneHandler", "toy_handlers.app.s3_handler", "drop-zone",
                            dead_letter_queue=failed_drops, retry_attempts=1)

    # The drop zone notifies its function through the bucket's own NotificationConfiguration
    # (no custom resource). The permission must exist first; SourceAccount (not the bucket's
    # ARN) avoids a dependency cycle bucket -> permission -> bucket.
    drop_zone = s3.Bucket(stack, "DropZone", versioned=True, enforce_ssl=True,
                          block_public_access=s3.BlockPublicAccess.BLOCK_ALL)
    permission = lambda_.CfnPermission(stack, "DropZoneInvoke", action="lambda:InvokeFunction",
                                       function_name=drop_zone_fn.function_arn, principal="s3.amazonaws.com",
                                       source_account=ACCOUNT)
    cfn_bucket: s3.CfnBucket = drop_zone.node.default_child  # type: ignore[assignment]
    cfn_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
        lambda_configurations=[s3.CfnBucket.LambdaConfigurationProperty(
            event="s3:ObjectCreated:*", function=drop_zone_fn.function_arn,
            filter=s3.CfnBucket.NotificationFilterProperty(s3_key=s3.CfnBucket.S3KeyFilterProperty(
                rules=[s3.CfnBucket.FilterRuleProperty(name="prefix", value="incoming/")])))])
    cfn_bucket.node.add_dependency(permission)

    # What the real stacks must avoid: the L2 convenience creates a Lambda-backed custom resource.
    other = s3.Bucket(stack, "ConvenienceBucket")
    other.add_event_notification(s3.EventType.OBJECT_CREATED, s3n.LambdaDestination(drop_zone_fn))
    iam.Role(stack, "Unused", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))

    # A second stack wired to the first through cross-stack references (exports/imports),
    # including an event source mapping whose queue ARN is an Fn::ImportValue.
    audit_queue = sqs.Queue(stack, "AuditQueue")
    consumer = cdk.Stack(app, "ToyAudit", env=cdk.Environment(account=ACCOUNT, region=REGION))
    auditor = lambda_.Function(consumer, "Auditor", runtime=lambda_.Runtime.PYTHON_3_12,
                               architecture=lambda_.Architecture.ARM_64, handler="toy_handlers.app.audit_handler",
                               code=lambda_.Code.from_asset(str(code_dir)),
                               environment={"TABLE_NAME": table.table_name, "ROLE": "auditor"})
    table.grant_read_write_data(auditor)
    auditor.add_event_source(sources.SqsEventSource(audit_queue, batch_size=10))
    app.synth()


# -- fixtures: one synth, one server, one deployment per module ----------------------------------


@pytest.fixture(scope="module")
def timings() -> dict[str, float]:
    return {}


@pytest.fixture(scope="module")
def assembly(tmp_path_factory: pytest.TempPathFactory, timings: dict[str, float]) -> Path:
    root = tmp_path_factory.mktemp("toy")
    package = root / "code" / "toy_handlers"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "app.py").write_text(HANDLER_CODE)
    started = time.perf_counter()
    build_toy_app(root / "cdk.out", root / "code")
    timings["synth_s"] = time.perf_counter() - started
    return root / "cdk.out"


@pytest.fixture(scope="module")
def aws():
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="module")
def deployed(assembly: Path, aws: MotoServer, timings: dict[str, float]) -> DeployedEnvironment:
    started = time.perf_counter()
    env = deploy_assembly(assembly, aws.endpoint_url)
    timings["deploy_s"] = time.perf_counter() - started
    return env


@pytest.fixture(scope="module")
def runner(deployed: DeployedEnvironment):
    with LocalRunner(deployed) as r:
        yield r


def _physical(env: DeployedEnvironment, prefix: str, resource_type: str) -> str:
    matches = [r.physical_id for r in env.stacks["Toy"].resources_of_type(resource_type)
               if r.logical_id.startswith(prefix) and r.physical_id]
    assert len(matches) == 1, (prefix, matches)
    return matches[0]


def _item(env: DeployedEnvironment, pk: str) -> dict | None:
    table = _physical(env, "Table", "AWS::DynamoDB::Table")
    return env.client("dynamodb").get_item(TableName=table, Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item")


def _queue_url(env: DeployedEnvironment, prefix: str) -> str:
    return _physical(env, prefix, "AWS::SQS::Queue")


# -- the deployment ------------------------------------------------------------------------------


def test_every_synthesized_resource_is_accounted_for(assembly: Path, deployed: DeployedEnvironment):
    template = json.loads((assembly / "Toy.template.json").read_text())
    report = deployed.stacks["Toy"]
    assert report.status == "CREATE_COMPLETE"
    assert {r.logical_id for r in report.resources} == set(template["Resources"])
    stack = deployed.client("cloudformation").describe_stacks(StackName="Toy")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"


def test_lambda_code_comes_from_the_published_asset(assembly: Path, deployed: DeployedEnvironment):
    assets = json.loads((assembly / "Toy.assets.json").read_text())["files"]
    zip_keys = {d["objectKey"] for a in assets.values() if a["source"]["packaging"] == "zip"
                for d in a["destinations"].values()}
    bucket = f"cdk-hnb659fds-assets-{ACCOUNT}-{REGION}"
    listed = {o["Key"] for o in deployed.client("s3").list_objects_v2(Bucket=bucket)["Contents"]}
    assert zip_keys <= listed


def test_asymmetric_signing_key_keeps_its_key_spec(deployed: DeployedEnvironment):
    meta = deployed.client("kms").describe_key(KeyId=SIGNING_ALIAS)["KeyMetadata"]
    assert (meta["KeySpec"], meta["KeyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
    states = {r.logical_id: r.state for r in deployed.stacks["Toy"].resources}
    assert any(lid.startswith("SigningKey") and state == "PRECREATED_VIA_API" for lid, state in states.items())


def test_sqs_mapping_is_disabled_in_moto_and_recorded_for_the_runner(deployed: DeployedEnvironment):
    [mapping] = [m for m in deployed.event_source_mappings if m.stack == "Toy"]
    assert mapping.enabled
    state = deployed.client("lambda").get_event_source_mapping(UUID=mapping.uuid)
    assert state["State"] == "Disabled"
    assert state["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert state["ScalingConfig"] == {"MaximumConcurrency": 2}


def test_bucket_notification_is_recorded_not_given_to_moto(deployed: DeployedEnvironment):
    [notification] = deployed.bucket_notifications
    assert (notification.event, notification.prefix) == ("s3:ObjectCreated:*", "incoming/")
    assert notification.function_arn.endswith(_physical(deployed, "DropZone", "AWS::Lambda::Function"))
    config = deployed.client("s3").get_bucket_notification_configuration(Bucket=notification.bucket)
    assert "LambdaFunctionConfigurations" not in config
    assert deployed.client("s3").get_bucket_versioning(Bucket=notification.bucket)["Status"] == "Enabled"


def test_add_event_notification_needs_a_lambda_backed_custom_resource(assembly: Path, deployed: DeployedEnvironment):
    resources = json.loads((assembly / "Toy.template.json").read_text())["Resources"]
    [custom] = [r for r in resources.values() if r["Type"] == "Custom::S3BucketNotifications"]
    provider = custom["Properties"]["ServiceToken"]["Fn::GetAtt"][0]
    assert resources[provider]["Type"] == "AWS::Lambda::Function"
    listed = [n for n in deployed.not_emulated if n.resource_type == "Custom::S3BucketNotifications"]
    assert listed and "NotificationConfiguration" in listed[0].reason


def test_not_emulated_list_names_what_local_mode_cannot_reproduce(deployed: DeployedEnvironment):
    features = {n.feature for n in deployed.not_emulated}
    assert {"IAM enforcement", "custom resource", "bucket policy condition", "key policy enforcement",
            "Lambda concurrency"} <= features


# -- the runner ----------------------------------------------------------------------------------


def test_function_configuration_is_read_back_from_the_embedded_aws(runner: LocalRunner,
                                                                   deployed: DeployedEnvironment):
    fn = runner.functions[_physical(deployed, "Processor", "AWS::Lambda::Function")]
    assert fn.handler == "toy_handlers.app.sqs_handler"
    assert fn.environment == {"TABLE_NAME": _physical(deployed, "Table", "AWS::DynamoDB::Table"),
                              "ROLE": "processor", "SIGNING_KEY": SIGNING_ALIAS}
    assert (fn.memory_mb, fn.timeout_s) == (256, 30)


def test_queue_is_left_alone_until_the_runner_polls_it(runner: LocalRunner, deployed: DeployedEnvironment):
    sqs = deployed.client("sqs")
    inbox = _queue_url(deployed, "Inbox")
    sqs.send_message(QueueUrl=inbox, MessageBody=json.dumps({"id": "untouched"}))
    attributes = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["ApproximateNumberOfMessages"])
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "1"
    runner.run_until_idle(timeout_s=30)
    assert _item(deployed, "ok#untouched") is not None


def test_sqs_messages_become_items_written_by_the_deployed_code(runner: LocalRunner, deployed: DeployedEnvironment):
    sqs = deployed.client("sqs")
    ids = [f"m{i}-{uuid.uuid4().hex[:6]}" for i in range(12)]
    for i in range(0, len(ids), 10):
        sqs.send_message_batch(QueueUrl=_queue_url(deployed, "Inbox"), Entries=[
            {"Id": str(n), "MessageBody": json.dumps({"id": mid})} for n, mid in enumerate(ids[i:i + 10])])
    processor = _physical(deployed, "Processor", "AWS::Lambda::Function")
    before = runner.stats[processor].invocations
    summary = runner.run_until_idle(timeout_s=30)
    assert summary.idle
    assert runner.stats[processor].invocations - before >= 3  # BatchSize 5
    for mid in ids:
        item = _item(deployed, f"ok#{mid}")
        assert item is not None, mid
        assert item["marker"]["S"] == MARKER
        assert item["fn"]["S"] == processor
        assert item["role"]["S"] == "processor"
        assert item["module"]["S"].startswith(str(runner.cache_dir))


def test_reported_failure_is_retried_then_dead_lettered(runner: LocalRunner, deployed: DeployedEnvironment):
    sqs = deployed.client("sqs")
    bad, good = f"bad-{uuid.uuid4().hex[:6]}", f"good-{uuid.uuid4().hex[:6]}"
    sqs.send_message_batch(QueueUrl=_queue_url(deployed, "Inbox"), Entries=[
        {"Id": "1", "MessageBody": json.dumps({"id": bad, "fail": True})},
        {"Id": "2", "MessageBody": json.dumps({"id": good})}])
    runner.run_until_idle(timeout_s=30)
    attempts = _item(deployed, f"attempt#{bad}")
    assert (attempts["seen"]["N"], attempts["receives"]["S"]) == ("2", "2")  # maxReceiveCount
    assert _item(deployed, f"attempt#{good}")["seen"]["N"] == "1"  # deleted after its success
    dead = sqs.receive_message(QueueUrl=_queue_url(deployed, "Dlq"), MaxNumberOfMessages=10,
                               AttributeNames=["All"]).get("Messages", [])
    assert [json.loads(m["Body"])["id"] for m in dead] == [bad]


def test_handler_that_raises_deletes_nothing(runner: LocalRunner, deployed: DeployedEnvironment):
    sqs = deployed.client("sqs")
    inbox = _queue_url(deployed, "Inbox")
    sqs.send_message(QueueUrl=inbox, MessageBody="not json")  # json.loads raises in the handler
    processor = _physical(deployed, "Processor", "AWS::Lambda::Function")
    errors = runner.stats[processor].errors
    runner.run_until_idle(timeout_s=30)
    assert runner.stats[processor].errors - errors == 2  # received twice, then redriven
    dead = sqs.receive_message(QueueUrl=_queue_url(deployed, "Dlq"), MaxNumberOfMessages=10).get("Messages", [])
    assert [m["Body"] for m in dead] == ["not json"]


def test_s3_drop_triggers_its_handler_once(runner: LocalRunner, deployed: DeployedEnvironment):
    s3 = deployed.client("s3")
    bucket = deployed.bucket_notifications[0].bucket
    s3.put_object(Bucket=bucket, Key="incoming/住民 異動.csv", Body=b"a,b\n")
    s3.put_object(Bucket=bucket, Key="elsewhere/ignored.csv", Body=b"a,b\n")
    assert runner.process_new_objects() == 1
    assert runner.process_new_objects() == 0
    item = _item(deployed, "s3#incoming/住民 異動.csv")
    assert item["seen"]["N"] == "1"
    assert item["role"]["S"] == "drop-zone"
    assert _item(deployed, "s3#elsewhere/ignored.csv") is None


def test_an_unchanged_bucket_is_not_listed_again_and_a_new_object_still_arrives(
        runner: LocalRunner, deployed: DeployedEnvironment, monkeypatch: pytest.MonkeyPatch):
    """The runner lists a notified bucket only when its object generation moved (the
    embedded AWS counts stored objects per bucket): the idle rounds of ``run_until_idle``
    cost one request, not one listing per bucket; an object stored since is still found."""
    runner.process_new_objects()
    listed: list[str] = []
    real_list = runner._list_objects

    def counting(notification):
        listed.append(notification.bucket)
        return real_list(notification)

    monkeypatch.setattr(runner, "_list_objects", counting)
    assert runner.process_new_objects() == 0
    assert listed == []
    bucket = deployed.bucket_notifications[0].bucket
    deployed.client("s3").put_object(Bucket=bucket, Key="incoming/later.csv", Body=b"a,b\n")
    assert runner.process_new_objects() == 1
    assert listed == [bucket]
    assert _item(deployed, "s3#incoming/later.csv")["seen"]["N"] == "1"
    assert runner.process_new_objects() == 0
    assert listed == [bucket]


def test_failed_s3_event_is_retried_then_sent_to_the_function_dead_letter_queue(
        runner: LocalRunner, deployed: DeployedEnvironment):
    bucket = deployed.bucket_notifications[0].bucket
    deployed.client("s3").put_object(Bucket=bucket, Key="incoming/poison.csv", Body=b"x")
    runner.process_new_objects()
    assert _item(deployed, "s3#incoming/poison.csv")["seen"]["N"] == "2"  # EventInvokeConfig: 1 retry
    sqs = deployed.client("sqs")
    [dead] = sqs.receive_message(QueueUrl=_queue_url(deployed, "FailedDrops"), MessageAttributeNames=["All"],
                                 MaxNumberOfMessages=10)["Messages"]
    assert json.loads(dead["Body"])["Records"][0]["s3"]["object"]["key"] == "incoming/poison.csv"
    assert "cannot read" in dead["MessageAttributes"]["ErrorMessage"]["StringValue"]


def test_functions_sharing_a_package_run_with_their_own_environment(runner: LocalRunner,
                                                                     deployed: DeployedEnvironment):
    processor = runner.functions[_physical(deployed, "Processor", "AWS::Lambda::Function")]
    drop_zone = runner.functions[_physical(deployed, "DropZone", "AWS::Lambda::Function")]
    assert processor.code_sha256 == drop_zone.code_sha256
    bucket = deployed.bucket_notifications[0].bucket
    deployed.client("s3").put_object(Bucket=bucket, Key="incoming/second.csv", Body=b"x")
    deployed.client("sqs").send_message(QueueUrl=_queue_url(deployed, "Inbox"), MessageBody=json.dumps({"id": "mix"}))
    runner.run_until_idle(timeout_s=30)
    processed, dropped = _item(deployed, "ok#mix"), _item(deployed, "s3#incoming/second.csv")
    assert (processed["role"]["S"], processed["role_at_import"]["S"]) == ("processor", "processor")
    # Each function has its own copy of the modules, as each has its own container in Lambda.
    assert (dropped["role"]["S"], dropped["role_at_import"]["S"]) == ("drop-zone", "drop-zone")


def test_dependent_stack_is_deployed_after_and_wired_through_imports(assembly: Path, runner: LocalRunner,
                                                                     deployed: DeployedEnvironment):
    assert list(deployed.stacks) == ["Toy", "ToyAudit"]
    consumer = json.loads((assembly / "ToyAudit.template.json").read_text())["Resources"]
    [mapping] = [r for r in consumer.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert "Fn::ImportValue" in mapping["Properties"]["EventSourceArn"]
    audit = [m for m in deployed.event_source_mappings if m.stack == "ToyAudit"]
    assert len(audit) == 1 and audit[0].enabled
    deployed.client("sqs").send_message(QueueUrl=_queue_url(deployed, "AuditQueue"),
                                        MessageBody=json.dumps({"id": "imported"}))
    runner.run_until_idle(timeout_s=30)
    item = _item(deployed, "audit#imported")
    assert item["role"]["S"] == "auditor"
    assert item["fn"]["S"].startswith("ToyAudit-Auditor")


def test_timings_are_within_budget(timings: dict[str, float], deployed: DeployedEnvironment):
    # Generous bounds: they catch a regression to minutes, not jitter.
    assert timings["synth_s"] < 120
    assert timings["deploy_s"] < 60
