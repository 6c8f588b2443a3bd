"""Codes with check digits: local government code, resident code, individual number.

The check-digit formulas are in ``docs/domain.md`` §3.
The resident code's formula is the project's own reading (official notice text
unconfirmed): it is defined only here, in ``_RESIDENT_CODE_WEIGHTS`` and
``_mod11_check_digit``, so that a correction touches one place.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

from .errors import ValidationError

_LOCAL_GOVERNMENT_WEIGHTS = (6, 5, 4, 3, 2)
_RESIDENT_CODE_WEIGHTS = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)  # unconfirmed: see module docstring
_INDIVIDUAL_NUMBER_WEIGHTS = (6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


def _weighted_sum(digits: str, weights: tuple[int, ...]) -> int:
    return sum(int(d) * w for d, w in zip(digits, weights, strict=True))


def local_government_check_digit(first_five: str) -> int:
    """JIS X 0402: the last digit of 11 − (sum mod 11) (remainder 0 → 1, remainder 1 → 0)."""
    return (11 - _weighted_sum(first_five, _LOCAL_GOVERNMENT_WEIGHTS) % 11) % 10


def _mod11_check_digit(body: str, weights: tuple[int, ...]) -> int:
    """11 − (sum mod 11), or 0 when the remainder is 0 or 1 (individual-number rule)."""
    remainder = _weighted_sum(body, weights) % 11
    return 0 if remainder <= 1 else 11 - remainder


def resident_code_check_digit(first_ten: str) -> int:
    return _mod11_check_digit(first_ten, _RESIDENT_CODE_WEIGHTS)


def individual_number_check_digit(first_eleven: str) -> int:
    return _mod11_check_digit(first_eleven, _INDIVIDUAL_NUMBER_WEIGHTS)


def _parse_digits(raw: object, field: str, length: int, label: str) -> str:
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        raise ValidationError(field, "required", f"{label} is required")
    if not isinstance(raw, str):
        raise ValidationError(field, "format", f"{label} must be a string of digits, got {type(raw).__name__}")
    value = raw.strip()
    # ASCII digits only: str.isdigit() also accepts full-width and other Unicode digits.
    if not (value.isascii() and value.isdigit()):
        raise ValidationError(field, "digits", f"{label} must contain ASCII digits only")
    if len(value) != length:
        raise ValidationError(field, "length", f"{label} must be {length} digits, got {len(value)}")
    return value


@dataclass(frozen=True, slots=True, order=True)
class LocalGovernmentCode:
    """全国地方公共団体コード (JIS X 0402): prefecture (2) + municipality (3) + check digit."""

    value: str
    FIELD: ClassVar[str] = "local_government_code"

    @classmethod
    def parse(cls, raw: object, field: str = FIELD) -> LocalGovernmentCode:
        value = _parse_digits(raw, field, 6, "local government code")
        expected = local_government_check_digit(value[:5])
        if int(value[5]) != expected:
            raise ValidationError(field, "check_digit", f"local government code check digit must be {expected}")
        return cls(value)

    @classmethod
    def from_body(cls, first_five: str) -> LocalGovernmentCode:
        return cls(first_five + str(local_government_check_digit(first_five)))

    @classmethod
    def prefecture(cls, prefecture_number: str) -> LocalGovernmentCode:
        """The prefecture-level code, e.g. ``"20"`` → 長野県 ``200000``."""
        return cls.from_body(prefecture_number + "000")

    @property
    def prefecture_number(self) -> str:
        return self.value[:2]

    @property
    def is_prefecture(self) -> bool:
        return self.value[2:5] == "000"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True, order=True)
class ResidentCode:
    """住民票コード: 10 random digits + a modulus-11 check digit."""

    value: str
    FIELD: ClassVar[str] = "resident_code"

    @classmethod
    def parse(cls, raw: object, field: str = FIELD) -> ResidentCode:
        value = _parse_digits(raw, field, 11, "resident code")
        expected = resident_code_check_digit(value[:10])
        if int(value[10]) != expected:
            raise ValidationError(field, "check_digit", f"resident code check digit must be {expected}")
        return cls(value)

    @classmethod
    def from_body(cls, first_ten: str) -> ResidentCode:
        return cls(first_ten + str(resident_code_check_digit(first_ten)))

    @classmethod
    def generate(cls, rng: random.Random) -> ResidentCode:
        return cls.from_body(f"{rng.randrange(10**10):010d}")

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True, order=True)
class IndividualNumber:
    """個人番号 (My Number): 11 digits + a modulus-11 check digit."""

    value: str
    FIELD: ClassVar[str] = "individual_number"

    @classmethod
    def parse(cls, raw: object, field: str = FIELD) -> IndividualNumber:
        value = _parse_digits(raw, field, 12, "individual number")
        expected = individual_number_check_digit(value[:11])
        if int(value[11]) != expected:
            raise ValidationError(field, "check_digit", f"individual number check digit must be {expected}")
        return cls(value)

    @classmethod
    def from_body(cls, first_eleven: str) -> IndividualNumber:
        return cls(first_eleven + str(individual_number_check_digit(first_eleven)))

    @classmethod
    def generate(cls, rng: random.Random) -> IndividualNumber:
        return cls.from_body(f"{rng.randrange(10**11):011d}")

    def __str__(self) -> str:
        return self.value
