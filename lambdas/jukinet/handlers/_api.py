"""What the REST handlers (provision API, counter API) share."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError


def first_validation_error(exc: RequestValidationError) -> tuple[str, str, str]:
    """(message, field, rule) of the first error pydantic found in a request: the field dotted
    without its location prefix (``body``, ``query``, ``path``), ``body`` when none is named."""
    first = exc.errors()[0] if exc.errors() else {}
    location = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    return str(first.get("msg", "invalid request")), ".".join(location) or "body", str(first.get("type", "invalid"))
