"""moto_patches corrections 12 and 13: DynamoDB's item operations parsed with ``json.loads`` and
answered with ``json.dumps``, and condition expressions parsed once per (expression, names).

Each fast path is compared with moto's own on representative requests and answers: the same
parsed parameters (types and key order included: blobs as bytes, numbers as text), the same
answer bodies byte for byte (blobs in base64, nested maps and lists, empty results, paging keys,
consumed capacity), the same errors. The tests also fail if a fast path is not taken."""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

import boto3
import pytest

from embedded_aws import moto_patches

moto_patches.apply()  # what tests/conftest.py and the servers do

BLOB = bytes(range(256))
ITEM = {
    "pk": {"S": "P#1"}, "sk": {"N": "12.50"}, "seal": {"B": base64.b64encode(BLOB).decode()},
    "events": {"BS": [base64.b64encode(b"\x00\x01").decode(), base64.b64encode(b"\xff").decode()]},
    "nested": {"M": {"list": {"L": [{"N": "1"}, {"B": base64.b64encode(b"zz").decode()}, {"NULL": True},
                                    {"M": {"deep": {"SS": ["a", "b"]}}}]},
                     "flag": {"BOOL": False}, "ns": {"NS": ["1", "2.5"]}}},
    "empty": {"S": ""},
}


def _motos_parse(operation: str, body: Any) -> Any:
    from moto.core.parse import JSONParser
    from moto.core.utils import get_service_model

    model = get_service_model("dynamodb").operation_model(operation)
    return JSONParser(model, map_type=dict).parse({"body": json.dumps(body).encode(), "method": "POST",
                                                   "headers": {}, "values": {}, "url_path": "/", "url_params": {}})


REQUESTS = [
    ("PutItem", {"TableName": "t", "Item": ITEM, "ConditionExpression": "attribute_not_exists(pk) OR sk < :k",
                 "ExpressionAttributeValues": {":k": {"N": "3"}}, "ReturnConsumedCapacity": "TOTAL"}),
    ("GetItem", {"TableName": "t", "Key": {"pk": {"S": "P#1"}, "sk": {"N": "12.50"}}, "ConsistentRead": True,
                 "ProjectionExpression": "#s, nested.list[1]", "ExpressionAttributeNames": {"#s": "seal"}}),
    # members in another order than the shape's, a None member, a member the shape does not know
    ("Query", {"KeyConditionExpression": "pk = :p", "TableName": "t", "Limit": 5, "Select": None, "Unknown": 1,
               "ExclusiveStartKey": {"pk": {"S": "P#1"}, "sk": {"B": base64.b64encode(b"\x00").decode()}},
               "ExpressionAttributeValues": {":p": {"S": "P#1"}, ":b": {"B": base64.b64encode(BLOB).decode()}}}),
    ("Scan", {"TableName": "t", "Segment": 0, "TotalSegments": 2, "FilterExpression": "contains(events, :e)",
              "ExpressionAttributeValues": {":e": {"B": "AAE="}}}),
    ("BatchGetItem", {"RequestItems": {"t": {"Keys": [{"pk": {"S": "a"}, "sk": {"N": "1"}},
                                                      {"pk": {"S": "b"}, "sk": {"N": "2"}}]}}}),
    ("BatchWriteItem", {"RequestItems": {"t": [{"PutRequest": {"Item": ITEM}},
                                               {"DeleteRequest": {"Key": {"pk": {"S": "a"}, "sk": {"N": "1"}}}}]}}),
    ("TransactWriteItems", {"TransactItems": [
        {"Put": {"TableName": "t", "Item": ITEM, "ConditionExpression": "attribute_not_exists(pk)"}},
        {"Update": {"TableName": "t", "Key": {"pk": {"S": "a"}, "sk": {"N": "1"}}, "UpdateExpression": "SET b = :b",
                    "ExpressionAttributeValues": {":b": {"BS": ["AA==", "AQ=="]}}}},
        {"ConditionCheck": {"TableName": "t", "Key": {"pk": {"S": "a"}, "sk": {"N": "1"}},
                            "ConditionExpression": "attribute_exists(pk)"}}],
        "ClientRequestToken": "tok"}),
    ("TransactGetItems", {"TransactItems": [{"Get": {"TableName": "t", "Key": {"pk": {"S": "a"}, "sk": {"N": "1"}}}}]}),
    ("UpdateItem", {"TableName": "t", "Key": {"pk": {"S": "a"}, "sk": {"N": "1"}}, "ReturnValues": "ALL_NEW",
                    "UpdateExpression": "ADD n :one", "ExpressionAttributeValues": {":one": {"N": "1"}}}),
    ("DeleteItem", {"TableName": "t", "Key": {"pk": {"S": "a"}, "sk": {"N": "1"}}, "ReturnValues": "ALL_OLD"}),
    ("PutItem", {"TableName": "t", "Item": {"pk": {"S": "x", "N": "1"}}}),  # two types: moto keeps the shape's order
]


@pytest.mark.parametrize(("operation", "body"), REQUESTS, ids=[f"{i}-{op}" for i, (op, _) in enumerate(REQUESTS)])
def test_a_request_parsed_by_the_fast_path_is_what_motos_parser_gives(operation: str, body: dict):
    fast = moto_patches._plan(operation, "in")(json.loads(json.dumps(body)))
    assert moto_patches._typed(fast) == moto_patches._typed(_motos_parse(operation, body))


def test_the_request_plans_turn_blobs_into_bytes_and_drop_what_moto_drops():
    fast = moto_patches._plan("Query", "in")(json.loads(json.dumps(REQUESTS[2][1])))
    assert fast["ExclusiveStartKey"]["sk"] == {"B": b"\x00"}
    assert fast["ExpressionAttributeValues"][":b"]["B"] == BLOB
    assert "Select" not in fast and "Unknown" not in fast
    assert list(fast) == ["TableName", "Limit", "ExclusiveStartKey", "KeyConditionExpression",
                          "ExpressionAttributeValues"]  # the shape's order, as moto's parser


def _motos_body(operation: str, result: Any) -> str:
    from moto.core.serialize import JSONSerializer, XFormedAttributePicker
    from moto.core.utils import get_service_model

    model = get_service_model("dynamodb").operation_model(operation)
    picker = XFormedAttributePicker(response_transformers={})
    return JSONSerializer(model, value_picker=picker).serialize(result)["body"]


def _stored(item: dict) -> dict:
    """An item as DynamoResult hands it to the serializer (blobs as bytes)."""
    def value(v: dict) -> dict:
        (kind, inner), = v.items()
        if kind == "B":
            return {"B": base64.b64decode(inner)}
        if kind == "BS":
            return {"BS": [base64.b64decode(b) for b in inner]}
        if kind == "M":
            return {"M": {k: value(m) for k, m in inner.items()}}
        if kind == "L":
            return {"L": [value(m) for m in inner]}
        return {kind: inner}

    return {k: value(v) for k, v in item.items()}


CAPACITY = {"TableName": "t", "CapacityUnits": 1.0, "Table": {"CapacityUnits": 1.0}}
ANSWERS = [
    ("GetItem", {"Item": _stored(ITEM), "ConsumedCapacity": CAPACITY}),
    ("GetItem", {}),
    ("GetItem", None),
    ("Query", {"Items": [_stored(ITEM), _stored({"pk": {"S": "b"}})], "Count": 2, "ScannedCount": 7,
               "LastEvaluatedKey": {"pk": {"S": "b"}, "sk": {"B": b"\x00\xfe"}}}),
    ("Query", {"Items": [], "Count": 0, "ScannedCount": 0}),
    ("Scan", {"Items": [_stored(ITEM)], "Count": 1, "ScannedCount": 1, "ConsumedCapacity": None}),
    ("BatchGetItem", {"Responses": {"t": [_stored(ITEM)], "u": []},
                      "UnprocessedKeys": {"t": {"Keys": [{"pk": {"B": b"k"}}], "ConsistentRead": True}},
                      "ConsumedCapacity": [CAPACITY]}),
    ("BatchWriteItem", {"UnprocessedItems": {}, "ConsumedCapacity": [CAPACITY]}),
    ("PutItem", {"Attributes": _stored(ITEM), "ConsumedCapacity": {"TableName": "t", "CapacityUnits": 1}}),
    ("UpdateItem", {"Attributes": {"n": {"N": "3"}, "s": {"SS": ["x"]}, "b": {"B": "text is encoded too"}}}),
    ("DeleteItem", {"Attributes": {"z": {"NULL": True}, "list": {"L": [None, {"S": "a"}]}},
                    "ConsumedCapacityUnits": 0.5}),  # moto puts it there, the shape drops it
    ("GetItem", {"Item": {"pk": {"S": "a"}}, "table_name": "t"}),  # a key no member is read from
    ("TransactGetItems", {"Responses": [{"Item": _stored(ITEM)}, {}]}),
    ("TransactWriteItems", {}),
]


@pytest.mark.parametrize(("operation", "result"), ANSWERS, ids=[f"{i}-{op}" for i, (op, _) in enumerate(ANSWERS)])
def test_an_answer_written_by_the_fast_path_is_motos_body_byte_for_byte(operation: str, result: Any):
    written = {} if result is None else moto_patches._plan(operation, "out")(result)
    assert json.dumps(written) == _motos_body(operation, result)


@pytest.mark.parametrize("result", [
    {"Item": {"pk": {"S": "a"}}, "item": {}},  # a key moto's picker reads for the member Item (xform_name)
    {"Items": [{"pk": {"S": "a"}}], "ItemList": []},  # ... for Items (the name of its shape)
    {"Items": [{"pk": {"SS": {"a"}}}]},  # a set, not a list
    {"Item": {"pk": {"N": 5}}},  # moto's str() of a number
    {"Items": ({"pk": {"S": "a"}},)},  # a tuple, not a list
])
def test_what_the_fast_path_cannot_write_exactly_goes_to_moto(result: dict):
    operation = "Query" if "Items" in result else "GetItem"
    with pytest.raises(moto_patches._Slow):
        moto_patches._plan(operation, "out")(result)


def _table(ddb: Any) -> None:
    ddb.create_table(
        TableName="t", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}])


def _workload(ddb: Any) -> list[Any]:
    """Item operations of every kind, errors included; what the client was answered."""
    answers: list[Any] = []

    def call(name: str, **kwargs: Any) -> None:
        try:
            answers.append(getattr(ddb, name)(**kwargs))
        except ddb.exceptions.ClientError as e:
            answers.append(("error", e.response["Error"], e.response["ResponseMetadata"]["HTTPStatusCode"],
                            e.response.get("CancellationReasons"), e.response.get("Item")))
        except Exception as e:  # noqa: BLE001 — moto lets some errors out as Python exceptions
            answers.append(("raised", type(e).__name__, str(e)))

    item = {"pk": {"S": "P#1"}, "sk": {"N": "1"}, "seal": {"B": BLOB}, "events": {"BS": [b"\x00", b"\x01\x02"]},
            "nested": {"M": {"l": {"L": [{"N": "1"}, {"B": b"zz"}, {"NULL": True}]}}}}
    for i in range(12):
        call("put_item", TableName="t", Item={**item, "sk": {"N": str(i)}, "n": {"N": str(i % 4)}},
             ReturnConsumedCapacity="TOTAL")
    call("put_item", TableName="t", Item=item, ConditionExpression="attribute_not_exists(pk) OR n < :k",
         ExpressionAttributeValues={":k": {"N": "0"}}, ReturnValuesOnConditionCheckFailure="ALL_OLD")
    call("put_item", TableName="t", Item=item, ConditionExpression="attribute_not_exists(pk OR",
         ExpressionAttributeValues={":k": {"N": "0"}})
    call("put_item", TableName="nope", Item=item)
    call("get_item", TableName="t", Key={"pk": {"S": "P#1"}, "sk": {"N": "3"}}, ReturnConsumedCapacity="INDEXES")
    call("get_item", TableName="t", Key={"pk": {"S": "P#1"}, "sk": {"N": "99"}})
    call("get_item", TableName="t", Key={"pk": {"S": "P#1"}})
    query = {"TableName": "t", "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "P#1"}},
             "Limit": 5}
    call("query", **query)
    call("query", **query, ExclusiveStartKey=answers[-1]["LastEvaluatedKey"])
    call("query", **{**query, "ExpressionAttributeValues": {":p": {"S": "none"}}})
    call("query", TableName="t", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "P#1"}},
         Select="COUNT")
    call("scan", TableName="t", FilterExpression="contains(events, :e)", ExpressionAttributeValues={":e": {"B": b"\x00"}})
    call("batch_get_item", RequestItems={"t": {"Keys": [{"pk": {"S": "P#1"}, "sk": {"N": str(i)}} for i in (1, 2, 50)],
                                               "ProjectionExpression": "seal, nested"}}, ReturnConsumedCapacity="TOTAL")
    call("batch_write_item", RequestItems={"t": [{"PutRequest": {"Item": {**item, "sk": {"N": "40"}}}},
                                                 {"DeleteRequest": {"Key": {"pk": {"S": "P#1"}, "sk": {"N": "2"}}}}]})
    call("update_item", TableName="t", Key={"pk": {"S": "P#1"}, "sk": {"N": "3"}}, UpdateExpression="SET b = :b ADD n :one",
         ExpressionAttributeValues={":b": {"B": b"\x07"}, ":one": {"N": "1"}}, ReturnValues="ALL_NEW")
    call("delete_item", TableName="t", Key={"pk": {"S": "P#1"}, "sk": {"N": "4"}}, ReturnValues="ALL_OLD")
    call("transact_write_items", TransactItems=[
        {"Put": {"TableName": "t", "Item": {**item, "sk": {"N": str(100 + i)}},
                 "ConditionExpression": "attribute_not_exists(pk) OR n < :k",
                 "ExpressionAttributeValues": {":k": {"N": str(i)}}}} for i in range(5)])
    call("transact_write_items", TransactItems=[
        {"Put": {"TableName": "t", "Item": {**item, "sk": {"N": str(i)}, "n": {"N": "9"}},
                 "ConditionExpression": "attribute_not_exists(pk) OR n < :k",
                 "ExpressionAttributeValues": {":k": {"N": str(i)}}}} for i in range(5)])
    call("transact_get_items", TransactItems=[{"Get": {"TableName": "t", "Key": {"pk": {"S": "P#1"}, "sk": {"N": "1"}}}},
                                              {"Get": {"TableName": "t", "Key": {"pk": {"S": "P#1"}, "sk": {"N": "77"}}}}])
    call("scan", TableName="t")
    return answers


def _run(fast: bool) -> tuple[list[Any], list[tuple[int, bytes, str]]]:
    from moto import mock_aws
    from moto.dynamodb.comparisons import ConditionExpressionParser
    from moto.dynamodb.responses import DynamoHandler

    patched = {(DynamoHandler, "parse_parameters"), (DynamoHandler, "serialized"),
               (ConditionExpressionParser, "parse"), (ConditionExpressionParser, "_make_operand")}
    saved = {(owner, name): owner.__dict__[name] for owner, name in patched}
    raw: list[tuple[int, bytes, str]] = []
    try:
        if not fast:
            for (owner, name), method in saved.items():
                setattr(owner, name, method.__wrapped__)  # moto's own
        with mock_aws():
            ddb = boto3.client("dynamodb", region_name="ap-northeast-1")
            _table(ddb)

            def keep(http_response: Any, **_: Any) -> None:
                raw.append((http_response.status_code, http_response.content,
                            http_response.headers.get("x-amz-crc32")))

            ddb.meta.events.register("after-call.dynamodb", keep)
            return _workload(ddb), raw[1:]  # CreateTable is no item operation
    finally:
        for (owner, name), method in saved.items():
            setattr(owner, name, method)


def _without_request_ids(answers: list[Any]) -> list[Any]:
    return [a if isinstance(a, tuple) else {k: v for k, v in a.items() if k != "ResponseMetadata"} for a in answers]


def test_item_operations_through_the_fast_paths_answer_as_moto_does_byte_for_byte():
    before = dict(moto_patches.FAST_PATH_COUNTS)
    fast_answers, fast_raw = _run(fast=True)
    taken = {k: n - before.get(k, 0) for k, n in moto_patches.FAST_PATH_COUNTS.items()}
    motos_answers, motos_raw = _run(fast=False)
    assert _without_request_ids(fast_answers) == _without_request_ids(motos_answers)
    assert fast_raw == motos_raw  # status, body and checksum of every answer, errors included
    for status, body, crc in fast_raw:
        assert crc == str(binascii.crc32(body))
    assert any(a[0] == "error" and a[1]["Code"] == "ConditionalCheckFailedException" and a[4]
               for a in fast_answers if isinstance(a, tuple))
    assert any(a[0] == "error" and a[1]["Code"] == "TransactionCanceledException" for a in fast_answers
               if isinstance(a, tuple))
    assert any(a[0] == "error" and a[1]["Code"] == "ResourceNotFoundException" for a in fast_answers
               if isinstance(a, tuple))
    seal = next(a for a in fast_answers if isinstance(a, dict) and "Item" in a)["Item"]["seal"]["B"]
    assert seal == BLOB  # a blob comes back as it went in: not encoded twice, not handed over as bytes
    # the fast paths were taken (the test fails if they are removed): every item operation, both ways
    for operation in ("PutItem", "GetItem", "Query", "Scan", "BatchGetItem", "BatchWriteItem", "UpdateItem",
                      "DeleteItem", "TransactWriteItems", "TransactGetItems"):
        assert taken.get((operation, "in", "fast"), 0) > 0, operation
        assert taken.get((operation, "out", "fast"), 0) > 0, operation


# --- 13. condition expressions ---

CONDITION = "attribute_not_exists(pk) OR order_key < :k"


def _item(order_key: int) -> Any:
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    return Item(DynamoType({"S": "a"}), None, {"pk": {"S": "a"}, "order_key": {"N": str(order_key)}})


def test_one_condition_parsed_once_answers_each_calls_own_values(monkeypatch: pytest.MonkeyPatch):
    from moto.dynamodb.comparisons import ConditionExpressionParser, get_filter_expression

    if os.environ.get(moto_patches.SHADOW_ENV, "0") != "0":
        pytest.skip("the shadow mode parses every condition with moto's parser too")
    stored = _item(5)
    assert get_filter_expression(CONDITION, None, {":k": {"N": "7"}}).expr(stored) is True
    # from now on the expression must not be lexed again: the parse is the cached one
    monkeypatch.setattr(ConditionExpressionParser, "_lex_condition_expression",
                        lambda self: (_ for _ in ()).throw(AssertionError("parsed again")))
    answers = [get_filter_expression(CONDITION, None, {":k": {"N": str(k)}}).expr(stored) for k in (3, 7, 5, 6, 1, 9)]
    assert answers == [False, True, False, True, False, True]
    ops = [get_filter_expression(CONDITION, None, {":k": {"N": str(k)}}) for k in (2, 8)]
    assert [op.expr(stored) for op in ops] == [False, True]  # an earlier op keeps its own value
    assert get_filter_expression(CONDITION, None, {":k": {"N": "9"}}).expr(None) is True  # no item yet


def test_names_are_part_of_what_a_parse_is_kept_for():
    from moto.dynamodb.comparisons import get_filter_expression

    stored = _item(5)
    expression = "attribute_exists(#a) AND order_key < :k"
    assert get_filter_expression(expression, {"#a": "pk"}, {":k": {"N": "9"}}).expr(stored) is True
    assert get_filter_expression(expression, {"#a": "missing"}, {":k": {"N": "9"}}).expr(stored) is False


def _outcome(call: Any) -> Any:
    try:
        op = call()
    except Exception as e:  # noqa: BLE001 — the error is what is compared
        return ("raised", type(e), str(e))
    return ("op", repr(op))


@pytest.mark.parametrize(("expression", "names", "values"), [
    (CONDITION, None, {":j": {"N": "1"}}),  # the value is missing (after a good parse of the same expression)
    (CONDITION, None, None),
    (CONDITION, None, {":k": {}}),  # an empty attribute value
    ("order_key BETWEEN :a AND :b", None, {":a": {"NULL": True}, ":b": {"N": "1"}}),
    ("attribute_not_exists(pk OR order_key < :k", None, {":k": {"N": "1"}}),
    ("size < :k", None, {":k": {"N": "1"}}),
    ("attribute_exists(#n)", {"#m": "pk"}, None),
    ("((order_key < :k))", None, {":k": {"N": "1"}}),
    ("order_key <", None, None),
    ("", None, None),
])
def test_a_bad_condition_fails_as_in_moto_before_and_after_a_good_parse(expression, names, values):
    from moto.dynamodb.comparisons import ConditionExpressionParser

    def ours() -> Any:
        return ConditionExpressionParser(expression, names, values).parse()

    def motos() -> Any:
        return ConditionExpressionParser.parse.__wrapped__(ConditionExpressionParser(expression, names, values))

    expected = _outcome(motos)
    assert _outcome(ours) == expected  # first parse
    good_names = {"#n": "pk"} if names else None
    _outcome(lambda: ConditionExpressionParser(expression, good_names, {":k": {"N": "1"}, ":a": {"N": "0"},
                                                                          ":b": {"N": "2"}}).parse())
    assert _outcome(ours) == expected  # after the expression was parsed well once (the cached path)


def test_transaction_items_with_one_condition_get_their_own_verdicts():
    from moto import mock_aws

    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="ap-northeast-1")
        ddb.create_table(TableName="o", BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
        for i in range(0, 100, 2):  # even keys exist with order_key = i
            ddb.put_item(TableName="o", Item={"pk": {"S": f"k{i}"}, "order_key": {"N": str(i)}})

        def put(i: int, k: int) -> dict:
            return {"Put": {"TableName": "o", "Item": {"pk": {"S": f"k{i}"}, "order_key": {"N": str(k)}},
                            "ConditionExpression": CONDITION, "ExpressionAttributeValues": {":k": {"N": str(k)}}}}

        ddb.transact_write_items(TransactItems=[put(i, i + 1) for i in range(100)])  # every one newer: all pass
        with pytest.raises(ddb.exceptions.TransactionCanceledException) as refused:
            ddb.transact_write_items(TransactItems=[put(i, i + 2 if i % 3 else i) for i in range(100)])
        reasons = [r["Code"] for r in refused.value.response["CancellationReasons"]]
        assert reasons == ["ConditionalCheckFailed" if i % 3 == 0 else "None" for i in range(100)]
        assert ddb.get_item(TableName="o", Key={"pk": {"S": "k3"}})["Item"]["order_key"] == {"N": "4"}
