"""DynamoDB's low-level item shapes and its one expected failure, for the stores that use the
client API (``{"S": ...}`` attribute values): one home for what each store wrote again."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import aws


def string(value: str) -> dict:
    """A string attribute value."""
    return {"S": value}


def number(value: int) -> dict:
    """A number attribute value."""
    return {"N": str(value)}


def plain(item: Mapping) -> dict:
    """An item's attribute values without their types (``{"S": "x"}`` → ``"x"``; numbers stay strings)."""
    return {k: next(iter(v.values())) for k, v in item.items()}


def conditional(call: Callable[..., Any], **kwargs: Any) -> bool:
    """``call(**kwargs)``: False if DynamoDB refused it for its condition, True if it was done;
    any other failure is raised."""
    try:
        call(**kwargs)
    except Exception as exc:
        if aws.error_code(exc) != "ConditionalCheckFailedException":
            raise
        return False
    return True
