"""Correction 14 of embedded_aws/moto_patches.py: moto's per-request dispatch costs done once,
with moto's answers unchanged."""

from __future__ import annotations

import inspect

import boto3
from moto import mock_aws
from moto.core import responses
from moto.dynamodb.responses import DynamoHandler

from embedded_aws import moto_patches

moto_patches.apply()


def _inspected(clazz) -> set[str]:
    return {name for name, _ in inspect.getmembers(clazz, predicate=inspect.isfunction)}


def test_the_method_names_are_moto_s_and_follow_a_class_that_changes():
    assert set(responses.method_names_from_class(DynamoHandler)) == _inspected(DynamoHandler)

    class Handler(responses.BaseResponse):
        def first_action(self):
            return "one"

    assert "first_action" in responses.method_names_from_class(Handler)
    assert "second_action" not in responses.method_names_from_class(Handler)
    Handler.second_action = lambda self: "two"  # a method added after the first listing
    assert "second_action" in responses.method_names_from_class(Handler)
    del Handler.first_action
    assert "first_action" not in responses.method_names_from_class(Handler)
    assert set(responses.method_names_from_class(Handler)) == _inspected(Handler)


def test_a_json_body_is_left_alone_and_the_headers_are_moto_s():
    body = '{"Items": [{"pk": {"S": "<RequestId>x</RequestIdent>"}}]}'
    headers, out = responses.BaseResponse._enrich_response({"status": 200}, body)
    assert out is body
    assert headers["status"] == "200"
    assert headers["x-amzn-requestid"]


def test_an_xml_body_still_carries_the_request_id_of_its_header():
    body = "<Response><ResponseMetadata><RequestId>placeholder</RequestId></ResponseMetadata></Response>"
    headers, out = responses.BaseResponse._enrich_response({}, body)
    assert out == body.replace("placeholder", headers["x-amzn-requestid"])
    assert responses.BaseResponse._enrich_response({}, b"<RequestId>x</RequestId>")[1] == b"<RequestId>x</RequestId>"


def test_through_boto3_the_answers_name_their_request_ids():
    with mock_aws():
        sts = boto3.client("sts", region_name="ap-northeast-1", aws_access_key_id="testing",
                           aws_secret_access_key="testing")
        meta = sts.get_caller_identity()["ResponseMetadata"]  # XML: the id is in the body
        assert meta["RequestId"] == meta["HTTPHeaders"]["x-amzn-requestid"]
        ddb = boto3.client("dynamodb", region_name="ap-northeast-1", aws_access_key_id="testing",
                           aws_secret_access_key="testing")
        assert ddb.list_tables()["TableNames"] == []  # JSON: dispatched by the listed names
