"""Corrections to the embedded AWS (moto), applied wherever moto runs for jukinet:
the server child process (``python -m embedded_aws.moto_server``), the thread mode of
``MotoServer`` and the in-process ``mock_aws`` tests and benchmarks.

1. **TransactWriteItems in time proportional to the transaction, not the table.** moto
   5.2.5 (the newest release) deep-copies the *whole table* once per item of every
   transaction so that it can roll back: 100 items on a table of 10,000 items took 79 s
   (docs/decisions/0021-identity-store-transactions.md). Here only the items the
   transaction touches are remembered and restored; the checks, the cancellation reasons
   and the writes are moto's own (a Put's or Delete's condition is checked once, not again
   by the write it guards).
2. **Writes are atomic.** moto evaluates a condition and then writes, with no lock, so two
   threads' conditional writes to one item can interleave (both pass the check) — DynamoDB
   never lets that happen, and a transaction is all-or-nothing. One lock serialises the
   backend's writes (PutItem, UpdateItem, DeleteItem, TransactWriteItems), so concurrency
   tests of the ordering rule test the rule, not the emulator.
3. **CloudFormation reads a JSON template as JSON.** moto 5.2.5 parses every template body
   with PyYAML's pure-Python loader first (JSON being YAML) and falls back to ``json`` only
   when that fails. The CDK writes JSON; the Nagano assembly's five stacks took 9.5 s of a
   25 s deployment in that loader, per deployment (every e2e module deploys once). Here a
   body is tried as JSON first and only a body that is not JSON goes to moto's YAML path —
   what CloudFormation itself does.
4. **A generation counter per bucket**, so the local runner can tell which buckets got a
   new object without listing them all. moto delivers no S3 event notifications to
   functions, so the runner finds new objects by listing every notified bucket — 85 in
   the Nagano assembly, ~27 ms each, twice per round of ``run_until_idle``. Every object
   moto stores (``PutObject``, ``CopyObject``, a completed multipart upload — the last two
   go through ``put_object``) increments its bucket's counter; ``GET
   /_jukinet/s3-object-generations`` answers ``{"<account>/<bucket>": n}``. Nothing else
   changes: a server without this route makes the runner list every bucket, as before.

5. **No RSA key for a key that has none.** moto 5.2.5 generates a 2048-bit RSA private key
   for every KMS key it creates, symmetric and HMAC keys included (where AWS has no private
   key and refuses ``Sign``/``GetPublicKey``): 0.1–0.2 s of CPU per ``CreateKey``. A
   deployment creates dozens of keys, every in-process test world several. Here such a key's
   RSA key is made only if something asks for it (moto's own ``Sign``/``GetPublicKey`` paths,
   which then behave as before); keys with a key pair (RSA, ECC) are made at once as before.

6. **A Query reads its partition, not the whole table.** moto 5.2.5 answers every Query by
   sorting *all* the table's items (``Table.all_items``) and then keeping those of the
   partition (or, on an index, those with the index's key), although it sorts what it keeps
   again afterwards. On the demo's tables of ~20,000 items that was a third of the embedded
   AWS's CPU during the tiers' step (profile of ``jukinet demo``, 2026-12-04). Here, during a
   Query, a query of the table's own key gets the partition's items only and an index query
   the items unsorted; moto's own filtering, sorting, paging and limits then run unchanged,
   so the answer is the same (``tests/local/test_server.py`` compares both).

7. **moto's package directory is listed once, not on every request.** The server's dispatcher
   asks ``moto.backends.list_of_moto_modules()`` for every request's host, and that lists
   moto's package directory and stats each entry (~2 % of the server's time in the demo).
   The listing cannot change while the process runs; here it is made once.

8. **The depth of every queue in one request**, so the local runner polls only the queues
   that hold something. Since decision 0051 every drop zone notifies its CS's inbox queue
   (moto's S3 sends the events itself), so the Nagano assembly has ~80 mapped queues; asking
   each for messages and each mapping's function for its hold every round cost more than the
   work. ``GET /_jukinet/sqs-queue-depths`` answers ``{"<queue ARN>": n}`` for each queue
   holding n > 0 messages (visible, in flight or delayed). Read only; a server without the
   route makes the runner poll every mapping, as before.

9. **A role's inline policy from a template is kept as JSON.** moto 5.2.5 creates an
   ``AWS::IAM::Role``'s ``Policies`` with the template's parsed document (a dict), which
   ``GetRolePolicy`` then answers as Python's ``repr`` — not JSON, so no client can read it
   (the checklist's EDGE-1 reads the drop-zone writers' inline policy, decision 0051). Here a
   document that is not a string is stored as JSON text, as ``PutRolePolicy`` stores one.

10. **Connections are kept open between requests.** Werkzeug's development server, which
   moto's server is, answers every request with ``Connection: close`` (its comment: Python's
   ``http.server`` does not drain an unread request body before the next request line), so
   every AWS call of the demo opened a TCP connection and the server started a thread for it
   (the profile of ``jukinet demo``, 2026-12-04: a connect per call in the client, thread start
   and socket set-up in the server). Here a request with a ``Content-Length`` (or none: no
   body) is answered without that header when its response has a ``Content-Length``, and what
   the application left unread of its body is read and dropped before the next request; a
   chunked request, a client's ``Connection: close`` or a response without a length closes the
   connection as before. Idle connections end with the client's pool or the server. (Nagle's
   algorithm is off on the server's sockets, or each reused connection's response would wait
   for the client's delayed ACK.)

11. **An item is built in time proportional to its size.** moto 5.2.5 builds each stored item
   attribute by attribute into a dict that checks the 400 KB limit on every insertion by
   summing the sizes of *all* attributes already there (quadratic in the attributes; ~5 % of
   the embedded AWS's CPU in the demo). Here the attributes are converted, their sizes summed
   once and the same limit applied to the total — the same answer, since a prefix of the sum
   is over the limit only if the whole is.

``apply()`` makes corrections 1, 2, 5, 6, 9 and 11, wherever moto runs (the in-process ``mock_aws`` tests
too); ``apply_server()`` all of them, for the servers (3, 4 and 7 serve deployments and the
runner, and importing moto's CloudFormation costs a process ~3 s; 8 and 10 too). Both are idempotent.
"""

from __future__ import annotations

import copy
import json
import threading
from typing import Any

_LOCK = threading.RLock()
_APPLIED = False
_APPLIED_SERVER = False


def apply() -> None:
    global _APPLIED
    if _APPLIED:
        return
    from moto.dynamodb.models import DynamoDBBackend

    for name in ("put_item", "update_item", "delete_item"):
        setattr(DynamoDBBackend, name, _locked(getattr(DynamoDBBackend, name)))
    DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]
    _no_rsa_key_for_symmetric_keys()
    _inline_role_policies_as_json()
    _query_reads_its_partition()
    _items_built_in_linear_time()
    _APPLIED = True


def _items_built_in_linear_time() -> None:
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
    from moto.dynamodb.models.utilities import bytesize

    def init(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
        self.hash_key, self.range_key = hash_key, range_key
        converted = {key: DynamoType(value) for key, value in attrs.items()}
        if sum(bytesize(key) + value.size() for key, value in converted.items()) > 405000:  # moto's limit
            raise ItemSizeTooLarge
        self.attrs = LimitedSizeDict(converted)  # dict.update: no check per attribute

    init.__wrapped__ = Item.__init__  # type: ignore[attr-defined]
    Item.__init__ = init  # type: ignore[method-assign]


_QUERY = threading.local()  # (table, hash key or None) while that table answers a Query on this thread


def _query_reads_its_partition() -> None:
    import inspect

    from moto.dynamodb.models.table import Table

    all_items, query = Table.all_items, Table.query
    signature = inspect.signature(query)

    def items_for_query(self: Any) -> list[Any]:
        scope = getattr(_QUERY, "scope", None)
        if scope is None or scope[0] is not self:
            return all_items(self)
        hash_key = scope[1]
        if hash_key is not None:
            partitions = [self.items[hash_key]] if hash_key in self.items else []
        else:
            partitions = list(self.items.values())
        if not self.range_key_attr:
            return partitions
        return [item for partition in partitions for item in partition.values()]

    def partition_query(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs).arguments
        own_key = None if bound.get("index_name") else bound.get("hash_key")
        outer = getattr(_QUERY, "scope", None)
        _QUERY.scope = (self, own_key)
        try:
            return query(self, *args, **kwargs)
        finally:
            _QUERY.scope = outer

    items_for_query.__wrapped__ = all_items  # type: ignore[attr-defined]
    partition_query.__wrapped__ = query  # type: ignore[attr-defined]
    Table.all_items = items_for_query  # type: ignore[method-assign]
    Table.query = partition_query  # type: ignore[method-assign]


class _KeyPairOnDemand:
    """Stands for moto's private key of a symmetric or HMAC KMS key; made on first use."""

    def __init__(self, make: Any) -> None:
        self.__dict__["_make"] = make
        self.__dict__["_made"] = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if self.__dict__["_made"] is None:
            self.__dict__["_made"] = self.__dict__["_make"]()
        return getattr(self.__dict__["_made"], name)


def _no_rsa_key_for_symmetric_keys() -> None:
    from moto.kms import models
    from moto.kms.utils import KeySpec

    original = models.generate_private_key
    with_pair = set(KeySpec.rsa_key_specs()) | set(KeySpec.ecc_key_specs())

    def generate_private_key(key_spec: str) -> Any:
        if key_spec in with_pair:
            return original(key_spec)
        return _KeyPairOnDemand(lambda: original(key_spec))

    models.generate_private_key = generate_private_key


def _inline_role_policies_as_json() -> None:
    from moto.iam.models import Role

    put_policy = Role.put_policy

    def put_policy_as_json(self: Any, policy_name: str, policy_json: Any) -> None:
        put_policy(self, policy_name, policy_json if isinstance(policy_json, str) else json.dumps(policy_json))

    put_policy_as_json.__wrapped__ = put_policy  # type: ignore[attr-defined]
    Role.put_policy = put_policy_as_json  # type: ignore[method-assign]


def apply_server() -> None:
    """Every correction: for a moto server (the child process, ``MotoServer``'s thread mode)."""
    global _APPLIED_SERVER
    apply()
    if _APPLIED_SERVER:
        return
    _parse_json_templates_as_json()
    _count_object_generations()
    _list_moto_modules_once()
    _keep_connections_open()
    _APPLIED_SERVER = True


class _BodyReader:
    """The request's body: at most its ``Content-Length`` bytes of the connection's stream, so
    that neither the application nor werkzeug's drain after the response reads the next request."""

    def __init__(self, stream: Any, length: int) -> None:
        self.stream, self.left = stream, length

    def _size(self, n: int | None) -> int:
        return self.left if n is None or n < 0 else min(n, self.left)

    def read(self, n: int | None = -1) -> bytes:
        data = self.stream.read(self._size(n)) if self.left else b""
        self.left -= len(data)
        return data

    read1 = read

    def readline(self, n: int | None = -1) -> bytes:
        data = self.stream.readline(self._size(n)) if self.left else b""
        self.left -= len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readlines(self, *args: Any) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Any:
        return iter(self.readline, b"")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _keep_connections_open() -> None:
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    run_wsgi, send_header = MotoRequestHandler.run_wsgi, MotoRequestHandler.send_header

    def keeping_run_wsgi(self: Any) -> None:
        length = self.headers.get("Content-Length")
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        self._jukinet_keep = (not chunked and self.request_version == "HTTP/1.1"
                              and (length is None or length.strip().isdigit()))
        self._jukinet_length_sent = False
        if not self._jukinet_keep:
            return run_wsgi(self)
        rfile = self.rfile
        self.rfile = body = _BodyReader(rfile, int(length) if length else 0)
        try:
            run_wsgi(self)
        finally:
            self.rfile = rfile
        while body.left > 0 and not self.close_connection:  # what the application left unread
            if not body.read(65536):
                self.close_connection = True

    def keeping_send_header(self: Any, keyword: str, value: str) -> None:
        if keyword.lower() == "content-length":
            self._jukinet_length_sent = True
        if keyword.lower() == "connection" and value.lower() == "close" \
                and getattr(self, "_jukinet_keep", False) and self._jukinet_length_sent:
            return  # keep-alive: the request body is drained after the response (keeping_run_wsgi)
        send_header(self, keyword, value)

    # A response goes out as two writes (headers, body): with Nagle's algorithm on, the second
    # waits for the client's delayed ACK (~40 ms) once the connection is reused.
    MotoRequestHandler.disable_nagle_algorithm = True
    MotoRequestHandler.run_wsgi = keeping_run_wsgi  # type: ignore[method-assign]
    MotoRequestHandler.send_header = keeping_send_header  # type: ignore[method-assign]


def _list_moto_modules_once() -> None:
    from moto import backends

    listed = tuple(backends.list_of_moto_modules())

    def list_of_moto_modules() -> tuple[str, ...]:
        return listed

    list_of_moto_modules.__wrapped__ = backends.list_of_moto_modules  # type: ignore[attr-defined]
    backends.list_of_moto_modules = list_of_moto_modules  # type: ignore[assignment]


GENERATIONS_PATH = "/_jukinet/s3-object-generations"
QUEUE_DEPTHS_PATH = "/_jukinet/sqs-queue-depths"
_GENERATIONS: dict[str, int] = {}


def _queue_depths() -> dict[str, int]:
    from moto.sqs.models import sqs_backends

    depths: dict[str, int] = {}
    for account in list(dict.values(sqs_backends)):
        for backend in list(dict.values(account)):
            for queue in list(backend.queues.values()):
                n = len(queue._messages)
                if n:
                    depths[queue.queue_arn] = n
    return depths


def _count_object_generations() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication
    from moto.s3.models import S3Backend

    put_object = S3Backend.put_object

    def counted_put_object(self: Any, bucket_name: str, *args: Any, **kwargs: Any) -> Any:
        key = put_object(self, bucket_name, *args, **kwargs)
        with _LOCK:
            name = f"{self.account_id}/{bucket_name}"
            _GENERATIONS[name] = _GENERATIONS.get(name, 0) + 1
        return key

    counted_put_object.__wrapped__ = put_object  # type: ignore[attr-defined]
    S3Backend.put_object = counted_put_object  # type: ignore[method-assign]

    dispatch = DomainDispatcherApplication.__call__

    def call(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO")
        if path in (GENERATIONS_PATH, QUEUE_DEPTHS_PATH) and environ.get("REQUEST_METHOD") == "GET":
            if path == GENERATIONS_PATH:
                with _LOCK:
                    body = json.dumps(_GENERATIONS).encode()
            else:
                body = json.dumps(_queue_depths()).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return dispatch(self, environ, start_response)

    call.__wrapped__ = dispatch  # type: ignore[attr-defined]
    DomainDispatcherApplication.__call__ = call  # type: ignore[method-assign]


def _parse_json_templates_as_json() -> None:
    from moto.cloudformation.models import Stack

    yaml_first = Stack.parse_template

    def parse_template(template: str) -> dict[str, Any]:
        try:
            parsed = json.loads(template)
        except (TypeError, ValueError):
            return yaml_first(template)
        return parsed if isinstance(parsed, dict) else yaml_first(template)

    parse_template.__wrapped__ = yaml_first  # type: ignore[attr-defined]
    Stack.parse_template = staticmethod(parse_template)  # type: ignore[method-assign,assignment]


def _locked(method):
    def locked(self, *args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return method(self, *args, **kwargs)

    locked.__wrapped__ = method  # type: ignore[attr-defined]
    locked.__name__ = method.__name__
    return locked


def _key_of(backend: Any, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type != "Put":
        return op["Key"]
    table = backend.get_table(op["TableName"])
    attrs = op["Item"]
    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = attrs[table.range_key_attr]
    return key


def _transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
    """moto 5.2.5's ``DynamoDBBackend.transact_write_items`` with a per-item rollback."""
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import (
        ConditionalCheckFailed,
        MockValidationException,
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )

    with _LOCK:
        if len(transact_items) > 100:
            raise TooManyTransactionsException()
        before: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []  # (table, key, item JSON or None)
        remembered: set[tuple[str, str]] = set()

        def remember(table_name: str, key: dict[str, Any]) -> None:
            marker = (table_name, str(sorted(key.items())))
            if marker in remembered:
                return
            remembered.add(marker)
            item = self.get_item(table_name, key)
            before.append((table_name, key, None if item is None else copy.deepcopy(item.to_json()["Attributes"])))

        def rollback() -> None:
            for table_name, key, attrs in reversed(before):
                table = self.get_table(table_name)
                hash_value, range_value = self.get_keys_value(table, key)
                if attrs is None:
                    if table.get_item(hash_value, range_value) is not None:
                        table.delete_item(hash_value, range_value)
                else:
                    table.put_item(attrs)

        target_items: set[tuple[str, str]] = set()

        def check_unicity(table_name: str, key: dict[str, Any]) -> None:
            item = (str(table_name), str(dict(sorted(key.items()))))
            if item in target_items:
                raise MultipleTransactionsException()
            target_items.add(item)

        errors: list[tuple[Any, Any, Any]] = []
        for item in transact_items:
            original_item: dict[str, Any] | None = None
            if len(list(item.keys())) > 1:
                raise TransactWriteSingleOpException
            try:
                op_type, op = next(iter(item.items()))
                if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                    raise ValueError("Unsupported transaction operation")
                table_name = op["TableName"]
                condition_expression = op.get("ConditionExpression")
                names = op.get("ExpressionAttributeNames")
                values = op.get("ExpressionAttributeValues")
                key = _key_of(self, op_type, op)
                check_unicity(table_name, key)
                current = self.get_item(table_name, key)
                if condition_expression is not None:
                    condition_op = get_filter_expression(condition_expression, names, values)
                    if not condition_op.expr(current):
                        if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                            original_item = current.to_json()["Attributes"]
                        raise ConditionalCheckFailed(item=original_item)
                if op_type != "ConditionCheck":
                    remember(table_name, key)
                # The condition was checked just above, on the same item, under the same lock:
                # moto's put/delete would parse and check it again (half the transaction's parsing).
                if op_type == "Put":
                    self.put_item(table_name, op["Item"])
                elif op_type == "Delete":
                    self.delete_item(table_name, key)
                elif op_type == "Update":
                    self.update_item(table_name, key, update_expression=op["UpdateExpression"],
                                     condition_expression=condition_expression,
                                     expression_attribute_names=names, expression_attribute_values=values)
                errors.append((None, None, None))
            except (MultipleTransactionsException, MockValidationException):
                rollback()
                raise
            except ConditionalCheckFailed as e:
                errors.append(("ConditionalCheckFailed", str(e.message), original_item))
            except Exception as e:  # noqa: BLE001 — as moto: every other failure is a cancellation reason
                errors.append((type(e).__name__, str(e), original_item))
        if any(code is not None for code, _, _ in errors):
            rollback()
            raise TransactionCanceledException(errors)
