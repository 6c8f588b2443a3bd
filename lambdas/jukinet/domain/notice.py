"""更新通知 — the update notice: one change to one resident from one municipality."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from .codes import LocalGovernmentCode, ResidentCode
from .errors import ValidationError
from .facts import ChangeKind, ChangeReason, IdentityFacts, parse_date

JST = dt.timezone(dt.timedelta(hours=9), "JST")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
MAX_SEQUENCE = 10**12 - 1  # 12 digits in keys; a municipality sends ~10^4 notices a year
# How far the date of change may lie after the notice's own day (Japan time). A register entry
# is made on or after the day it takes effect, so one day covers a CS clock just past midnight;
# a move-out is registered when it is notified, dated the planned day of leaving, which the
# law lets a resident give ahead of the move (14 days here: *unconfirmed by statute*). Anything
# later — a mistyped year, a death dated 2999 — would win the ordering rule forever.
CHANGE_DATE_TOLERANCE = dt.timedelta(days=1)
PLANNED_MOVE_OUT_DAYS = dt.timedelta(days=14)


def parse_notice_time(raw: object, field: str = "notice_time") -> dt.datetime:
    if isinstance(raw, dt.datetime):
        value = raw
    else:
        if not isinstance(raw, str) or not raw:
            raise ValidationError(field, "required", "notice time is required")
        try:
            value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(field, "format", f"{raw!r} is not an ISO 8601 time") from None
    return _in_utc(value, field)


def _in_utc(value: dt.datetime, field: str = "notice_time") -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(field, "format", "notice time must carry a time zone")
    try:
        value = value.astimezone(dt.UTC)
        value.astimezone(JST)  # reporting_month needs Japan time: 9999-12-31T23:00Z has none
    except OverflowError:
        raise ValidationError(field, "range", "notice time is out of range") from None
    # Four-digit years keep order_key and to_dict sortable and re-parseable (%Y does not pad).
    if value.year < 1000:
        raise ValidationError(field, "range", "notice time must be in a four-digit year")
    return value


def latest_change_date(reason: ChangeReason, notice_time: dt.datetime) -> dt.date:
    """The latest date of change a notice of ``reason`` sent at ``notice_time`` may carry."""
    ahead = PLANNED_MOVE_OUT_DAYS if reason is ChangeReason.MOVE_OUT else CHANGE_DATE_TOLERANCE
    return notice_time.astimezone(JST).date() + ahead


@dataclass(frozen=True, slots=True)
class UpdateNotice:
    """本人確認情報の更新通知.

    ``sequence`` is the sending municipality's notice number: strictly increasing and
    gap-free per municipality (assigned by its CS). ``facts`` is the full record after the
    change, or ``None`` for a deletion. A resident-code change (住民票コード変更) is sent
    under the *new* code with ``previous_resident_code`` naming the old one.
    """

    municipality: LocalGovernmentCode
    sequence: int
    resident_code: ResidentCode
    reason: ChangeReason
    change_date: dt.date
    notice_time: dt.datetime
    facts: IdentityFacts | None
    previous_resident_code: ResidentCode | None = None
    # Made once here, not on each read: the tiers compare and write it several times per
    # notice (the formatting was 9% of a processing tier's CPU). Not a constructor argument,
    # not compared: dataclasses.replace remakes it from the new fields.
    _order_key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.validate()
        # order_key and to_dict write the time with a "Z": hold it in UTC whatever it came in.
        if self.notice_time.tzinfo is not dt.UTC:
            object.__setattr__(self, "notice_time", self.notice_time.astimezone(dt.UTC))
        object.__setattr__(self, "_order_key", "|".join((
            self.change_date.isoformat(),
            str(self.reason.precedence),
            self.notice_time.strftime(_TIME_FORMAT),
            self.municipality.value,
            f"{self.sequence:012d}",
        )))

    def validate(self) -> None:
        if not 1 <= self.sequence <= MAX_SEQUENCE:
            raise ValidationError("sequence", "range", f"sequence must be 1..{MAX_SEQUENCE}")
        if self.municipality.is_prefecture:
            raise ValidationError("municipality", "consistency", "a notice comes from a municipality, not a prefecture code")
        _in_utc(self.notice_time)
        latest = latest_change_date(self.reason, self.notice_time)
        if self.change_date > latest:
            raise ValidationError("change_date", "future",
                                  f"date of change {self.change_date.isoformat()} lies after {latest.isoformat()}, "
                                  f"the latest a {self.reason.label_ja} notified at {self.notice_time.isoformat()} may carry")
        kind = self.reason.kind
        if kind is ChangeKind.DELETION:
            if self.facts is not None:
                raise ValidationError("facts", "consistency", f"a deletion ({self.reason.label_ja}) carries no facts")
        else:
            if self.facts is None:
                raise ValidationError("facts", "required", f"{self.reason.label_ja} must carry the facts after the change")
            if self.facts.resident_code != self.resident_code:
                raise ValidationError("facts.resident_code", "consistency", "facts belong to another resident code")
            if self.facts.birth_date > self.change_date:
                raise ValidationError("facts.birth_date", "consistency", "birth date is after the date of change")
        if self.reason is ChangeReason.CODE_CHANGE:
            if self.previous_resident_code is None:
                raise ValidationError("previous_resident_code", "required", "住民票コード変更 must name the previous code")
            if self.previous_resident_code == self.resident_code:
                raise ValidationError("previous_resident_code", "consistency", "previous code equals the new code")
        elif self.previous_resident_code is not None:
            raise ValidationError("previous_resident_code", "consistency", "only 住民票コード変更 names a previous code")

    @property
    def notice_id(self) -> str:
        """Globally unique and stable: the same notice re-sent keeps its id (deduplication key)."""
        return f"{self.municipality.value}-{self.sequence:012d}"

    @property
    def order_key(self) -> str:
        """Sortable text form of the ordering rule (``domain.ordering``): compare as strings."""
        return self._order_key

    @property
    def reporting_month(self) -> str:
        """Month of the notice in Japan time, ``YYYY-MM``: the month statistics count it in."""
        return self.notice_time.astimezone(JST).strftime("%Y-%m")

    def to_dict(self) -> dict:
        return {
            "municipality": self.municipality.value,
            "sequence": self.sequence,
            "resident_code": self.resident_code.value,
            "reason": self.reason.value,
            "change_date": self.change_date.isoformat(),
            "notice_time": self.notice_time.strftime(_TIME_FORMAT),
            "facts": None if self.facts is None else self.facts.to_dict(),
            "previous_resident_code": None if self.previous_resident_code is None else self.previous_resident_code.value,
        }

    @classmethod
    def from_dict(cls, raw: object) -> UpdateNotice:
        """Parse and validate; every failure is a ``ValidationError`` naming field and rule."""
        if not isinstance(raw, dict):
            raise ValidationError("notice", "format", "a notice must be an object")
        sequence = raw.get("sequence")
        if isinstance(sequence, bool) or not isinstance(sequence, int):
            raise ValidationError("sequence", "format", "sequence must be an integer")
        previous = raw.get("previous_resident_code")
        facts = raw.get("facts")
        return cls(
            municipality=LocalGovernmentCode.parse(raw.get("municipality"), "municipality"),
            sequence=sequence,
            resident_code=ResidentCode.parse(raw.get("resident_code"), "resident_code"),
            reason=ChangeReason.parse(raw.get("reason"), "reason"),
            change_date=parse_date(raw.get("change_date"), "change_date"),
            notice_time=parse_notice_time(raw.get("notice_time")),
            facts=None if facts is None else IdentityFacts.parse(facts),
            previous_resident_code=None if previous in (None, "") else ResidentCode.parse(previous, "previous_resident_code"),
        )
