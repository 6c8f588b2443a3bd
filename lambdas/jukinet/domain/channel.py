"""The request/response channel between municipalities (issue 16, part 1): the envelope, the
correlation id, deadlines, outcomes and their reconciliation. No AWS here.

A request from municipality A to municipality B, and B's answer, travel as the same signed
message the notices use (``domain.message.SignedMessage``: sender, key, payload, signature;
the sender's KMS ECC key signs the SHA-256 of the payload). Only the payload differs: a
channel payload is this module's ``Envelope`` as JSON (it starts with ``{``, a notice payload
is gzip and starts with ``0x1f 0x8b``, so the signed bytes themselves say which it is)::

    {"channel": 1, "kind": "request", "from": "202011", "to": "204021",
     "correlation": "202011-200301-9f0c…", "sent": "2003-01-20T01:00:00Z",
     "deadline": "2003-01-20T01:00:30Z", "key": "<base64 KMS-wrapped data key>",
     "body": "<base64 AES-256-GCM sealed JSON>"}

The routers (prefecture, national) read the headers (``kind``, ``from``, ``to``,
``correlation``, ``deadline``) and verify the signature; ``body`` is ciphertext to them. The
body is sealed (``domain.envelope.Sealer``) under a data key of the *reader's* tier channel key
— a request under B's, an answer under A's — with the KMS encryption context
``encryption_context(...)`` and the AES-GCM associated data ``aad(...)`` both binding the
kind, the correlation id and both municipality codes: a body moved to another request, or
to another pair of municipalities, does not open.

Outcomes: every request ends ``answered``, ``refused`` (the home municipality answered with a
refusal code) or ``timed_out`` (no answer by its deadline: lost, dead-lettered on the way, or
late). ``reconcile`` checks that per municipality and month.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from .codes import LocalGovernmentCode
from .errors import ValidationError
from .message import load_json
from .notice import JST

CHANNEL_VERSION = 1
MAX_ENVELOPE_BYTES = 64_000  # a channel message is small: a query or one resident's answer
MAX_DEADLINE = dt.timedelta(minutes=10)
"""No request may ask for longer: a resident waits at the counter."""
DEFAULT_DEADLINE = dt.timedelta(seconds=30)
MAX_CLOCK_SKEW = dt.timedelta(minutes=2)
"""A message ``sent`` later than this after the receiver's now is refused (``sent`` in the future)."""

_CORRELATION = re.compile(r"^(\d{6})-(\d{6})-([0-9a-f]{32})$")
_ISO = "%Y-%m-%dT%H:%M:%SZ"


class Kind(enum.StrEnum):
    REQUEST = "request"
    ANSWER = "answer"
    REFUSAL = "refusal"


class Outcome(enum.StrEnum):
    PENDING = "pending"  # no answer yet, deadline not passed
    ANSWERED = "answered"
    REFUSED = "refused"
    TIMED_OUT = "timed_out"


def is_channel_payload(payload: bytes) -> bool:
    """A channel payload is JSON; a notice payload is gzip (``domain.message.Payload``)."""
    return payload[:1] == b"{"


def new_correlation_id(sender: str, now: dt.datetime, random_hex: str | None = None) -> str:
    """``<sender>-<YYYYMM in JST>-<32 hex>``: unique, and it names the requester's row
    (municipality and month) without a look-up."""
    hex_part = random_hex if random_hex is not None else uuid.uuid4().hex
    return parse_correlation(f"{sender}-{now.astimezone(JST):%Y%m}-{hex_part}")


def parse_correlation(value: object, field: str = "correlation") -> str:
    text = str(value or "")
    match = _CORRELATION.match(text)
    if not match:
        raise ValidationError(field, "format", "a correlation id is <6-digit code>-<YYYYMM>-<32 hex digits>")
    LocalGovernmentCode.parse(match.group(1), field)
    month = int(match.group(2)[4:])
    if not 1 <= month <= 12:
        raise ValidationError(field, "format", "the correlation id's month is not a month")
    return text


def correlation_owner(correlation: str) -> tuple[str, str]:
    """(requesting municipality, month ``YYYY-MM``) a correlation id belongs to."""
    match = _CORRELATION.match(correlation)
    if not match:
        raise ValidationError("correlation", "format", "not a correlation id")
    yyyymm = match.group(2)
    return match.group(1), f"{yyyymm[:4]}-{yyyymm[4:]}"


def encryption_context(kind: Kind, correlation: str, sender: str, recipient: str) -> dict[str, str]:
    """The KMS encryption context of a body's data key (also what IAM conditions can name)."""
    return {"channel": kind.value, "correlation": correlation, "from": sender, "to": recipient}


def aad(kind: Kind, correlation: str, sender: str, recipient: str) -> bytes:
    return f"jukinet-channel|{kind.value}|{correlation}|{sender}|{recipient}".encode()


def _instant(value: object, field: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(str(value), _ISO).replace(tzinfo=dt.UTC)
    except ValueError:
        raise ValidationError(field, "format", f"{field} must be an instant like 2003-01-20T01:00:00Z") from None


def _text(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).strftime(_ISO)


@dataclass(frozen=True, slots=True)
class Envelope:
    kind: Kind
    sender: str
    recipient: str
    correlation: str
    sent: dt.datetime
    deadline: dt.datetime
    wrapped_key: bytes
    body: bytes

    def __post_init__(self) -> None:
        if self.sent.tzinfo is None or self.deadline.tzinfo is None:
            raise ValueError("sent and deadline must be timezone-aware")

    @property
    def requester(self) -> str:
        return self.sender if self.kind is Kind.REQUEST else self.recipient

    @property
    def context(self) -> dict[str, str]:
        return encryption_context(self.kind, self.correlation, self.sender, self.recipient)

    @property
    def aad(self) -> bytes:
        return aad(self.kind, self.correlation, self.sender, self.recipient)

    def expired(self, now: dt.datetime) -> bool:
        return now > self.deadline

    def to_bytes(self) -> bytes:
        return json.dumps({
            "channel": CHANNEL_VERSION, "kind": self.kind.value, "from": self.sender, "to": self.recipient,
            "correlation": self.correlation, "sent": _text(self.sent), "deadline": _text(self.deadline),
            "key": base64.b64encode(self.wrapped_key).decode("ascii"),
            "body": base64.b64encode(self.body).decode("ascii"),
        }, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        raw = load_json(data, field="channel", max_bytes=MAX_ENVELOPE_BYTES)
        if not isinstance(raw, dict):
            raise ValidationError("channel", "format", "a channel envelope is a JSON object")
        if raw.get("channel") != CHANNEL_VERSION:
            raise ValidationError("channel.channel", "version", f"channel version must be {CHANNEL_VERSION}")
        try:
            kind = Kind(raw.get("kind"))
        except ValueError:
            raise ValidationError("channel.kind", "enum", f"kind must be one of {', '.join(Kind)}") from None
        sender = LocalGovernmentCode.parse(raw.get("from"), "channel.from")
        recipient = LocalGovernmentCode.parse(raw.get("to"), "channel.to")
        for code, field in ((sender, "channel.from"), (recipient, "channel.to")):
            if code.is_prefecture:
                raise ValidationError(field, "municipality", "the channel joins municipalities, not prefectures")
        if sender.value == recipient.value:
            raise ValidationError("channel.to", "consistency", "a municipality does not ask itself")
        correlation = parse_correlation(raw.get("correlation"), "channel.correlation")
        requester = sender.value if kind is Kind.REQUEST else recipient.value
        if correlation_owner(correlation)[0] != requester:
            raise ValidationError("channel.correlation", "consistency",
                                  "the correlation id must name the requesting municipality")
        sent = _instant(raw.get("sent"), "channel.sent")
        deadline = _instant(raw.get("deadline"), "channel.deadline")
        if not sent <= deadline <= sent + MAX_DEADLINE:
            raise ValidationError("channel.deadline", "range",
                                  f"the deadline must lie between sent and sent + {MAX_DEADLINE}")
        try:
            wrapped = base64.b64decode(raw.get("key") or "", validate=True)
            body = base64.b64decode(raw.get("body") or "", validate=True)
        except (binascii.Error, TypeError):
            raise ValidationError("channel.body", "format", "key and body must be base64") from None
        if not wrapped or not body:
            raise ValidationError("channel.body", "required", "key and body are required")
        return cls(kind, sender.value, recipient.value, correlation, sent, deadline, wrapped, body)


def check_timely(envelope: Envelope, now: dt.datetime) -> None:
    """Refuse a message past its deadline or sent in the future (beyond clock skew)."""
    if envelope.expired(now):
        raise ValidationError("channel.deadline", "expired", f"deadline {_text(envelope.deadline)} has passed")
    if envelope.sent > now + MAX_CLOCK_SKEW:
        raise ValidationError("channel.sent", "future", f"sent {_text(envelope.sent)} lies in the future")


def deadline_for(now: dt.datetime, wait: dt.timedelta = DEFAULT_DEADLINE) -> dt.datetime:
    if not dt.timedelta(0) < wait <= MAX_DEADLINE:
        raise ValidationError("deadline", "range", f"a request waits more than 0 and at most {MAX_DEADLINE}")
    return (now + wait).replace(microsecond=0)


def outcome_of(status: str, deadline: dt.datetime, now: dt.datetime) -> Outcome:
    """A request's outcome as seen at ``now``: a pending request past its deadline has timed out."""
    outcome = Outcome(status)
    if outcome is Outcome.PENDING and now > deadline:
        return Outcome.TIMED_OUT
    return outcome


def settle(status: str, deadline: dt.datetime, now: dt.datetime, answer: Kind) -> Outcome | None:
    """What an arriving answer does to a request: the new outcome, or ``None`` if nothing changes
    (already settled — a redelivered answer — or arriving after the deadline: it stays timed out)."""
    if outcome_of(status, deadline, now) is not Outcome.PENDING:
        return None
    return Outcome.ANSWERED if answer is Kind.ANSWER else Outcome.REFUSED


@dataclass(frozen=True)
class RequestRecord:
    correlation: str
    requester: str
    recipient: str
    deadline: dt.datetime
    status: str

    @property
    def month(self) -> str:
        return correlation_owner(self.correlation)[1]


@dataclass(frozen=True)
class ChannelRow:
    """One requesting municipality's month on the channel (``reconcile``), and what the same
    municipality answered as the home municipality that month (``answers_given``,
    ``refusals_given``: the answering side's own records, not part of the equation).

    ``unaccounted``: requests recorded in a state that is none of the outcomes (no code of this
    system writes one): counted as requested and in no outcome, so the row does not balance."""

    municipality: str
    month: str
    requested: int
    answered: int
    refused: int
    timed_out: int
    pending: int
    unaccounted: int = 0
    answers_given: int = 0
    refusals_given: int = 0
    name: str = ""

    @property
    def balanced(self) -> bool:
        """Every request has an answer, a refusal or a timeout (or is still within its deadline)."""
        return self.requested == self.answered + self.refused + self.timed_out + self.pending

    @property
    def active(self) -> bool:
        return bool(self.requested or self.answers_given or self.refusals_given)

    @property
    def problems(self) -> list[str]:
        """Why the row does not balance (empty when it does): a mismatch of the requester's tier."""
        out = []
        if self.unaccounted:
            out.append(f"channel: {self.unaccounted} request(s) neither answered, refused nor timed out after "
                       "the deadline (state unreadable)")
        total = self.answered + self.refused + self.timed_out + self.pending
        if self.requested != total and self.requested - total != self.unaccounted:
            out.append(f"channel: requested {self.requested} ≠ answered {self.answered} + refused {self.refused} "
                       f"+ timed out {self.timed_out} + pending {self.pending}")
        return out

    def to_dict(self) -> dict:
        return {"municipality": self.municipality, "month": self.month, "requested": self.requested,
                "answered": self.answered, "refused": self.refused, "timed_out": self.timed_out,
                "pending": self.pending, "unaccounted": self.unaccounted, "answers_given": self.answers_given,
                "refusals_given": self.refusals_given, "balanced": self.balanced}


def reconcile(municipality: str, month: str, records: Iterable[RequestRecord], now: dt.datetime) -> ChannelRow:
    """The requester's row: each request counted once under the outcome it has at ``now`` (a
    pending request past its deadline has timed out, whether or not the store says so yet); a
    record in a state that is no outcome counts as ``unaccounted`` (the row does not balance)."""
    counts = dict.fromkeys(Outcome, 0)
    seen: set[str] = set()
    requested = unaccounted = 0
    for record in records:
        if record.requester != municipality or record.month != month or record.correlation in seen:
            continue
        seen.add(record.correlation)
        requested += 1
        try:
            counts[outcome_of(record.status, record.deadline, now)] += 1
        except ValueError:
            unaccounted += 1
    return ChannelRow(municipality, month, requested, counts[Outcome.ANSWERED], counts[Outcome.REFUSED],
                      counts[Outcome.TIMED_OUT], counts[Outcome.PENDING], unaccounted)


CHANNEL_CSV_COLUMNS = ("month", "municipality", "name", "requested", "answered", "refused", "timed_out", "pending",
                       "unaccounted", "answers_given", "refusals_given", "balanced", "problems")


def rows_as_csv(rows: Iterable[ChannelRow]) -> str:
    """The channel rows of a reconciliation report: one line per municipality and month
    (UTF-8, ``\\r\\n`` line ends as RFC 4180; problems separated by `` | ``)."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CHANNEL_CSV_COLUMNS)
    for r in rows:
        writer.writerow([r.month, r.municipality, r.name, r.requested, r.answered, r.refused, r.timed_out, r.pending,
                         r.unaccounted, r.answers_given, r.refusals_given, str(r.balanced).lower(),
                         " | ".join(r.problems)])
    return out.getvalue()


def rows_as_markdown(rows: list[ChannelRow]) -> list[str]:
    """The channel section of a reconciliation report (Markdown lines): the rows that do not
    balance first, then every municipality with traffic (requests sent, or answered as home)."""
    bad = [r for r in rows if r.problems]
    active = [r for r in rows if r.active]
    lines = ["## Channel between municipalities", "",
             f"Requests per requesting municipality and month: requested = answered + refused + timed out + "
             f"pending (within the deadline). **Mismatches: {len(bad)}.** "
             f"Municipality-months with traffic: {len(active)} of {len(rows)}.", ""]
    for r in bad:
        for problem in r.problems:
            lines.append(f"- {r.month} {r.municipality} {r.name}: {problem}")
    if bad:
        lines.append("")
    if active:
        header = ("month", "municipality", "name", "requested", "answered", "refused", "timed out", "pending",
                  "answers given", "refusals given", "judged")
        lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for r in active:
            cells = (r.month, r.municipality, r.name, *(f"{n:,}" for n in (
                r.requested, r.answered, r.refused, r.timed_out, r.pending, r.answers_given, r.refusals_given)),
                "balanced" if not r.problems else "**mismatch**")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def route(tier: str, here: str, recipient: str) -> str:
    """Where a router sends a message bound for ``recipient``: ``"municipalities"`` (this
    prefecture's municipality tier), ``"national"``, or, from the national tier, the
    prefecture-level code of the recipient's prefecture (``"200000"``)."""
    if tier == "prefecture":
        return "municipalities" if recipient[:2] == here[:2] else "national"
    if tier == "national":
        return LocalGovernmentCode.prefecture(recipient[:2]).value
    raise ValueError(f"unknown routing tier {tier}")
