"""The embedded AWS: loopback only, stopped with its context, isolated per account."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

import boto3
import pytest

from embedded_aws.server import MotoServer


def _listening_addresses(port: int) -> set[str]:
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if int(hex_port, 16) == port and state == "0A":  # LISTEN
            addresses.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return addresses


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_server_listens_on_loopback_only_and_stops_with_its_context(mode: str):
    with MotoServer(mode=mode) as aws:  # type: ignore[arg-type]
        url = urlparse(aws.endpoint_url)
        assert url.hostname == "127.0.0.1"
        aws.client("sqs", "ap-northeast-1").create_queue(QueueName="q")
        if sys.platform.startswith("linux"):
            assert _listening_addresses(url.port) == {"127.0.0.1"}
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", url.port), timeout=1).close()


def test_clients_for_another_account_see_only_that_account():
    with MotoServer() as aws:
        other = aws.client("sqs", "ap-northeast-1", account_id="111111111111")
        other.create_queue(QueueName="only-there")
        assert aws.client("sts", "ap-northeast-1", account_id="111111111111").get_caller_identity()["Account"] \
            == "111111111111"
        assert "QueueUrls" not in aws.client("sqs", "ap-northeast-1").list_queues()


def test_a_json_template_is_parsed_as_json_and_a_yaml_one_still_as_yaml(monkeypatch: pytest.MonkeyPatch):
    """moto_patches correction 3: the CDK's JSON templates skip PyYAML's slow pure-Python
    loader (9.5 s of a 25 s Nagano deployment). Breaking the patch makes the JSON case reach
    the YAML loader, which this test forbids."""
    import yaml
    from moto.cloudformation.models import Stack

    from embedded_aws import moto_patches

    moto_patches.apply_server()  # what the server does (the thread mode test may have done it)
    real_load = yaml.load
    loaded: list[str] = []

    def watched_load(stream, Loader):
        loaded.append(stream)
        return real_load(stream, Loader=Loader)

    monkeypatch.setattr(yaml, "load", watched_load)
    body = '{"Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {"DelaySeconds": 1e1}}}}'
    parsed = Stack.parse_template(body)
    assert parsed["Resources"]["Q"]["Properties"]["DelaySeconds"] == 10.0  # JSON's number, not YAML's string
    assert loaded == []
    yaml_body = "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n"
    assert Stack.parse_template(yaml_body) == {"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}
    assert loaded == [yaml_body]


def test_a_stack_from_a_json_template_is_created_through_the_server():
    with MotoServer() as aws:
        cfn = aws.client("cloudformation", "ap-northeast-1")
        cfn.create_stack(StackName="s", TemplateBody='{"Resources": {"Q": {"Type": "AWS::SQS::Queue", '
                                                     '"Properties": {"QueueName": "from-json"}}}}')
        assert cfn.describe_stacks(StackName="s")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
        assert aws.client("sqs", "ap-northeast-1").get_queue_url(QueueName="from-json")["QueueUrl"]


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_every_stored_object_counts_in_its_buckets_generation(mode: str):
    """moto_patches correction 4: what lets the runner skip listing unchanged buckets. A
    store that did not count (a copy, a multipart upload, another account's bucket) would leave its object undelivered."""
    import json
    import urllib.request

    from embedded_aws.moto_patches import GENERATIONS_PATH

    def generations(url: str) -> dict[str, int]:
        with urllib.request.urlopen(url + GENERATIONS_PATH, timeout=10) as answer:
            return json.loads(answer.read())

    with MotoServer(mode=mode) as aws:  # type: ignore[arg-type]
        s3 = aws.client("s3", "us-east-1")
        other = aws.client("s3", "us-east-1", account_id="111111111111")
        s3.create_bucket(Bucket="bkt-b")
        other.create_bucket(Bucket="bkt-c")
        before = generations(aws.endpoint_url)
        assert before.get("123456789012/bkt-b", 0) == 0
        s3.put_object(Bucket="bkt-b", Key="k", Body=b"1")
        s3.copy_object(Bucket="bkt-b", Key="k2", CopySource={"Bucket": "bkt-b", "Key": "k"})
        upload = s3.create_multipart_upload(Bucket="bkt-b", Key="big")["UploadId"]
        part = s3.upload_part(Bucket="bkt-b", Key="big", UploadId=upload, PartNumber=1, Body=b"x")["ETag"]
        s3.complete_multipart_upload(Bucket="bkt-b", Key="big", UploadId=upload,
                                     MultipartUpload={"Parts": [{"ETag": part, "PartNumber": 1}]})
        other.put_object(Bucket="bkt-c", Key="k", Body=b"1")
        after = generations(aws.endpoint_url)
        assert after["123456789012/bkt-b"] - before.get("123456789012/bkt-b", 0) == 3
        assert after["111111111111/bkt-c"] - before.get("111111111111/bkt-c", 0) == 1


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_the_server_sends_s3_events_to_a_queue_and_answers_every_queues_depth(mode: str):
    """What the CS inboxes rely on locally (decision 0051): moto's S3 sends an object's event to
    the queue its bucket notifies (in server mode, and a test event when configured), and
    moto_patches correction 8 answers the depth of every queue that holds something in one
    request. A server that sent no event would leave a dropped file undelivered."""
    import json
    import urllib.request

    from embedded_aws.moto_patches import QUEUE_DEPTHS_PATH

    def depths(url: str) -> dict[str, int]:
        with urllib.request.urlopen(url + QUEUE_DEPTHS_PATH, timeout=10) as answer:
            return json.loads(answer.read())

    with MotoServer(mode=mode) as aws:  # type: ignore[arg-type]
        s3, sqs = aws.client("s3", "us-east-1"), aws.client("sqs", "us-east-1")
        url = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        idle = sqs.create_queue(QueueName="idle")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.create_bucket(Bucket="zone")
        s3.put_bucket_notification_configuration(Bucket="zone", NotificationConfiguration={"QueueConfigurations": [{
            "QueueArn": arn, "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "incoming/"}]}}}]})
        s3.put_object(Bucket="zone", Key="incoming/a b.csv", Body=b"1")
        s3.put_object(Bucket="zone", Key="reports/x", Body=b"1")  # outside the filter: no event
        assert depths(aws.endpoint_url) == {arn: 2}  # the test event and one object's
        bodies = [json.loads(m["Body"]) for m in
                  sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60)["Messages"]]
        assert [b.get("Event") for b in bodies if "Event" in b] == ["s3:TestEvent"]
        [event] = [b for b in bodies if "Records" in b]
        assert event["Records"][0]["s3"]["bucket"]["name"] == "zone"
        # URL-encoded as S3 does (moto encodes the "/" too): the CS decodes it (domain/inbox.py)
        from jukinet.domain.inbox import objects_of
        assert [o.key for o in objects_of(event)] == ["incoming/a b.csv"]
        assert depths(aws.endpoint_url) == {arn: 2}  # in flight still counts
        sqs.purge_queue(QueueUrl=url)
        assert depths(aws.endpoint_url) == {}
        assert idle


def test_a_symmetric_key_gets_no_rsa_key_pair_until_one_is_asked_for():
    """moto_patches correction 5: CreateKey of a symmetric key no longer generates a 2048-bit
    RSA key nobody uses (0.1–0.2 s each); keys with a key pair still sign and verify."""
    from moto import mock_aws
    from moto.kms import models
    from moto.kms.utils import RSAPrivateKey

    from embedded_aws import moto_patches

    moto_patches.apply()  # what tests/conftest.py and the servers do
    with mock_aws():
        kms = boto3.client("kms", region_name="ap-northeast-1")
        symmetric = kms.create_key()["KeyMetadata"]["KeyId"]
        signing = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
        backend = models.kms_backends["123456789012"]["ap-northeast-1"]
        lazy = backend.keys[symmetric].private_key
        assert not isinstance(lazy, RSAPrivateKey)
        assert lazy.__dict__["_made"] is None, "the RSA key pair was generated at CreateKey"
        blob = kms.encrypt(KeyId=symmetric, Plaintext=b"x")["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
        assert lazy.__dict__["_made"] is None
        signature = kms.sign(KeyId=signing, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
        assert kms.verify(KeyId=signing, Message=b"m", Signature=signature,
                          SigningAlgorithm="ECDSA_SHA_256")["SignatureValid"]
        # Asked for anyway (moto's GetPublicKey path), it is made then, as moto would have.
        assert kms.get_public_key(KeyId=symmetric)["PublicKey"]
        assert isinstance(lazy.__dict__["_made"], RSAPrivateKey)


def test_a_query_reads_its_partition_and_answers_as_moto_would():
    """moto_patches correction 6: a Query no longer sorts the whole table first. The same
    queries (own key with and without range conditions, backwards, paged, filtered; a global
    index, paged) give the same answers with the correction and with moto's own Query."""
    from moto import mock_aws
    from moto.dynamodb.models.table import Table

    from embedded_aws import moto_patches

    moto_patches.apply()
    queries = [
        {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "P#3"}}},
        {"KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b",
         "ExpressionAttributeValues": {":p": {"S": "P#1"}, ":a": {"S": "S#03"}, ":b": {"S": "S#11"}}},
        {"KeyConditionExpression": "pk = :p AND begins_with(sk, :s)", "ScanIndexForward": False,
         "ExpressionAttributeValues": {":p": {"S": "P#2"}, ":s": {"S": "S#1"}}},
        {"KeyConditionExpression": "pk = :p", "Limit": 4, "ExpressionAttributeValues": {":p": {"S": "P#4"}}},
        {"KeyConditionExpression": "pk = :p", "FilterExpression": "n > :n",
         "ExpressionAttributeValues": {":p": {"S": "P#0"}, ":n": {"N": "7"}}},
        {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "P#none"}}},
        {"IndexName": "by_group", "KeyConditionExpression": "grp = :g", "ExpressionAttributeValues": {":g": {"S": "G2"}}},
        {"IndexName": "by_group", "KeyConditionExpression": "grp = :g AND n >= :n", "Limit": 3,
         "ExpressionAttributeValues": {":g": {"S": "G1"}, ":n": {"N": "5"}}},
    ]

    def answers() -> list[list[dict]]:
        out = []
        for q in queries:
            pages, kwargs = [], dict(q)
            while True:
                r = ddb.query(TableName="t", **kwargs)
                pages.append(r["Items"])
                if "LastEvaluatedKey" not in r:
                    break
                kwargs["ExclusiveStartKey"] = r["LastEvaluatedKey"]
            out.append(pages)
        return out

    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="ap-northeast-1")
        ddb.create_table(
            TableName="t", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": t}
                                  for a, t in (("pk", "S"), ("sk", "S"), ("grp", "S"), ("n", "N"))],
            GlobalSecondaryIndexes=[{"IndexName": "by_group", "Projection": {"ProjectionType": "ALL"},
                                     "KeySchema": [{"AttributeName": "grp", "KeyType": "HASH"},
                                                   {"AttributeName": "n", "KeyType": "RANGE"}]}])
        for i in range(120):  # inserted out of key order
            j = (i * 37) % 120
            ddb.put_item(TableName="t", Item={"pk": {"S": f"P#{j % 5}"}, "sk": {"S": f"S#{j:02d}"},
                                              "grp": {"S": f"G{j % 3}"}, "n": {"N": str(j % 11)}})
        patched = answers()
        corrected = Table.query
        Table.query = corrected.__wrapped__  # moto's own Query (which sorts the whole table)
        try:
            original = answers()
        finally:
            Table.query = corrected
    assert patched == original
    assert sum(len(p) for pages in patched for p in pages) > 60


def test_the_server_lists_motos_modules_once(monkeypatch):
    """moto_patches correction 7: the dispatcher's list of moto's modules, asked for on every
    request, is the directory listing made once — the same names, no listing per request."""
    import os

    from moto import backends

    from embedded_aws import moto_patches

    moto_patches.apply_server()
    listed = list(backends.list_of_moto_modules.__wrapped__())
    assert "dynamodb" in listed and "sqs" in listed
    monkeypatch.setattr(os, "listdir", lambda *_: (_ for _ in ()).throw(AssertionError("listed again")))
    assert list(backends.list_of_moto_modules()) == listed


def test_the_servers_sessions_share_one_botocore_loader():
    """moto_patches correction 15: in a server's process (a fresh interpreter, as the child is;
    this test process shares its loader already, tests/conftest.py) every new session reads
    botocore's data through one loader, so moto's backends parse endpoints.json once."""
    import subprocess
    import sys

    probe = ("import sys, boto3\n"
             "from embedded_aws import moto_patches\n"
             "if sys.argv[1] == 'patched': moto_patches.apply_server()\n"
             "a, b = boto3.Session()._session, boto3.Session()._session\n"
             "print(a.get_component('data_loader') is b.get_component('data_loader'))\n")
    answers = {how: subprocess.run([sys.executable, "-c", probe, how], capture_output=True, text=True,
                                   check=True, timeout=120).stdout.strip()
               for how in ("plain", "patched")}
    assert answers == {"plain": "False", "patched": "True"}


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_requests_share_a_connection_and_an_unread_body_does_not_spill_into_the_next(mode: str):
    """moto_patches correction 10: one TCP connection serves many requests (werkzeug closed each
    one), and what the application leaves unread of a request body is dropped, not parsed as the
    next request line — S3 refuses a PUT into a missing bucket without reading its body."""
    import http.client

    with MotoServer(mode=mode) as aws:  # type: ignore[arg-type]
        url = urlparse(aws.endpoint_url)
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        connection.connect()
        opened = connection.sock
        answers = []
        for body in (b"x" * 300_000, b"", b"y" * 10):
            connection.request("PUT", "/no-such-bucket-here/key", body=body,
                               headers={"Host": f"127.0.0.1:{url.port}"})
            response = connection.getresponse()
            response.read()
            answers.append(response.status)
            assert response.getheader("Connection") != "close"
        connection.request("GET", "/moto-api/data.json")
        assert connection.getresponse().status == 200
        assert connection.sock is opened  # never reconnected
        assert answers == [404, 404, 404]
        s3 = aws.client("s3", "ap-northeast-1")
        s3.create_bucket(Bucket="bodies-kept-apart", CreateBucketConfiguration={"LocationConstraint": "ap-northeast-1"})
        for size in (0, 1, 70_000, 1_000_000):
            s3.put_object(Bucket="bodies-kept-apart", Key=f"k{size}", Body=b"z" * size)
            assert s3.get_object(Bucket="bodies-kept-apart", Key=f"k{size}")["Body"].read() == b"z" * size
        connection.close()


def test_an_item_is_refused_over_400_kb_and_stored_under_it_as_moto_would():
    """moto_patches correction 11: the item is built once, the limit applied to its total size."""
    from moto import mock_aws

    from embedded_aws import moto_patches

    moto_patches.apply()
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="ap-northeast-1")
        ddb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
        near = {"pk": {"S": "a"}, **{f"a{i}": {"S": "v" * 99_000} for i in range(4)}}
        ddb.put_item(TableName="t", Item=near)
        assert ddb.get_item(TableName="t", Key={"pk": {"S": "a"}})["Item"] == near
        over = {"pk": {"S": "b"}, **{f"a{i}": {"S": "v" * 99_000} for i in range(5)}}  # each under, all over
        with pytest.raises(ddb.exceptions.ClientError, match="Item size has exceeded the maximum allowed size"):
            ddb.put_item(TableName="t", Item=over)
        assert "Item" not in ddb.get_item(TableName="t", Key={"pk": {"S": "b"}})
