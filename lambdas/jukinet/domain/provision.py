"""Provision (本人確認情報の提供): refusals, authorisation, data minimisation, and the
tamper-evident provision log — all without AWS.

The log (``docs/provision.md`` explains the whole design):

- Every record given to anyone is one ``ProvisionRecord`` per resident code.
- Each resident's records form a hash chain: entry ``n`` stores ``prev`` (the hash of entry
  ``n-1``, or ``GENESIS``) and ``hash = SHA-256(canonical entry)`` where the canonical entry
  includes ``n`` and ``prev``. Editing an entry breaks its hash; removing one leaves a gap in
  ``n`` and a broken ``prev``; moving one to another position breaks both.
- Every hour (JST) is sealed after it ends (a *seal period*, ``YYYY-MM-DDTHH``): a manifest of
  every entry of the period's day not sealed by an earlier seal (its reference ``<code>#<n>``
  and hash, sorted) is digested, and the digest — with the digest of the previous period's seal
  — signed by a KMS key. The seals form a chain of their own, one per hour without gaps, so a
  removed seal or a removed day shows. Someone who can write the table and rewrites a chain
  consistently still cannot re-sign a period, and the manifests say exactly which entry
  changed, disappeared or appeared.
- Retention (7 years) is derived from the sealed day, never from a value a writer chose: an
  entry of day ``D`` may be gone from ``D + 1 day + 7 years`` on (``retention_expiry``); before
  that its absence is a removal. A chain whose first entries expired starts at the first entry
  kept, whose ``prev_at`` (part of its hashed content) says when the entry before it was made.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from .agreements import Agreement, ProvisionFunction, Recipient, RecipientKind
from .codes import LocalGovernmentCode, ResidentCode
from .errors import CodedRefusal, ValidationError
from .facts import ChangeReason
from .notice import JST

GENESIS = "0" * 64
RETENTION_YEARS = 7  # provision records are kept 7 years (docs/domain.md §1; unconfirmed by statute)
DAY_SHARDS = 16  # the by_day index is spread over this many partitions per day
MAX_LOOKUP_CODES = 100
MAX_REQUEST_BYTES = 64 * 1024


# --- refusals ---------------------------------------------------------------------------


class RefusalCode(Enum):
    """Documented error codes (``docs/provision.md``), each with its HTTP status.

    *Unauthorised* refusals are attempts to get facts one is not entitled to; they are counted in
    ``UnauthorisedAttempts``, which is alarmed. None of the messages says anything about a
    resident: a refusal is decided before any resident data is read.
    """

    UNKNOWN_CALLER = "UNKNOWN_CALLER"
    ENDPOINT_NOT_ALLOWED = "ENDPOINT_NOT_ALLOWED"
    AFFAIR_NOT_AGREED = "AFFAIR_NOT_AGREED"
    FUNCTION_NOT_AGREED = "FUNCTION_NOT_AGREED"
    AGREEMENT_NOT_IN_FORCE = "AGREEMENT_NOT_IN_FORCE"
    FIELD_NOT_PERMITTED = "FIELD_NOT_PERMITTED"
    DISCLOSURE_NOT_PERMITTED = "DISCLOSURE_NOT_PERMITTED"
    RECIPIENT_ISOLATED = "RECIPIENT_ISOLATED"
    INVALID_RESIDENT_CODE = "INVALID_RESIDENT_CODE"
    INVALID_REQUEST = "INVALID_REQUEST"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    VOLUME_LIMIT_EXCEEDED = "VOLUME_LIMIT_EXCEEDED"
    NOT_FOUND = "NOT_FOUND"

    @property
    def status(self) -> int:
        return _STATUS[self]

    @property
    def unauthorised(self) -> bool:
        return self in _UNAUTHORISED


_STATUS = {
    RefusalCode.UNKNOWN_CALLER: 403, RefusalCode.ENDPOINT_NOT_ALLOWED: 403, RefusalCode.AFFAIR_NOT_AGREED: 403,
    RefusalCode.FUNCTION_NOT_AGREED: 403, RefusalCode.AGREEMENT_NOT_IN_FORCE: 403, RefusalCode.FIELD_NOT_PERMITTED: 403,
    RefusalCode.DISCLOSURE_NOT_PERMITTED: 403, RefusalCode.RECIPIENT_ISOLATED: 403,
    RefusalCode.INVALID_RESIDENT_CODE: 400, RefusalCode.INVALID_REQUEST: 400,
    RefusalCode.REQUEST_TOO_LARGE: 413, RefusalCode.VOLUME_LIMIT_EXCEEDED: 429, RefusalCode.NOT_FOUND: 404,
}
_UNAUTHORISED = frozenset({
    RefusalCode.UNKNOWN_CALLER, RefusalCode.ENDPOINT_NOT_ALLOWED, RefusalCode.AFFAIR_NOT_AGREED,
    RefusalCode.FUNCTION_NOT_AGREED, RefusalCode.AGREEMENT_NOT_IN_FORCE, RefusalCode.FIELD_NOT_PERMITTED,
    RefusalCode.DISCLOSURE_NOT_PERMITTED, RefusalCode.RECIPIENT_ISOLATED,
})


class Refusal(CodedRefusal):
    """A request refused with a documented code. ``field``/``rule`` name what was wrong."""

    code: RefusalCode


# --- authorisation ----------------------------------------------------------------------


def authorise(recipient: Recipient | None, *, affair_code: str, function: ProvisionFunction, now: dt.datetime,
              requested_fields: Iterable[str] | None = None, source_endpoint: str | None = None,
              allowed_endpoints: frozenset[str] | None = None) -> tuple[Recipient, Agreement, frozenset[str]]:
    """Decide whether ``recipient`` may receive facts for ``affair_code`` by ``function`` now.

    Returns the recipient, its agreement and the fields to provide (those requested, or every
    field the agreement permits). Raises ``Refusal`` otherwise. The prefecture's own use is the
    same decision with ``function = OWN_USE``.
    """
    if recipient is None:
        raise Refusal(RefusalCode.UNKNOWN_CALLER, "the caller is not a configured recipient")
    if allowed_endpoints is not None and source_endpoint not in allowed_endpoints:
        raise Refusal(RefusalCode.ENDPOINT_NOT_ALLOWED,
                      "the request did not come through an interface endpoint configured for this recipient")
    agreement = recipient.agreement(affair_code)
    if agreement is None:
        raise Refusal(RefusalCode.AFFAIR_NOT_AGREED, f"no agreement covers affair {affair_code!r} for this recipient",
                      field="affair_code", rule="agreement")
    if function not in agreement.functions:
        raise Refusal(RefusalCode.FUNCTION_NOT_AGREED,
                      f"the agreement for {affair_code} does not include {function.value}", field="affair_code",
                      rule="function")
    day = now.astimezone(JST).date()
    if not agreement.is_valid_on(day):
        raise Refusal(RefusalCode.AGREEMENT_NOT_IN_FORCE,
                      f"the agreement for {affair_code} is valid {agreement.valid_from}..{agreement.valid_until}",
                      field="affair_code", rule="validity")
    if requested_fields is None:
        fields = agreement.fields
    else:
        fields = frozenset(requested_fields)
        extra = sorted(fields - agreement.fields)
        if extra:
            raise Refusal(RefusalCode.FIELD_NOT_PERMITTED,
                          f"fields {extra} are not permitted for {affair_code}", field="fields", rule="agreement")
        if not fields:
            raise Refusal(RefusalCode.INVALID_REQUEST, "fields must name at least one field", field="fields",
                          rule="min_items")
    return recipient, agreement, fields


def function_for(recipient: Recipient, requested: ProvisionFunction) -> ProvisionFunction:
    """A prefecture's look-ups are its own use (本人確認情報の利用), recorded as such."""
    if recipient.kind is RecipientKind.PREFECTURE and requested is ProvisionFunction.LOOKUP:
        return ProvisionFunction.OWN_USE
    return requested


def parse_resident_codes(raw: object, field: str = "resident_codes", limit: int = MAX_LOOKUP_CODES) -> list[str]:
    if not isinstance(raw, list) or not raw:
        raise Refusal(RefusalCode.INVALID_REQUEST, "a list of 1 or more resident codes is required", field=field,
                      rule="required")
    if len(raw) > limit:
        raise Refusal(RefusalCode.REQUEST_TOO_LARGE, f"at most {limit} resident codes per request", field=field,
                      rule="max_items")
    codes: list[str] = []
    for i, value in enumerate(raw):
        try:
            codes.append(ResidentCode.parse(value, f"{field}[{i}]").value)
        except ValidationError as exc:
            raise Refusal(RefusalCode.INVALID_RESIDENT_CODE, exc.detail, field=exc.field, rule=exc.rule) from None
    return list(dict.fromkeys(codes))


# --- typed requests and results (the API validates the shapes; the services check the rules) ---


@dataclass(frozen=True)
class LookupQuery:
    """A look-up (照会) or the prefecture's own use (利用), as the API validated its shape: the
    codes' check digits, their number and the agreement are the service's to check."""

    affair_code: str
    resident_codes: tuple[str, ...]
    fields: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SearchQuery:
    """A search by the four basic facts (検索); ``birth_date`` and ``sex`` are checked by the service."""

    affair_code: str
    kana_name: str
    birth_date: str
    sex: str | None = None
    address: str | None = None
    fields: tuple[str, ...] | None = None


@dataclass(frozen=True)
class BatchSubmission:
    """A batch provision (一括提供) of an uploaded file; the key's prefix is checked by the service."""

    affair_code: str
    input_key: str
    fields: tuple[str, ...] | None = None


@dataclass(frozen=True)
class DisclosureQuery:
    """A disclosure (提供状況の開示) of one resident's provisions in [date_from, date_to] (JST,
    ``YYYY-MM-DD``, checked by the service)."""

    resident_code: str
    date_from: str | None = None
    date_to: str | None = None


@dataclass(frozen=True)
class LookupResult:
    provision_id: str
    affair_code: str
    function: str
    answers: tuple[Answer, ...]

    @property
    def not_found(self) -> int:
        return sum(1 for a in self.answers if a.outcome is Outcome.NOT_FOUND)

    @property
    def records(self) -> int:
        """Answers other than not-found (the ``RecordsProvided`` metric counts these)."""
        return len(self.answers) - self.not_found


@dataclass(frozen=True)
class SearchResult:
    """``outcome``: unique, not_found or ambiguous; ``answer`` only when unique, its resident
    code shown only when the agreement permits it (``code_permitted``)."""

    provision_id: str
    affair_code: str
    outcome: str
    answer: Answer | None = None
    code_permitted: bool = False


# --- data minimisation ------------------------------------------------------------------


class Outcome(Enum):
    PROVIDED = "provided"
    NOT_FOUND = "not_found"
    DELETED = "deleted"
    CODE_CHANGED = "code_changed"
    INVALID_CODE = "invalid_code"  # batch rows only; a request with one is refused


@dataclass(frozen=True)
class Answer:
    """What one resident code gets: an outcome and only the permitted facts."""

    resident_code: str
    outcome: Outcome
    facts: Mapping[str, object] = field(default_factory=dict)
    # The prefecture (its local government code) of the resident's current municipality, for the
    # statistics per prefecture and the log entry; never part of the answer itself.
    prefecture: str = ""

    @property
    def provides_facts(self) -> bool:
        """Whether anything about a resident was given (what the log must record)."""
        return self.outcome in (Outcome.PROVIDED, Outcome.DELETED, Outcome.CODE_CHANGED)

    def to_dict(self) -> dict:
        return {"resident_code": self.resident_code, "outcome": self.outcome.value, "facts": dict(self.facts)}


def change_information(reason_code: str, change_date: str) -> dict:
    try:
        label = ChangeReason(reason_code).label_ja
    except ValueError:
        label = ""
    return {"reason": reason_code, "reason_label": label, "change_date": change_date}


def prefecture_of(municipality: object) -> str:
    """The prefecture-level local government code (e.g. ``200000`` 長野県, ``130001`` 東京都)
    of a municipality code — its first two digits (``docs/domain.md``); ``""`` if none."""
    text = str(municipality or "")
    return LocalGovernmentCode.prefecture(text[:2]).value if len(text) >= 2 and text[:2].isdigit() else ""


def answer_for(resident_code: str, current: object | None, fields: frozenset[str]) -> Answer:
    """Minimise one stored current state (``adapters.identity_store.StoredEntry``) to ``fields``.

    An active resident gets every permitted field. A deleted or replaced code gets only what
    says so — status, change information, and the replacing code if ``resident_code`` is
    permitted — never the former name or address. Without ``status`` among the fields, that a
    code was deleted or replaced is itself not permitted: such a code is answered
    ``not_found`` (no current resident under it), and nothing is given or recorded.
    """
    if current is None:
        return Answer(resident_code, Outcome.NOT_FOUND)
    status = current.status
    prefecture = prefecture_of(getattr(current, "municipality", ""))
    info = change_information(current.reason, current.change_date)
    if status != "active" and "status" not in fields:
        return Answer(resident_code, Outcome.NOT_FOUND)
    if status != "active":
        facts: dict[str, object] = {}
        if "status" in fields:
            facts["status"] = status
        if "change_information" in fields:
            facts["change_information"] = info
        replaced_by = getattr(current, "replaced_by", None)
        if status == "code_changed" and replaced_by and "resident_code" in fields:
            facts["replaced_by"] = replaced_by
        outcome = Outcome.CODE_CHANGED if status == "code_changed" else Outcome.DELETED
        return Answer(resident_code, outcome, facts, prefecture)
    stored = current.facts.to_dict()
    facts = {}
    for name in sorted(fields):
        if name == "status":
            facts["status"] = status
        elif name == "change_information":
            facts["change_information"] = info
        elif name in stored:
            facts[name] = stored[name]
    return Answer(resident_code, Outcome.PROVIDED, facts, prefecture)


def provided_fields(answer: Answer) -> tuple[str, ...]:
    return tuple(sorted(k if k != "replaced_by" else "resident_code" for k in answer.facts))


# --- the provision log ------------------------------------------------------------------


def new_provision_id(now: dt.datetime) -> str:
    """``P-<JST yyyymmddHHMMSS>-<16 hex>``: sortable by time, unguessable."""
    return f"P-{now.astimezone(JST):%Y%m%d%H%M%S}-{secrets.token_hex(8)}"


def jst_day(at: dt.datetime) -> str:
    return at.astimezone(JST).date().isoformat()


def day_shard(resident_code: str, day: str) -> str:
    shard = int(hashlib.sha256(resident_code.encode()).hexdigest()[:8], 16) % DAY_SHARDS
    return f"{day}#{shard:02d}"


def entry_ref(resident_code: str, n: int) -> str:
    return f"{resident_code}#{n:08d}"


def expires_at(at: dt.datetime) -> int:
    """Seven years after ``at``, as epoch seconds."""
    try:
        later = at.replace(year=at.year + RETENTION_YEARS)
    except ValueError:  # 29 February
        later = at.replace(year=at.year + RETENTION_YEARS, day=28)
    return int(later.timestamp())


def retention_expiry(day: str) -> int:
    """When the entries of ``day`` (JST) may be gone: seven years after the day ended. Derived
    from the day (the seal's sort key), so no writer chooses it (DynamoDB TTL ``expires_at``
    is set from this by the sealer alone)."""
    end = dt.datetime.combine(dt.date.fromisoformat(day) + dt.timedelta(days=1), dt.time(), tzinfo=JST)
    return expires_at(end)


def expired(day: str, now: dt.datetime) -> bool:
    """Whether the retention period of ``day``'s entries has passed at ``now``."""
    return now.timestamp() >= retention_expiry(day)


# --- seal periods (one hour, JST) ---------------------------------------------------------

SEAL_PERIOD = dt.timedelta(hours=1)


def seal_period(at: dt.datetime) -> str:
    """The seal period (JST hour) ``at`` falls in: ``YYYY-MM-DDTHH``."""
    return at.astimezone(JST).strftime("%Y-%m-%dT%H")


def period_start(period: str) -> dt.datetime:
    return dt.datetime.strptime(period, "%Y-%m-%dT%H").replace(tzinfo=JST)


def period_end(period: str) -> dt.datetime:
    return period_start(period) + SEAL_PERIOD


def next_period(period: str) -> str:
    return seal_period(period_end(period))


def previous_period(period: str) -> str:
    return seal_period(period_start(period) - SEAL_PERIOD)


def periods_of_day(day: str) -> list[str]:
    return [f"{day}T{h:02d}" for h in range(24)]


def period_day(period: str) -> str:
    return period[:10]


@dataclass(frozen=True)
class ProvisionRecord:
    """提供記録: one resident's facts given once, to one recipient, for one affair."""

    resident_code: str
    provision_id: str
    at: dt.datetime
    recipient_id: str
    recipient_name: str
    affair_code: str
    affair: str
    function: ProvisionFunction
    fields: tuple[str, ...]
    provider: str  # "national" (指定情報処理機関) or the prefecture code for its own use
    outcome: str = Outcome.PROVIDED.value
    prefecture: str = ""  # the resident's prefecture (local government code); absent in older entries

    @property
    def day(self) -> str:
        return jst_day(self.at)

    def content(self) -> dict:
        return {
            "resident_code": self.resident_code, "provision_id": self.provision_id,
            "at": self.at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "recipient_id": self.recipient_id, "recipient_name": self.recipient_name,
            "affair_code": self.affair_code, "affair": self.affair, "function": self.function.value,
            "fields": sorted(self.fields), "provider": self.provider, "outcome": self.outcome,
            **({"prefecture": self.prefecture} if self.prefecture else {}),
        }

    @classmethod
    def from_content(cls, c: Mapping) -> ProvisionRecord:
        return cls(
            resident_code=c["resident_code"], provision_id=c["provision_id"],
            at=dt.datetime.fromisoformat(str(c["at"]).replace("Z", "+00:00")), recipient_id=c["recipient_id"],
            recipient_name=c.get("recipient_name", ""), affair_code=c["affair_code"], affair=c.get("affair", ""),
            function=ProvisionFunction(c["function"]), fields=tuple(sorted(c.get("fields", ()))),
            provider=c.get("provider", ""), outcome=c.get("outcome", Outcome.PROVIDED.value),
            prefecture=c.get("prefecture", ""),
        )


def entry_hash(content: Mapping, n: int, prev: str) -> str:
    """SHA-256 of the canonical JSON of the entry with its position and predecessor."""
    canonical = json.dumps({**content, "n": n, "prev": prev}, sort_keys=True, ensure_ascii=False,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainEntry:
    """One stored log entry: position ``n`` in its resident's chain (from the sort key), the
    position and hashes it claims, and its content."""

    n: int
    claimed_n: int
    prev: str
    hash: str
    content: Mapping

    @property
    def ref(self) -> str:
        return entry_ref(self.content.get("resident_code", "?"), self.n)

    def recomputed(self) -> str:
        return entry_hash(self.content, self.claimed_n, self.prev)


def link(content: Mapping, n: int, prev: str) -> ChainEntry:
    return ChainEntry(n=n, claimed_n=n, prev=prev, hash=entry_hash(content, n, prev), content=dict(content))


@dataclass(frozen=True)
class Problem:
    """What ``verify`` found wrong, naming the entry (``<resident code>#<n>``) or the day."""

    where: str
    kind: str  # edited | removed | reordered | inserted | broken_link | seal_invalid | seal_missing | manifest
    detail: str

    def __str__(self) -> str:
        return f"{self.where}: {self.kind}: {self.detail}"


def entry_day(at: object) -> str | None:
    """The JST day of an entry's stored ``at`` (ISO text), or None if it is not a time."""
    try:
        return jst_day(dt.datetime.fromisoformat(str(at).replace("Z", "+00:00")))
    except ValueError:
        return None


def verify_chain(resident_code: str, entries: Sequence[ChainEntry], head_n: int | None = None, *,
                 now: dt.datetime | None = None) -> list[Problem]:
    """Every problem in one resident's chain. ``head_n``: the last position known to exist (a
    removed tail shows only against it). With ``now``, a chain whose first entries are gone
    starts at the first entry kept when that entry's ``prev_at`` is past retention at ``now``
    (the entries before it expired; its hash — and so ``prev_at`` — is checked like any other)."""
    problems: list[Problem] = []
    by_n = {e.n: e for e in entries}
    last = max([*by_n, head_n or 0], default=0)
    prev_hash: str | None = GENESIS  # None: the entry before was itself wrong, its link proves nothing
    first = 1
    if by_n and now is not None and min(by_n) > 1:
        kept = by_n[min(by_n)]
        prev_day = entry_day(kept.content.get("prev_at"))
        if prev_day is not None and expired(prev_day, now):
            first, prev_hash = kept.n, kept.prev
    prev_at: object = None
    for n in range(first, last + 1):
        ref = entry_ref(resident_code, n)
        e = by_n.get(n)
        if e is None:
            problems.append(Problem(ref, "removed", "no entry at this position of the chain"))
            prev_hash = None
            continue
        if e.claimed_n != n:
            problems.append(Problem(ref, "reordered", f"the entry here belongs at position {e.claimed_n}"))
        elif e.recomputed() != e.hash:
            problems.append(Problem(ref, "edited", "the content does not match the entry's hash"))
        elif e.content.get("resident_code") != resident_code:
            problems.append(Problem(ref, "edited", "the entry names another resident"))
        elif prev_hash is not None and e.prev != prev_hash:
            problems.append(Problem(ref, "broken_link", "prev does not match the hash of the entry before it"))
        elif prev_hash is not None and prev_at is not None and e.content.get("prev_at", prev_at) != prev_at:
            problems.append(Problem(ref, "broken_link", "prev_at does not match the time of the entry before it"))
        else:
            prev_hash = e.hash
            prev_at = e.content.get("at")
            continue
        prev_hash = None
        prev_at = None
    return problems



# --- hourly seals, chained -----------------------------------------------------------------

SEAL_VERSION = "v2"


def manifest_digest(period: str, refs: Sequence[tuple[str, str]]) -> str:
    """Digest of a seal period's manifest: ``(entry ref, hash)`` pairs sorted by ref."""
    h = hashlib.sha256(f"jukinet-provision-log-seal|{SEAL_VERSION}|{period}\n".encode())
    for ref, digest in sorted(refs):
        h.update(f"{ref}:{digest}\n".encode())
    return h.hexdigest()


def seal_message(period: str, count: int, digest: str, prev: str) -> bytes:
    """What the KMS key signs for a period (SHA-256 of it, ECDSA P-256): the period, its
    manifest's size and digest, and ``prev`` — the id of the previous period's seal
    (``seal_id``), or ``GENESIS`` for the first seal of the deployment."""
    return f"jukinet-provision-log-seal|{SEAL_VERSION}|{period}|{count}|{digest}|{prev}".encode()


def seal_id(period: str, count: int, digest: str, prev: str) -> str:
    """The id the next period's seal signs as its ``prev``."""
    return hashlib.sha256(seal_message(period, count, digest, prev)).hexdigest()


def compare_manifest(day: str, sealed: Mapping[str, str], present: Mapping[str, str],
                     recomputed: Mapping[str, str]) -> list[Problem]:
    """Problems of a sealed day: ``sealed`` = ref → hash from the signed manifest, ``present`` =
    ref → stored hash of the entries the table holds for the day, ``recomputed`` = ref → hash
    recomputed from each present entry's content."""
    problems: list[Problem] = []
    for ref in sorted(sealed.keys() - present.keys()):
        problems.append(Problem(ref, "removed", f"sealed on {day}, no longer in the log"))
    for ref in sorted(present.keys() - sealed.keys()):
        problems.append(Problem(ref, "inserted", f"dated {day} but not in that day's seal"))
    for ref in sorted(present.keys() & sealed.keys()):
        if present[ref] != sealed[ref] or recomputed.get(ref, present[ref]) != sealed[ref]:
            problems.append(Problem(ref, "edited", f"differs from the entry sealed on {day}"))
    return problems
