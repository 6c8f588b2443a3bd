"""embedded_aws/moto_code_hash.py: functions sharing one code object in S3 hash it once, and a
replaced object is hashed afresh (decision 0054)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile

import boto3


def _zip(text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", text)
    return buffer.getvalue()


def _sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_functions_of_one_code_object_hash_it_once_and_a_new_object_afresh(monkeypatch):
    from moto import mock_aws
    from moto.awslambda import models
    from moto.s3.models import FakeKey

    from embedded_aws import moto_code_hash

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    moto_code_hash.apply()
    moto_code_hash.apply()  # idempotent: still one wrapper around moto's function
    assert models._s3_content.__wrapped__.__name__ == "_s3_content"
    assert not hasattr(models._s3_content.__wrapped__, "__wrapped__")
    reads = []
    value = FakeKey.value
    monkeypatch.setattr(FakeKey, "value", property(lambda key: reads.append(key.name) or value.fget(key), value.fset))
    region = "ap-northeast-1"
    with mock_aws():
        s3, lam = boto3.client("s3", region_name=region), boto3.client("lambda", region_name=region)
        iam = boto3.client("iam", region_name=region)
        role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17",
                                                                                   "Statement": []}))["Role"]["Arn"]
        s3.create_bucket(Bucket="assets", CreateBucketConfiguration={"LocationConstraint": region})
        first = _zip("v1")
        s3.put_object(Bucket="assets", Key="code.zip", Body=first)
        shas = [lam.create_function(FunctionName=f"f{i}", Runtime="python3.12", Role=role, Handler="handler.main",
                                    Code={"S3Bucket": "assets", "S3Key": "code.zip"})["CodeSha256"] for i in range(4)]
        assert shas == [_sha(first)] * 4
        # One call of moto's _s3_content, which reads the object twice (to hash it, to keep it);
        # without the correction: twice for each of the four functions.
        assert reads.count("code.zip") == 2, reads
        # The object replaced (same name, new bytes, same size): the function gets the new code's hash.
        second = _zip("v2")
        assert len(second) == len(first)
        s3.put_object(Bucket="assets", Key="code.zip", Body=second)
        updated = lam.update_function_code(FunctionName="f0", S3Bucket="assets", S3Key="code.zip")
        assert updated["CodeSha256"] == _sha(second)
        assert lam.get_function(FunctionName="f1")["Configuration"]["CodeSha256"] == _sha(first)
