"""A card of another tier at this counter (issue 15 item 4 across prefectures; decision 0050).

A card lives in its home municipality's tier (the card table of ``jukinet-muni-<pref>``). A
counter of another prefecture (X) authenticates it through the channel between municipalities
(decisions 0041, 0042), asynchronously as the wide-area copy does (decision 0046):

    X's counter ── POST /v1/remote-authentications {serial} ──▶ ``RemoteAuthentications.start``:
        identify the clerk, find the card's home (its own record if the card moved away from this
        tier, else the issuer the serial names), record the authentication (``CHALLENGE#<id>``, used
        from the start: never answerable within this tier) and the channel request (``CARDREQ#``),
        nudge the tier's channel function
    X's channel function (``send_card_request``): ``ChannelEndpoint.request`` to the home — signed
        as X, sealed for the home tier; the query names the clerk's session
    the home's channel function (``card_challenge_responder``): ``CardService.open_challenge`` bound
        to (X, the clerk's session) — X is proven by the message's signature — with the same
        120 s expiry, started by the home tier's clock
    X's counter ── GET /v1/remote-authentications/{id} ──▶ the challenge (message to sign), then
    X's counter ── POST /v1/remote-authentications/{id}/answer {signature} ──▶ a second channel
        request; the home (``card_authentication_responder``) runs ``CardService.check_answer``:
        spent first, expiry, counter, status read strongly consistently now, PIN lock, signature
    X's counter ── GET ──▶ ``authenticated`` {resident_code, issuer} or ``refused`` {code}: the
        same codes as within the tier, counted once at X (``auth_ok``, ``auth_refused_<CODE>``,
        the metrics X's tier alarms on) and at the home (``remote_auth_*`` per card home, and the
        home tier's ``CardAuthenticationRefusals``: every refusal of its cards, at any counter)

A wrong PIN is reported the same way (``/pin-failure``: the home counts and locks at 3). A
card carried over to another tier is refused by its old tier ``CARD_MOVED`` naming the new
home; X routes the request there (at most ``MAX_ROUTES`` times).

The carry-over of a card record between tiers (decision 0027, part 2) is the query
``card-carry-over``: ``request_carry_over`` (the new home's side) → ``carry_over_responder``
(the old home: checks ``special_move_out_filed`` — its special move-out record, completed by the
new home — writes ``moved``, answers the signed chain)
→ ``carry_over_card`` (the new home: checks every event with the old tiers' card-event keys,
stores the chain as it is).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import secrets
from collections.abc import Callable, Mapping

from cryptography.hazmat.primitives.serialization import load_der_public_key

from ..adapters import aws
from ..adapters.card_requests import CardRequests
from ..adapters.special_move_store import SpecialMoveStore
from ..adapters.card_store import Conflict, _n, _s, card_item, event_item
from ..clock import Clock, month_jst
from ..domain import channel
from ..domain.card import (
    Card,
    CardEvent,
    CardMoved,
    CardRefusal,
    CardRefusalCode,
    Counter,
    EventKind,
    apply,
    parse_instant,
    parse_serial,
    replay,
    verify_event,
)
from ..domain.channel import Outcome
from ..domain.codes import LocalGovernmentCode
from ..domain.special_move import State as MoveOutState
from ..domain.errors import ValidationError
from ..observability import MetricUnit, count_refused_by_code, logger, metrics
from .card import Caller, CardService
from .channel import ChannelEndpoint, Refused, Responder

NUDGE = "jukinet-counter"
NUDGE_KIND = "card-request"
CHALLENGE_QUERY, ANSWER_QUERY, PIN_QUERY, CARRY_QUERY = (
    "card-challenge", "card-authentication", "card-pin-failure", "card-carry-over")
MAX_ROUTES = 2  # a card carried over twice in a row between the request and its answer is refused
UNSENT_GRACE = dt.timedelta(seconds=60)
ENDED_CARD = (CardRefusalCode.CARD_SUSPENDED, CardRefusalCode.CARD_REVOKED)


def nudge(correlation: str) -> str:
    return json.dumps({NUDGE: NUDGE_KIND, "correlation": correlation}, separators=(",", ":"))


def nudged_card_request(body: str) -> str | None:
    """The correlation id of a counter's card-request nudge, or ``None``."""
    if not body.startswith("{") or NUDGE not in body[:40]:
        return None
    try:
        raw = json.loads(body)
        if not isinstance(raw, dict) or raw.get(NUDGE) != NUDGE_KIND:
            return None
        return channel.parse_correlation(raw.get("correlation"))
    except (ValueError, ValidationError):
        return None


def _code(raw: object) -> CardRefusalCode | None:
    return CardRefusalCode.__members__.get(str(raw))


def count_authentication_refusal(code: CardRefusalCode) -> None:
    """The metrics a refused card authentication adds where it is counted (the tier's alarms
    ``card-authentication-refusals``, ``ended-card-presented``)."""
    metrics.add_metric(name="CardRefusals", unit=MetricUnit.Count, value=1)
    count_refused_by_code(code.name)
    if code.authentication:
        metrics.add_metric(name="CardAuthenticationRefusals", unit=MetricUnit.Count, value=1)
    if code in ENDED_CARD:
        metrics.add_metric(name="EndedCardPresented", unit=MetricUnit.Count, value=1)


# --- X: the requesting counter ------------------------------------------------------------------------
class RemoteAuthentications:
    """The requesting counter's side, behind the counter API (``handlers/card_api.py``)."""

    def __init__(self, cards: CardService, reader: ChannelEndpoint, channel_queue_url: str, *, clock: Clock,
                 wait: dt.timedelta = channel.DEFAULT_DEADLINE) -> None:
        self.cards, self.store, self.reader = cards, cards.store, reader
        self.requests = CardRequests(cards.store.table_name)
        self.channel_queue_url, self.clock, self.wait = channel_queue_url, clock, wait

    def _send(self, here: str, to: str, query: dict, auth_id: str, clerk: str, now: dt.datetime) -> str:
        correlation = channel.new_correlation_id(here, now)
        self.requests.put_request(correlation, to=to, query=query, auth_id=auth_id, clerk=clerk, now=now)
        aws.client("sqs").send_message(QueueUrl=self.channel_queue_url, MessageBody=nudge(correlation))
        return correlation

    def _record(self, principal: str, here: str, now: dt.datetime, caller: Caller, action: str, outcome: str,
                serial: str = "", resident: str = "") -> None:
        self.store.record_call(now=now, municipality=here, principal=principal, action=action, outcome=outcome,
                               request_id=caller.request_id, resident_code=resident, serial=serial)

    def start(self, caller: Caller, serial: object) -> dict:
        """Ask the card's home tier for a challenge bound to this counter; the id to poll."""
        now = self.clock()
        staff = self.cards.identify(caller)
        here = self.cards._counter_only(staff)
        try:
            serial = parse_serial(serial)
        except ValidationError as exc:
            raise CardRefusal(CardRefusalCode.INVALID_REQUEST, exc.detail, field=exc.field, rule=exc.rule) from None
        card = self.store.card(serial)
        if card is not None and self.cards.holds(card):
            raise CardRefusal(CardRefusalCode.INVALID_REQUEST, "the card is held in this tier: POST /v1/challenges",
                              field="serial", rule="other_tier")
        home = card.home if card is not None else serial[:6]  # moved away: its new home; else the issuer
        if home[:2] in self.cards.prefixes:  # a serial of this tier without a card here
            raise CardRefusal(CardRefusalCode.CARD_NOT_FOUND, "no such card", field="serial", rule="registered")
        auth_id = secrets.token_hex(16)
        correlation = self._send(here, home, {"query": CHALLENGE_QUERY, "serial": serial, "clerk": staff.principal},
                                 auth_id, staff.principal, now)
        self.requests.put_authentication(auth_id, serial=serial, municipality=here, principal=staff.principal,
                                         home=home, correlation=correlation, now=now)
        self._record(staff.principal, here, now, caller, "remote_challenge", "sent", serial)
        return {"id": auth_id, "serial": serial, "home": home, "status": "pending"}

    def _mine(self, caller: Caller, auth_id: str) -> tuple[str, str, dict]:
        staff = self.cards.identify(caller)
        here = self.cards._counter_only(staff)
        record = self.requests.authentication(auth_id) if len(auth_id) == 32 else None
        if record is None:
            raise CardRefusal(CardRefusalCode.CHALLENGE_NOT_FOUND, "no such authentication", field="id", rule="issued")
        if (record["municipality"], record["principal"]) != (here, staff.principal):
            raise CardRefusal(CardRefusalCode.WRONG_COUNTER, "the authentication was asked for at another counter",
                              field="id", rule="bound_to_counter")
        return staff.principal, here, record

    def answer(self, caller: Caller, auth_id: str, signature: bytes) -> dict:
        """Send the card's signature over the home's challenge to the home; poll the outcome."""
        return self._follow_up(caller, auth_id, "answer", ANSWER_QUERY,
                               {"signature": base64.b64encode(signature).decode("ascii")})

    def pin_failure(self, caller: Caller, auth_id: str) -> dict:
        """Report to the home that the card refused the PIN for this challenge (counted there, locks at 3)."""
        return self._follow_up(caller, auth_id, "pin-failure", PIN_QUERY, {})

    def _follow_up(self, caller: Caller, auth_id: str, step: str, kind: str, extra: dict) -> dict:
        now = self.clock()
        principal, here, record = self._mine(caller, auth_id)
        if record["step"] != "challenge":
            raise CardRefusal(CardRefusalCode.CHALLENGE_REPLAYED, "the challenge was already answered",
                              field="id", rule="one_time")
        issued = self._challenge_of(record)
        if issued is None:
            raise CardRefusal(CardRefusalCode.INVALID_TRANSITION, "the home tier has not issued the challenge yet: "
                              "poll GET /v1/remote-authentications/{id}", field="id", rule="challenge_issued")
        correlation = channel.new_correlation_id(here, now)
        if not self.requests.next_step(auth_id, was="challenge",
                                       was_correlation=record["step_correlation"], step=step, correlation=correlation,
                                       home_challenge=issued["challenge_id"]):
            raise CardRefusal(CardRefusalCode.CHALLENGE_REPLAYED, "the challenge was already answered",
                              field="id", rule="one_time")
        query = {"query": kind, "challenge_id": issued["challenge_id"], "clerk": principal, **extra}
        self.requests.put_request(correlation, to=record["remote_home"], query=query, auth_id=auth_id,
                                  clerk=principal, now=now)
        aws.client("sqs").send_message(QueueUrl=self.channel_queue_url, MessageBody=nudge(correlation))
        self._record(principal, here, now, caller, f"remote_{step.replace('-', '_')}", "sent", record["serial"])
        return {"id": auth_id, "serial": record["serial"], "home": record["remote_home"], "status": "pending"}

    def _challenge_of(self, record: dict) -> dict | None:
        result = self._result(record["step_correlation"])
        return result.answer if result is not None and result.outcome is Outcome.ANSWERED else None

    def _result(self, correlation: str):  # noqa: ANN202 (services.channel.Result | None)
        if self.reader.store.request(correlation) is None:
            return None
        return self.reader.result(correlation)

    def result(self, caller: Caller, auth_id: str) -> dict:
        now = self.clock()
        principal, here, record = self._mine(caller, auth_id)
        body = self._outcome(principal, here, auth_id, record, now)
        self._record(principal, here, now, caller, "remote_result", body["status"], record["serial"],
                     body.get("resident_code", ""))
        return body

    def _outcome(self, principal: str, here: str, auth_id: str, record: dict, now: dt.datetime) -> dict:
        step, correlation = record["step"], record["step_correlation"]
        base = {"id": auth_id, "serial": record["serial"], "home": record["remote_home"], "step": step}
        sent = self.requests.request(correlation)
        result = self._result(correlation)
        if result is None:  # the channel function has not sent it (yet)
            requested = parse_instant(sent["requested_at"]) if sent else now
            if now <= requested + self.wait + UNSENT_GRACE:
                return {**base, "status": "pending"}
            self._count(here, correlation, "timed_out", now)
            return {**base, "status": "timed_out"}
        if result.outcome is Outcome.PENDING:
            return {**base, "status": "pending"}
        if result.outcome is Outcome.TIMED_OUT:
            self._count(here, correlation, "timed_out", now)
            return {**base, "status": "timed_out"}
        if result.outcome is Outcome.REFUSED:
            code = _code(result.refusal)
            detail = self._refusal_detail(correlation)
            if code is CardRefusalCode.CARD_MOVED and step == "challenge" and int(record.get("routes", 0)) < MAX_ROUTES:
                home = detail
                try:
                    LocalGovernmentCode.parse(home, "home")
                except ValidationError:
                    home = ""
                if home and home[:2] not in self.cards.prefixes:
                    return self._route(principal, here, auth_id, record, home, now)
            # not a card code: the channel's own (unknown_query: the home tier serves no cards of
            # other tiers; invalid_query), upper-cased
            name = code.name if code is not None else (result.refusal.upper()[:32] or "INVALID_ANSWER")
            self._count(here, correlation, name, now, code)
            return {**base, "status": "refused", "code": name,
                    "message": detail if code is not CardRefusalCode.CARD_MOVED else f"the card is held by {detail}"}
        answer = result.answer or {}
        if step == "challenge":
            return {**base, "status": "challenge", "challenge_id": str(answer.get("challenge_id", "")),
                    "message": str(answer.get("message", "")), "expires_at": str(answer.get("expires_at", ""))}
        if step == "pin-failure":
            self._count(here, correlation, "pin_failure", now)
            return {**base, "status": "pin_failure_counted", "failures": int(answer.get("failures", 0)),
                    "locked": bool(answer.get("locked", False))}
        resident, issuer = answer.get("resident_code"), answer.get("issuer")
        if set(answer) != {"resident_code", "issuer"} or not isinstance(resident, str) or not isinstance(issuer, str):
            self._count(here, correlation, "INVALID_ANSWER", now)
            return {**base, "status": "refused", "code": "INVALID_ANSWER",
                    "message": "the home tier's answer is not an authentication's"}
        self.requests.authenticated(auth_id, resident, issuer, now)
        self._count(here, correlation, "ok", now)
        return {**base, "status": "authenticated", "resident_code": resident, "issuer": issuer}

    def _refusal_detail(self, correlation: str) -> str:
        from ..domain.channel import Envelope
        item = self.reader.store.request(correlation) or {}
        try:
            content = json.loads(self.reader.keys.open(Envelope.from_bytes(bytes(item["answer"]["B"]))))
        except (KeyError, ValueError):
            return ""
        return str(content.get("detail", ""))[:200]

    def _route(self, principal: str, here: str, auth_id: str, record: dict, home: str, now: dt.datetime) -> dict:
        """The old tier said the card moved: ask its new home, once per answer (conditional)."""
        correlation = channel.new_correlation_id(here, now)
        query = {"query": CHALLENGE_QUERY, "serial": record["serial"], "clerk": principal}
        if self.requests.next_step(auth_id, was="challenge", was_correlation=record["step_correlation"],
                                   step="challenge", correlation=correlation, home=home):
            self.requests.put_request(correlation, to=home, query=query, auth_id=auth_id, clerk=principal, now=now)
            aws.client("sqs").send_message(QueueUrl=self.channel_queue_url, MessageBody=nudge(correlation))
        return {"id": auth_id, "serial": record["serial"], "home": home, "step": "challenge", "status": "pending"}

    def _count(self, here: str, correlation: str, outcome: str, now: dt.datetime,
               code: CardRefusalCode | None = None) -> None:
        """Each channel request's outcome counted once at this counter's municipality, however often polled."""
        if not self.requests.count_once(correlation, outcome):
            return
        month = month_jst(now)
        if outcome == "ok":
            self.store.count(here, month, {"auth_ok": 1})
            metrics.add_metric(name="CardAuthentications", unit=MetricUnit.Count, value=1)
        elif outcome == "pin_failure":
            self.store.count(here, month, {"pin_failures": 1})
            metrics.add_metric(name="CardPinFailures", unit=MetricUnit.Count, value=1)
        elif outcome == "timed_out":
            self.store.count(here, month, {"remote_auth_timed_out": 1})
        else:
            prefix = "auth_refused_" if code is not None and code.authentication else "refused_"
            self.store.count(here, month, {f"{prefix}{outcome}": 1})
            if code is not None:
                count_authentication_refusal(code)
            logger.warning("card request refused", extra={"code": outcome, "correlation": correlation,
                                                          "path": "/v1/remote-authentications"})


# --- X's channel function: send what the counter recorded --------------------------------------------
def send_card_request(endpoint: ChannelEndpoint, requests: CardRequests, correlation: str) -> str:
    """Send the card request the counter recorded under ``correlation`` (idempotent)."""
    record = requests.request(correlation)
    requester, _ = channel.correlation_owner(correlation)
    if record is None or not endpoint.serves(requester):
        logger.warning("counter nudge without a card request here", extra={"correlation": correlation})
        metrics.add_metric(name="CardRequestNudgesIgnored", unit=MetricUnit.Count, value=1)
        return "ignored"
    endpoint.request(requester, record["to"], json.loads(record["query"]), correlation=correlation)
    return "sent"


# --- the home tier's channel function ---------------------------------------------------------------
def _clerk(query: Mapping) -> str:
    clerk = query.get("clerk")
    if not isinstance(clerk, str) or not clerk.startswith("arn:") or len(clerk) > 256:
        raise ValidationError("clerk", "format", "the requesting clerk's role session ARN")
    return clerk


def _served(cards: CardService, requester: str, home: str, action: str, outcome: str, now: dt.datetime,
            card: Card | None, serial: str, clerk: str, query: Mapping) -> None:
    """The home tier's record and count of what it answered a counter of another tier."""
    where = card.home if card is not None and cards.holds(card) else home
    cards.store.record_call(now=now, municipality=where, principal=f"{requester}|{clerk}"[:300],
                            action=f"remote_{action}", outcome=outcome,
                            request_id=str(query.get("_correlation", ""))[:64],
                            resident_code=card.resident_code if card else "", serial=serial)
    cards.store.count(where, month_jst(now), {f"remote_{action}_{outcome}": 1})


def _refused(cards: CardService, refusal: CardRefusal, requester: str, home: str, action: str, now: dt.datetime,
             serial: str, clerk: str, query: Mapping) -> Refused:
    card = cards.store.card(serial) if serial else None
    _served(cards, requester, home, action, refusal.code.name, now, card, serial, clerk, query)
    if action != "carry_over":
        count_authentication_refusal(refusal.code)
    else:  # the old home never refuses a carry-over it agreed to: an insider pulling a card (decision 0050)
        metrics.add_metric(name="CardUnauthorisedAttempts", unit=MetricUnit.Count, value=1)
    logger.warning("card request from another tier refused", extra={
        "code": refusal.code.name, "requester": requester, "clerk": clerk, "serial": serial, "action": action})
    detail = refusal.home if isinstance(refusal, CardMoved) else refusal.message
    return Refused(refusal.code.name, detail)


def _serial_of(cards: CardService, challenge_id: object) -> str:
    challenge = cards.store.challenge(challenge_id) if isinstance(challenge_id, str) and challenge_id else None
    return challenge.serial if challenge else ""


def card_challenge_responder(cards: CardService) -> Responder:
    """``card-challenge``: a challenge bound to the requesting municipality (proven by the
    message's signature) and its clerk's session, with the same expiry as within the tier."""
    def respond(requester: str, home: str, query: dict) -> dict | Refused:
        now = cards.clock()
        try:
            clerk = _clerk(query)
            serial = parse_serial(query.get("serial"))
        except ValidationError as exc:
            return Refused("invalid_query", f"{exc.field}: {exc.rule}")
        try:
            card, challenge = cards.open_challenge(Counter(requester, clerk), serial, now)
        except CardRefusal as refusal:
            return _refused(cards, refusal, requester, home, "challenge", now, serial, clerk, query)
        _served(cards, requester, home, "challenge", "ok", now, card, serial, clerk, query)
        return {"challenge_id": challenge.challenge_id, "serial": challenge.serial,
                "message": challenge.message().decode(),
                "expires_at": challenge.expires_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")}

    return respond


def card_authentication_responder(cards: CardService) -> Responder:
    """``card-authentication``: the card's signature over the challenge → {resident_code, issuer}."""
    def respond(requester: str, home: str, query: dict) -> dict | Refused:
        now = cards.clock()
        try:
            clerk = _clerk(query)
            challenge_id = query.get("challenge_id")
            if not isinstance(challenge_id, str) or len(challenge_id) > 64:
                raise ValidationError("challenge_id", "format", "the home tier's challenge id")
            signature = base64.b64decode(str(query.get("signature", "")), validate=True)
        except (ValidationError, binascii.Error, ValueError) as exc:
            return Refused("invalid_query", getattr(exc, "field", "signature"))
        serial = _serial_of(cards, challenge_id)
        try:
            card = cards.check_answer(Counter(requester, clerk), challenge_id, signature, now)
        except CardRefusal as refusal:
            return _refused(cards, refusal, requester, home, "authenticate", now, serial, clerk, query)
        _served(cards, requester, home, "authenticate", "ok", now, card, serial, clerk, query)
        metrics.add_metric(name="CardAuthentications", unit=MetricUnit.Count, value=1)
        return {"resident_code": card.resident_code, "issuer": card.issuer}

    return respond


def card_pin_failure_responder(cards: CardService) -> Responder:
    """``card-pin-failure``: a wrong PIN on the requesting counter's challenge; locks at the third."""
    from ..domain.card import MAX_PIN_FAILURES

    def respond(requester: str, home: str, query: dict) -> dict | Refused:
        now = cards.clock()
        try:
            clerk = _clerk(query)
        except ValidationError as exc:
            return Refused("invalid_query", f"{exc.field}: {exc.rule}")
        challenge_id = str(query.get("challenge_id", ""))[:64]
        serial = _serial_of(cards, challenge_id)
        try:
            card, failures = cards.count_wrong_pin(Counter(requester, clerk), challenge_id, now)
        except CardRefusal as refusal:
            return _refused(cards, refusal, requester, home, "pin_failure", now, serial, clerk, query)
        _served(cards, requester, home, "pin_failure", "locked" if failures >= MAX_PIN_FAILURES else "counted", now,
                card, serial, clerk, query)
        metrics.add_metric(name="CardPinFailures", unit=MetricUnit.Count, value=1)
        return {"failures": failures, "locked": failures >= MAX_PIN_FAILURES}

    return respond


# --- the card record's transfer between tiers (decision 0027, part 2) ------------------------------
CARRY_OVER_PERIOD = dt.timedelta(days=30)
"""How long after the special move-out's completion the old home still agrees to hand the card
over (the new home asks at its first look at the completed move-in; a lost request is asked again)."""


def special_move_out_filed(store, resident_code: str, from_municipality: str, to_municipality: str,  # noqa: ANN001
                           now: dt.datetime, serial: str) -> bool:
    """Did ``from_municipality`` (the old home, this tier) agree that its resident's card goes to
    ``to_municipality``? Its own record of the resident's latest special move-out (転出の特例,
    ``SPECIAL-OUT#<from>``, decision 0049) is the agreement: **completed** by the 転入通知 of
    exactly ``to_municipality`` (the municipality that received the certificate information and
    registered the move-in), at most ``CARRY_OVER_PERIOD`` ago, for the card ``serial`` (the one the
    filing named and B authenticated). Anything else refuses — no
    filing, a filing still open, cancelled or lapsed, completed by another municipality, long
    ago: an insider with another municipality's rights cannot pull a card of a resident who has
    not moved there."""
    found = SpecialMoveStore(store.table_name).latest(from_municipality, resident_code)
    if found is None:
        return False
    record = found[0]
    return (record.state is MoveOutState.COMPLETED and record.requester == to_municipality
            and record.card_serial == serial
            and record.changed_at is not None and now <= record.changed_at + CARRY_OVER_PERIOD)


Agreement = Callable[[object, str, str, str, dt.datetime, str], bool]


def carry_over_responder(cards: CardService, agreed: Agreement = special_move_out_filed) -> Responder:
    """``card-carry-over`` at the old home: if the old home agreed (``agreed``: by default
    ``special_move_out_filed``), write ``moved`` (this tier's card-event key) and answer the
    whole signed chain; a retry after that answers the same chain again."""
    def respond(requester: str, home: str, query: dict) -> dict | Refused:
        now = cards.clock()
        try:
            clerk = _clerk(query)
            serial = parse_serial(query.get("serial"))
        except ValidationError as exc:
            return Refused("invalid_query", f"{exc.field}: {exc.rule}")
        card = cards.store.card(serial)
        try:
            if card is None:
                raise CardRefusal(CardRefusalCode.CARD_NOT_FOUND, "no such card", field="serial", rule="registered")
            if card.home == requester:  # moved before (a retry): the same chain again
                return {"events": [e.to_dict() for e in sorted(cards.store.events(serial), key=lambda e: e.seq)]}
            if card.home != home or not cards.holds(card):
                raise CardRefusal(CardRefusalCode.NOT_THIS_MUNICIPALITY, "the card is not held by the municipality "
                                  "asked", field="serial", rule="home")
            if requester[:2] in cards.prefixes:
                raise CardRefusal(CardRefusalCode.INVALID_REQUEST, "a move within the tier is CardService.move",
                                  field="to", rule="other_tier")
            if not agreed(cards.store, card.resident_code, home, requester, now, serial):
                raise CardRefusal(CardRefusalCode.CARRY_OVER_NOT_AGREED, f"{home} has no special move-out of this "
                                  f"resident to {requester}", field="serial", rule="move_out_filed")
            current = cards.current(serial, now)
            assert current is not None
            cards.move(current, requester, actor=f"{requester}|{clerk}"[:300], now=now)
        except CardRefusal as refusal:
            return _refused(cards, refusal, requester, home, "carry_over", now, serial, clerk, query)
        _served(cards, requester, home, "carry_over", "ok", now, card, serial, clerk, query)
        return {"events": [e.to_dict() for e in sorted(cards.store.events(serial), key=lambda e: e.seq)]}

    return respond


class CardEventKeys:
    """The tiers' card-event public keys, by alias ``<prefix><prefecture code>/card-events``
    (e.g. ``alias/jukinet/muni-200000/card-events``), cached per instance."""

    def __init__(self, alias_template: str) -> None:
        self.alias_template = alias_template  # "…/muni-{prefecture}/card-events"
        self._cache: dict[str, object] = {}

    def for_prefecture(self, pp: str):  # noqa: ANN201 (EllipticCurvePublicKey)
        if pp not in self._cache:
            alias = self.alias_template.format(prefecture=LocalGovernmentCode.prefecture(pp).value)
            der = aws.client("kms").get_public_key(KeyId=alias)["PublicKey"]
            self._cache[pp] = load_der_public_key(bytes(der))
        return self._cache[pp]


def check_chain(events: list[CardEvent], keys: CardEventKeys) -> Card:
    """The card the chain gives, every event checked with the card-event key of the tier that held
    the card when it was written (the issuer's tier for the issue; after a ``moved`` to another
    prefecture, the new tier's — the ``moved`` event itself is the old tier's). Raises
    ``ValidationError`` on an altered, forged, missing or reordered event."""
    card: Card | None = None
    for event in sorted(events, key=lambda e: e.seq):
        holder = card.home if card is not None else event.serial[:6]
        if not verify_event(keys.for_prefecture(holder[:2]), event):
            raise ValidationError("events", "signature", f"event {event.seq} of {event.serial} does not verify with "
                                  f"the card-event key of the tier of {holder}")
        card = replay([event]) if card is None else _apply(card, event)
    if card is None:
        raise ValidationError("events", "required", "a card's log starts with its issue")
    return card


def _apply(card: Card, event: CardEvent) -> Card:
    return apply(card, event)


def carry_over_card(cards: CardService, serial: str, from_municipality: str, to_municipality: str,
                    events: list[dict], keys: CardEventKeys) -> Card:
    """The new home's side (``to_municipality``, a municipality of this tier): store the card the
    old home (``from_municipality``) answered to ``card-carry-over`` — its whole signed chain,
    each event checked (``check_chain``), the last one ``moved`` from ``from_municipality`` to
    ``to_municipality`` — as it is, with the card's key and the resident's one valid card claimed
    in this tier (``PUBLIC_KEY_IN_USE`` if the key is registered to another card here). Idempotent:
    a card already carried over is returned as stored. Further events continue the same chain,
    signed by this tier's key."""
    if to_municipality[:2] not in cards.prefixes:
        raise CardRefusal(CardRefusalCode.NOT_THIS_MUNICIPALITY, f"{to_municipality} is not of this tier",
                          field="to", rule="this_tier")
    try:
        chain = [CardEvent.from_dict(e) for e in events]
        card = check_chain(chain, keys)
    except (ValidationError, KeyError, ValueError, TypeError) as exc:
        raise CardRefusal(CardRefusalCode.INVALID_REQUEST, f"the carried chain does not verify: {exc}",
                          field="events", rule="signed_chain") from None
    last = max(chain, key=lambda e: e.seq)
    if (card.serial != serial or last.kind is not EventKind.MOVED
            or last.details != {"from": from_municipality, "to": to_municipality}):
        raise CardRefusal(CardRefusalCode.INVALID_REQUEST, "the chain does not end with this move", field="events",
                          rule="moved_here")
    existing = cards.store.card(serial)
    if existing is not None:
        if existing.head == card.head or cards.holds(existing):
            if existing.head == card.head or existing.seq > card.seq:
                return existing  # carried over before (a retry), perhaps changed here since
            raise Conflict(f"card {serial} is held here with another chain")
        # The pointer this tier kept when the card moved away: coming back, the chain must continue it.
        if existing.seq > len(chain) or sorted(chain, key=lambda e: e.seq)[existing.seq - 1].digest_hex != existing.head:
            raise CardRefusal(CardRefusalCode.INVALID_REQUEST, "the chain does not continue the card this tier held",
                              field="events", rule="signed_chain")
    ddb = aws.client("dynamodb")
    table = cards.store.table_name
    for event in chain:  # the signed events as they are (a retry or a card coming back finds some)
        try:
            ddb.put_item(TableName=table, Item=event_item(event), ConditionExpression="attribute_not_exists(pk)")
        except Exception as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise
    mine = {":s": _s(card.serial)}
    claim = "attribute_not_exists(pk) OR serial = :s"  # this card's own claims, kept from an earlier stay
    card_put: dict = {"TableName": table, "Item": card_item(card), "ConditionExpression": "attribute_not_exists(pk)"}
    if existing is not None:
        card_put |= {"ConditionExpression": "seq = :old", "ExpressionAttributeValues": {":old": _n(existing.seq)}}
    items: list[dict] = [
        {"Put": card_put},
        {"Put": {"TableName": table, "Item": {"pk": _s(f"KEY#{card.fingerprint}"), "sk": _s("KEY"),
                                              "serial": _s(card.serial)},
                 "ConditionExpression": claim, "ExpressionAttributeValues": mine}},
    ]
    if not card.status.final:
        items.append({"Put": {"TableName": table, "Item": {"pk": _s(f"RESIDENT#{card.resident_code}"),
                                                           "sk": _s("CARD"), "serial": _s(card.serial)},
                              "ConditionExpression": claim, "ExpressionAttributeValues": mine}})
    try:
        ddb.transact_write_items(TransactItems=items)
    except Exception as exc:
        if aws.error_code(exc) != "TransactionCanceledException":
            raise
        reasons = [r.get("Code") for r in getattr(exc, "response", {}).get("CancellationReasons", [])]
        if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
            raise CardRefusal(CardRefusalCode.PUBLIC_KEY_IN_USE, "this public key is registered to another card in "
                              "this tier", field="public_key", rule="unique") from None
        if len(reasons) > 2 and reasons[2] == "ConditionalCheckFailed":
            raise CardRefusal(CardRefusalCode.INVALID_TRANSITION, "the resident holds another valid card in this "
                              "tier", field="resident_code", rule="one_card") from None
        raise Conflict(f"card {serial}: carried over concurrently") from None
    cards.store.count(to_municipality, month_jst(cards.clock()), {"carried_over": 1})
    return card


class CardCarryOvers:
    """The new home's side of the carry-over, for the special move-in (転入の特例) to call:
    ``request`` sends ``card-carry-over`` to the old home through the channel (recorded, nudged,
    like the wide-area copy); ``complete`` reads the answer and stores the card (``carry_over_card``)."""

    def __init__(self, cards: CardService, reader: ChannelEndpoint, channel_queue_url: str, keys: CardEventKeys,
                 *, clock: Clock) -> None:
        self.cards, self.reader, self.keys, self.clock = cards, reader, keys, clock
        self.requests = CardRequests(cards.store.table_name)
        self.channel_queue_url = channel_queue_url

    def request(self, serial: str, from_municipality: str, to_municipality: str, *, clerk: str) -> str:
        """The correlation id of the carry-over request from ``to_municipality`` (this tier) to
        ``from_municipality`` (the card's home in another tier)."""
        now = self.clock()
        serial = parse_serial(serial)
        if to_municipality not in self.cards.municipalities or from_municipality[:2] in self.cards.prefixes:
            raise ValidationError("to", "other_tier", "a carry-over is from another tier to a municipality of this one")
        correlation = channel.new_correlation_id(to_municipality, now)
        self.requests.put_request(correlation, to=from_municipality,
                                  query={"query": CARRY_QUERY, "serial": serial, "clerk": clerk}, auth_id="",
                                  clerk=clerk, now=now)
        aws.client("sqs").send_message(QueueUrl=self.channel_queue_url, MessageBody=nudge(correlation))
        return correlation

    def complete(self, correlation: str) -> Card | str:
        """The carried card once stored; else ``pending``, ``timed_out`` or the old home's refusal code."""
        record = self.requests.request(correlation)
        if record is None or self.reader.store.request(correlation) is None:
            return "pending"
        result = self.reader.result(correlation)
        if result.outcome in (Outcome.PENDING, Outcome.TIMED_OUT):
            return result.outcome.value
        if result.outcome is Outcome.REFUSED:
            return result.refusal
        query = json.loads(record["query"])
        to, _ = channel.correlation_owner(correlation)
        return carry_over_card(self.cards, query["serial"], record["to"], to, (result.answer or {}).get("events", []),
                               self.keys)


def card_responders(cards: CardService, agreed: Agreement = special_move_out_filed) -> dict[str, Responder]:
    """The home tier's responders by query kind (``services.wide_area_copy.dispatch``)."""
    return {CHALLENGE_QUERY: card_challenge_responder(cards), ANSWER_QUERY: card_authentication_responder(cards),
            PIN_QUERY: card_pin_failure_responder(cards), CARRY_QUERY: carry_over_responder(cards, agreed)}
