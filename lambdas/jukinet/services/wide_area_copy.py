"""The wide-area copy (住民票の写しの広域交付; issue 16, part 3): B's counter asks, A answers, B issues.

    B's counter ── POST /v1/wide-area-copies ──▶ B's counter function (``WideAreaCopies.request``):
        identify the clerk, check the proof, record the request (``COPY#…``), nudge the tier's
        channel function through its queue
    B's channel function (``send_queued``): read the recorded request, ``ChannelEndpoint.request``
        to A — signed with B's key, sealed for A's tier (decisions 0041, 0042)
    A's channel function (``copy_responder``): answer from A's local-record table, or refuse with
        a code; record that a copy was answered for issue elsewhere (``COPY-ELSEWHERE#…``)
    B's counter ── GET /v1/wide-area-copies/{correlation} ──▶ ``WideAreaCopies.result``: pending,
        refused (code), timed out, or the copy: serial, PDF (rendered here, ``copy_pdf``), SHA-256

Why the counter function does not sign the request itself: it must never hold a municipality's
notice-signing key (decision 0026); the channel function does (decision 0042). The nudge carries
no authority — only the correlation id; what is sent is the record only the counter function
writes (decision 0046).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping

from ..adapters import aws
from ..adapters.card_store import CardStore
from ..adapters.copy_store import CopyStore
from ..adapters.local_records import LocalRecords
from ..clock import Clock, month_jst, today_jst
from ..domain import channel, wide_area_copy as wac
from ..domain.codes import ResidentCode
from ..domain.card import CardRefusal, CardRefusalCode, CardStatus, parse_instant
from ..domain.channel import Outcome
from ..domain.errors import ValidationError
from ..observability import MetricUnit, count_copy_refusal, logger, metrics
from . import copy_pdf
from .card import Caller, CardService
from .channel import ChannelEndpoint, Refused, Responder

NUDGE = "jukinet-counter"
UNSENT_GRACE = dt.timedelta(seconds=60)
"""A request the channel function never sent (its nudge lost) times out this long after its deadline."""


def nudge(correlation: str) -> str:
    return json.dumps({NUDGE: wac.QUERY, "correlation": correlation}, separators=(",", ":"))


def nudged_correlation(body: str) -> str | None:
    """The correlation id of a counter's nudge, or ``None`` if the body is not one (a signed
    channel message, or anything else: the channel endpoint judges those)."""
    if not body.startswith("{") or NUDGE not in body[:40]:
        return None
    try:
        raw = json.loads(body)
        if not isinstance(raw, dict) or raw.get(NUDGE) != wac.QUERY:
            return None
        return channel.parse_correlation(raw.get("correlation"))
    except (ValueError, ValidationError):
        return None


def _invalid(exc: ValidationError) -> CardRefusal:
    return CardRefusal(CardRefusalCode.INVALID_REQUEST, exc.detail, field=exc.field, rule=exc.rule)


# --- B: the counter --------------------------------------------------------------------------------
class WideAreaCopies:
    """The issuing municipality's side, behind the counter API."""

    def __init__(self, cards: CardService, copies: CopyStore, reader: ChannelEndpoint, channel_queue_url: str, *,
                 names: Mapping[str, str], clock: Clock, wait: dt.timedelta = channel.DEFAULT_DEADLINE) -> None:
        self.cards, self.store, self.copies, self.reader = cards, cards.store, copies, reader
        self.channel_queue_url, self.names, self.clock, self.wait = channel_queue_url, dict(names), clock, wait

    def _record(self, who: str, municipality: str, now: dt.datetime, caller: Caller, action: str, outcome: str,
                resident: str = "", counts: Mapping[str, int] | None = None) -> None:
        self.store.record_call(now=now, municipality=municipality, principal=who, action=action, outcome=outcome,
                               request_id=caller.request_id, resident_code=resident)
        if counts:
            self.store.count(municipality, month_jst(now), counts)

    def request(self, caller: Caller, application: wac.CopyApplication) -> str:
        """Record and send the request: its correlation id (a retry with the same card
        authentication: the first request's)."""
        now = self.clock()
        staff = self.cards.identify(caller)
        here = self.cards._counter_only(staff)
        whole_household = application.whole_household
        try:
            applicant = ResidentCode.parse(application.resident_code, "resident_code").value
            home = wac.parse_home(application.home_municipality)
            if home == here:
                raise ValidationError("home_municipality", "other_municipality",
                                      "a copy of your own municipality's resident is an ordinary copy, not a "
                                      "wide-area one")
            chosen = wac.checked_members(application.members, applicant)
            if whole_household and chosen:
                raise ValidationError("members", "consistency", "name members or ask for the whole household")
            checked = wac.checked_proof(application.proof)
        except ValidationError as exc:
            raise _invalid(exc) from None
        correlation = channel.new_correlation_id(here, now)
        if isinstance(checked, wac.CardProof):
            serial = self._check_card_proof(checked, staff.principal, here, applicant, now)
            recorded = {"kind": "card", "challenge_id": checked.challenge_id, "serial": serial}
            bound = self.store.claim_challenge_for_copy(checked.challenge_id, correlation)
            if bound != correlation:  # a retry of the same request: the same correlation
                existing = self.copies.request(bound) if bound else None
                if not bound or (existing is not None and (existing["applicant"], existing["home"], existing["query"])
                                 != (applicant, home, self._query(applicant, chosen, whole_household, serial,
                                                                 staff.principal))):
                    raise CardRefusal(CardRefusalCode.PROOF_NOT_VALID, "this authentication already vouched for "
                                      "another copy request", field="proof.card_authentication", rule="one_request")
                correlation = bound
                if existing is not None:  # recorded (and perhaps sent) before: nudge again, nothing twice
                    self._send(bound)
                    self._record(staff.principal, here, now, caller, "wide_area_copy_request", "sent_again",
                                 applicant)
                    return bound
        else:
            serial = ""
            recorded = {"kind": "document", "document_type": checked.document_type, "number": checked.number,
                        "checked_by": checked.clerk}
        query = wac.CopyQuery(applicant, chosen, whole_household, recorded["kind"], serial, staff.principal)
        self.copies.put_request(correlation, clerk=staff.principal, applicant=applicant, home=home,
                                query=query.to_dict(), proof=recorded, now=now)
        self._send(correlation)
        self._record(staff.principal, here, now, caller, "wide_area_copy_request", "sent", applicant,
                     {"wide_area_copy_requested": 1})
        metrics.add_metric(name="WideAreaCopiesRequested", unit=MetricUnit.Count, value=1)
        return correlation

    @staticmethod
    def _query(applicant: str, members: tuple[str, ...], whole: bool, serial: str, clerk: str) -> str:
        query = wac.CopyQuery(applicant, members, whole, "card", serial, clerk).to_dict()
        return json.dumps(query, ensure_ascii=False, sort_keys=True)

    def _check_card_proof(self, proof: wac.CardProof, principal: str, here: str, applicant: str,
                          now: dt.datetime) -> str:
        item = self.store.challenge_item(proof.challenge_id)
        refuse = CardRefusal(CardRefusalCode.PROOF_NOT_VALID, "no successful card authentication of the applicant "
                             "by this clerk at this counter in the last 15 minutes",
                             field="proof.card_authentication", rule="authenticated_here")
        if item is None or "authenticated_at" not in item:
            raise refuse
        if item["municipality"] != here or item["principal"] != principal or item["authenticated_resident"] != applicant:
            raise refuse
        if now - parse_instant(item["authenticated_at"]) > wac.CARD_PROOF_VALIDITY:
            raise refuse
        return str(item["serial"])

    def _send(self, correlation: str) -> None:
        aws.client("sqs").send_message(QueueUrl=self.channel_queue_url, MessageBody=nudge(correlation))

    def result(self, caller: Caller, correlation: object) -> dict:
        now = self.clock()
        staff = self.cards.identify(caller)
        here = self.cards._counter_only(staff)
        try:
            correlation = channel.parse_correlation(correlation)
        except ValidationError as exc:
            raise _invalid(exc) from None
        owner, _ = channel.correlation_owner(correlation)
        if owner != here:
            raise CardRefusal(CardRefusalCode.NOT_THIS_MUNICIPALITY, "the request was made at another "
                              "municipality's counter", field="correlation", rule="own_requests")
        record = self.copies.request(correlation)
        if record is None:
            raise CardRefusal(CardRefusalCode.COPY_NOT_FOUND, "no such wide-area copy request", field="correlation",
                              rule="requested")
        body = self._outcome(correlation, record, now)
        self._record(staff.principal, here, now, caller, "wide_area_copy_result", body["status"], record["applicant"])
        return body

    def _outcome(self, correlation: str, record: dict, now: dt.datetime) -> dict:
        base = {"correlation": correlation, "home_municipality": record["home"]}
        if self.reader.store.request(correlation) is None:  # not sent yet
            requested = parse_instant(record["requested_at"])
            if now <= requested + self.wait + UNSENT_GRACE:
                return {**base, "status": "pending"}
            self._end(correlation, "timed_out", "", now)
            return {**base, "status": "timed_out"}
        result = self.reader.result(correlation)
        if result.outcome is Outcome.PENDING:
            return {**base, "status": "pending"}
        if result.outcome is Outcome.TIMED_OUT:
            self._end(correlation, "timed_out", "", now)
            return {**base, "status": "timed_out"}
        if result.outcome is Outcome.REFUSED:
            self._end(correlation, "refused", result.refusal, now)
            return {**base, "status": "refused", "refusal": result.refusal,
                    "meaning": wac.REFUSALS.get(result.refusal, "")}
        return {**base, **self._issue(correlation, record, result.answer or {}, now)}

    def _end(self, correlation: str, final: str, code: str, now: dt.datetime) -> None:
        issuer, _ = channel.correlation_owner(correlation)
        if self.copies.end(correlation, final, code, now):
            name = f"wide_area_copy_refused_{code}" if final == "refused" else "wide_area_copy_timed_out"
            self.store.count(issuer, month_jst(now), {name: 1})
            if final == "refused":
                count_copy_refusal(code)
            else:
                metrics.add_metric(name="WideAreaCopiesTimedOut", unit=MetricUnit.Count, value=1)

    def _issue(self, correlation: str, record: dict, content: dict, now: dt.datetime) -> dict:
        issuer, _ = channel.correlation_owner(correlation)
        try:
            rows = wac.check_rows(content)
        except ValidationError as exc:  # A's answer is not a copy's content: never rendered
            logger.error("wide-area copy answer refused", extra={"correlation": correlation, "field": exc.field,
                                                                 "rule": exc.rule})
            self._end(correlation, "refused", "invalid_answer", now)
            return {"status": "refused", "refusal": "invalid_answer", "meaning": "the home municipality's answer "
                    "is not the content of a wide-area copy"}
        if rows[0]["resident_code"] != record["applicant"]:
            self._end(correlation, "refused", "invalid_answer", now)
            return {"status": "refused", "refusal": "invalid_answer", "meaning": "the answer is not the applicant's"}
        fresh = "serial" not in record
        if fresh:
            issued_on = today_jst(now)
            serial = f"{issuer}-{issued_on.year}-{self.copies.next_serial(issuer, str(issued_on.year)):06d}"
        else:
            issued_on, serial = dt.date.fromisoformat(record["issued_on"]), record["serial"]
        pdf = copy_pdf.render(rows=rows, serial=serial, issued_on=issued_on, issuer=issuer,
                              issuer_name=self.names.get(issuer, issuer), home=record["home"],
                              home_name=self.names.get(record["home"], record["home"]))
        digest = hashlib.sha256(pdf).hexdigest()
        if fresh:
            if self.copies.issue(correlation, serial=serial, issued_at=now, issued_on=issued_on, sha256=digest,
                                 rows=len(rows)):
                self.store.count(issuer, month_jst(now), {"wide_area_copy_issued": 1})
                metrics.add_metric(name="WideAreaCopiesIssued", unit=MetricUnit.Count, value=1)
            else:  # a concurrent poll issued it first (this serial number stays unused): show that one
                return self._issue(correlation, self.copies.request(correlation) or record, content, now)
        elif digest != record.get("pdf_sha256"):
            logger.warning("wide-area copy rendered again differs from the issued one",
                           extra={"correlation": correlation, "serial": serial})
        return {"status": "issued", "serial": serial, "issued_on": issued_on.isoformat(),
                "issued_on_ja": wac.japanese_date(issued_on), "rows": rows,
                "pdf_sha256": record.get("pdf_sha256", digest), "pdf": base64.b64encode(pdf).decode()}


# --- B's channel function: send what the counter recorded --------------------------------------------
def send_queued(endpoint: ChannelEndpoint, copies: CopyStore, correlation: str) -> str:
    """Send the request the counter recorded under ``correlation`` (idempotent: the channel
    records a request once and a repeat sends the same signed bytes)."""
    record = copies.request(correlation)
    issuer, _ = channel.correlation_owner(correlation)
    if record is None or not endpoint.serves(issuer):
        logger.warning("counter nudge without a request here", extra={"correlation": correlation})
        metrics.add_metric(name="WideAreaCopyNudgesIgnored", unit=MetricUnit.Count, value=1)
        return "ignored"
    endpoint.request(issuer, record["home"], json.loads(record["query"]), correlation=correlation)
    return "sent"


# --- A's channel function: answer from the local records ---------------------------------------------
def copy_responder(local_records: Callable[[str], LocalRecords], cards: CardStore, copies: CopyStore,
                   clock: Clock) -> Responder:
    def respond(requester: str, home: str, query: dict) -> dict | Refused:
        try:
            parsed = wac.CopyQuery.parse(query)
        except ValidationError as exc:
            return Refused("invalid_query", f"{exc.field}: {exc.rule}")
        records = local_records(home)
        applicant = records.current(parsed.applicant)
        if parsed.proof_kind == "card" and applicant is not None:
            # The card as it is now: its stored status, its validity, and an ending notice the
            # tier's register holds that has not been written as its event yet (services/card.py).
            card = cards.card(parsed.card_serial)
            register = cards.register(parsed.applicant) if card is not None else None
            ended = register.ends(card) if register is not None and card is not None else None
            if card is None or card.resident_code != parsed.applicant:
                return Refused("card_suspended", "not the applicant's card")
            if ended or card.status_at(clock()) is not CardStatus.ACTIVE:
                return Refused("card_suspended", ended or card.status_at(clock()).value)
        household = []
        if applicant is not None and applicant.household_number and (parsed.members or parsed.whole_household):
            household = records.household(applicant.household_number)
        outcome = wac.answer(parsed, applicant, household, home)
        if isinstance(outcome, wac.Refusal):
            return Refused(outcome.code, outcome.detail)
        correlation = query.get("_correlation", "")
        if correlation and copies.record_answered_elsewhere(
                home, correlation, requester=requester, clerk=parsed.clerk,
                residents=[r["resident_code"] for r in outcome["rows"]], proof_kind=parsed.proof_kind, now=clock()):
            metrics.add_metric(name="WideAreaCopiesAnsweredForElsewhere", unit=MetricUnit.Count, value=1)
        return outcome

    return respond


def dispatch(responders: Mapping[str, Responder]) -> Responder:
    """One responder per query kind; any other kind is refused ``unknown_query``."""
    def respond(requester: str, home: str, query: dict) -> dict | Refused:
        chosen = responders.get(str(query.get("query")))
        if chosen is None:
            return Refused("unknown_query", f"query {query.get('query')!r}")
        return chosen(requester, home, query)

    return respond
