"""The special move-out and move-in (転入転出の特例, 住民基本台帳法 24条の2; issue 16, part 4). No AWS here.

A card holder of municipality A notifies A of the move-out (特例転出) at the counter (the card
authenticated there) or by post (the clerk records it without the card: ``by_post``). A keeps
the filing and, from its own local records, the move-out certificate information (転出証明書情報).
Within the legal period the resident moves in at municipality B with the card (特例転入): B's
counter authenticates the card, asks A for the certificate information through the channel
(``QUERY_CERTIFICATE``), registers the move-in, and tells A (転入通知, ``QUERY_NOTICE``); A
completes the move-out. The 転出 at A and the 特例転入 at B then go upward as ordinary update
notices from each CS; the ordering rule (``domain.ordering``) makes the current state right
whatever order they arrive in.

One special move at A (``MoveOut``)::

    filed ──(B asks for the certificate, card authenticated at B, in the period)──▶ certificate_requested
    certificate_requested ──(B's 転入通知, same B, same request, in the period)──▶ completed
    filed | certificate_requested ──(A's counter cancels)──▶ cancelled
    filed ──(the period ends)──▶ expired                (the resident never came: nothing to undo)
    certificate_requested ──(the period ends)──▶ not_moved_in
                                                  (B had the certificate, the move-in was never completed:
                                                   reported, A's clerk follows it up)

``completed``, ``cancelled``, ``expired`` and ``not_moved_in`` are final: nothing changes them.
The same request or notice again (a redelivery, a retry of the same B) changes nothing and gets
the same answer. At B the move-in (``MoveInStatus``) is ``requested`` → ``certified`` (the
certificate information received) → ``moved_in`` (registered; the 転入通知 sent) →
``completed`` (A accepted it; the card is carried over), or ``refused`` (A's code) or
``timed_out``.

The legal period (住民基本台帳法施行令 24条の2 and 法 22条): the move-in is registered within
14 days after the day the resident actually moved (``moved_on``) and within 30 days after the
planned move-out date (``planned_move_date``): the last day is the earlier of the two, in Japan
time; the period ends at 00:00 JST the day after. ``now`` always comes from the caller.

The certificate information (``certificate``): the fields of the paper 転出証明書 (施行令 23条)
that A holds — name and kana, birth date, sex, the address at A, the household (number,
householder, relationship), the dates of becoming a resident and of setting the address, the
registered domicile and its head (本籍, 筆頭者: B's new record must carry them, 法 7条), the
planned move-out date and the destination address, and the card's serial (the card carried
over). Not the individual number (個人番号): B's system has the resident's 本人確認情報 by the
resident code. The certificate travels only between the two municipalities, sealed for B's
tier (decision 0041): no router, prefecture or national tier can read it (decision 0044's rule
— municipality-only fields never go upward — holds).
"""

from __future__ import annotations

import datetime as dt
import enum
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, replace

from .codes import ResidentCode
from .errors import ValidationError
from .facts import MAX_ADDRESS_LENGTH, parse_date
from .local_record import LocalRecord
from .notice import JST

QUERY_CERTIFICATE = "special-move-out-certificate"
QUERY_NOTICE = "special-move-in-notice"
QUERIES = (QUERY_CERTIFICATE, QUERY_NOTICE)

AFTER_MOVE = dt.timedelta(days=14)
"""The move-in is registered within 14 days after the resident actually moved (法 22条)."""
AFTER_PLANNED = dt.timedelta(days=30)
"""…and within 30 days after the planned move-out date (施行令 24条の2)."""
FILED_LATE = dt.timedelta(days=14)
"""A move-out is notified before the move or within 14 days after it (法 24条)."""
FILED_EARLY = dt.timedelta(days=30)
"""This project's rule: a planned date at most 30 days ahead (an open record is bounded)."""
NOTICE_DELAY = dt.timedelta(minutes=10)
"""A 転入通知 names B's registration instant; A accepts it only if it is this recent (the
channel's longest deadline): B cannot date a registration back into the period."""
CLOCK_SKEW = dt.timedelta(minutes=2)
CARD_PROOF_VALIDITY = dt.timedelta(minutes=15)
"""A card authentication at B's counter vouches for a certificate request this long."""


class State(enum.StrEnum):
    """A's record of one special move-out."""

    FILED = "filed"
    CERTIFICATE_REQUESTED = "certificate_requested"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    NOT_MOVED_IN = "not_moved_in"

    @property
    def final(self) -> bool:
        return self not in (State.FILED, State.CERTIFICATE_REQUESTED)


class MoveInStatus(enum.StrEnum):
    """B's record of one special move-in."""

    REQUESTED = "requested"
    CERTIFIED = "certified"
    MOVED_IN = "moved_in"
    COMPLETED = "completed"
    REFUSED = "refused"
    TIMED_OUT = "timed_out"


REFUSALS: dict[str, str] = {
    "no_special_move_out": "the home municipality has no special move-out (特例転出) of this resident",
    "cancelled": "the special move-out was cancelled at the home municipality",
    "period_expired": "the legal period has ended (14 days after the move, 30 days after the planned move-out date)",
    "not_this_card": "the card presented is not the card named in the special move-out, or is no longer valid",
    "not_authenticated_here": "the requesting municipality's counter did not authenticate the card for this request "
                              "(within the tier: its authentication; from another prefecture's tier: the challenge "
                              "this tier issued to that counter, answered by the card, recent, used once)",
    "already_moved_in": "the special move-out is already completed by a move-in",
    "certificate_given_elsewhere": "another municipality already holds the certificate information: the home "
                                   "municipality must cancel it first",
    "no_certificate_request": "the move-in notice names no certificate request of this municipality",
    "invalid_query": "the query is malformed (field and rule in the detail)",
}
"""The home municipality's refusal codes (the channel's ``Refused.code``)."""


def _day(now: dt.datetime) -> dt.date:
    return now.astimezone(JST).date()


def end_of(day: dt.date) -> dt.datetime:
    """The instant a last day ends: 00:00 JST the next day."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=JST)


def last_day(planned: dt.date, moved_on: dt.date | None = None) -> dt.date:
    """The last day a special move-in may be registered."""
    day = planned + AFTER_PLANNED
    return min(day, moved_on + AFTER_MOVE) if moved_on is not None else day


def period_refusal(planned: dt.date, moved_on: dt.date | None, now: dt.datetime) -> str | None:
    """Why a move-in at ``now`` (actual move ``moved_on``) is out of the legal period, or ``None``."""
    today = _day(now)
    if moved_on is not None and moved_on > today:
        return f"the move date {moved_on} is after today ({today})"
    if now >= end_of(last_day(planned, moved_on)):
        return f"the last day was {last_day(planned, moved_on)}"
    return None


# --- the filing at A ---------------------------------------------------------------------
def parse_destination(raw: str) -> str:
    text = unicodedata.normalize("NFKC", raw).strip()
    if not text:
        raise ValidationError("destination_address", "required", "the address the resident moves to is required")
    if len(text) > MAX_ADDRESS_LENGTH or any(unicodedata.category(c)[0] == "C" for c in text):
        raise ValidationError("destination_address", "format",
                              f"at most {MAX_ADDRESS_LENGTH} printable characters")
    return text


def parse_planned(raw: str, now: dt.datetime) -> dt.date:
    """The planned move-out date (転出予定年月日): at most 14 days past, 30 days ahead (JST)."""
    planned = parse_date(raw, "planned_move_date")
    today = _day(now)
    if planned < today - FILED_LATE:
        raise ValidationError("planned_move_date", "range", f"a move-out is notified within 14 days after the move: "
                                                            f"{planned} is before {today - FILED_LATE}")
    if planned > today + FILED_EARLY:
        raise ValidationError("planned_move_date", "range", f"at most 30 days ahead: {planned} is after "
                                                            f"{today + FILED_EARLY}")
    return planned


def parse_moved_on(raw: str, now: dt.datetime) -> dt.date:
    """The day the resident actually moved (B's counter asks): not in the future (JST)."""
    moved_on = parse_date(raw, "moved_on")
    if moved_on > _day(now):
        raise ValidationError("moved_on", "range", f"the move date {moved_on} is in the future")
    return moved_on


@dataclass(frozen=True, slots=True)
class MoveOutFiling:
    """A special move-out filed at A's counter, as the counter API validated it (types, lengths,
    the authentication's length): ``SpecialMoves.file`` checks the rest (the check digit, the
    dates' period, the address, the card and its authentication)."""

    resident_code: str
    planned_move_date: str  # YYYY-MM-DD
    destination_address: str
    by_post: bool
    card_authentication: str | None  # at the counter: the challenge id of the card's authentication here


@dataclass(frozen=True, slots=True)
class MoveInApplication:
    """A special move-in asked for at B's counter, as the counter API validated it (types, lengths,
    the authentication's length): ``SpecialMoves.request`` checks the rest."""

    resident_code: str
    home_municipality: str
    moved_on: str  # YYYY-MM-DD
    card_authentication: str  # the challenge id of the card's authentication at this counter


@dataclass(frozen=True, slots=True)
class MoveOut:
    """A's record of one special move-out (the filing and what happened to it)."""

    municipality: str  # A
    resident_code: str
    filed_at: dt.datetime
    planned_move_date: dt.date
    destination_address: str
    card_serial: str
    by_post: bool
    state: State = State.FILED
    requester: str = ""  # B, once it asked for the certificate
    certificate_correlation: str = ""  # B's request that got the certificate
    moved_on: dt.date | None = None  # B's declared move date
    changed_at: dt.datetime | None = None  # when the state last changed

    @property
    def last_day(self) -> dt.date:
        return last_day(self.planned_move_date, self.moved_on)

    @property
    def ends_at(self) -> dt.datetime:
        return end_of(self.last_day)

    def state_at(self, now: dt.datetime) -> State:
        """The state now: an open record past its period is expired (or not moved in) even
        before that is written (it is written at the next touch)."""
        if self.state.final or now < self.ends_at:
            return self.state
        return State.NOT_MOVED_IN if self.state is State.CERTIFICATE_REQUESTED else State.EXPIRED

    def expired(self, now: dt.datetime) -> MoveOut:
        """This record with its lapse written, if it lapsed (else itself)."""
        state = self.state_at(now)
        return self if state is self.state else replace(self, state=state, changed_at=self.ends_at)


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    detail: str = ""

    def __post_init__(self) -> None:
        if self.code not in REFUSALS:
            raise ValueError(f"undocumented refusal code {self.code}")


def closed(record: MoveOut, now: dt.datetime) -> Refusal | None:
    """Why nothing more can happen to ``record`` at ``now`` (cancelled, lapsed, completed), or ``None``."""
    return _closed(record, now)


def _closed(record: MoveOut, now: dt.datetime) -> Refusal | None:
    state = record.state_at(now)
    if state is State.CANCELLED:
        return Refusal("cancelled")
    if state in (State.EXPIRED, State.NOT_MOVED_IN):
        return Refusal("period_expired", f"the last day was {record.last_day}")
    if state is State.COMPLETED:
        return Refusal("already_moved_in", f"moved in at {record.requester}")
    return None


def request_certificate(record: MoveOut | None, *, requester: str, correlation: str, card_serial: str,
                        moved_on: dt.date, now: dt.datetime) -> MoveOut | Refusal:
    """B asks for the certificate information (card authenticated at B, resident moved on
    ``moved_on``). Returns the record as it is after the request, or the refusal. The same B
    asking again (a retry, a second request from the same counter) gets it again."""
    if record is None:
        return Refusal("no_special_move_out")
    closed = _closed(record, now)
    if closed is not None:
        return closed
    if card_serial != record.card_serial:
        return Refusal("not_this_card", "the card is not the one named in the special move-out")
    if record.state is State.CERTIFICATE_REQUESTED and record.requester != requester:
        return Refusal("certificate_given_elsewhere", f"{record.requester} holds it")
    late = period_refusal(record.planned_move_date, moved_on, now)
    if late is not None:
        return Refusal("period_expired", late)
    if record.state is State.CERTIFICATE_REQUESTED and record.certificate_correlation and \
            record.moved_on == moved_on:
        return record  # the same request again (or the same B asking again for the same move)
    return replace(record, state=State.CERTIFICATE_REQUESTED, requester=requester,
                   certificate_correlation=record.certificate_correlation or correlation, moved_on=moved_on,
                   changed_at=record.changed_at if record.state is State.CERTIFICATE_REQUESTED else now)


def notify_move_in(record: MoveOut | None, *, requester: str, certificate_correlation: str,
                   registered_at: dt.datetime, now: dt.datetime) -> MoveOut | Refusal:
    """B's 転入通知: the move-in was registered at ``registered_at``. A completes the move-out,
    once; the same notice again gets the same (completed) answer."""
    if record is None:
        return Refusal("no_special_move_out")
    if record.state is State.COMPLETED and record.requester == requester:
        return record  # the same notice again
    if not (-CLOCK_SKEW <= now - registered_at <= NOTICE_DELAY):
        return Refusal("invalid_query", "registered_at: recent")
    # The period is judged at B's registration (at most NOTICE_DELAY ago): a move-in registered
    # on the last day and told just after midnight is in time.
    closed = _closed(record, registered_at)
    if closed is not None:
        return closed
    if record.state is not State.CERTIFICATE_REQUESTED or record.requester != requester or \
            record.certificate_correlation != certificate_correlation:
        return Refusal("no_certificate_request", "no certificate was given to this request")
    return replace(record, state=State.COMPLETED, changed_at=registered_at)


def cancel(record: MoveOut | None, now: dt.datetime) -> MoveOut | Refusal:
    """A's counter cancels an open special move-out (the resident does not move, or moves by
    the ordinary procedure). Cancelling a cancelled one again changes nothing."""
    if record is None:
        return Refusal("no_special_move_out")
    if record.state is State.CANCELLED:
        return record
    closed = _closed(record, now)
    if closed is not None:
        return closed
    return replace(record, state=State.CANCELLED, changed_at=now)


# --- the certificate information ------------------------------------------------------------
CERTIFICATE_FIELDS = ("resident_code", "name", "kana", "birth_date", "sex", "address", "household_number",
                      "householder_name", "relationship", "resident_since", "address_since",
                      "registered_domicile", "family_register_head", "planned_move_date", "destination_address",
                      "card_serial", "home_municipality", "filed_on", "by_post")
"""What A sends B — a whitelist: nothing else is ever in an answer, and B refuses an answer
with anything else (``check_certificate``)."""
NEVER_SENT = ("individual_number",)


def certificate(record: MoveOut, local: LocalRecord | None) -> dict[str, str]:
    """The certificate information from A's filing and its local record of the resident."""
    facts = (local.facts if local is not None else None) or {}
    name = facts.get("name") if isinstance(facts.get("name"), Mapping) else {}
    fields = local.local if local is not None else None
    values: dict[str, object] = {
        "resident_code": record.resident_code, "name": name.get("kanji"), "kana": name.get("kana"),
        "birth_date": facts.get("birth_date"), "sex": facts.get("sex"), "address": facts.get("address"),
        "household_number": fields.household_number if fields else None,
        "householder_name": fields.householder_name if fields else None,
        "relationship": fields.relationship.value if fields and fields.relationship else None,
        "resident_since": fields.resident_since.isoformat() if fields and fields.resident_since else None,
        "address_since": fields.address_since.isoformat() if fields and fields.address_since else None,
        "registered_domicile": fields.registered_domicile if fields else None,
        "family_register_head": fields.family_register_head if fields else None,
        "planned_move_date": record.planned_move_date.isoformat(), "destination_address": record.destination_address,
        "card_serial": record.card_serial, "home_municipality": record.municipality,
        "filed_on": _day(record.filed_at).isoformat(), "by_post": "true" if record.by_post else "false",
    }
    return {k: str(values[k]) for k in CERTIFICATE_FIELDS if values.get(k) not in (None, "")}


def check_certificate(content: object, resident_code: str, home: str) -> dict[str, str]:
    """B's check of A's answer: the whitelisted fields as text, the resident's and A's own."""
    if not isinstance(content, Mapping) or not isinstance(content.get("certificate"), Mapping):
        raise ValidationError("certificate", "format", "an answer carries the certificate information")
    cert = content["certificate"]
    if not set(cert) <= set(CERTIFICATE_FIELDS) or not all(isinstance(v, str) for v in cert.values()):
        raise ValidationError("certificate", "fields", "only the certificate information's fields, as text")
    if cert.get("resident_code") != resident_code or cert.get("home_municipality") != home:
        raise ValidationError("certificate.resident_code", "consistency", "not this resident's certificate")
    for name in ("name", "birth_date", "planned_move_date", "card_serial"):
        if name not in cert:
            raise ValidationError(f"certificate.{name}", "required", f"the certificate names {name}")
    return dict(cert)


# --- the queries B sends A -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CertificateQuery:
    resident_code: str
    card_serial: str
    challenge_id: str  # B's card authentication (A checks it when B is in its tier)
    moved_on: dt.date
    clerk: str
    # B in another prefecture's tier: the challenge A's tier issued to B's counter for that
    # authentication (A's own ``REMOTE-CHALLENGE#`` record, decision 0050), which A checks instead
    home_challenge: str = ""

    def to_dict(self) -> dict:
        body = {"query": QUERY_CERTIFICATE, "resident_code": self.resident_code, "card_serial": self.card_serial,
                "challenge_id": self.challenge_id, "moved_on": self.moved_on.isoformat(), "clerk": self.clerk}
        if self.home_challenge:
            body["home_challenge"] = self.home_challenge
        return body

    @classmethod
    def parse(cls, raw: Mapping) -> CertificateQuery:
        code = ResidentCode.parse(raw.get("resident_code"), "resident_code").value
        serial = raw.get("card_serial")
        if not isinstance(serial, str) or not 8 <= len(serial) <= 32:
            raise ValidationError("card_serial", "format", "the card's serial")
        challenge = raw.get("challenge_id")
        if not isinstance(challenge, str) or len(challenge) != 32:
            raise ValidationError("challenge_id", "format", "the card authentication's challenge id")
        moved_on = parse_date(raw.get("moved_on"), "moved_on")
        clerk = raw.get("clerk", "")
        if not isinstance(clerk, str) or len(clerk) > 256:
            raise ValidationError("clerk", "format", "the counter's role session, at most 256 characters")
        home_challenge = raw.get("home_challenge", "")
        if not isinstance(home_challenge, str) or len(home_challenge) not in (0, 32):
            raise ValidationError("home_challenge", "format", "the home tier's challenge id (32 characters)")
        return cls(code, serial, challenge, moved_on, clerk, home_challenge)


@dataclass(frozen=True, slots=True)
class NoticeQuery:
    resident_code: str
    certificate_correlation: str
    registered_at: dt.datetime
    clerk: str

    def to_dict(self) -> dict:
        return {"query": QUERY_NOTICE, "resident_code": self.resident_code,
                "certificate_correlation": self.certificate_correlation,
                "registered_at": self.registered_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "clerk": self.clerk}

    @classmethod
    def parse(cls, raw: Mapping) -> NoticeQuery:
        from .channel import parse_correlation

        code = ResidentCode.parse(raw.get("resident_code"), "resident_code").value
        correlation = parse_correlation(raw.get("certificate_correlation"), "certificate_correlation")
        try:
            at = dt.datetime.strptime(str(raw.get("registered_at")), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            raise ValidationError("registered_at", "format", "an instant like 2003-01-20T01:00:00Z") from None
        clerk = raw.get("clerk", "")
        if not isinstance(clerk, str) or len(clerk) > 256:
            raise ValidationError("clerk", "format", "the counter's role session, at most 256 characters")
        return cls(code, correlation, at, clerk)


# --- statistics ------------------------------------------------------------------------------------
MOVE_OUT_FIGURES = ("filed", "by_post", "cancelled", "completed", "expired", "not_moved_in")
"""A's figures per month (JST): filed (of which by post) in the month; cancelled and completed in
the month; lapsed in the month — ``expired`` (nobody came) and ``not_moved_in`` (a certificate was
given, the move-in never completed) — whether or not the lapse has been written yet."""


def move_out_figures(records: list[MoveOut], month: str, now: dt.datetime) -> dict[str, int]:
    def in_month(instant: dt.datetime | None) -> bool:
        return instant is not None and instant.astimezone(JST).strftime("%Y-%m") == month

    out = dict.fromkeys(MOVE_OUT_FIGURES, 0)
    for r in records:
        if in_month(r.filed_at):
            out["filed"] += 1
            out["by_post"] += r.by_post
        state = r.state_at(now)
        if state in (State.CANCELLED, State.COMPLETED) and in_month(r.changed_at):
            out[state.value] += 1
        elif state in (State.EXPIRED, State.NOT_MOVED_IN) and in_month(r.ends_at):
            out[state.value] += 1
    return out
