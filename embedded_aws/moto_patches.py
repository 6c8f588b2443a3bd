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

12. **DynamoDB's item operations parsed with ``json.loads`` and answered with ``json.dumps``.**
   moto 5.2.5 walks every request and every answer through the botocore shape generically: for
   each attribute value of each item its parser visits all ten members of ``AttributeValue`` and
   its serializer asks an ``AttributePicker`` for each, trying up to six aliases per member (a
   100-item ``BatchGetItem`` answer: ~250 ms; 20 % of the server's CPU in the demo). For the ten
   item operations (``ITEM_OPERATIONS``) a plan is made once per operation from the same shapes,
   doing what moto's walkers do and nothing else: the shape's member order, ``None`` and unknown
   members dropped, blobs decoded to bytes in requests and encoded to base64 in answers (where
   moto does: never twice), numbers as moto converts them, the same content type and body text.
   A structure whose members an alias could confuse is left to moto, as is a result holding a key
   an alias could read, a value of a type the plan does not expect, a body that is not JSON, an
   error, any other operation (``DescribeTable``'s timestamps…): on any doubt moto's own path
   runs. ``tests/local/test_dynamodb_fast_paths.py`` compares both paths byte for byte
   (docs/decisions/0053-dynamodb-fast-paths-in-the-embedded-aws.md).
13. **A condition expression is parsed once per (expression, attribute names).** The syntax tree
   moto's ``ConditionExpressionParser`` builds depends only on those; the ``:values`` enter only
   as operands. moto parsed the same ``attribute_not_exists(pk) OR order_key < :k`` for each of a
   transaction's 100 items. Here the tree is kept, a missing value fails as in moto's lexer, and
   each call's operator tree is built fresh with that call's own values (no tree is shared, so no
   value leaks from one item to another); a parse that fails is not kept.

14. **Two per-request costs of moto's dispatch, done once.** moto 5.2.5's ``call_action`` lists the
   handler class's methods with ``inspect.getmembers`` on every request (to see whether the
   action is one), and ``_enrich_response`` runs a look-behind regex for ``<RequestId>`` over
   every answer body, JSON ones included (a 100-item ``BatchGetItem`` answer is ~100 KB). Here
   the method names are listed once per class (listed again if a class in its MRO gains or
   loses an attribute), and a text body without ``<RequestId>`` is not searched (moto's regex
   cannot match it); the response headers are still made by moto's own function. ~1.3 s of a
   demo's server CPU.

15. **One botocore loader for the server's process.** moto's backends ask a new
   ``boto3.Session`` for the available regions while they are imported (EC2's, for
   CloudFormation), and each new session made a loader of its own, which read and parsed
   botocore's ``endpoints.json`` and service models again: a server started in 1.15 s, in
   0.80 s with this (every end-to-end test module starts one; decision 0059). Here
   ``botocore.session.create_loader`` returns one loader per search path for the process, as
   the product (``jukinet.adapters.aws``) and the tests (``tests/conftest.py``) already share
   theirs; a loader only reads files, and caches them.

``JUKINET_MOTO_SHADOW=1`` (or a file name) runs moto's own path beside 12 and 13 and fails a
request whose answer differs (the proof of 0053; off by default).

``apply()`` makes corrections 1, 2, 5, 6, 9, 11, 12, 13 and 14, wherever moto runs (the in-process ``mock_aws`` tests
too); ``apply_server()`` all of them, for the servers (3, 4 and 7 serve deployments and the
runner, and importing moto's CloudFormation costs a process ~3 s; 8, 10 and 15 too). Both are idempotent.
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
    _fast_dynamodb_requests_and_answers()
    _conditions_parsed_once()
    _dispatch_costs_once()
    _APPLIED = True


def _dispatch_costs_once() -> None:
    """Correction 14: the handler's method names listed once per class; no ``<RequestId>``
    search in a body that holds none."""
    from moto.core import responses

    listed: dict[type, tuple[tuple[int, ...], Any]] = {}
    method_names_from_class = responses.method_names_from_class

    def method_names(clazz: Any) -> Any:
        shape = tuple(len(vars(c)) for c in clazz.__mro__)
        known = listed.get(clazz)
        if known is None or known[0] != shape:
            known = listed[clazz] = (shape, frozenset(method_names_from_class(clazz)))
        return known[1]

    enrich = responses.BaseResponse._enrich_response

    def enrich_response(headers: Any, body: Any) -> Any:
        if isinstance(body, str) and "<RequestId>" not in body:
            headers, _ = enrich(headers, "")  # the status and request-id headers, as moto makes them
            return headers, body
        return enrich(headers, body)

    method_names.__wrapped__ = method_names_from_class  # type: ignore[attr-defined]
    enrich_response.__wrapped__ = enrich  # type: ignore[attr-defined]
    responses.method_names_from_class = method_names
    responses.BaseResponse._enrich_response = staticmethod(enrich_response)  # type: ignore[method-assign]


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
    if not _APPLIED_SERVER:
        _one_botocore_loader()  # before apply(): moto's backends make sessions as they are imported
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


def _one_botocore_loader() -> None:
    import functools

    import botocore.session

    if not hasattr(botocore.session.create_loader, "cache_info"):  # the tests' process shares one already
        botocore.session.create_loader = functools.lru_cache(maxsize=None)(botocore.session.create_loader)


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


# --- 12. DynamoDB's item operations parsed with json.loads and answered with json.dumps ---

# The operations whose requests and answers hold items (and nothing else the fast path cannot
# handle: their shapes have no timestamps, documents or renamed members — checked when a plan
# is made). Every other DynamoDB operation (DescribeTable with its dates, the table and stream
# operations, PartiQL) keeps moto's own parser and serializer.
ITEM_OPERATIONS = frozenset({
    "GetItem", "PutItem", "DeleteItem", "UpdateItem", "Query", "Scan", "BatchGetItem",
    "BatchWriteItem", "TransactGetItems", "TransactWriteItems",
})
SHADOW_ENV = "JUKINET_MOTO_SHADOW"  # "1" or a file: run moto's path beside each fast path, fail on a difference


class _Slow(Exception):
    """The fast path cannot answer this one exactly: moto's own path does."""


_ABSENT = object()  # what moto's serializer leaves out (a structure that is None)
_PLANS: dict[tuple[str, str], Any] = {}  # (operation, "in" | "out") -> converter, or None: moto's path
# How often each path answered: ("GetItem", "in" | "out", "fast" | "moto") -> n (for the tests and the shadow runs)
FAST_PATH_COUNTS: dict[tuple[str, str, str], int] = {}


def _count(operation: str, direction: str, path: str) -> None:
    key = (operation, direction, path)
    FAST_PATH_COUNTS[key] = FAST_PATH_COUNTS.get(key, 0) + 1


def _plan(operation: str, direction: str) -> Any:
    key = (operation, direction)
    if operation not in ITEM_OPERATIONS:
        return None
    if key not in _PLANS:
        from moto.core.utils import get_service_model

        try:
            model = get_service_model("dynamodb").operation_model(operation)
            shape = model.input_shape if direction == "in" else model.output_shape
            _PLANS[key] = (_request_converter if direction == "in" else _response_converter)(shape, {})
        except _Slow:
            _PLANS[key] = None
    return _PLANS[key]


def _check_members(shape: Any, picked: bool) -> set[str]:
    """Refuse a document, a member written under another name and (``picked``: for moto's
    serializer) a structure one of whose members moto's AttributePicker could find under another
    member's key. Returns the keys the picker may try (the aliases of ``moto.core.serialize``: each
    member's name, its shape's name, its name less the structure's name or less ``dict``, and
    ``xform_name`` of each): in a dict whose keys are members or none of these, each member is
    read under its own key, and the other keys are never looked at (moto drops them)."""
    from botocore import xform_name

    if shape.is_document_type:
        raise _Slow(shape.name)
    members = shape.members
    candidates: set[str] = set()
    for name, member in members.items():
        if member.serialization.get("name", name) != name:
            raise _Slow(f"{shape.name}.{name}")
        if not picked:
            continue
        tried = {name}
        if member.type_name in ("list", "structure"):
            tried.add(member.name)
        for prefix in (shape.name, "dict"):
            if name.lower().startswith(prefix.lower()):
                tried.add(name[len(prefix):])
        tried |= {xform_name(key) for key in tried}
        if any(key != name and key in members for key in tried):
            raise _Slow(f"{shape.name}.{name}")
        candidates |= tried
    return candidates


def _request_converter(shape: Any, made: dict[str, Any]) -> Any:
    """What moto's JSON request parser (``moto.core.parse.BaseJSONParser``) does with a value
    of this shape, for the value ``json.loads`` gave; raises _Slow where it would not be exact."""
    import base64

    kind = shape.type_name
    if kind == "structure":
        if shape.name in made:
            return made[shape.name]
        _check_members(shape, picked=False)
        members: dict[str, tuple[int, str, Any]] = {}

        def structure(value: Any) -> Any:
            if value is None:
                return None
            if type(value) is not dict:
                raise _Slow("not an object")
            if len(value) == 1:  # most structures here: an AttributeValue ({"S": ...}); same result, no sort
                for key, member in value.items():
                    if key in members and member is not None:
                        return {key: members[key][2](member)}
                return {}
            found = [(members[key][0], key, value[key]) for key in value
                     if key in members and value[key] is not None]
            if len(found) > 1:
                found.sort(key=lambda entry: entry[0])  # moto's parser writes the shape's order
            return {key: members[key][2](member) for _, key, member in found}

        made[shape.name] = structure
        for index, (name, member) in enumerate(shape.members.items()):
            members[name] = (index, name, _request_converter(member, made))
        return structure
    if kind == "list":
        item = _request_converter(shape.member, made)

        def listed(value: Any) -> Any:
            if type(value) is not list:
                raise _Slow("not an array")
            return [item(member) for member in value]

        return listed
    if kind == "map":
        if shape.key.type_name != "string":
            raise _Slow(shape.name)
        entry = _request_converter(shape.value, made)

        def mapped(value: Any) -> Any:
            if type(value) is not dict:
                raise _Slow("not an object")
            return {key: entry(member) for key, member in value.items()}

        return mapped
    if kind == "blob":
        return base64.b64decode  # moto.core.parse.default_blob_parser
    if kind in ("integer", "long", "short", "byte"):
        return int
    if kind in ("float", "double"):
        return float
    if kind in ("string", "boolean"):
        return _same
    raise _Slow(kind)  # timestamps and anything else: moto's parser


def _same(value: Any) -> Any:
    return value


def _response_converter(shape: Any, made: dict[str, Any]) -> Any:
    """What moto's JSON serializer (``moto.core.serialize.BaseJSONSerializer`` with the
    ``XFormedAttributePicker``) writes for a value of this shape (``_ABSENT``: nothing); raises
    _Slow where it would not be exact (a key that is no member, a value of an unexpected type)."""
    import base64

    kind = shape.type_name
    if kind == "structure":
        if shape.name in made:
            return made[shape.name]
        aliases = _check_members(shape, picked=True)
        members: dict[str, tuple[int, Any]] = {}

        def structure(value: Any) -> Any:
            if value is None:
                return _ABSENT
            if type(value) is not dict:
                raise _Slow("not a dict")
            if len(value) == 1:  # most structures here: an AttributeValue; same result as below, no sort
                for key, member in value.items():
                    if key not in members:
                        if key in aliases:
                            raise _Slow(f"{key} may be read for a member")
                        return {}
                    written = _ABSENT if member is None else members[key][1](member)
                    return {} if written is _ABSENT else {key: written}
            found = []
            for key, member in value.items():
                if key not in members:
                    if key in aliases:
                        raise _Slow(f"{key} may be read for a member")
                    continue  # moto never looks at it: dropped
                if member is not None:
                    found.append((members[key][0], key, member))
            if len(found) > 1:
                found.sort(key=lambda entry: entry[0])
            out = {}
            for _, key, member in found:
                written = members[key][1](member)
                if written is not _ABSENT:
                    out[key] = written
            return out

        made[shape.name] = structure
        for index, (name, member) in enumerate(shape.members.items()):
            members[name] = (index, _response_converter(member, made))
        return structure
    if kind == "list":
        item = _response_converter(shape.member, made)

        def listed(value: Any) -> Any:
            if type(value) is not list:
                raise _Slow("not a list")
            out = []
            for member in value:
                written = item(member)
                out.append(None if written is _ABSENT else written)  # moto: the item itself (None)
            return out

        return listed
    if kind == "map":
        entry = _response_converter(shape.value, made)

        def mapped(value: Any) -> Any:
            if type(value) is not dict:
                raise _Slow("not a dict")
            out = {}
            for key, member in value.items():
                written = entry(member)
                if written is not _ABSENT:
                    out[key] = written
            return out

        return mapped
    if kind == "blob":
        def blob(value: Any) -> Any:
            if type(value) is str:
                value = value.encode("utf-8")
            elif type(value) is not bytes:
                raise _Slow("not bytes")
            return base64.b64encode(value).strip().decode("utf-8")

        return blob
    if kind == "string":
        def string(value: Any) -> Any:
            if value is None or type(value) is str:
                return value
            raise _Slow("not a str")  # moto: Enum values, str() of the rest

        return string
    if kind == "boolean":
        def boolean(value: Any) -> Any:
            if value is None or type(value) is bool:
                return value
            raise _Slow("not a bool")

        return boolean
    if kind in ("integer", "long"):
        return int
    if kind in ("float", "double"):
        return float
    raise _Slow(kind)


def _fast_dynamodb_requests_and_answers() -> None:
    import sys

    from moto import settings
    from moto.core.parse import PROTOCOL_PARSERS, JSONParser
    from moto.core.request import determine_request_protocol
    from moto.core.responses import ActionResult
    from moto.core.serialize import JSONSerializer, get_serializer_class
    from moto.core.utils import get_service_model
    from moto.dynamodb.responses import DynamoHandler, DynamoResult

    parse_parameters, serialized = DynamoHandler.parse_parameters, DynamoHandler.serialized
    shadow = _shadow_on()

    def fast_params(self: Any, request: Any) -> Any:
        plan = _plan(self._get_action(), "in")
        if plan is None or self.PROTOCOL_PARSER_MAP_TYPE is not dict or PROTOCOL_PARSERS.get("json") is not JSONParser:
            return _Slow
        if determine_request_protocol(get_service_model("dynamodb"), request.content_type) != "json":
            return _Slow
        body = request.data
        if not body:
            return _Slow
        try:
            parsed = plan(json.loads(body.decode("utf-8") if isinstance(body, bytes) else body))
        except Exception:  # noqa: BLE001 — _Slow, or bad JSON/base64: moto's parser answers (and raises) as before
            return _Slow
        return _Slow if parsed is None else parsed

    def fast_parse_parameters(self: Any, request: Any) -> None:
        params = fast_params(self, request)
        _count(self._get_action(), "in", "moto" if params is _Slow else "fast")
        if params is _Slow or shadow:
            parse_parameters(self, request)
        if params is not _Slow:
            if shadow:
                _shadow_check("request", self._get_action(), params, self.params, sys.stderr)
            self.params = params

    def fast_answer(self: Any, action_result: Any) -> Any:
        result = action_result.result
        if type(action_result) not in (ActionResult, DynamoResult) or isinstance(result, Exception):
            return _Slow
        plan = _plan(self._get_action(), "out")
        if plan is None or getattr(self, "RESPONSE_KEY_PATH_TO_TRANSFORMER", None):
            return _Slow
        service = get_service_model("dynamodb")
        if self.determine_response_protocol(service) != "json" \
                or get_serializer_class(service.service_name, "json") is not JSONSerializer:
            return _Slow
        try:
            written = {} if result is None else plan(result)
        except Exception:  # noqa: BLE001 — moto's serializer answers (and raises) as before
            return _Slow
        if written is _ABSENT:
            written = {}
        status = service.operation_model(self._get_action()).http.get("responseCode", 200)
        headers = {"Content-Type": "application/x-amz-json-" + service.metadata.get("jsonVersion", "1.0")}
        headers.update(self.response_headers)
        return status, headers, json.dumps(written, indent=4 if settings.PRETTIFY_RESPONSES else None)

    def fast_serialized(self: Any, action_result: Any) -> Any:
        answer = fast_answer(self, action_result)
        _count(self._get_action(), "out", "moto" if answer is _Slow else "fast")
        if answer is _Slow:
            return serialized(self, action_result)
        if shadow:
            _shadow_check("answer", self._get_action(), answer, serialized(self, action_result), sys.stderr)
        return answer

    fast_parse_parameters.__wrapped__ = parse_parameters  # type: ignore[attr-defined]
    fast_serialized.__wrapped__ = serialized  # type: ignore[attr-defined]
    DynamoHandler.parse_parameters = fast_parse_parameters  # type: ignore[method-assign]
    DynamoHandler.serialized = fast_serialized  # type: ignore[method-assign]


def _typed(value: Any) -> Any:
    """A value with its types and key order made visible, for the shadow comparison."""
    if isinstance(value, dict):
        return (type(value).__name__, [(key, _typed(member)) for key, member in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_typed(member) for member in value])
    return (type(value).__name__, value)


SHADOW_DIFFERENCES: list[str] = []
SHADOW_COMPARED: dict[str, int] = {}  # what -> comparisons made


def _shadow_file() -> str | None:
    import os

    value = os.environ.get(SHADOW_ENV, "")
    return value if value not in ("", "0", "1") else None


def _shadow_on() -> bool:
    import atexit
    import os
    import sys

    value = os.environ.get(SHADOW_ENV, "")
    if value in ("", "0"):
        return False
    if _shadow_file() and not SHADOW_COMPARED:
        import signal

        SHADOW_COMPARED["_"] = 0
        atexit.register(_shadow_report)
        # MotoServer stops its child with SIGTERM, which skips atexit: exit normally instead
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    return True


def _shadow_report() -> None:
    import os

    with open(_shadow_file(), "a") as out:  # type: ignore[arg-type]
        out.write(json.dumps({"pid": os.getpid(), "compared": SHADOW_COMPARED, "differences": len(SHADOW_DIFFERENCES),
                              "paths": {"/".join(k): n for k, n in FAST_PATH_COUNTS.items()}}) + "\n")


def _shadow_check(what: str, operation: str, fast: Any, slow: Any, stream: Any) -> None:
    SHADOW_COMPARED[what] = SHADOW_COMPARED.get(what, 0) + 1
    if _typed(fast) != _typed(slow):
        message = f"jukinet moto shadow: {operation} {what} differs\n fast: {fast!r}\n moto: {slow!r}"
        SHADOW_DIFFERENCES.append(message)
        print(message, file=stream, flush=True)
        if _shadow_file():
            with open(_shadow_file(), "a") as out:  # type: ignore[arg-type]
                out.write(json.dumps({"difference": message}) + "\n")
        raise AssertionError(message)


# --- 13. A condition expression parsed once per (expression, names), bound to each call's values ---

_CONDITIONS: dict[tuple[Any, ...], tuple[Any, tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {}
_CONDITIONS_MAX = 2048


def _conditions_parsed_once() -> None:
    import sys

    from moto.dynamodb.comparisons import ConditionExpressionParser

    parse, make_operand = ConditionExpressionParser.parse, ConditionExpressionParser._make_operand
    value_kind = ConditionExpressionParser.Kind.EXPRESSION_ATTRIBUTE_VALUE
    shadow = _shadow_on()

    def value_names(node: Any) -> list[str]:
        """The expression attribute values in the order moto's ``_parse_paths`` looks them up."""
        if node.kind == value_kind:
            return [node.text]
        return [name for child in node.children for name in value_names(child)]

    def recording_parse(self: Any) -> Any:
        """moto's ``parse`` up to the syntax tree (moto's own steps), remembered for the key."""
        nodes = self._lex_condition_expression()
        nodes = self._parse_paths(nodes)
        nodes = self._apply_functions(nodes)
        nodes = self._apply_comparator(nodes)
        nodes = self._apply_in(nodes)
        nodes = self._apply_between(nodes)
        nodes = self._apply_parens_and_booleans(nodes)
        node = nodes[0]
        self._assert_no_redundant_parentheses(node)
        return node

    def cached_parse(self: Any) -> Any:
        expression, names = self.condition_expression, self.expression_attribute_names
        if not expression or not isinstance(expression, str) or not (names is None or type(names) is dict):
            return parse(self)
        try:
            key = (expression, None if names is None else tuple(names.items()))
            hash(key)
        except TypeError:
            return parse(self)
        known = _CONDITIONS.get(key)
        if known is None:
            node = recording_parse(self)  # raises as moto's parse does: nothing is remembered then
            known = (node, tuple(value_names(node)), tuple(self._find_literals(node)),
                     tuple(self._find_expr_attr_values(node)))
            if len(_CONDITIONS) >= _CONDITIONS_MAX:
                _CONDITIONS.clear()
            _CONDITIONS[key] = known
        else:
            for name in known[1]:  # a value missing from this call's values fails as in moto's _parse_paths
                self._lookup_expression_attribute_value(name)
        node, _, names_found, values_found = known
        self.expr_attr_names_found.extend(names_found)
        self.expr_attr_values_found.extend(values_found)
        op = self._make_op_condition(node)  # operands take this call's values (bound_operand)
        if shadow:
            expected = parse(type(self)(expression, names, self.expression_attribute_values))
            _shadow_check("condition", expression, _op_tree(op), _op_tree(expected), sys.stderr)
        return op

    def bound_operand(self: Any, node: Any) -> Any:
        if node.kind == value_kind:
            from moto.dynamodb.comparisons import AttributeValue

            # moto: AttributeValue(node.value), node.value being this lookup made while lexing
            return AttributeValue(self._lookup_expression_attribute_value(node.text))
        return make_operand(self, node)

    cached_parse.__wrapped__ = parse  # type: ignore[attr-defined]
    bound_operand.__wrapped__ = make_operand  # type: ignore[attr-defined]
    ConditionExpressionParser.parse = cached_parse  # type: ignore[method-assign]
    ConditionExpressionParser._make_operand = bound_operand  # type: ignore[method-assign]


def _op_tree(op: Any) -> Any:
    """A condition's operator tree as plain data (types and attributes), for comparisons."""
    if isinstance(op, (list, tuple)):
        return [_op_tree(member) for member in op]
    if hasattr(op, "__dict__") and type(op).__module__.startswith("moto."):
        return (type(op).__name__, {key: _op_tree(value) for key, value in vars(op).items()})
    return _typed(op)
