"""Every rule on a counter API request, enforced once: each invalid request below is refused
4xx ``INVALID_REQUEST`` naming its field and its rule — whether the request model says it
(Powertools validates the body before the route runs: types, lengths, enumerations, the proof's
shape) or the service does (``services/card.py``, ``wide_area_copy.py``, ``special_move.py``:
check digits, dates and their period, the home municipality, the members, the proof's content).
The services take the model's typed request (``CardApplication``, ``CopyApplication``,
``MoveOutFiling``, ``MoveInApplication``) and do not check again what it guarantees.

The world is the special move's (two prefectures' tiers with the channel, ``tests/special_move``)
at 松本市 (MATSUMOTO): every route of the counter API is served there. Nobody is registered:
every request below is refused before a resident or a card is looked for.
"""

from __future__ import annotations

import pytest

from jukinet.domain.wide_area_copy import DOCUMENT_TYPES

from ..channel.world import MATSUMOTO, UEDA, resident
from ..moto_world import moto_world
from ..special_move.world import MoveWorld

CODE, OTHER = resident(1), resident(2)
BAD_DIGIT = CODE[:-1] + str((int(CODE[-1]) + 1) % 10)
HEX = "0123456789abcdef" * 2
KEY = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE" + "A" * 88  # base64, not a P-256 key
DOCUMENT = {"type": "driving_licence", "number": "123456789012", "clerk": "窓口 花子"}
SERIAL = "202029-0123456789abcdef"


def copy(**changes) -> dict:
    return {"resident_code": CODE, "home_municipality": UEDA, "proof": {"document": DOCUMENT}, **changes}


def document(**changes) -> dict:
    return copy(proof={"document": {**DOCUMENT, **changes}})


def move_out(**changes) -> dict:
    return {"resident_code": CODE, "planned_move_date": "2003-01-25", "destination_address": "長野県松本市丸の内3番7号",
            "by_post": True, **changes}


def move_in(**changes) -> dict:
    return {"resident_code": CODE, "home_municipality": UEDA, "moved_on": "2003-01-19", "card_authentication": HEX,
            **changes}


def issue(**changes) -> dict:
    return {"resident_code": CODE, "card_type": "B", "public_key": KEY, **changes}


# (case, method, path, body, field, rule): the rule as pydantic names it (the model) or as the service does
CASES = [
    # --- cards (the model) ---
    ("issue: no resident code", "POST", "/v1/cards", {"card_type": "B", "public_key": KEY}, "resident_code",
     "missing"),
    ("issue: resident code too long", "POST", "/v1/cards", issue(resident_code="1" * 17), "resident_code",
     "string_too_long"),
    ("issue: card type C", "POST", "/v1/cards", issue(card_type="C"), "card_type", "literal_error"),
    ("issue: public key too long", "POST", "/v1/cards", issue(public_key="A" * 513), "public_key",
     "string_too_long"),
    ("issue: resident code a number", "POST", "/v1/cards", issue(resident_code=24727059608), "resident_code",
     "string_type"),
    # --- cards (the service) ---
    ("issue: check digit", "POST", "/v1/cards", issue(resident_code=BAD_DIGIT), "resident_code", "check_digit"),
    ("issue: public key not a key", "POST", "/v1/cards", issue(), "public_key", "format"),
    ("suspend: reason too long", "POST", f"/v1/cards/{SERIAL}/suspension", {"reason": "x" * 65}, "reason",
     "string_too_long"),
    ("pin reset: no resident code", "POST", f"/v1/cards/{SERIAL}/pin-reset", {}, "resident_code", "missing"),
    ("serial too long", "POST", f"/v1/cards/{'1' * 33}/resumption", None, "serial", "string_too_long"),
    ("serial format", "POST", "/v1/cards/not-a-serial/resumption", None, "serial", "format"),
    # --- authentication ---
    ("challenge: serial too long", "POST", "/v1/challenges", {"serial": "1" * 33}, "serial", "string_too_long"),
    ("challenge: serial format", "POST", "/v1/challenges", {"serial": "x"}, "serial", "format"),
    ("authenticate: challenge id too long", "POST", "/v1/authentications",
     {"challenge_id": "1" * 65, "signature": "AA=="}, "challenge_id", "string_too_long"),
    ("authenticate: signature too long", "POST", "/v1/authentications",
     {"challenge_id": HEX, "signature": "A" * 257}, "signature", "string_too_long"),
    ("authenticate: signature not base64", "POST", "/v1/authentications",
     {"challenge_id": HEX, "signature": "not base64!"}, "signature", "base64"),
    ("pin failure: challenge id too long", "POST", f"/v1/challenges/{'1' * 65}/pin-failure", None,
     "challenge_id", "string_too_long"),
    ("remote: serial too long", "POST", "/v1/remote-authentications", {"serial": "1" * 33}, "serial",
     "string_too_long"),
    ("remote answer: signature not base64", "POST", f"/v1/remote-authentications/{HEX}/answer",
     {"signature": "not base64!"}, "signature", "base64"),
    # --- wide-area copies (the model) ---
    ("copy: no proof", "POST", "/v1/wide-area-copies", {"resident_code": CODE, "home_municipality": UEDA},
     "proof", "missing"),
    ("copy: home too long", "POST", "/v1/wide-area-copies", copy(home_municipality="2020290"), "home_municipality",
     "string_too_long"),
    ("copy: 20 members", "POST", "/v1/wide-area-copies", copy(members=[OTHER] * 20), "members", "too_long"),
    ("copy: whole household not a boolean", "POST", "/v1/wide-area-copies", copy(whole_household="all"),
     "whole_household", "bool_parsing"),
    ("copy: proof neither", "POST", "/v1/wide-area-copies", copy(proof={"passport": "x"}),
     "proof.CardAuthenticationProof.card_authentication", "missing"),
    ("copy: challenge id too short", "POST", "/v1/wide-area-copies", copy(proof={"card_authentication": "ab"}),
     "proof.CardAuthenticationProof.card_authentication", "string_too_short"),
    # a proof matching neither shape is reported by pydantic against the union's first member
    ("copy: document type", "POST", "/v1/wide-area-copies", document(type="library_card"),
     "proof.CardAuthenticationProof.card_authentication", "missing"),
    ("copy: document number empty", "POST", "/v1/wide-area-copies", document(number=""),
     "proof.CardAuthenticationProof.card_authentication", "missing"),
    # --- wide-area copies (the service) ---
    ("copy: check digit", "POST", "/v1/wide-area-copies", copy(resident_code=BAD_DIGIT), "resident_code",
     "check_digit"),
    ("copy: home a prefecture", "POST", "/v1/wide-area-copies", copy(home_municipality="200000"),
     "home_municipality", "municipality"),
    ("copy: home here", "POST", "/v1/wide-area-copies", copy(home_municipality=MATSUMOTO), "home_municipality",
     "other_municipality"),
    ("copy: member's check digit", "POST", "/v1/wide-area-copies", copy(members=[BAD_DIGIT]), "members[0]",
     "check_digit"),
    ("copy: the applicant as a member", "POST", "/v1/wide-area-copies", copy(members=[CODE]), "members[0]",
     "consistency"),
    ("copy: a member twice", "POST", "/v1/wide-area-copies", copy(members=[OTHER, OTHER]), "members[1]", "unique"),
    ("copy: members and the whole household", "POST", "/v1/wide-area-copies",
     copy(members=[OTHER], whole_household=True), "members", "consistency"),
    ("copy: challenge id not hex", "POST", "/v1/wide-area-copies", copy(proof={"card_authentication": "z" * 32}),
     "proof.card_authentication", "format"),
    ("copy: document number", "POST", "/v1/wide-area-copies", document(number="AB 12"), "proof.document.number",
     "format"),
    ("copy: clerk blank", "POST", "/v1/wide-area-copies", document(clerk="　"), "proof.document.clerk", "format"),
    ("copy: clerk a control character", "POST", "/v1/wide-area-copies", document(clerk="花子\u0007"),
     "proof.document.clerk", "format"),
    ("copy result: correlation too long", "GET", f"/v1/wide-area-copies/{'1' * 49}", None, "correlation",
     "string_too_long"),
    # --- special move-out (the model) ---
    ("move-out: date too long", "POST", "/v1/special-move-outs", move_out(planned_move_date="2003-01-255"),
     "planned_move_date", "string_too_long"),
    ("move-out: address too long", "POST", "/v1/special-move-outs", move_out(destination_address="あ" * 201),
     "destination_address", "string_too_long"),
    ("move-out: by post not a boolean", "POST", "/v1/special-move-outs", move_out(by_post="post"), "by_post",
     "bool_parsing"),
    ("move-out: authentication too short", "POST", "/v1/special-move-outs",
     move_out(by_post=False, card_authentication="ab"), "card_authentication", "string_too_short"),
    # --- special move-out (the service) ---
    ("move-out: check digit", "POST", "/v1/special-move-outs", move_out(resident_code=BAD_DIGIT), "resident_code",
     "check_digit"),
    ("move-out: date format", "POST", "/v1/special-move-outs", move_out(planned_move_date="25/01/2003"),
     "planned_move_date", "date"),
    ("move-out: date too late", "POST", "/v1/special-move-outs", move_out(planned_move_date="2003-01-01"),
     "planned_move_date", "range"),
    ("move-out: date too far", "POST", "/v1/special-move-outs", move_out(planned_move_date="2003-03-01"),
     "planned_move_date", "range"),
    ("move-out: address blank", "POST", "/v1/special-move-outs", move_out(destination_address="　"),
     "destination_address", "required"),
    ("move-out: address a control character", "POST", "/v1/special-move-outs",
     move_out(destination_address="松本\u0007"), "destination_address", "format"),
    ("move-out: at the counter, no authentication", "POST", "/v1/special-move-outs", move_out(by_post=False),
     "card_authentication", "required"),
    ("move-out status: resident code too long", "GET", f"/v1/special-move-outs/{'1' * 17}", None, "resident_code",
     "string_too_long"),
    ("move-out status: check digit", "GET", f"/v1/special-move-outs/{BAD_DIGIT}", None, "resident_code",
     "check_digit"),
    # --- special move-in ---
    ("move-in: no authentication", "POST", "/v1/special-move-ins",
     {k: v for k, v in move_in().items() if k != "card_authentication"}, "card_authentication", "missing"),
    ("move-in: authentication too long", "POST", "/v1/special-move-ins", move_in(card_authentication=HEX + "0"),
     "card_authentication", "string_too_long"),
    ("move-in: check digit", "POST", "/v1/special-move-ins", move_in(resident_code=BAD_DIGIT), "resident_code",
     "check_digit"),
    ("move-in: home here", "POST", "/v1/special-move-ins", move_in(home_municipality=MATSUMOTO),
     "home_municipality", "other_municipality"),
    ("move-in: home a prefecture", "POST", "/v1/special-move-ins", move_in(home_municipality="200000"),
     "home_municipality", "municipality"),
    ("move-in: moved in the future", "POST", "/v1/special-move-ins", move_in(moved_on="2003-01-21"), "moved_on",
     "range"),
    ("move-in: date format", "POST", "/v1/special-move-ins", move_in(moved_on="yesterday"), "moved_on", "date"),
    ("move-in result: correlation format", "GET", "/v1/special-move-ins/nonsense", None, "correlation", "format"),
]


@pytest.fixture(scope="module")
def world():
    with moto_world(MoveWorld) as made:
        yield made


@pytest.mark.parametrize("case, method, path, body, field, rule", CASES, ids=[c[0] for c in CASES])
def test_an_invalid_request_is_refused_naming_its_field_and_rule(world, case, method, path, body, field, rule):
    status, answer = world.call(method, path, body, at=MATSUMOTO)
    assert (status, answer["error"]["code"]) == (400, "INVALID_REQUEST"), answer
    assert (answer["error"]["field"], answer["error"]["rule"]) == (field, rule), answer["error"]


def test_the_models_document_types_are_the_domains():
    """The model's enumeration is the only check of a document's type: it must be the domain's list."""
    from jukinet.handlers.card_models import CheckedDocument

    assert set(CheckedDocument.model_fields["type"].annotation.__args__) == set(DOCUMENT_TYPES)
