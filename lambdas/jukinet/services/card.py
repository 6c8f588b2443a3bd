"""Resident card use cases at the counter (窓口): issue, suspend, resume, revoke, expire, PIN
reset, and card authentication (challenge → the card's signature → the answer).

Every use case: identify the caller (a counter-staff role of one of this tier's
municipalities, or the tier's operator role for a suspension around the clock), read the card
**as it is now** (a strongly consistent read; a notice that ended it or its validity running
out is written as its signed event first), decide (``domain.card``), write the signed event
conditionally on the card's version, record the call and count it. A suspended or revoked
card is refused by the next authentication that reads it: the bound is the time the suspend
or revoke call takes to return (docs/card.md).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from ..adapters import aws
from ..adapters.card_store import CardStore, Conflict
from ..clock import Clock, month_jst
from ..domain.card import (
    MAX_PIN_FAILURES,
    Card,
    CardApplication,
    CardEvent,
    CardMoved,
    CardRefusal,
    CardRefusalCode,
    CardStatus,
    Challenge,
    Counter,
    EventKind,
    PinFailures,
    RevocationReason,
    apply,
    card_refusal,
    decide_authentication,
    issue_details,
    new_challenge,
    new_serial,
    next_event,
    parse_serial,
)
from ..domain.codes import ResidentCode
from ..domain.errors import ValidationError
from ..domain.message import ALGORITHM

# A role session as API Gateway reports a SigV4 caller: arn:aws:sts::<account>:assumed-role/<role>/<session>.
_ROLE_IN_ARN = re.compile(r"^arn:[\w-]+:sts::(\d{12}):assumed-role/([\w+=,.@-]+)/[\w+=,.@-]+$")
SYSTEM = "system"
AUTHENTICATION_ACTIONS = ("challenge", "authenticate", "pin-failure")


@dataclass(frozen=True)
class Caller:
    """Who is calling, as API Gateway established it (SigV4), and through which endpoint."""

    principal_arn: str | None
    source_endpoint: str | None
    request_id: str = ""


@dataclass(frozen=True)
class Staff:
    """An identified caller: the counter of ``municipality``, or the tier's operator."""

    principal: str
    municipality: str | None
    operator: bool = False

    @property
    def counter(self) -> Counter:
        assert self.municipality is not None
        return Counter(self.municipality, self.principal)


class EventSigner:
    """Signs card events with the tier's card-event key (KMS ECC P-256), one Sign per event.
    A key of its own: the card function never holds a municipality's notice-signing key
    (decision 0026)."""

    def __init__(self, key_id: str) -> None:
        self.key_id = key_id

    def __call__(self, event: CardEvent) -> CardEvent:
        out = aws.client("kms").sign(KeyId=self.key_id, Message=event.digest(), MessageType="RAW",
                                     SigningAlgorithm=ALGORITHM)
        return event.signed(self.key_id, out["Signature"])


class CardService:
    def __init__(self, store: CardStore, sign: EventSigner, *, municipalities: Iterable[str], counter_role_prefix: str,
                 operator_roles: Iterable[str] = (), account: str | None = None,
                 allowed_endpoints: Iterable[str] | None = None, clock: Clock, prefecture: str | None = None,
                 writes_endings: bool = True) -> None:
        self.store = store
        self.sign = sign
        self.municipalities = frozenset(municipalities)
        self.counter_role_prefix = counter_role_prefix
        self.operator_roles = frozenset(operator_roles)
        self.account = account
        self.allowed_endpoints = frozenset(allowed_endpoints) if allowed_endpoints is not None else None
        self.clock = clock
        # The prefectures whose municipalities this tier serves (one): a card whose home is not
        # one of them was carried over to another tier and is only a pointer here (decision 0027).
        self.prefixes = frozenset(m[:2] for m in self.municipalities) | ({prefecture[:2]} if prefecture else set())
        # False in the channel function (decision 0050): a card ended by a notice is judged ended
        # at once, its ``revoked`` event written at its next touch at a counter of this tier (that
        # write frees the resident's one valid card, a delete the channel function may not make).
        self.writes_endings = writes_endings

    def holds(self, card: Card) -> bool:
        """The card's home is a municipality of this tier (not carried over to another tier)."""
        return card.home[:2] in self.prefixes

    # --- who -------------------------------------------------------------------------------
    def identify(self, caller: Caller) -> Staff:
        """The counter (or operator) behind a SigV4 principal; refused before anything is read."""
        match = _ROLE_IN_ARN.match(caller.principal_arn or "")
        if match is None or (self.account and match.group(1) != self.account):
            raise CardRefusal(CardRefusalCode.UNKNOWN_CALLER, "the caller is not a counter-staff role of this tier")
        if self.allowed_endpoints is not None and caller.source_endpoint not in self.allowed_endpoints:
            raise CardRefusal(CardRefusalCode.ENDPOINT_NOT_ALLOWED,
                              "the request did not come through this tier's execute-api endpoint")
        role = match.group(2)
        if role in self.operator_roles:
            return Staff(caller.principal_arn or "", None, operator=True)
        code = role.removeprefix(self.counter_role_prefix)
        if role.startswith(self.counter_role_prefix) and code in self.municipalities:
            return Staff(caller.principal_arn or "", code)
        raise CardRefusal(CardRefusalCode.UNKNOWN_CALLER, "the caller is not a counter-staff role of this tier")

    @staticmethod
    def _counter_only(staff: Staff) -> str:
        if staff.municipality is None:
            raise CardRefusal(CardRefusalCode.NOT_THIS_MUNICIPALITY, "only a municipality's counter may do this",
                              field="caller", rule="counter")
        return staff.municipality

    @staticmethod
    def _home_counter(staff: Staff, card: Card, *, operator_too: bool = False) -> None:
        if staff.operator and operator_too:
            return
        if staff.municipality != card.home:
            raise CardRefusal(CardRefusalCode.NOT_THIS_MUNICIPALITY,
                              "only the counter of the municipality that holds the card may do this",
                              field="serial", rule="home")

    # --- the card as it is now ----------------------------------------------------------------
    def current(self, serial: str, now: dt.datetime) -> Card | None:
        """The card now: an ending notice recorded since its issue, or its validity running out,
        is written first as its signed event (actor ``system``)."""
        for _ in range(5):
            card = self.store.card(serial)
            if card is None or card.status.final or not self.holds(card):
                return card  # a card carried over to another tier is changed there, never here
            register = self.store.register(card.resident_code)
            reason = register.ends(card) if register else None
            if not self.writes_endings:
                return replace(card, status=CardStatus.REVOKED) if reason is not None else card
            try:
                if reason is not None:
                    return self._change(card, EventKind.REVOKED, now, municipality=card.home,
                                        actor=f"{SYSTEM}:notice", details={"reason": reason})
                if card.status_at(now) is not card.status:
                    return self._change(card, EventKind.EXPIRED, now, municipality=card.home,
                                        actor=f"{SYSTEM}:validity", details={"valid_until": card.valid_until.isoformat()})
            except Conflict:
                continue
            return card
        raise Conflict(f"card {serial} keeps changing")

    def _change(self, card: Card, kind: EventKind, now: dt.datetime, *, municipality: str, actor: str,
                details: dict | None = None) -> Card:
        event = self.sign(next_event(card, kind, serial=card.serial, at=now, municipality=municipality, actor=actor,
                                     details=details))
        after = apply(card, event)
        self.store.change(card, after, event, release_resident=after.status.final)
        self.store.count(municipality, month_jst(now), {kind.value: 1})
        return after

    def _card(self, raw_serial: object, now: dt.datetime) -> Card:
        try:
            serial = parse_serial(raw_serial)
        except ValidationError as exc:
            raise CardRefusal(CardRefusalCode.INVALID_REQUEST, exc.detail, field=exc.field, rule=exc.rule) from None
        card = self.current(serial, now)
        if card is None:
            raise CardRefusal(CardRefusalCode.CARD_NOT_FOUND, "no such card", field="serial", rule="registered")
        if not self.holds(card):
            raise CardMoved(card.home)
        return card

    def _record(self, staff: Staff, now: dt.datetime, caller: Caller, action: str, outcome: str, *,
                card: Card | None = None, resident_code: str = "", municipality: str | None = None) -> None:
        where = staff.municipality or municipality or (card.home if card else "operator")
        self.store.record_call(now=now, municipality=where, principal=staff.principal, action=action,
                               outcome=outcome, request_id=caller.request_id,
                               resident_code=resident_code or (card.resident_code if card else ""),
                               serial=card.serial if card else "")

    def refused(self, caller: Caller, action: str, refusal: CardRefusal, *, serial: str = "",
                resident_code: str = "") -> None:
        """Record and count a refusal (the API calls this for every refused request)."""
        now = self.clock()
        try:
            staff = self.identify(caller)
        except CardRefusal:
            return  # an unknown caller is logged and counted by the API, never in a municipality's record
        where = staff.municipality or "operator"
        self.store.record_call(now=now, municipality=where, principal=staff.principal, action=action,
                               outcome=refusal.code.name, request_id=caller.request_id, resident_code=resident_code,
                               serial=serial if isinstance(serial, str) else "")
        prefix = "auth_refused_" if refusal.code.authentication and action in AUTHENTICATION_ACTIONS else "refused_"
        self.store.count(where, month_jst(now), {f"{prefix}{refusal.code.name}": 1})

    # --- issuance (交付) -------------------------------------------------------------------------
    def issue(self, caller: Caller, application: CardApplication) -> Card:
        now = self.clock()
        staff = self.identify(caller)
        municipality = self._counter_only(staff)
        try:
            code = ResidentCode.parse(application.resident_code).value
            details = issue_details(code, application.card_type, application.public_key, now)
        except ValidationError as exc:
            raise CardRefusal(CardRefusalCode.INVALID_REQUEST, exc.detail, field=exc.field, rule=exc.rule) from None
        register = self.store.register(code)
        # The tier's own register decides, never the caller: a resident this municipality's CS
        # has not entered, or who has left it, gets no card here.
        if register is None or not register.active or register.municipality != municipality:
            raise CardRefusal(CardRefusalCode.RESIDENT_NOT_ACTIVE,
                              "the resident is not registered as living in this municipality",
                              field="resident_code", rule="active_here")
        previous = self.store.valid_card_of(code)
        if previous is not None:
            old = self.current(previous, now)
            if old is not None and not old.status.final:
                self._change(old, EventKind.REVOKED, now, municipality=municipality, actor=staff.principal,
                             details={"reason": RevocationReason.REISSUED.value})
        serial = new_serial(municipality)
        event = self.sign(next_event(None, EventKind.ISSUED, serial=serial, at=now, municipality=municipality,
                                     actor=staff.principal, details=details))
        card = apply(None, event)
        self.store.issue(card, event)
        self.store.count(municipality, month_jst(now), {"issued": 1})
        self._record(staff, now, caller, "issue", "ok", card=card)
        return card

    # --- lifecycle ---------------------------------------------------------------------------------
    def suspend(self, caller: Caller, serial: object, reason: str = "lost") -> Card:
        """一時停止: the holder's counter, or the tier's operator around the clock (a lost card)."""
        now = self.clock()
        staff = self.identify(caller)
        card = self._card(serial, now)
        self._home_counter(staff, card, operator_too=True)
        after = self._change(card, EventKind.SUSPENDED, now, municipality=card.home, actor=staff.principal,
                             details={"reason": reason})  # at most 64 characters (the API model)
        self._record(staff, now, caller, "suspend", "ok", card=after)
        return after

    def resume(self, caller: Caller, serial: object) -> Card:
        now = self.clock()
        staff = self.identify(caller)
        card = self._card(serial, now)
        self._home_counter(staff, card)
        after = self._change(card, EventKind.RESUMED, now, municipality=card.home, actor=staff.principal)
        self._record(staff, now, caller, "resume", "ok", card=after)
        return after

    def revoke(self, caller: Caller, serial: object) -> Card:
        """返納: the resident returns the card at the holder's counter."""
        now = self.clock()
        staff = self.identify(caller)
        card = self._card(serial, now)
        self._home_counter(staff, card)
        after = self._change(card, EventKind.REVOKED, now, municipality=card.home, actor=staff.principal,
                             details={"reason": RevocationReason.RETURNED.value})
        self._record(staff, now, caller, "revoke", "ok", card=after)
        return after

    def expire(self, caller: Caller, serial: object) -> Card:
        """Ends a card whose validity has run out (``current`` does it on any touch anyway)."""
        now = self.clock()
        staff = self.identify(caller)
        card = self._card(serial, now)
        self._home_counter(staff, card)
        if not card.status.final:
            raise CardRefusal(CardRefusalCode.INVALID_TRANSITION, f"the card is valid until {card.valid_until}",
                              field="serial", rule="validity")
        self._record(staff, now, caller, "expire", "ok", card=card)
        return card

    def reset_pin(self, caller: Caller, serial: object, *, resident_code: object) -> tuple[Card, CardEvent]:
        """PIN reset at the holder's counter, the resident's identity checked there: the request
        names the resident code the staff read from the resident's documents, and it must be the
        card's. Returns the ``pin_reset`` event the chip takes to set the new PIN."""
        now = self.clock()
        staff = self.identify(caller)
        card = self._card(serial, now)
        self._home_counter(staff, card)
        if resident_code != card.resident_code:
            raise CardRefusal(CardRefusalCode.INVALID_REQUEST, "the resident code is not the card's",
                              field="resident_code", rule="identity_checked")
        if card.status.final:
            raise CardRefusal(CardRefusalCode.INVALID_TRANSITION, f"the card is {card.status.value}",
                              field="serial", rule="lifecycle")
        after = self._change(card, EventKind.PIN_RESET, now, municipality=card.home, actor=staff.principal)
        events = self.store.events(after.serial)
        self._record(staff, now, caller, "reset_pin", "ok", card=after)
        return after, events[-1]

    def move(self, card: Card, to: str, *, actor: str, now: dt.datetime) -> Card:
        """継続利用: the card now belongs to ``to`` (special move-in, part 2 calls this)."""
        return self._change(card, EventKind.MOVED, now, municipality=to, actor=actor,
                            details={"from": card.home, "to": to})

    # --- authentication ---------------------------------------------------------------------------------
    def challenge(self, caller: Caller, serial: object) -> Challenge:
        now = self.clock()
        staff = self.identify(caller)
        self._counter_only(staff)
        card, challenge = self.open_challenge(staff.counter, serial, now)
        self._record(staff, now, caller, "challenge", "ok", card=card)
        return challenge

    def open_challenge(self, counter: Counter, serial: object, now: dt.datetime) -> tuple[Card, Challenge]:
        """A one-time challenge for the card, bound to ``counter`` (municipality and clerk's session):
        this tier's own counter, or — through the channel — a counter of another tier
        (``services/card_across_tiers.py``)."""
        card = self._card(serial, now)
        refusal = card_refusal(card, now)
        if refusal is not None:
            raise refusal
        challenge = new_challenge(card.serial, counter, now)
        self.store.put_challenge(challenge)
        return card, challenge

    def authenticate(self, caller: Caller, challenge_id: str, signature: bytes) -> Card:
        """The card's signature over the challenge → the card (the API answers its resident code
        and issuing municipality, nothing else)."""
        now = self.clock()
        staff = self.identify(caller)
        counter = Counter(self._counter_only(staff), staff.principal)
        decided = self.check_answer(counter, challenge_id, signature, now)
        self.store.count(counter.municipality, month_jst(now), {"auth_ok": 1})
        self._record(staff, now, caller, "authenticate", "ok", resident_code=decided.resident_code)
        return decided

    def check_answer(self, counter: Counter, challenge_id: str, signature: bytes, now: dt.datetime) -> Card:
        """Judge the answer ``counter`` presents to the challenge (spent first, right or wrong)."""
        challenge = self.store.challenge(challenge_id)
        if (challenge is not None and not challenge.used and now < challenge.expires_at
                and (challenge.municipality, challenge.principal) == (counter.municipality, counter.principal)
                and not self.store.use_challenge(challenge_id)):
            # One answer per challenge, right or wrong: it is spent before the answer is judged,
            # so a concurrent replay finds it used and a bad signature cannot be retried on it.
            challenge = replace(challenge, used=True)
        card = self.current(challenge.serial, now) if challenge else None
        if card is not None and not self.holds(card):
            raise CardMoved(card.home)
        decided = decide_authentication(challenge, card, counter, signature, now)
        assert challenge is not None  # decide_authentication refuses a missing one
        self.store.record_authentication(challenge.challenge_id, decided.resident_code, now)
        return decided

    def pin_failed(self, caller: Caller, challenge_id: str) -> PinFailures:
        """The counter reports the card refused a PIN for this challenge (one report per challenge);
        the network's own count locks the card at the third."""
        now = self.clock()
        staff = self.identify(caller)
        counter = Counter(self._counter_only(staff), staff.principal)
        card, failures = self.count_wrong_pin(counter, challenge_id, now)
        self.store.count(counter.municipality, month_jst(now), {"pin_failures": 1})
        counted = PinFailures(failures)
        self._record(staff, now, caller, "pin_failed", "locked" if counted.locked else "counted", card=card)
        return counted

    def count_wrong_pin(self, counter: Counter, challenge_id: str, now: dt.datetime) -> tuple[Card, int]:
        """Count a wrong PIN reported by ``counter`` on its challenge; the ``pin_locked`` event at the third."""
        challenge = self.store.challenge(challenge_id)
        if challenge is None:
            raise CardRefusal(CardRefusalCode.CHALLENGE_NOT_FOUND, "no such challenge", field="challenge_id",
                              rule="issued")
        if (challenge.municipality, challenge.principal) != (counter.municipality, counter.principal):
            raise CardRefusal(CardRefusalCode.WRONG_COUNTER, "the challenge was issued to another counter",
                              field="challenge_id", rule="bound_to_counter")
        if not self.store.use_challenge(challenge_id):
            raise CardRefusal(CardRefusalCode.CHALLENGE_REPLAYED, "the challenge was already answered",
                              field="challenge_id", rule="one_time")
        card = self._card(challenge.serial, now)
        failures = self.store.count_pin_failure(card)
        if failures >= MAX_PIN_FAILURES and not card.pin_locked and not card.status.final:
            card = self._change(replace(card, pin_failures=failures), EventKind.PIN_LOCKED, now,
                                municipality=card.home, actor=counter.principal, details={"failures": failures})
        return card, failures

    # --- reports ---------------------------------------------------------------------------------------
    def statistics(self, municipality: str, month: str) -> dict[str, int]:
        return self.store.statistics(municipality, month)
