"""The special move-out and move-in (転入転出の特例; issue 16, part 4) at the counters and between them.

    A's counter ── POST /v1/special-move-outs ──▶ ``SpecialMoves.file``: a resident of A with an
        active card of A (the tier's own register and card table decide), the card authenticated
        at this counter or the filing by post (marked); A's record ``SPECIAL-OUT#<A>``
    B's counter ── POST /v1/special-move-ins ──▶ ``SpecialMoves.request``: the card authenticated
        at B's counter names the resident and the card; B's record ``SPECIAL-IN#<B>#<month>``;
        nudge the tier's channel function, which asks A (``send_queued``, signed as B)
    A's channel function (``certificate_responder``): the filing, the card, B's authentication
        (B in A's tier: B's ``CHALLENGE#`` item; B in another prefecture's tier: the challenge A's
        tier issued to B's counter, ``REMOTE-CHALLENGE#``, bound once to the request), the period
        → the certificate information (転出証明書情報) or a code
    B's counter ── GET /v1/special-move-ins/{correlation} ──▶ the certificate, or the refusal
    B's counter ── POST /v1/special-move-ins/{correlation}/move-in ──▶ the move-in is registered:
        the 転入通知 goes to A through the channel (``notice_responder``: A completes the move-out)
    B's counter ── GET … ──▶ completed: the card is carried over (``carry_over_card``: the
        ``moved`` event, home = B, decision 0027); B in another prefecture's tier: ``pending``
        while ``card-carry-over`` goes to A (``CardCarryOvers``, decision 0050: A agrees on its
        completed record), then ``moved`` once the signed chain is checked and stored at B

The counter function never signs a channel message (decision 0026): it records and nudges; the
channel function sends (decision 0046). The 転出 at A and the 特例転入 at B go upward as
ordinary update notices from each CS afterwards (docs/second-phase.md, part 4).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable

from ..adapters import aws
from ..adapters.card_store import REMOTE_CHALLENGES, CardStore, Conflict
from ..adapters.local_records import LocalRecords
from ..adapters.special_move_store import SpecialMoveStore, dumps
from ..clock import Clock, month_jst
from ..domain import channel, special_move as sm
from ..domain.card import CardRefusal, CardRefusalCode, CardStatus, card_refusal, parse_instant
from ..domain.channel import Outcome
from ..domain.codes import ResidentCode
from ..domain.errors import ValidationError
from ..domain.wide_area_copy import parse_home
from ..observability import MetricUnit, logger, metrics, single_metric
from .card import Caller, CardService
from .card_across_tiers import CardCarryOvers
from .channel import ChannelEndpoint, Refused, Responder

NUDGE = "jukinet-counter"
KIND_REQUEST, KIND_NOTICE = "special-move-in", "special-move-in-notice"
UNSENT_GRACE = dt.timedelta(seconds=60)
STAT = "special_move_in_"


def nudge(kind: str, correlation: str) -> str:
    return json.dumps({NUDGE: kind, "correlation": correlation}, separators=(",", ":"))


def nudged(body: str) -> tuple[str, str] | None:
    """(kind, correlation) of a counter's special-move nudge, or ``None`` (anything else)."""
    if not body.startswith("{") or NUDGE not in body[:40]:
        return None
    try:
        raw = json.loads(body)
        if not isinstance(raw, dict) or raw.get(NUDGE) not in (KIND_REQUEST, KIND_NOTICE):
            return None
        return raw[NUDGE], channel.parse_correlation(raw.get("correlation"))
    except (ValueError, ValidationError):
        return None


def _invalid(exc: ValidationError) -> CardRefusal:
    return CardRefusal(CardRefusalCode.INVALID_REQUEST, exc.detail, field=exc.field, rule=exc.rule)


def _refused(refusal: sm.Refusal, field: str = "resident_code") -> CardRefusal:
    return CardRefusal(CardRefusalCode.INVALID_TRANSITION, f"{refusal.code}: {sm.REFUSALS[refusal.code]}"
                       + (f" ({refusal.detail})" if refusal.detail else ""), field=field, rule=refusal.code)


def count_refusal(code: str) -> None:
    """``SpecialMoveInsRefused`` and ``SpecialMovesRefusedByCode`` {service, tier, code}."""
    metrics.add_metric(name="SpecialMoveInsRefused", unit=MetricUnit.Count, value=1)
    tier = metrics.dimension_set.get("tier", "")
    with single_metric(name="SpecialMovesRefusedByCode", unit=MetricUnit.Count, value=1, namespace=metrics.namespace,
                       default_dimensions={"service": metrics.service or "jukinet"}) as metric:
        if tier:
            metric.add_dimension(name="tier", value=tier)
        metric.add_dimension(name="code", value=code)


def same_tier(a: str, b: str) -> bool:
    """Two municipalities in one municipality tier (one prefecture's)."""
    return a[:2] == b[:2]


def carry_over_card(cards: CardService, serial: str, from_: str, to: str, *, actor: str, now: dt.datetime) -> str:
    """The card carried over to the new municipality within one tier (継続利用, decision 0027):
    the card record is in this tier's table: one ``moved`` event (home = ``to``), once —
    ``moved`` if it moved now, ``already`` if it had. Across tiers the record is copied from the
    old tier with its signed events (``SpecialMoves._carry_across``, decision 0050); called with
    two tiers this answers ``other_tier`` and changes nothing."""
    if not same_tier(from_, to):
        return "other_tier"
    for _ in range(5):
        card = cards.current(serial, now)
        if card is None:
            return "card_not_found"
        if card.home == to:
            return "already"
        if card.home != from_ or card.status.final:
            return f"card_{card.status.value}" if card.status.final else "card_elsewhere"
        try:
            cards.move(card, to, actor=actor, now=now)
            return "moved"
        except Conflict:
            continue
    raise Conflict(f"card {serial} keeps changing")


# --- the counters (A and B) ----------------------------------------------------------------------
class SpecialMoves:
    def __init__(self, cards: CardService, moves: SpecialMoveStore, reader: ChannelEndpoint, channel_queue_url: str,
                 *, clock: Clock, wait: dt.timedelta = channel.DEFAULT_DEADLINE,
                 carry_overs: CardCarryOvers | None = None) -> None:
        self.cards, self.store, self.moves, self.reader = cards, cards.store, moves, reader
        self.channel_queue_url, self.clock, self.wait = channel_queue_url, clock, wait
        self.carry_overs = carry_overs  # the card of another tier (decision 0050); None: not deployed here

    def _record(self, who: str, municipality: str, now: dt.datetime, caller: Caller, action: str, outcome: str,
                resident: str = "", serial: str = "", counts: dict[str, int] | None = None) -> None:
        self.store.record_call(now=now, municipality=municipality, principal=who, action=action, outcome=outcome,
                               request_id=caller.request_id, resident_code=resident, serial=serial)
        if counts:
            self.store.count(municipality, month_jst(now), counts)

    def _authenticated(self, challenge_id: str, principal: str, here: str, resident: str, now: dt.datetime) -> str:
        """The serial of the card this clerk authenticated here for ``resident`` in the last 15 minutes."""
        return str(self._authentication(challenge_id, principal, here, resident, now)["serial"])

    def _authentication(self, challenge_id: str, principal: str, here: str, resident: str,
                        now: dt.datetime) -> dict:
        """The authentication item (``CHALLENGE#``) this clerk's card authentication here names: a
        card of this tier (``POST /v1/authentications``) or, with ``remote_home`` and
        ``home_challenge``, a card of another tier authenticated through the channel
        (``POST /v1/remote-authentications``, decision 0050: this tier's mirror of it)."""
        refuse = CardRefusal(CardRefusalCode.PROOF_NOT_VALID, "no successful card authentication of the resident "
                             "by this clerk at this counter in the last 15 minutes", field="card_authentication",
                             rule="authenticated_here")
        item = self.store.challenge_item(challenge_id)
        if item is None or "authenticated_at" not in item or item["municipality"] != here or \
                item["principal"] != principal or item["authenticated_resident"] != resident or \
                now - parse_instant(item["authenticated_at"]) > sm.CARD_PROOF_VALIDITY or \
                ("remote_home" in item and len(str(item.get("home_challenge", ""))) != 32):
            raise refuse
        return item

    def _send(self, kind: str, correlation: str) -> None:
        aws.client("sqs").send_message(QueueUrl=self.channel_queue_url, MessageBody=nudge(kind, correlation))

    # --- A: the special move-out ---------------------------------------------------------------
    @staticmethod
    def view(record: sm.MoveOut, now: dt.datetime) -> dict:
        return {"resident_code": record.resident_code, "municipality": record.municipality,
                "state": record.state_at(now).value, "filed_at": record.filed_at.astimezone(dt.UTC).isoformat()
                .replace("+00:00", "Z"), "planned_move_date": record.planned_move_date.isoformat(),
                "last_day": record.last_day.isoformat(), "destination_address": record.destination_address,
                "card_serial": record.card_serial, "by_post": record.by_post,
                "moved_in_at": record.requester or None,
                "moved_on": record.moved_on.isoformat() if record.moved_on else None}

    def file(self, caller: Caller, filing: sm.MoveOutFiling) -> dict:
        now = self.clock()
        staff = self.cards.identify(caller)
        here = self.cards._counter_only(staff)
        by_post, card_authentication = filing.by_post, filing.card_authentication
        try:
            code = ResidentCode.parse(filing.resident_code, "resident_code").value
            planned = sm.parse_planned(filing.planned_move_date, now)
            destination = sm.parse_destination(filing.destination_address)
            if not by_post and card_authentication is None:
                raise ValidationError("card_authentication", "required", "at the counter the card is authenticated "
                                      "(POST /v1/authentications); by post: by_post true")
        except ValidationError as exc:
            raise _invalid(exc) from None
        register = self.store.register(code)
        if register is None or not register.active or register.municipality != here:
            raise CardRefusal(CardRefusalCode.RESIDENT_NOT_ACTIVE, "the resident is not registered as living in "
                              "this municipality", field="resident_code", rule="active_here")
        serial = self.store.valid_card_of(code)
        card = self.cards.current(serial, now) if serial else None
        if card is None:
            raise CardRefusal(CardRefusalCode.CARD_NOT_FOUND, "the resident holds no card: the special move-out "
                              "is for card holders", field="resident_code", rule="card_holder")
        if card.home != here:
            raise CardRefusal(CardRefusalCode.NOT_THIS_MUNICIPALITY, "the card is held by another municipality",
                              field="resident_code", rule="home")
        refusal = card_refusal(card, now)
        if refusal is not None and refusal.code is not CardRefusalCode.PIN_LOCKED:
            raise refusal
        proof = {"kind": "post"}
        if not by_post:
            if self._authenticated(card_authentication, staff.principal, here, code, now) != card.serial:
                raise CardRefusal(CardRefusalCode.PROOF_NOT_VALID, "the authenticated card is not the resident's "
                                  "valid card", field="card_authentication", rule="card")
            proof = {"kind": "card", "challenge_id": card_authentication}
        found = self.moves.latest(here, code)
        if found is not None and not found[0].state_at(now).final:
            existing = found[0]
            if (existing.planned_move_date, existing.destination_address) == (planned, destination):
                return self.view(existing, now)  # the same filing again
            raise CardRefusal(CardRefusalCode.INVALID_TRANSITION, "an open special move-out exists: cancel it first",
                              field="resident_code", rule="one_open")
        record = sm.MoveOut(municipality=here, resident_code=code, filed_at=now, planned_move_date=planned,
                            destination_address=destination, card_serial=card.serial, by_post=by_post, changed_at=now)
        if not self.moves.file(record, {"clerk": staff.principal, "proof": dumps(proof)}):
            raise Conflict("filed concurrently")
        self._record(staff.principal, here, now, caller, "special_move_out_file", "by_post" if by_post else "ok", code,
                     card.serial, {"special_move_out_filed": 1})
        metrics.add_metric(name="SpecialMoveOutsFiled", unit=MetricUnit.Count, value=1)
        return self.view(record, now)

    def _latest(self, here: str, code: str, now: dt.datetime) -> tuple[sm.MoveOut, int]:
        found = self.moves.latest(here, code)
        if found is None:
            raise CardRefusal(CardRefusalCode.SPECIAL_MOVE_NOT_FOUND, "no special move-out of this resident here",
                              field="resident_code", rule="filed")
        return lapse(self.moves, found[0], found[1], now)

    def status(self, caller: Caller, resident_code: object) -> dict:
        now = self.clock()
        staff = self.cards.identify(caller)
        here = self.cards._counter_only(staff)
        try:
            code = ResidentCode.parse(resident_code, "resident_code").value
        except ValidationError as exc:
            raise _invalid(exc) from None
        record, _ = self._latest(here, code, now)
        self._record(staff.principal, here, now, caller, "special_move_out_status", record.state.value, code)
        return self.view(record, now)

    def cancel(self, caller: Caller, resident_code: object) -> dict:
        now = self.clock()
        staff = self.cards.identify(caller)
        here = self.cards._counter_only(staff)
        try:
            code = ResidentCode.parse(resident_code, "resident_code").value
        except ValidationError as exc:
            raise _invalid(exc) from None
        for _ in range(5):
            record, version = self._latest(here, code, now)
            out = sm.cancel(record, now)
            if isinstance(out, sm.Refusal):
                raise _refused(out)
            if out is record or out == record:
                return self.view(record, now)
            if self.moves.change(out, version, {"cancelled_by": staff.principal}):
                self._record(staff.principal, here, now, caller, "special_move_out_cancel", "ok", code,
                             record.card_serial, {"special_move_out_cancelled": 1})
                metrics.add_metric(name="SpecialMoveOutsCancelled", unit=MetricUnit.Count, value=1)
                return self.view(out, now)
        raise Conflict(f"special move-out of {code} keeps changing")

    # --- B: the special move-in --------------------------------------------------------------------
    def request(self, caller: Caller, application: sm.MoveInApplication) -> str:
        """Record and send the request for the certificate: its correlation id (a retry with the
        same card authentication: the first request's)."""
        now = self.clock()
        staff = self.cards.identify(caller)
        here = self.cards._counter_only(staff)
        card_authentication = application.card_authentication
        try:
            code = ResidentCode.parse(application.resident_code, "resident_code").value
            home = parse_home(application.home_municipality)
            if home == here:
                raise ValidationError("home_municipality", "other_municipality",
                                      "a move within the municipality is a 転居, not a special move-in")
            moved = sm.parse_moved_on(application.moved_on, now)
        except ValidationError as exc:
            raise _invalid(exc) from None
        proof = self._authentication(card_authentication, staff.principal, here, code, now)
        serial, home_challenge = str(proof["serial"]), str(proof.get("home_challenge", ""))
        if "remote_home" in proof:
            # A card of another prefecture's tier: its home tier answered the authentication (the
            # mirror names the municipality asked); A checks its own record of the challenge.
            if same_tier(home, here) or not same_tier(str(proof["remote_home"]), home):
                raise CardRefusal(CardRefusalCode.INVALID_REQUEST, "the authenticated card is not held in the named "
                                  "home municipality's tier", field="home_municipality", rule="card_home")
        else:
            card = self.cards.current(serial, now)
            if card is None or card.home != home:
                raise CardRefusal(CardRefusalCode.INVALID_REQUEST, "the authenticated card is not held by the named "
                                  "home municipality", field="home_municipality", rule="card_home")
        correlation = channel.new_correlation_id(here, now)
        bound = self.moves.claim_challenge(card_authentication, correlation)
        if bound != correlation:
            existing = self.moves.move_in(bound) if bound else None
            if existing is None or (existing["resident_code"], existing["home"], existing["moved_on"]) != \
                    (code, home, moved.isoformat()):
                raise CardRefusal(CardRefusalCode.PROOF_NOT_VALID, "this authentication already vouched for another "
                                  "request", field="card_authentication", rule="one_request")
            self._send(KIND_REQUEST, bound)  # a retry: the same request again, nothing twice
            self._record(staff.principal, here, now, caller, "special_move_in_request", "sent_again", code, serial)
            return bound
        query = sm.CertificateQuery(code, serial, card_authentication, moved, staff.principal, home_challenge)
        self.moves.put_move_in(correlation, {"clerk": staff.principal, "resident_code": code, "home": home,
                                             "moved_on": moved.isoformat(), "card_serial": serial,
                                             "challenge_id": card_authentication,
                                             "query": dumps(query.to_dict())}, now)
        self._send(KIND_REQUEST, correlation)
        self._record(staff.principal, here, now, caller, "special_move_in_request", "sent", code, serial,
                     {f"{STAT}requested": 1})
        metrics.add_metric(name="SpecialMoveInsRequested", unit=MetricUnit.Count, value=1)
        return correlation

    def _own(self, caller: Caller, correlation: object) -> tuple[str, str, str, dict]:
        staff = self.cards.identify(caller)
        here = self.cards._counter_only(staff)
        try:
            correlation = channel.parse_correlation(correlation)
        except ValidationError as exc:
            raise _invalid(exc) from None
        if channel.correlation_owner(correlation)[0] != here:
            raise CardRefusal(CardRefusalCode.NOT_THIS_MUNICIPALITY, "the request was made at another "
                              "municipality's counter", field="correlation", rule="own_requests")
        record = self.moves.move_in(correlation)
        if record is None:
            raise CardRefusal(CardRefusalCode.SPECIAL_MOVE_NOT_FOUND, "no such special move-in request",
                              field="correlation", rule="requested")
        return staff.principal, here, correlation, record

    def result(self, caller: Caller, correlation: object) -> dict:
        now = self.clock()
        principal, here, correlation, record = self._own(caller, correlation)
        body = self._outcome(correlation, record, principal, now)
        self._record(principal, here, now, caller, "special_move_in_result", body["status"], record["resident_code"])
        return body

    def move_in(self, caller: Caller, correlation: object) -> dict:
        """The move-in is registered at B: send the 転入通知 to A (once; again after a timeout)."""
        now = self.clock()
        principal, here, correlation, record = self._own(caller, correlation)
        if record["status"] == "moved_in" or record["status"] == "completed":
            return self._outcome(correlation, record, principal, now)
        if record["status"] != "certified":
            record = {**record, **self._outcome(correlation, record, principal, now)}
            if record["status"] != "certified":
                raise CardRefusal(CardRefusalCode.INVALID_TRANSITION, f"the request is {record['status']}: a move-in "
                                  "is registered once the certificate information has been received",
                                  field="correlation", rule="certified")
        cert = self._certificate(correlation, record)
        late = sm.period_refusal(dt.date.fromisoformat(cert["planned_move_date"]),
                                 dt.date.fromisoformat(record["moved_on"]), now)
        if late is not None:
            raise _refused(sm.Refusal("period_expired", late), "correlation")
        notice = channel.new_correlation_id(here, now)
        query = sm.NoticeQuery(record["resident_code"], correlation, now, principal)
        if not self.moves.advance(correlation, "certified", "moved_in",
                                  {"notice_correlation": notice, "registered_at": query.to_dict()["registered_at"],
                                   "registered_by": principal, "notice_query": dumps(query.to_dict())}, now):
            return self._outcome(correlation, self.moves.move_in(correlation) or record, principal, now)
        self._send(KIND_NOTICE, correlation)
        self._record(principal, here, now, caller, "special_move_in_register", "sent", record["resident_code"],
                     record["card_serial"], {f"{STAT}registered": 1})
        return {"correlation": correlation, "home_municipality": record["home"], "resident_code": record["resident_code"],
                "status": "moved_in", "notice_correlation": notice, "moved_on": record["moved_on"]}

    def _certificate(self, correlation: str, record: dict) -> dict:
        result = self.reader.result(correlation)
        return sm.check_certificate(result.answer or {}, record["resident_code"], record["home"])

    def _end(self, correlation: str, before: str, final: str, code: str, now: dt.datetime) -> None:
        owner, _ = channel.correlation_owner(correlation)
        if self.moves.advance(correlation, before, final, {"refusal": code} if code else {}, now):
            self.store.count(owner, month_jst(now), {f"{STAT}refused_{code}" if final == "refused"
                                                     else f"{STAT}timed_out": 1})
            if final == "refused":
                count_refusal(code)
            else:
                metrics.add_metric(name="SpecialMoveInsTimedOut", unit=MetricUnit.Count, value=1)

    def _sent(self, correlation: str, since: str, now: dt.datetime) -> Outcome:
        """The channel outcome of a request the channel function should have sent (a lost nudge
        times out ``UNSENT_GRACE`` after the deadline)."""
        if self.reader.store.request(correlation) is None:
            if now <= parse_instant(since) + self.wait + UNSENT_GRACE:
                return Outcome.PENDING
            return Outcome.TIMED_OUT
        return self.reader.result(correlation).outcome

    def _outcome(self, correlation: str, record: dict, principal: str, now: dt.datetime) -> dict:
        base = {"correlation": correlation, "home_municipality": record["home"],
                "resident_code": record["resident_code"], "moved_on": record["moved_on"]}
        status = record["status"]
        if status == "requested":
            outcome = self._sent(correlation, record["requested_at"], now)
            if outcome is Outcome.PENDING:
                return {**base, "status": "requested"}
            if outcome is Outcome.TIMED_OUT:
                self._end(correlation, "requested", "timed_out", "", now)
                return {**base, "status": "timed_out"}
            result = self.reader.result(correlation)
            if outcome is Outcome.REFUSED:
                self._end(correlation, "requested", "refused", result.refusal, now)
                return {**base, "status": "refused", "refusal": result.refusal,
                        "meaning": sm.REFUSALS.get(result.refusal, "")}
            try:
                cert = sm.check_certificate(result.answer or {}, record["resident_code"], record["home"])
            except ValidationError as exc:
                logger.error("special move-in answer refused", extra={"correlation": correlation, "field": exc.field,
                                                                      "rule": exc.rule})
                self._end(correlation, "requested", "refused", "invalid_answer", now)
                return {**base, "status": "refused", "refusal": "invalid_answer",
                        "meaning": "the home municipality's answer is not this resident's certificate information"}
            digest = hashlib.sha256(dumps(cert).encode()).hexdigest()
            if self.moves.advance(correlation, "requested", "certified", {"certificate_sha256": digest}, now):
                self.store.count(channel.correlation_owner(correlation)[0], month_jst(now), {f"{STAT}certified": 1})
                metrics.add_metric(name="SpecialMoveInsCertified", unit=MetricUnit.Count, value=1)
            return {**base, "status": "certified", "certificate": cert}
        if status in ("refused", "timed_out"):
            body = {**base, "status": status}
            if status == "refused":
                body |= {"refusal": record.get("refusal", ""), "meaning": sm.REFUSALS.get(record.get("refusal", ""), "")}
            return body
        cert = self._certificate(correlation, record)
        if status == "certified":
            body = {**base, "status": "certified", "certificate": cert}
            if record.get("notice_outcome"):
                body["notice"] = record["notice_outcome"]
            return body
        notice = record["notice_correlation"]
        body = {**base, "certificate": cert, "notice_correlation": notice}
        if status == "completed":
            carried = record.get("carry_over", "")
            if carried == "pending":
                carried = self._carry_across(correlation, record, principal)
            return {**body, "status": "completed", "card_carry_over": carried}
        outcome = self._sent(notice, record["registered_at"], now)
        if outcome is Outcome.PENDING:
            return {**body, "status": "moved_in"}
        if outcome is Outcome.TIMED_OUT:  # the clerk registers again (a new 転入通知), within the period
            self.moves.advance(correlation, "moved_in", "certified", {"notice_outcome": "timed_out"}, now)
            return {**base, "status": "certified", "certificate": cert, "notice": "timed_out"}
        result = self.reader.result(notice)
        if outcome is Outcome.REFUSED:
            self._end(correlation, "moved_in", "refused", result.refusal, now)
            return {**body, "status": "refused", "refusal": result.refusal,
                    "meaning": sm.REFUSALS.get(result.refusal, "")}
        answer = result.answer or {}
        if answer.get("state") != sm.State.COMPLETED.value or answer.get("resident_code") != record["resident_code"]:
            self._end(correlation, "moved_in", "refused", "invalid_answer", now)
            return {**body, "status": "refused", "refusal": "invalid_answer",
                    "meaning": "the home municipality's answer does not complete this move"}
        here = channel.correlation_owner(correlation)[0]
        across = not same_tier(record["home"], here)
        if across:  # the card record comes from A's tier through the channel: asked below, once
            carried = "pending" if self.carry_overs is not None else "pending_other_tier"
        else:
            carried = carry_over_card(self.cards, record["card_serial"], record["home"], here,
                                      actor=record.get("registered_by", principal), now=now)
        if self.moves.advance(correlation, "moved_in", "completed", {"carry_over": carried}, now):
            self.store.count(here, month_jst(now), {f"{STAT}completed": 1})
            metrics.add_metric(name="SpecialMoveInsCompleted", unit=MetricUnit.Count, value=1)
            if across and self.carry_overs is None:
                logger.warning("card carry-over across tiers not deployed here", extra={"correlation": correlation})
                metrics.add_metric(name="SpecialMoveCardsPendingOtherTier", unit=MetricUnit.Count, value=1)
        elif across:  # a concurrent look completed it first: go on from what it stored
            record = self.moves.move_in(correlation) or record
            carried = record.get("carry_over", carried)
        if carried == "pending":
            record = self.moves.move_in(correlation) or record
            carried = self._carry_across(correlation, record, record.get("registered_by", principal))
        return {**body, "status": "completed", "card_carry_over": carried}

    def _unsent(self, asked: str, now: dt.datetime) -> bool:
        """A carry-over request the channel function never sent (its nudge lost), past the grace."""
        assert self.carry_overs is not None
        if self.reader.store.request(asked) is not None:
            return False
        recorded = self.carry_overs.requests.request(asked)
        return recorded is None or now > parse_instant(recorded["requested_at"]) + self.wait + UNSENT_GRACE

    def _carry_across(self, correlation: str, record: dict, clerk: str) -> str:
        """The card of A's tier carried over to B's (decision 0050): ``card-carry-over`` asked of A
        once the move is completed (A agrees on its completed special move-out record), its answer
        checked and stored at a later look. ``pending`` until then; ``moved`` once the card is
        held here; ``refused_<CODE>`` if A refused or the chain does not verify (the lead reads
        the code; the card stays with A). A request lost in the channel (timed out) is asked again."""
        assert self.carry_overs is not None
        now, here = self.clock(), channel.correlation_owner(correlation)[0]
        asked = record.get("carry_over_correlation", "")
        if asked:
            try:
                got = self.carry_overs.complete(asked)
            except CardRefusal as refusal:
                got = refusal.code.name
            if got == Outcome.PENDING.value and not self._unsent(asked, now):
                return "pending"
            if got not in (Outcome.TIMED_OUT.value, Outcome.PENDING.value):
                carried = "moved" if not isinstance(got, str) else f"refused_{got}"[:64]
                if self.moves.advance(correlation, "completed", "completed", {"carry_over": carried}, now) and \
                        carried == "moved":
                    metrics.add_metric(name="SpecialMoveCardsCarriedAcross", unit=MetricUnit.Count, value=1)
                elif carried != "moved":
                    logger.error("card carry-over across tiers refused", extra={"correlation": correlation,
                                                                                "code": got})
                    metrics.add_metric(name="SpecialMoveCardCarryOversRefused", unit=MetricUnit.Count, value=1)
                return carried
        # not asked yet, or asked and lost (its nudge, or the request in the channel): ask (again); a concurrent look asks at most once more
        # (the old home answers a retry with the same chain; storing it is idempotent)
        fresh = self.carry_overs.request(record["card_serial"], record["home"], here, clerk=clerk)
        self.moves.advance(correlation, "completed", "completed", {"carry_over_correlation": fresh}, now)
        return "pending"


def lapse(moves: SpecialMoveStore, record: sm.MoveOut, version: int, now: dt.datetime) -> tuple[sm.MoveOut, int]:
    """Write a record's lapse (the period ended) at its first touch after the end; once."""
    lapsed = record.expired(now)
    if lapsed is record:
        return record, version
    if moves.change(lapsed, version):
        metrics.add_metric(name="SpecialMoveOutsLapsed", unit=MetricUnit.Count, value=1)
        return lapsed, version + 1
    found = moves.latest(record.municipality, record.resident_code)
    assert found is not None
    return found[0], found[1]


# --- B's channel function: send what the counter recorded -------------------------------------------
def send_queued(endpoint: ChannelEndpoint, moves: SpecialMoveStore, kind: str, correlation: str) -> str:
    record = moves.move_in(correlation)
    requester, _ = channel.correlation_owner(correlation)
    if record is None or not endpoint.serves(requester) or (kind == KIND_NOTICE and "notice_correlation" not in record):
        logger.warning("counter nudge without a special move-in here", extra={"correlation": correlation})
        metrics.add_metric(name="SpecialMoveNudgesIgnored", unit=MetricUnit.Count, value=1)
        return "ignored"
    if kind == KIND_REQUEST:
        endpoint.request(requester, record["home"], json.loads(record["query"]), correlation=correlation)
    else:
        endpoint.request(requester, record["home"], json.loads(record["notice_query"]),
                         correlation=record["notice_correlation"])
    return "sent"


# --- A's channel function: the certificate and the move-in notice --------------------------------------
def _current(moves: SpecialMoveStore, home: str, code: str, now: dt.datetime) -> tuple[sm.MoveOut, int] | None:
    found = moves.latest(home, code)
    return lapse(moves, found[0], found[1], now) if found else None


def certificate_responder(local_records: Callable[[str], LocalRecords], cards: CardStore, moves: SpecialMoveStore,
                          serves: Callable[[str], bool], clock: Clock) -> Responder:
    """A answers B's request for the certificate information (転出証明書情報)."""
    remote = CardStore(cards.table_name, challenge_partition=REMOTE_CHALLENGES)

    def respond(requester: str, home: str, query: dict) -> dict | Refused:
        now = clock()
        try:
            parsed = sm.CertificateQuery.parse(query)
        except ValidationError as exc:
            return Refused("invalid_query", f"{exc.field}: {exc.rule}")
        correlation = str(query.get("_correlation", ""))
        if not serves(requester):
            # B's counter is in another prefecture's tier: its authentication of this tier's card
            # went through the channel, and this tier issued and judged the challenge itself
            # (REMOTE-CHALLENGE#, decision 0050) — this tier's own record, not B's word. It must be
            # answered by this card, for this resident, issued to B (proven by the signatures) and
            # to the clerk asking now, recent, and bound here to this one request (once).
            item = remote.challenge_item(parsed.home_challenge) if parsed.home_challenge else None
            if item is None or "authenticated_at" not in item or item["municipality"] != requester or \
                    item["principal"] != parsed.clerk or item["authenticated_resident"] != parsed.resident_code or \
                    item["serial"] != parsed.card_serial or \
                    now - parse_instant(item["authenticated_at"]) > sm.CARD_PROOF_VALIDITY + channel.MAX_DEADLINE or \
                    moves.claim_challenge(parsed.home_challenge, correlation, REMOTE_CHALLENGES) != correlation:
                return Refused("not_authenticated_here", "no authentication of this resident's card by the "
                               "requester's clerk through this tier for this request")
        else:
            # B is in this tier: its counter's authentication is in this table — the server's
            # record, not B's word. It must be of this card, for this resident, at B, recent, and
            # claimed by B's counter for this very request.
            item = cards.challenge_item(parsed.challenge_id)
            if item is None or "authenticated_at" not in item or item["municipality"] != requester or \
                    item["authenticated_resident"] != parsed.resident_code or item["serial"] != parsed.card_serial or \
                    item.get("move_correlation") != correlation or \
                    now - parse_instant(item["authenticated_at"]) > sm.CARD_PROOF_VALIDITY + channel.MAX_DEADLINE:
                return Refused("not_authenticated_here", "no card authentication of this resident at the "
                               "requester's counter for this request")
        found = _current(moves, home, parsed.resident_code, now)
        if found is None:
            return Refused("no_special_move_out")
        closed = sm.closed(found[0], now)  # a finished move says so before the card is judged
        if closed is not None:
            return Refused(closed.code, closed.detail)
        card = cards.card(parsed.card_serial)
        register = cards.register(parsed.resident_code) if card is not None else None
        if card is None or card.resident_code != parsed.resident_code or card.home != home or \
                card.status_at(now) is not CardStatus.ACTIVE or (register is not None and register.ends(card)):
            return Refused("not_this_card", "the card is not this resident's valid card held here")
        for _ in range(5):
            found = _current(moves, home, parsed.resident_code, now)
            out = sm.request_certificate(found[0] if found else None, requester=requester, correlation=correlation,
                                         card_serial=parsed.card_serial, moved_on=parsed.moved_on, now=now)
            if isinstance(out, sm.Refusal):
                return Refused(out.code, out.detail)
            assert found is not None
            cert = sm.certificate(out, local_records(home).current(parsed.resident_code))
            if out == found[0]:
                break
            digest = hashlib.sha256(dumps(cert).encode()).hexdigest()
            if moves.change(out, found[1], {"certificate_sha256": digest, "certificate_clerk": parsed.clerk}):
                metrics.add_metric(name="SpecialMoveCertificatesGiven", unit=MetricUnit.Count, value=1)
                break
        else:
            raise Conflict("special move-out keeps changing")
        return {"certificate": cert}

    return respond


def notice_responder(moves: SpecialMoveStore, clock: Clock) -> Responder:
    """A takes B's 転入通知 and completes the move-out (once; the same notice again: the same answer)."""
    def respond(requester: str, home: str, query: dict) -> dict | Refused:
        now = clock()
        try:
            parsed = sm.NoticeQuery.parse(query)
        except ValidationError as exc:
            return Refused("invalid_query", f"{exc.field}: {exc.rule}")
        for _ in range(5):
            found = _current(moves, home, parsed.resident_code, now)
            out = sm.notify_move_in(found[0] if found else None, requester=requester,
                                    certificate_correlation=parsed.certificate_correlation,
                                    registered_at=parsed.registered_at, now=now)
            if isinstance(out, sm.Refusal):
                return Refused(out.code, out.detail)
            assert found is not None
            if out == found[0] or moves.change(out, found[1], {"notice_correlation": str(query.get("_correlation", "")),
                                                               "notice_clerk": parsed.clerk}):
                if out != found[0]:
                    metrics.add_metric(name="SpecialMoveOutsCompleted", unit=MetricUnit.Count, value=1)
                break
        else:
            raise Conflict("special move-out keeps changing")
        return {"state": sm.State.COMPLETED.value, "resident_code": parsed.resident_code, "home_municipality": home,
                "moved_in_at": requester}

    return respond
