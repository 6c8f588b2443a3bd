"""The one error type of the domain boundary."""

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
