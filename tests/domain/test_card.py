"""The card lifecycle, validity, challenges and the virtual chip (domain/card.py).

The lifecycle is checked against a reference model written out independently below
(``expected``): any sequence of requested changes, in any order, gives the documented state;
the log of accepted events replays to the same card in whatever order it arrives, and any
gap, fork or altered event is refused.
"""

from __future__ import annotations

import copy
import datetime as dt
import pickle
import random

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from jukinet.domain.card import (
    CHALLENGE_TTL,
    MAX_PIN_FAILURES,
    Card,
    CardLocked,
    CardRefusal,
    CardRefusalCode,
    CardStatus,
    CardType,
    Counter,
    EventKind,
    InvalidTransition,
    VirtualCard,
    WrongPin,
    apply,
    decide_authentication,
    issue_details,
    new_challenge,
    new_serial,
    next_event,
    parse_serial,
    replay,
    valid_until,
    verify_event,
)
from jukinet.domain.errors import ValidationError
from jukinet.domain.notice import JST

T0 = dt.datetime(2026, 12, 1, 1, 0, tzinfo=dt.UTC)
RESIDENT = "24727059608"
NAGANO, MATSUMOTO = "202011", "202029"
_CHIP = VirtualCard("1234")  # one chip for the lifecycle tests: making keys is not what they test
PUBLIC_KEY = _CHIP.public_key
SERIAL = new_serial(NAGANO, b"\x00" * 8)

LATER_KINDS = [k for k in EventKind if k is not EventKind.ISSUED]


def _event(card: Card | None, kind: EventKind, at: dt.datetime):
    details: dict = {}
    if kind is EventKind.ISSUED:
        details = issue_details(RESIDENT, CardType.B, PUBLIC_KEY, at)
    elif kind is EventKind.MOVED:
        details = {"to": MATSUMOTO if (card and card.home == NAGANO) else NAGANO}
    return next_event(card, kind, serial=SERIAL, at=at, municipality=NAGANO, actor="staff", details=details)


def run(kinds: list[EventKind]) -> tuple[Card | None, list]:
    """Request each change in turn; keep the accepted events."""
    card, log = None, []
    for i, kind in enumerate(kinds):
        try:
            event = _event(card, kind, T0 + dt.timedelta(minutes=i))
        except InvalidTransition:
            continue
        card = apply(card, event)
        log.append(event)
    return card, log


def expected(kinds: list[EventKind]) -> tuple[str | None, bool, int]:
    """The reference model: (status, PIN locked, homes moved), straight from docs/card.md."""
    status, locked, moves = None, False, 0
    for kind in kinds:
        if status is None:
            if kind is EventKind.ISSUED:
                status = "active"
            continue
        if status in ("revoked", "expired"):
            continue  # final
        if kind is EventKind.SUSPENDED and status == "active":
            status = "suspended"
        elif kind is EventKind.RESUMED and status == "suspended":
            status = "active"
        elif kind is EventKind.REVOKED:
            status = "revoked"
        elif kind is EventKind.EXPIRED:
            status = "expired"
        elif kind is EventKind.PIN_LOCKED:
            locked = True
        elif kind is EventKind.PIN_RESET:
            locked = False
        elif kind is EventKind.MOVED:
            moves += 1
    return status, locked, moves


kinds_st = st.lists(st.sampled_from(list(EventKind)), max_size=25)


@settings(max_examples=300)
@given(kinds_st)
def test_any_sequence_of_changes_gives_the_documented_state(kinds):
    card, log = run(kinds)
    status, locked, moves = expected(kinds)
    if status is None:
        assert card is None
        return
    assert card is not None
    assert card.status.value == status
    assert card.pin_locked is locked
    assert card.home == (MATSUMOTO if moves % 2 else NAGANO)
    assert card.issuer == NAGANO
    assert card.seq == len(log)


@settings(max_examples=200)
@given(st.lists(st.sampled_from(LATER_KINDS), max_size=20), st.randoms(use_true_random=False))
def test_the_log_replays_to_the_same_card_in_any_arrival_order(kinds, rnd):
    card, log = run([EventKind.ISSUED, *kinds])
    shuffled = list(log)
    rnd.shuffle(shuffled)
    assert replay(shuffled) == card


@settings(max_examples=100)
@given(st.lists(st.sampled_from([EventKind.SUSPENDED, EventKind.RESUMED, EventKind.PIN_LOCKED,
                                 EventKind.PIN_RESET, EventKind.MOVED]), min_size=2, max_size=15),
       st.data())
def test_a_gap_or_an_altered_event_breaks_the_replay(kinds, data):
    _, log = run([EventKind.ISSUED, *kinds])
    if len(log) < 3:
        return
    i = data.draw(st.integers(1, len(log) - 2))
    with pytest.raises(ValidationError):
        replay(log[:i] + log[i + 1:])  # one event dropped
    forged = list(log)
    forged[i] = copy.replace(forged[i], actor="someone else") if hasattr(copy, "replace") else \
        type(forged[i])(**{**forged[i].__dict__, "actor": "someone else"})
    with pytest.raises(ValidationError):
        replay(forged)  # the next event's chain no longer matches


@given(st.sampled_from([EventKind.REVOKED, EventKind.EXPIRED]), st.lists(st.sampled_from(list(EventKind)),
                                                                         max_size=10))
def test_revoked_and_expired_are_final(final, later):
    card, _ = run([EventKind.ISSUED, final])
    for i, kind in enumerate(later):
        with pytest.raises(InvalidTransition):
            _event(card, kind, T0 + dt.timedelta(hours=i + 1))


def test_a_second_issue_of_the_same_card_is_refused():
    card, _ = run([EventKind.ISSUED])
    with pytest.raises(InvalidTransition) as refused:
        _event(card, EventKind.ISSUED, T0)
    assert refused.value.code is CardRefusalCode.INVALID_TRANSITION


def test_an_event_is_signed_over_its_digest_and_a_changed_event_fails_the_signature():
    key = ec.generate_private_key(ec.SECP256R1())
    event = _event(None, EventKind.ISSUED, T0)
    signed = event.signed("kms-key", key.sign(event.digest(), ec.ECDSA(hashes.SHA256())))
    assert verify_event(key.public_key(), signed)
    tampered = type(signed)(**{**signed.__dict__, "municipality": MATSUMOTO})
    assert not verify_event(key.public_key(), tampered)


# --- validity -------------------------------------------------------------------------------


@given(st.datetimes(min_value=dt.datetime(2003, 8, 25), max_value=dt.datetime(2090, 12, 31),
                    timezones=st.just(dt.UTC)))
def test_validity_is_ten_years_to_the_day_in_japan(now):
    issued = now.astimezone(JST).date()
    last = valid_until(now)
    anniversary = last + dt.timedelta(days=1)
    assert anniversary.year == issued.year + 10
    assert (anniversary.month, anniversary.day) == (issued.month, issued.day) or \
        (issued.month, issued.day, anniversary.month, anniversary.day) == (2, 29, 3, 1)


def test_issued_on_29_february_the_card_runs_to_the_end_of_february():
    assert valid_until(dt.datetime(2028, 2, 29, 3, tzinfo=JST)) == dt.date(2038, 2, 28)


def test_a_card_counts_as_expired_from_the_anniversary_in_japan_without_any_event():
    card, _ = run([EventKind.ISSUED])
    assert card is not None
    last_moment = dt.datetime.combine(card.valid_until, dt.time(23, 59, 59), JST)
    assert card.status_at(last_moment) is CardStatus.ACTIVE
    assert card.status_at(last_moment + dt.timedelta(seconds=1)) is CardStatus.EXPIRED
    suspended, _ = run([EventKind.ISSUED, EventKind.SUSPENDED])
    assert suspended.status_at(last_moment + dt.timedelta(days=1)) is CardStatus.EXPIRED


# --- authentication ---------------------------------------------------------------------------


COUNTER = Counter(MATSUMOTO, "arn:aws:sts::1:assumed-role/jukinet-counter-202029/clerk")


def _issued_to(chip: VirtualCard) -> Card:
    event = next_event(None, EventKind.ISSUED, serial=SERIAL, at=T0, municipality=NAGANO, actor="staff",
                       details=issue_details(RESIDENT, CardType.A, chip.public_key, T0))
    chip.serial = SERIAL
    return apply(None, event)


def test_the_right_pin_and_a_fresh_challenge_authenticate():
    card = _issued_to(_CHIP)
    challenge = new_challenge(SERIAL, COUNTER, T0)
    signature = _CHIP.sign(challenge.message(), "1234")
    assert decide_authentication(challenge, card, COUNTER, signature, T0 + dt.timedelta(seconds=5)) == card


@pytest.mark.parametrize("case, code", [
    ("replayed", CardRefusalCode.CHALLENGE_REPLAYED),
    ("expired", CardRefusalCode.CHALLENGE_EXPIRED),
    ("wrong_counter", CardRefusalCode.WRONG_COUNTER),
    ("wrong_key", CardRefusalCode.SIGNATURE_INVALID),
    ("other_challenge", CardRefusalCode.SIGNATURE_INVALID),
    ("suspended", CardRefusalCode.CARD_SUSPENDED),
    ("revoked", CardRefusalCode.CARD_REVOKED),
    ("expired_card", CardRefusalCode.CARD_EXPIRED),
    ("pin_locked", CardRefusalCode.PIN_LOCKED),
    ("unknown_challenge", CardRefusalCode.CHALLENGE_NOT_FOUND),
    ("unknown_card", CardRefusalCode.CARD_NOT_FOUND),
])
def test_each_bad_answer_is_refused_with_its_code(case, code):
    card: Card | None = _issued_to(_CHIP)
    challenge = new_challenge(SERIAL, COUNTER, T0)
    presented_by, now = COUNTER, T0 + dt.timedelta(seconds=5)
    signature = _CHIP.sign(challenge.message(), "1234")
    if case == "replayed":
        challenge = copy.copy(challenge)
        object.__setattr__(challenge, "used", True)
    elif case == "expired":
        now = T0 + CHALLENGE_TTL
    elif case == "wrong_counter":
        presented_by = Counter(NAGANO, COUNTER.principal)
    elif case == "wrong_key":
        signature = VirtualCard("1234").sign(challenge.message(), "1234")
    elif case == "other_challenge":
        signature = _CHIP.sign(new_challenge(SERIAL, COUNTER, T0).message(), "1234")
    elif case in ("suspended", "revoked", "pin_locked"):
        kind = {"suspended": EventKind.SUSPENDED, "revoked": EventKind.REVOKED,
                "pin_locked": EventKind.PIN_LOCKED}[case]
        card = apply(card, next_event(card, kind, serial=SERIAL, at=T0, municipality=NAGANO, actor="x"))
    elif case == "expired_card":
        now = dt.datetime.combine(card.valid_until + dt.timedelta(days=1), dt.time(0), JST)
        challenge = new_challenge(SERIAL, COUNTER, now - dt.timedelta(seconds=5))
        signature = _CHIP.sign(challenge.message(), "1234")
    elif case == "unknown_challenge":
        challenge = None
    elif case == "unknown_card":
        card = None
    with pytest.raises(CardRefusal) as refused:
        decide_authentication(challenge, card, presented_by, signature, now)
    assert refused.value.code is code
    assert code.authentication


@given(st.integers(0, int(CHALLENGE_TTL.total_seconds() * 1000) - 1))
def test_a_challenge_is_answerable_until_its_expiry_and_not_at_it(ms):
    card = _issued_to(_CHIP)
    challenge = new_challenge(SERIAL, COUNTER, T0)
    signature = _CHIP.sign(challenge.message(), "1234")
    decide_authentication(challenge, card, COUNTER, signature, T0 + dt.timedelta(milliseconds=ms))
    with pytest.raises(CardRefusal):
        decide_authentication(challenge, card, COUNTER, signature, challenge.expires_at)


# --- the chip ------------------------------------------------------------------------------


@settings(max_examples=40)
@given(st.lists(st.sampled_from(["right", "wrong"]), max_size=8))
def test_the_chip_locks_after_three_wrong_pins_in_a_row_and_only_then(tries):
    chip = VirtualCard("4821")
    run_of_wrong, locked = 0, False
    for t in tries:
        if locked:
            with pytest.raises(CardLocked):
                chip.sign(b"m", "4821")
            continue
        if t == "right":
            chip.sign(b"m", "4821")
            run_of_wrong = 0
        else:
            run_of_wrong += 1
            with pytest.raises(CardLocked if run_of_wrong == MAX_PIN_FAILURES else WrongPin):
                chip.sign(b"m", "0000")
            locked = run_of_wrong == MAX_PIN_FAILURES
    assert chip.locked is locked


def test_brute_forcing_the_pin_stops_after_three_guesses():
    chip = VirtualCard("7305")
    guesses = [f"{n:04d}" for n in range(10_000)]
    random.Random(1).shuffle(guesses)
    tried = 0
    for guess in guesses:
        if guess == "7305":
            continue
        tried += 1
        try:
            chip.sign(b"challenge", guess)
        except WrongPin:
            continue
        except CardLocked:
            break
    assert tried == MAX_PIN_FAILURES
    with pytest.raises(CardLocked):
        chip.sign(b"challenge", "7305")  # even the right PIN, once locked


def test_only_a_new_pin_reset_event_for_this_card_unlocks_it():
    chip = VirtualCard("1111")
    card = _issued_to(chip)
    for _ in range(MAX_PIN_FAILURES):
        with pytest.raises((WrongPin, CardLocked)):
            chip.sign(b"m", "2222")
    locked = apply(card, next_event(card, EventKind.PIN_LOCKED, serial=SERIAL, at=T0, municipality=NAGANO,
                                    actor="x"))
    reset = next_event(locked, EventKind.PIN_RESET, serial=SERIAL, at=T0, municipality=NAGANO, actor="x")
    with pytest.raises(ValidationError):
        chip.reset_pin("3333", next_event(locked, EventKind.SUSPENDED, serial=SERIAL, at=T0, municipality=NAGANO,
                                          actor="x"))
    chip.reset_pin("3333", reset)
    assert chip.sign(b"m", "3333")
    with pytest.raises(ValidationError):
        chip.reset_pin("4444", reset)  # the same event again


def test_the_private_key_never_leaves_the_chip():
    chip = VirtualCard("1234")
    with pytest.raises(TypeError):
        pickle.dumps(chip)
    with pytest.raises(TypeError):
        copy.deepcopy(chip)
    assert not hasattr(chip, "__dict__")
    assert "PRIVATE" not in repr(chip) and "key" not in repr(chip)
    public = [name for name in dir(chip) if not name.startswith("_")]
    assert sorted(public) == ["locked", "public_key", "reset_pin", "serial", "sign"]


def test_a_pin_is_four_digits():
    for bad in ("123", "12345", "abcd", "", "１２３４"):
        with pytest.raises(ValidationError) as refused:
            VirtualCard(bad)
        assert refused.value.field == "pin"


def test_serials_name_their_issuer():
    serial = new_serial(NAGANO)
    assert parse_serial(serial).startswith(NAGANO)
    for bad in ("202011-XYZ", "202012-0000000000000000", "20201-00000000000000000"):
        with pytest.raises(ValidationError):
            parse_serial(bad)
