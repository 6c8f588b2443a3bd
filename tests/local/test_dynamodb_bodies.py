"""DynamoDB request bodies made without botocore's shape walk (decision 0058): the same bytes
as botocore's for every request, or botocore's own path."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ParamValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from jukinet.adapters import aws, dynamodb_bodies

from .test_aws_clients import _answer_locally, fresh_clients  # noqa: F401 - a fixture

REGION = "ap-northeast-1"


def _raw_client():
    return boto3.session.Session().client("dynamodb", region_name=REGION, aws_access_key_id="k",
                                          aws_secret_access_key="s", config=Config(parameter_validation=False))


RAW = _raw_client()
MODEL = RAW.meta.service_model
BOTOCORE = RAW._serializer

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8)
texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
blobs = st.one_of(st.binary(max_size=24), texts)  # botocore also takes text for a blob, encoded
numbers = st.integers(-10**12, 10**12).map(str)
scalars = st.one_of(
    texts.map(lambda s: {"S": s}), numbers.map(lambda n: {"N": n}), blobs.map(lambda b: {"B": b}),
    st.lists(texts, max_size=3).map(lambda v: {"SS": v}), st.lists(numbers, max_size=3).map(lambda v: {"NS": v}),
    st.lists(blobs, max_size=3).map(lambda v: {"BS": v}), st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.dictionaries(names, inner, max_size=3).map(lambda m: {"M": m}),
    st.lists(inner, max_size=3).map(lambda v: {"L": v})), max_leaves=12)
items = st.dictionaries(names, values, min_size=1, max_size=6)


def _requests():
    put = st.builds(lambda i, v: {"TableName": "t", "Item": i, "ConditionExpression": "attribute_not_exists(pk)",
                                  "ExpressionAttributeValues": v}, items, items)
    update = st.builds(lambda k, v: {"Key": k, "TableName": "t", "UpdateExpression": "SET a = :a",
                                     "ExpressionAttributeValues": v, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"},
                       items, items)
    return st.one_of(
        put.map(lambda p: ("PutItem", p)),
        update.map(lambda u: ("UpdateItem", u)),
        st.lists(st.one_of(put.map(lambda p: {"Put": p}), update.map(lambda u: {"Update": u}),
                           items.map(lambda k: {"Delete": {"TableName": "t", "Key": k}}),
                           items.map(lambda k: {"ConditionCheck": {"TableName": "t", "Key": k,
                                                                   "ConditionExpression": "x"}})),
                 min_size=1, max_size=5).map(lambda a: ("TransactWriteItems", {"TransactItems": a})),
        st.lists(items, min_size=1, max_size=5).map(
            lambda ks: ("BatchGetItem", {"RequestItems": {"t": {"Keys": ks, "ConsistentRead": True}}})),
        st.lists(items, min_size=1, max_size=5).map(
            lambda its: ("BatchWriteItem", {"RequestItems": {"t": [{"PutRequest": {"Item": i}} for i in its]}})),
        st.builds(lambda k, v: ("Query", {"TableName": "t", "KeyConditionExpression": "pk = :p",
                                          "ExpressionAttributeValues": v, "ExclusiveStartKey": k, "Limit": 5}),
                  items, items))


@settings(max_examples=300, deadline=None)
@given(_requests())
def test_every_item_operation_body_is_botocores_byte_for_byte(request):
    operation, parameters = request
    model = MODEL.operation_model(operation)
    fast = dynamodb_bodies.FastBodies(BOTOCORE)
    ours, theirs = fast.serialize_to_request(parameters, model), BOTOCORE.serialize_to_request(parameters, model)
    assert fast.fast == 1  # made by the plan, not handed back to botocore
    assert ours == theirs


def test_an_answer_that_differs_from_botocores_fails_in_shadow_mode(monkeypatch):
    """The suite's proof can fail: a plan that encodes blobs wrongly is caught on the first request."""
    monkeypatch.setattr(dynamodb_bodies, "_blob", lambda value: "wrong")
    model = MODEL.operation_model("PutItem")
    fast = dynamodb_bodies.FastBodies(BOTOCORE, shadow=True)
    fast.serialize_to_request({"TableName": "t", "Item": {"pk": {"S": "a"}}}, model)  # no blob: the same
    with pytest.raises(dynamodb_bodies.BodyMismatch, match="PutItem"):
        fast.serialize_to_request({"TableName": "t", "Item": {"pk": {"B": b"a"}}}, model)


def test_operations_without_a_plan_are_botocores_own():
    fast = dynamodb_bodies.FastBodies(BOTOCORE)
    for operation, parameters in (("DescribeTable", {"TableName": "t"}),
                                  ("ExportTableToPointInTime", {"TableArn": "arn", "S3Bucket": "b",
                                                                "ExportTime": 1_700_000_000})):
        model = MODEL.operation_model(operation)
        assert fast.serialize_to_request(parameters, model) == BOTOCORE.serialize_to_request(parameters, model)
    assert fast.fast == 0


def test_the_functions_clients_have_fast_bodies_checked_in_the_suite(fresh_clients):  # noqa: F811
    fresh_clients.setenv(aws.VALIDATE_REQUESTS_VARIABLE, "1")
    suite, sent = aws.client("dynamodb"), []
    assert dynamodb_bodies.installed(suite).shadow  # the suite compares every body with botocore's
    _answer_locally(suite, sent)
    suite.transact_write_items(TransactItems=[{"Put": {"TableName": "t", "Item": {"pk": {"B": b"\x00"}}}}])
    assert dynamodb_bodies.installed(suite).fast == 1 and b'"B": "AA=="' in sent[0]
    with pytest.raises(ParamValidationError):  # botocore's check still comes first
        suite.put_item(TableName="t", Item={"pk": {"S": "a"}}, ReturnValues=7)

    fresh_clients.delenv(aws.VALIDATE_REQUESTS_VARIABLE)
    product = aws.client("dynamodb")
    assert not dynamodb_bodies.installed(product).shadow
    assert dynamodb_bodies.installed(aws.client("sqs")) is None  # DynamoDB only
