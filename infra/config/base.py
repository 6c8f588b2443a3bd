"""What every part of the configuration shares: its error, the rule check, TOML error lines."""

from __future__ import annotations

from pydantic import ValidationError as PydanticValidationError

from jukinet.domain.codes import LocalGovernmentCode
from jukinet.domain.errors import ValidationError


class ConfigError(ValueError):
    """The deployment configuration is inconsistent; the message says what to change."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _code(value: str, what: str) -> LocalGovernmentCode:
    try:
        return LocalGovernmentCode.parse(value, what)
    except ValidationError as exc:
        raise ConfigError(f"{what} {value!r}: {exc.detail}") from None


def _model_errors(exc: PydanticValidationError, table: dict) -> str:
    """pydantic's errors as one line each: where (the TOML keys) and the rule."""
    lines = []
    for error in exc.errors():
        where = ".".join(_toml_key(part, table) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines)


def _toml_key(part: object, table: dict) -> str:
    if part == "agreements" and "agreement" in table:
        return "agreement"
    return f"[{part}]" if isinstance(part, int) else str(part)
