"""Provision use cases: look-up, search, the prefecture's own use, disclosure, batch submission.

The order in every use case is: decide (``domain.provision.authorise`` and the emergency
plan's isolation mark — nothing about any resident has been read yet, so a refusal cannot
reveal anything), check the records against the agreement's monthly limit, read (a
prefecture recipient's scope decided before anything is decrypted), minimise to the
agreement's fields, **record** in the provision log, observe the request for scans, and only
then answer. If recording fails the request fails and nothing is given.

A look-up (and the prefecture's own use) does this in three DynamoDB requests (decision
0023): one BatchGetItem of the state table (the isolation mark, the month's statistics, the
scan window, the residents' chain heads), one BatchGetItem of the identity table, and one
TransactWriteItems that appends the entries and heads, charges the statistics under the
monthly limit and adds to the scan window — all or nothing; then a fourth, the last write
before the answer: its delivery confirmation (decision 0034). Searches and batches reserve
before reading and give back what was not provided (decision 0016).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..adapters import aws
from ..adapters.identity_store import IdentityStore
from ..adapters.provision_log import LimitReached, ProvisionLog, StatCount
from ..adapters.recipient_state import RecipientState
from ..clock import Clock, month_jst, today_jst
from ..domain.agreements import Agreement, Directory, ProvisionFunction, Recipient
from ..domain.blind_index import blind_index
from ..domain.errors import ValidationError
from ..domain.facts import Sex, parse_date
from ..domain.notice import JST
from ..domain.provision import (
    Answer,
    DisclosureQuery,
    LookupQuery,
    LookupResult,
    Outcome,
    ProvisionRecord,
    Refusal,
    RefusalCode,
    SearchQuery,
    SearchResult,
    answer_for,
    authorise,
    entry_day,
    function_for,
    jst_day,
    new_provision_id,
    parse_resident_codes,
    provided_fields,
)
from ..domain.scan import Signal
from .provision_audit import check_residents, kms_public_key

MAX_SEARCH_CANDIDATES = 50
NATIONAL_PROVIDER = "national"


@dataclass(frozen=True)
class DisclosureRecord:
    """A disclosure (提供状況の開示) itself, recorded in the resident's own chain: who (the
    staff's role session and their prefecture), which resident, when — so the resident's next
    disclosure and every audit show it, sealed like any provision."""

    resident_code: str
    at: dt.datetime
    office: str
    staff: str
    request_id: str = ""

    @property
    def day(self) -> str:
        return jst_day(self.at)

    def content(self) -> dict:
        return {"kind": "disclosure", "resident_code": self.resident_code,
                "at": self.at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "office": self.office, "staff": self.staff, "request_id": self.request_id}


@dataclass(frozen=True)
class Disclosed:
    """A disclosure's answer: the rows of ``disclosure`` (which ``jukinet disclose`` prints as
    they are), typed for the API's response model."""

    resident_code: str
    office: str
    period_from: str
    period_to: str
    provisions: tuple[Mapping, ...]
    disclosures: tuple[Mapping, ...]
    chain: Mapping

    @classmethod
    def of(cls, shown: Mapping) -> Disclosed:
        return cls(resident_code=shown["resident_code"], office=shown["office"], period_from=shown["from"],
                   period_to=shown["to"], provisions=tuple(shown["provisions"]),
                   disclosures=tuple(shown["disclosures"]), chain=shown["chain"])


@dataclass(frozen=True)
class Caller:
    """Who is calling, as API Gateway established it (SigV4) and where from."""

    principal_arn: str | None
    source_endpoint: str | None
    request_id: str = ""


@dataclass
class Grant:
    """An authorised request: what the log and statistics need to know about it."""

    recipient: Recipient
    agreement: Agreement
    function: ProvisionFunction
    fields: frozenset[str]
    provision_id: str
    at: dt.datetime
    outside_hours: bool = False
    events: list[str] = field(default_factory=list)
    reserved: int = 0  # records reserved against the monthly limit for this request
    scan: Signal | None = None  # the recipient's scan window after this request

    @property
    def month(self) -> str:
        return month_jst(self.at)

    @property
    def provider(self) -> str:
        return self.recipient.prefecture if self.function is ProvisionFunction.OWN_USE and self.recipient.prefecture \
            else NATIONAL_PROVIDER

    def record(self, answer: Answer) -> ProvisionRecord:
        return ProvisionRecord(
            resident_code=answer.resident_code, provision_id=self.provision_id, at=self.at,
            recipient_id=self.recipient.recipient_id, recipient_name=self.recipient.name_ja or self.recipient.name,
            affair_code=self.agreement.affair_code, affair=self.agreement.affair, function=self.function,
            fields=provided_fields(answer), provider=self.provider, outcome=answer.outcome.value,
            prefecture=answer.prefecture)


class ProvisionService:
    def __init__(self, directory: Directory, identity: IdentityStore, log: ProvisionLog,
                 *, clock: Clock, state: RecipientState | None = None, seal_key_id: str = "") -> None:
        self.directory = directory
        self.identity = identity
        self.log = log
        self.clock = clock
        self.state = state or RecipientState(log.state_table)
        self.seal_key_id = seal_key_id  # from the configuration, never from a seal
        self._seal_public_key: bytes | None = None

    def seal_public_key(self) -> bytes:
        if self._seal_public_key is None:
            if not self.seal_key_id:
                raise RuntimeError("SEAL_KEY_ID is not configured: disclosures cannot check the seals")
            self._seal_public_key = kms_public_key(self.seal_key_id)
        return self._seal_public_key

    # --- authorisation ------------------------------------------------------------------
    def identify(self, caller: Caller, *, isolation: bool = True) -> Recipient:
        """Who the caller is, and that it came through one of its endpoints — the first check
        of every request, before its body is even parsed: an unknown caller learns nothing,
        not even whether its input was well-formed. A prefecture's disclosure staff are
        identified as their prefecture. ``isolation=False``: the isolation mark is read later
        with the request's other state (a look-up's snapshot); the caller must then check it
        (``not_isolated``) before any other refusal is answered."""
        recipient = self.directory.recipient_for(caller.principal_arn) or \
            self.directory.disclosure_office_for(caller.principal_arn)
        if recipient is None:
            raise Refusal(RefusalCode.UNKNOWN_CALLER, "the caller is not a configured recipient")
        if caller.source_endpoint not in self.directory.endpoints_of(recipient):
            raise Refusal(RefusalCode.ENDPOINT_NOT_ALLOWED,
                          "the request did not come through an interface endpoint configured for this recipient")
        if isolation:
            self.not_isolated(recipient)
        return recipient

    def not_isolated(self, recipient: Recipient) -> None:
        """The emergency plan's isolation holds against the recipient's principals themselves,
        whatever API key their calls carry (``jukinet isolate agency``)."""
        if self.state.isolated(recipient.recipient_id):
            raise _isolated()

    def grant(self, caller: Caller, *, affair_code: str, function: ProvisionFunction,
              fields: Sequence[str] | None = None, records: int = 1) -> Grant:
        """Authorise, then reserve ``records`` against the monthly limit (searches, batches)."""
        grant = self.authorised(caller, affair_code=affair_code, function=function, fields=fields)
        self.reserve(grant.recipient, grant.agreement, records, grant.month)
        grant.reserved = records
        return grant

    def authorised(self, caller: Caller, *, affair_code: str, function: ProvisionFunction,
                   fields: Sequence[str] | None = None) -> Grant:
        """The agreement's decision (no AWS request): refuses, or grants the fields."""
        if not affair_code.strip():  # the API's model takes any non-empty text
            raise Refusal(RefusalCode.INVALID_REQUEST, "affair_code is required", field="affair_code", rule="required")
        recipient = self.directory.recipient_for(caller.principal_arn)
        now = self.clock()
        allowed = self.directory.endpoints_of(recipient) if recipient is not None else None
        recipient, agreement, granted = authorise(
            recipient, affair_code=affair_code, function=function_for(recipient, function) if recipient else function,
            now=now, requested_fields=fields, source_endpoint=caller.source_endpoint, allowed_endpoints=allowed)
        actual = function_for(recipient, function)
        local = now.astimezone(JST).time()
        return Grant(recipient, agreement, actual, granted, new_provision_id(now), now,
                     outside_hours=not agreement.within_hours(local))

    def reserve(self, recipient: Recipient, agreement: Agreement, records: int, month: str) -> None:
        """Reserve ``records`` against the agreement's monthly limit *before* providing them:
        look-ups and batches running at the same time cannot together pass it."""
        try:
            self.log.reserve(month, recipient.recipient_id, agreement.affair_code, records,
                             agreement.monthly_record_limit)
        except LimitReached as exc:
            raise _over_limit(agreement, exc.reserved, records) from None

    def release(self, grant: Grant, records: int, month: str | None = None) -> None:
        self.log.release(month or grant.month, grant.recipient.recipient_id, grant.agreement.affair_code, records)

    def observe(self, grant: Grant, codes: Sequence[str], answers: Sequence[Answer], *,
                remember: bool = True) -> Signal:
        """Scan detection over the recipient's sliding window (``domain.scan``)."""
        grant.scan = self.state.observe(grant.recipient.recipient_id, grant.at, codes=codes, answers=len(answers),
                                        not_found=sum(1 for a in answers if a.outcome is Outcome.NOT_FOUND),
                                        remember=remember)
        return grant.scan

    # --- recording ----------------------------------------------------------------------
    def record(self, grant: Grant, answers: Sequence[Answer]) -> int:
        """Record every answer that gives facts and count it in the month's statistics, in
        the same transactions (searches and batch chunks: reserved already)."""
        records = [grant.record(a) for a in answers if a.provides_facts]
        # Counted in the last transaction: a chunk that fails half-way and is retried records
        # some rows twice (the log may over-record, never miss) but counts them once.
        self.log.append(records, last=[self._count(grant, records)] if records else ())
        return len(records)

    def _count(self, grant: Grant, records: Sequence[ProvisionRecord], *, requested: int | None = None,
               limit: int | None = None) -> StatCount:
        return StatCount(self.log.state_table, grant.month, grant.recipient.recipient_id, grant.agreement.affair_code,
                         grant.function.value, len(records), requested=requested, limit=limit,
                         by_prefecture=Counter(r.prefecture for r in records if r.prefecture))

    # --- look-up (照会) and the prefecture's own use (利用) ------------------------------
    def lookup(self, caller: Caller, query: LookupQuery) -> tuple[Grant, LookupResult]:
        """Three DynamoDB requests (decision 0056): one read of the state snapshot (isolation
        mark, the month's records, scan window, chain heads) *and* the residents' current
        items, together; one transaction that records the answers, charges the month's
        records and adds to the scan window; the delivery confirmation (decision 0034).
        Isolation and the limit are decided on the snapshot before any resident is decrypted
        or answered (the items read with it stay ciphertext and are dropped on a refusal), and
        the limit again, exactly, by the transaction's condition on the records *requested*
        (``r + requested <= limit``, adding only what is provided): whether it refuses never
        depends on which codes exist."""
        codes = parse_resident_codes(list(query.resident_codes))
        grant = self.authorised(caller, affair_code=query.affair_code, function=ProvisionFunction.LOOKUP,
                                fields=query.fields)
        recipient_id = grant.recipient.recipient_id
        state_table, identity_table = self.state.state_table, self.identity.table_name
        read = aws.batch_get_tables({
            state_table: self.state.snapshot_keys(recipient_id, grant.month, grant.at, codes),
            identity_table: self.identity.current_keys(codes)})
        snapshot = self.state.snapshot_of(read[state_table], recipient_id, grant.month, grant.at, codes)
        if snapshot.isolated:
            raise _isolated()
        limit = grant.agreement.monthly_record_limit
        reserved = snapshot.reserved.get(grant.agreement.affair_code, 0)
        if reserved + len(codes) > limit:
            raise _over_limit(grant.agreement, reserved, len(codes))
        answers = self.answers(grant, codes, read=read[identity_table])
        records = [grant.record(a) for a in answers if a.provides_facts]
        window = self.state.scan_write(grant.recipient.recipient_id, grant.at, snapshot, codes=codes,
                                       answers=len(answers),
                                       not_found=sum(1 for a in answers if a.outcome is Outcome.NOT_FOUND))
        charge = self._count(grant, records, requested=len(codes), limit=limit) if records else None
        try:
            self.log.append(records, heads=snapshot.heads, extras=[charge, window])
        except LimitReached as exc:  # another request of the recipient got there first
            raise _over_limit(grant.agreement, exc.reserved, len(codes)) from None
        grant.scan = window.signal
        if records:
            self.log.confirm_answered(grant.provision_id, grant.at)  # the last write before the answer
        return grant, LookupResult(grant.provision_id, grant.agreement.affair_code, grant.function.value,
                                   tuple(answers))

    def answers(self, grant: Grant, codes: Sequence[str], read: Sequence[dict] | None = None) -> list[Answer]:
        """``read``: the residents' current items, already read (``IdentityStore.current_keys``)."""
        # A resident outside a prefecture recipient's scope is answered as unknown, nothing
        # revealed — and dropped before decryption, so it costs what an unknown code costs.
        within = self.scope(grant.recipient)
        found = self.identity.currents(codes, within=within) if read is None \
            else self.identity.currents_of(read, within=within)
        return [answer_for(code, found.get(code), grant.fields) for code in codes]

    @staticmethod
    def scope(recipient: Recipient) -> Callable[[str], bool] | None:
        """A prefecture recipient sees only residents of its prefecture, by every function
        (own use, search, batch); ``None``: no limit (a national agency)."""
        if not recipient.prefecture:
            return None
        prefix = recipient.prefecture[:2]
        return lambda municipality: municipality[:2] == prefix

    # --- search by the four basic facts (検索) ------------------------------------------
    def search(self, caller: Caller, query: SearchQuery) -> tuple[Grant, SearchResult]:
        kana, birth_date, sex, address = _search_terms(query)
        grant = self.grant(caller, affair_code=query.affair_code, function=ProvisionFunction.SEARCH,
                           fields=query.fields, records=1)
        key = self.identity.blind_index_key(create=False)
        matches: list = []
        if key is not None:
            codes = self.identity.codes_with_blind_index(blind_index(key, kana, birth_date), MAX_SEARCH_CANDIDATES)
            for current in self.identity.currents(codes, within=self.scope(grant.recipient)).values():
                if current.status != "active" or current.facts is None:
                    continue
                if sex is not None and current.facts.sex is not sex:
                    continue
                if address is not None and _address_key(current.facts.address) != address:
                    continue
                matches.append(current)
        if len(matches) == 1:
            answer = answer_for(matches[0].resident_code, matches[0], grant.fields)
            self.record(grant, [answer])
            # The searcher did not know the code: it is a fact like any other, given only
            # when permitted (and then recorded among the fields, as it is in ``facts``).
            result = SearchResult(grant.provision_id, grant.agreement.affair_code, "unique", answer,
                                  code_permitted="resident_code" in grant.fields)
            grant.events.append("search_unique")
        else:
            # No list to fish in: several matches are only "ambiguous", without codes or count.
            result = SearchResult(grant.provision_id, grant.agreement.affair_code,
                                  "not_found" if not matches else "ambiguous")
            grant.events.append(f"search_{result.outcome}")
            self.release(grant, grant.reserved)
        grant.scan = self.state.observe(grant.recipient.recipient_id, grant.at, answers=1,
                                        not_found=1 if result.outcome == "not_found" else 0)
        if result.outcome == "unique":
            self.log.confirm_answered(grant.provision_id, grant.at)  # the last write before the answer
        return grant, result

    # --- disclosure (提供状況の開示) ------------------------------------------------------
    def disclose(self, caller: Caller, query: DisclosureQuery) -> Disclosed:
        office = self.directory.disclosure_office_for(caller.principal_arn)
        if office is None:
            raise Refusal(RefusalCode.DISCLOSURE_NOT_PERMITTED, "the caller is not disclosure staff of a prefecture")
        if caller.source_endpoint not in self.directory.endpoints_of(office):
            raise Refusal(RefusalCode.ENDPOINT_NOT_ALLOWED,
                          "the request did not come through an interface endpoint configured for this prefecture")
        code = parse_resident_codes([query.resident_code], field="resident_code")[0]
        now = self.clock()
        start = _date_or(query.date_from, "from", dt.date(1970, 1, 1))
        end = _date_or(query.date_to, "to", today_jst(now))
        if start > end:
            raise Refusal(RefusalCode.INVALID_REQUEST, "from must not be after to", field="from", rule="range")
        # Staff of a prefecture disclose to residents of their prefecture only: where the
        # resident is registered now (or was last, for a deleted code). Unknown and elsewhere
        # get the same refusal, so the answer says nothing about other prefectures' residents.
        current = self.identity.currents([code]).get(code)
        home = str(getattr(current, "municipality", "") or "")
        if not office.prefecture or home[:2] != office.prefecture[:2]:
            raise Refusal(RefusalCode.DISCLOSURE_NOT_PERMITTED,
                          "the resident is not registered in this prefecture: ask the prefecture of residence",
                          field="resident_code", rule="prefecture")
        result = Disclosed.of(disclosure(self.log, code, start, end, public_key=self.seal_public_key(), now=now,
                                         office=office.recipient_id))
        # Recorded before it is answered, like a provision: no record, no disclosure.
        self.log.append([DisclosureRecord(code, now, office.recipient_id, caller.principal_arn or "",
                                          caller.request_id)])
        return result


def _isolated() -> Refusal:
    return Refusal(RefusalCode.RECIPIENT_ISOLATED,
                   "this recipient is isolated under the emergency plan; no facts are provided until it is restored")


def _over_limit(agreement: Agreement, reserved: int, records: int) -> Refusal:
    return Refusal(RefusalCode.VOLUME_LIMIT_EXCEEDED,
                   f"the agreement for {agreement.affair_code} allows {agreement.monthly_record_limit} records a "
                   f"month; {reserved} are provided or reserved this month and {records} more do not fit",
                   field="affair_code", rule="monthly_limit")


# A provision's delivery as the log knows it (decision 0034): its answer was handed back, or
# the entry was written and no confirmation followed (the answer may never have left).
DELIVERED, UNCONFIRMED = "delivered", "unconfirmed"


def disclosure(log: ProvisionLog, resident_code: str, start: dt.date, end: dt.date, *, public_key: bytes,
               now: dt.datetime, office: str = "") -> dict:
    """The disclosure of one resident's provisions in [start, end] (JST dates), with the
    verification of the resident's whole chain against the signed seals (``public_key``: the
    deployment's, pinned by the caller) and the days not sealed yet. Shared by the API and
    ``jukinet disclose``."""
    entries, _ = log.chain(resident_code)
    checked = check_residents(log, [resident_code], public_key, now=now)
    problems = checked.problems
    # An entry whose answer was never confirmed as handed back (the function died between its
    # log write and its answer) is still disclosed, marked (decision 0034).
    answered = log.answered(str(e.content.get("provision_id", "")) for e in entries
                            if e.content.get("kind") != "disclosure")
    provisions, disclosures = [], []
    for e in entries:
        c = e.content
        if c.get("kind") == "disclosure":
            disclosures.append({"date": entry_day(c.get("at")) or "", "at": str(c.get("at", "")),
                                "office": str(c.get("office", "")),
                                "staff": str(c.get("staff", "")), "entry": e.n})
            continue
        try:
            day = dt.datetime.fromisoformat(str(c.get("at", "")).replace("Z", "+00:00")).astimezone(JST).date()
        except ValueError:  # an edited entry: verify_chain reports it; it is listed, undated, whatever the period
            day = None
        if day is not None and not start <= day <= end:
            continue
        function = c.get("function", "")
        provisions.append({
            "date": day.isoformat() if day else "", "at": str(c.get("at", "")), "provision_id": c.get("provision_id"),
            "recipient_id": c.get("recipient_id"), "recipient": c.get("recipient_name"),
            "affair_code": c.get("affair_code"), "affair": c.get("affair"), "function": function,
            "function_label": ProvisionFunction(function).label_ja if function in {f.value for f in ProvisionFunction}
            else "", "fields": list(c.get("fields", [])), "provider": c.get("provider"), "entry": e.n,
            "delivery": DELIVERED if c.get("provision_id") in answered else UNCONFIRMED,
        })
    return {"resident_code": resident_code, "from": start.isoformat(), "to": end.isoformat(), "office": office,
            "provisions": provisions, "disclosures": disclosures,
            "chain": {"entries": len(entries), "verified": not problems, "problems": [str(p) for p in problems],
                      "unsealed_days": sorted(checked.unsealed.get(resident_code, set()))}}


def _search_terms(query: SearchQuery) -> tuple[str, dt.date, Sex | None, str | None]:
    """What the API's model does not check: a name of more than blanks, the date and the sex
    (its length: at most 100 characters; the address's: ``MAX_ADDRESS_LENGTH``)."""
    kana = query.kana_name
    if not kana.strip():
        raise Refusal(RefusalCode.INVALID_REQUEST, "kana_name is required", field="kana_name", rule="required")
    try:
        birth_date = parse_date(query.birth_date, "birth_date")
        sex = Sex.parse(query.sex, "sex") if query.sex not in (None, "") else None
    except ValidationError as exc:
        raise Refusal(RefusalCode.INVALID_REQUEST, exc.detail, field=exc.field, rule=exc.rule) from None
    address = query.address
    return kana, birth_date, sex, (_address_key(address) if address else None)


def _address_key(address: str) -> str:
    return "".join(unicodedata.normalize("NFKC", address).split())


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _date_or(raw: str | None, name: str, default: dt.date) -> dt.date:
    if raw in (None, ""):
        return default
    try:
        if not _ISO_DATE.match(str(raw)):  # fromisoformat would also take 20261101 and 2026-W48-4
            raise ValueError(raw)
        return dt.date.fromisoformat(str(raw))
    except ValueError:
        raise Refusal(RefusalCode.INVALID_REQUEST, f"{name} must be a date YYYY-MM-DD", field=name,
                      rule="date") from None


__all__ = ["Caller", "Disclosed", "DisclosureRecord", "Grant", "Outcome", "ProvisionService", "disclosure"]
