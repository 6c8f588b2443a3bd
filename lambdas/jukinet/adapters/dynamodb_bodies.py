"""DynamoDB request bodies written without botocore's shape walk (decision 0058).

botocore's JSON serializer builds a request body by visiting every value of the request
through its shape: a method looked up by name, and a wrapper dict, for each attribute of
each item. For DynamoDB that walk changes nothing but the blobs (``B``, ``BS``: base64):
the bodies are the request itself. A 100-item ``TransactWriteItems`` spent more time there
than anywhere else in a processing tier's own code (measured in
docs/decisions/0058-dynamodb-request-bodies-without-the-shape-walk.md).

``FastBodies`` wraps a DynamoDB client's serializer: for the item operations it converts
only the members whose shapes can hold a blob, following plans made once from the same
botocore shapes, and leaves every other value as it is (the same order, the same JSON).
Everything else — the method, the headers, the target — is still botocore's, made for an
empty request. An operation whose input could hold a timestamp, a float, a document or a
renamed member has no plan and goes through botocore entirely.

``shadow=True`` (the test suite: ``JUKINET_VALIDATE_AWS_REQUESTS=1``) serializes every
request both ways and raises ``BodyMismatch`` when the bodies differ, so the whole suite is
the proof that nothing the product sends changed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

# The item operations jukinet sends (and their siblings): every other operation is botocore's own.
OPERATIONS = frozenset({"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem",
                        "BatchWriteItem", "TransactWriteItems", "TransactGetItems"})

Convert = Callable[[Any], Any]
_UNSUPPORTED = frozenset({"timestamp", "float", "double"})


class BodyMismatch(AssertionError):
    """The fast body differs from botocore's (shadow mode)."""


class _NoPlan(Exception):
    pass


def _blob(value: Any) -> str:
    """botocore's ``Serializer._get_base64``."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    return base64.b64encode(value).strip().decode("utf-8")


def _plan(shape: Any, plans: dict[str, Convert | None], building: set[str]) -> Convert | None:
    """The conversion of a value of ``shape``; ``None`` when the value is sent as it is."""
    name = shape.name
    if name in plans:
        return plans[name]
    if shape.type_name in _UNSUPPORTED or getattr(shape, "is_document_type", False):
        raise _NoPlan(name)
    if shape.type_name == "blob":
        plans[name] = _blob
        return _blob
    if shape.type_name not in ("structure", "map", "list"):
        plans[name] = None
        return None
    if name in building:
        # A recursive shape (AttributeValue → M → AttributeValue): its conversion is looked up
        # when it runs, once the plan is made.
        return lambda value: plans[name](value) if plans[name] else value  # type: ignore[misc]
    building.add(name)
    plan: Convert | None
    if shape.type_name == "structure":
        converted = []
        for member, member_shape in shape.members.items():
            if "name" in member_shape.serialization:
                raise _NoPlan(f"{name}.{member}")
            member_plan = _plan(member_shape, plans, building)
            if member_plan is not None:
                converted.append((member, member_plan))
        plan = _structure(tuple(converted)) if converted else None
    elif shape.type_name == "map":
        value_plan = _plan(shape.value, plans, building)
        plan = (lambda value, p=value_plan: {k: p(v) for k, v in value.items()}) if value_plan else None
    else:
        member_plan = _plan(shape.member, plans, building)
        plan = (lambda value, p=member_plan: [p(v) for v in value]) if member_plan else None
    building.discard(name)
    plans[name] = plan
    return plan


def _structure(converted: tuple[tuple[str, Convert], ...]) -> Convert:
    plans = dict(converted)

    def convert(value: dict) -> dict:
        out = None
        for member in value:  # a value holds few of its shape's members (an AttributeValue: one)
            plan = plans.get(member)
            if plan is not None:
                if out is None:
                    out = dict(value)  # the same keys in the same order
                out[member] = plan(value[member])
        return value if out is None else out
    return convert


class FastBodies:
    """A DynamoDB client's serializer (``client._serializer``) with the item operations' bodies
    made from plans; anything without a plan is the wrapped serializer's."""

    def __init__(self, inner: Any, *, shadow: bool = False) -> None:
        self.inner = inner
        self.shadow = shadow
        self._plans: dict[str, tuple[bool, Convert | None]] = {}
        self.fast = 0  # requests whose body was made here (tests)

    def _operation_plan(self, operation_model: Any) -> tuple[bool, Convert | None]:
        name = operation_model.name
        if name not in self._plans:
            shape = operation_model.input_shape
            if name not in OPERATIONS or shape is None or operation_model.metadata.get("protocol") != "json":
                self._plans[name] = (False, None)
            else:
                try:
                    self._plans[name] = (True, _plan(shape, {}, set()))
                except _NoPlan:
                    self._plans[name] = (False, None)
        return self._plans[name]

    def serialize_to_request(self, parameters: dict, operation_model: Any) -> dict:
        planned, plan = self._operation_plan(operation_model)
        if not planned:
            return self.inner.serialize_to_request(parameters, operation_model)
        serialized = self.inner.serialize_to_request({}, operation_model)
        body = plan(parameters) if plan is not None else parameters
        serialized["body"] = json.dumps(body).encode("utf-8")
        self.fast += 1
        if self.shadow:
            expected = self.inner.serialize_to_request(parameters, operation_model)
            if expected["body"] != serialized["body"] or expected["headers"] != serialized["headers"] \
                    or expected["method"] != serialized["method"] or expected["url_path"] != serialized["url_path"]:
                raise BodyMismatch(f"{operation_model.name}: the fast body differs from botocore's")
        return serialized

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def install(client: Any, *, shadow: bool = False) -> Any:
    """Give a DynamoDB client ``FastBodies`` (once); other clients are returned unchanged.
    Under botocore's parameter validation (its ``ParamValidationDecorator``) the fast bodies
    go beneath it: a request is still checked first."""
    if client.meta.service_model.service_name != "dynamodb":
        return client
    owner = client._serializer if hasattr(client._serializer, "_param_validator") else client
    if not isinstance(owner._serializer, FastBodies):
        owner._serializer = FastBodies(owner._serializer, shadow=shadow)
    return client


def installed(client: Any) -> FastBodies | None:
    """The client's ``FastBodies``, if it has one."""
    serializer = client._serializer
    serializer = getattr(serializer, "_serializer", serializer)
    return serializer if isinstance(serializer, FastBodies) else None
