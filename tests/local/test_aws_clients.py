"""The functions' AWS clients: botocore's request check off in the product, on in the tests
(docs/decisions/0055-functions-skip-client-side-parameter-validation.md)."""

from __future__ import annotations

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ParamValidationError

from embedded_aws import runner
from jukinet.adapters import aws


@pytest.fixture
def fresh_clients(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-northeast-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    aws.reset_clients()
    yield monkeypatch
    aws.reset_clients()


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_):
        yield self.body


def _answer_locally(client, sent: list) -> None:
    """Answer every request of ``client`` with an empty 200 before it reaches the network."""
    def answer(request, **_):
        sent.append(request.body)
        return AWSResponse(request.url, 200, {"x-amzn-requestid": "local"}, _Raw(b"{}"))
    client.meta.events.register_first("before-send", answer)


def test_a_function_skips_the_check_and_the_test_suite_keeps_it(fresh_clients):
    fresh_clients.delenv(aws.VALIDATE_REQUESTS_VARIABLE)
    product, sent = aws.client("dynamodb"), []
    _answer_locally(product, sent)
    product.put_item(TableName="jukinet-x", Item={"pk": {"S": "a"}}, ReturnValues=7)  # not checked: sent
    assert len(sent) == 1 and b'"ReturnValues": 7' in sent[0]
    assert product.meta.config.retries["mode"] == "standard"  # the rest of the configuration kept

    fresh_clients.setenv(aws.VALIDATE_REQUESTS_VARIABLE, "1")
    checked = aws.client("dynamodb")
    assert checked is not product  # the setting is part of the cache key
    _answer_locally(checked, sent)
    with pytest.raises(ParamValidationError, match="ReturnValues"):
        checked.put_item(TableName="jukinet-x", Item={"pk": {"S": "a"}}, ReturnValues=7)
    assert len(sent) == 1


def test_under_the_suite_a_malformed_request_fails_before_it_is_sent(fresh_clients):
    # conftest sets the variable for the whole run; a request missing a required member (Item)
    # and carrying a mistyped one is refused by botocore, with nothing sent anywhere.
    fresh_clients.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(ParamValidationError, match="Item"):
        aws.client("dynamodb").put_item(TableName="jukinet-x", ReturnValues=7)


def test_the_local_runner_passes_the_setting_to_the_functions_it_runs():
    assert aws.VALIDATE_REQUESTS_VARIABLE in runner._HOST_VARIABLES
