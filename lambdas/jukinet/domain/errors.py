"""The error types of the domain boundary: input that breaks a rule, and a request refused
with a documented code."""

from __future__ import annotations


class ValidationError(ValueError):
    """Input that breaks a named rule.

    ``field`` names the offending field (dotted for nested ones, e.g. ``facts.birth_date``),
    ``rule`` is a stable machine-readable code (``length``, ``digits``, ``check_digit``,
    ``required``, ``enum``, ``date``, ``format``, ``range``, ``consistency`` …) that operators
    can count and filter on, and ``detail`` is the human explanation.
    """

    def __init__(self, field: str, rule: str, detail: str) -> None:
        self.field = field
        self.rule = rule
        self.detail = detail
        super().__init__(f"{field}: {rule}: {detail}")

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "rule": self.rule, "detail": self.detail}


class CodedRefusal(Exception):
    """A request refused with a documented code (an enum member whose ``.name`` is the code
    and ``.status`` the HTTP status); ``field``/``rule`` name what was wrong. Each API has its
    own subclass and code enum (the provision API's ``Refusal``, the counter API's
    ``CardRefusal``), so one API's handler never catches the other's refusals."""

    def __init__(self, code, message: str, *, field: str | None = None, rule: str | None = None) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.field = field
        self.rule = rule

    def to_dict(self) -> dict:
        out: dict = {"code": self.code.name, "message": self.message}
        if self.field:
            out["field"] = self.field
        if self.rule:
            out["rule"] = self.rule
        return out
