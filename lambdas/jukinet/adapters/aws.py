"""One way to build boto3 clients: cached per service and endpoint, with standard retries.

``AWS_ENDPOINT_URL`` (set by the embedded AWS in local mode) is honoured by botocore
itself; it is part of the cache key so that a process can talk to a new endpoint.

The functions' clients skip botocore's client-side parameter validation: every request is
built by jukinet's code, never from a caller's input, and the service validates it again
(a malformed request is a ``ValidationException``, handled like any other AWS error). The
check cost 5 ms of CPU per 100-item transaction, about a fifth of a processing tier's
client time (docs/decisions/0055-functions-skip-client-side-parameter-validation.md). The
test suite turns it back on (``JUKINET_VALIDATE_AWS_REQUESTS=1``, tests/conftest.py), so a
request botocore's models refuse still fails a test even where the embedded AWS is lax.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config

from . import dynamodb_bodies

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=20)
VALIDATE_REQUESTS_VARIABLE = "JUKINET_VALIDATE_AWS_REQUESTS"


def validates_requests() -> bool:
    """Whether clients made now check each request against botocore's models first."""
    return os.environ.get(VALIDATE_REQUESTS_VARIABLE) == "1"


_observers: list[Callable[[str, str], None]] = []


def observe_calls(callback: Callable[[str, str], None]) -> Callable[[], None]:
    """Call ``callback(service, operation)`` before every AWS request (benchmarks, tests).
    Returns a function that stops the observation."""
    _observers.append(callback)
    return lambda: _observers.remove(callback)


def _notify(model: Any, **_: Any) -> None:
    for callback in _observers:
        callback(model.service_model.service_name, model.name)


# One loader of botocore's JSON models for the whole process: a new Session would otherwise
# parse them again (endpoints, partitions, retry rules and the service model, ~0.1 s for
# DynamoDB or S3) for every client: at every cold start, and for every test that resets clients.
_LOADER = botocore.loaders.create_loader()


def new_session() -> boto3.session.Session:
    """A boto3 session of its own (sessions are not shared between threads) that reads
    botocore's models through the process's one loader."""
    core = botocore.session.Session()
    core.register_component("data_loader", _LOADER)
    return boto3.session.Session(botocore_session=core)


@lru_cache(maxsize=64)
def _client(service: str, region: str | None, endpoint: str | None, validate: bool) -> Any:
    config = _CONFIG.merge(Config(parameter_validation=validate))
    made = new_session().client(service, region_name=region, config=config)
    made.meta.events.register("before-call", _notify)
    # DynamoDB bodies without botocore's shape walk (decision 0058); compared with botocore's
    # own on every request where requests are validated (the test suite).
    return dynamodb_bodies.install(made, shadow=validate)


def reset_clients() -> None:
    """Forget cached clients (a test that starts a new embedded AWS)."""
    _client.cache_clear()


def client(service: str) -> Any:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return _client(service, region, os.environ.get("AWS_ENDPOINT_URL"), validates_requests())


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError, or '' for anything else."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def query_all(**kwargs: Any) -> list[dict]:
    """Every item of a DynamoDB Query, following ``LastEvaluatedKey``."""
    ddb = client("dynamodb")
    items: list[dict] = []
    while True:
        response = ddb.query(**kwargs)
        items.extend(response["Items"])
        if "LastEvaluatedKey" not in response:
            return items
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


_BATCH_GET_LIMIT = 100
_BATCH_WRITE_LIMIT = 25


def batch_get_all(table: str, keys: list[dict], projection: str | None = None,
                  names: dict[str, str] | None = None) -> list[dict]:
    """Every item of ``keys`` (duplicates removed) that exists in ``table``: consistent
    BatchGetItem 100 keys at a time, following ``UnprocessedKeys``. ``names``: the
    projection's ``ExpressionAttributeNames`` (for a reserved word such as ``status``)."""
    return batch_get_tables({table: keys}, projection=projection, names=names)[table]


def batch_get_tables(keys_by_table: Mapping[str, list[dict]], projection: str | None = None,
                     names: dict[str, str] | None = None) -> dict[str, list[dict]]:
    """Per table, every item of its keys (duplicates removed) that exists: the tables' keys
    read *together*, consistent BatchGetItem of up to 100 keys in all (one request may
    span several tables, in the order given), following ``UnprocessedKeys``. Every table
    of ``keys_by_table`` is in the answer, an empty list when nothing was found; a projection
    applies to every table."""
    ddb = client("dynamodb")
    pending = [(table, key) for table, keys in keys_by_table.items()
               for key in {json.dumps(k, sort_keys=True): k for k in keys}.values()]
    found: dict[str, list[dict]] = {table: [] for table in keys_by_table}
    for start in range(0, len(pending), _BATCH_GET_LIMIT):
        request: dict = {}
        for table, key in pending[start:start + _BATCH_GET_LIMIT]:
            if table not in request:
                request[table] = {"Keys": [], "ConsistentRead": True}
                if projection:
                    request[table]["ProjectionExpression"] = projection
                if names:
                    request[table]["ExpressionAttributeNames"] = names
            request[table]["Keys"].append(key)
        while request:
            response = ddb.batch_get_item(RequestItems=request)
            for table, items in response.get("Responses", {}).items():
                found[table].extend(items)
            request = response.get("UnprocessedKeys") or {}
    return found


def batch_put_all(table: str, items: list[dict]) -> None:
    """Unconditional puts, 25 to a BatchWriteItem, retrying ``UnprocessedItems`` with backoff."""
    ddb = client("dynamodb")
    for start in range(0, len(items), _BATCH_WRITE_LIMIT):
        request = {table: [{"PutRequest": {"Item": i}} for i in items[start:start + _BATCH_WRITE_LIMIT]]}
        for attempt in range(8):
            unprocessed = ddb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
            if not unprocessed:
                break
            request = unprocessed
            time.sleep(min(0.05 * 2 ** attempt, 2.0))
        else:
            raise RuntimeError(f"{table}: BatchWriteItem left items unprocessed after retries")


TRANSACTION_ITEMS = 100  # DynamoDB's limit per TransactWriteItems


def transact_write(items: list[dict]) -> list[tuple[str | None, dict | None]] | None:
    """One TransactWriteItems: ``None`` if it committed, else per item the cancellation code
    (``None`` for an item that did not cause it) and the stored item when the request asked
    for it (``ReturnValuesOnConditionCheckFailure``). Without per-item reasons every item is
    reported as ``TransactionConflict``: try it again."""
    try:
        client("dynamodb").transact_write_items(TransactItems=items)
    except Exception as exc:
        if error_code(exc) != "TransactionCanceledException":
            raise
        reasons = (getattr(exc, "response", None) or {}).get("CancellationReasons") or []
        if len(reasons) != len(items):
            return [("TransactionConflict", None)] * len(items)
        return [(None if r.get("Code") in (None, "None") else r.get("Code"), r.get("Item")) for r in reasons]
    return None
