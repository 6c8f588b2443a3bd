"""Sealing the provision log every hour, and verifying it (``jukinet verify``, disclosure).

The sealer runs every hour at :10 (EventBridge) and seals each period (hour, JST) that has
ended and is not sealed yet, in order: the period's manifest is every entry of the period's
day (the ``by_day`` index) not in an earlier seal of that day; KMS signs its digest together
with the id of the previous period's seal (ECDSA P-256, a key only the sealer may use). A copy
of each seal goes to the seal archive (S3 Object Lock, compliance mode) *before* the table, and
the sealer takes the archive, not the table, as the truth about where the chain ends: a seal
missing from the table is restored from the archive; a table that disagrees with the archive
stops the sealer (its errors and the missing-seal alarm fire). After sealing, each sealed entry
gets its TTL, derived from the sealed day.

Verification never takes the key from the data it checks: the caller pins the deployment's
public key (``public_key``: DER), and a seal signed by any other key is ``seal_invalid``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from ..adapters import aws
from ..adapters.provision_log import ProvisionLog, Seal, SealArchive
from ..clock import Clock, today_jst
from ..domain.message import ALGORITHM as SIGNING_ALGORITHM
from ..domain.provision import (
    GENESIS,
    ChainEntry,
    Problem,
    compare_manifest,
    entry_day,
    expired,
    manifest_digest,
    next_period,
    period_day,
    period_end,
    periods_of_day,
    previous_period,
    seal_message,
    seal_period,
    verify_chain,
)

SEAL_ALGORITHM = SIGNING_ALGORITHM  # the seal key is an ECC P-256 key like the notices' (domain/message.py)
# A period is due for its seal this long after it ends: the sealer runs at :10 and retries
# twice; past it, a missing seal is a problem (and the ProvisionLogNotSealed alarm has fired).
SEAL_GRACE = dt.timedelta(hours=1)
# Entries of a day may still be written this long after it ends (a batch chunk stamps its rows
# when it starts, and runs up to 300 s); the sealer of hour 23 runs at 00:10.
MAX_WRITE_LAG = dt.timedelta(minutes=10)


# One run seals at most this many hours (~100 ms each on AWS: far inside the 900 s timeout);
# after a long outage the following runs go on where it stopped (the lag metric shows it).
MAX_SEALS_PER_RUN = 2000


class SealChainBroken(RuntimeError):
    """The table's seal chain disagrees with the archive: the sealer refuses to go on."""


def last_sealable_period(now: dt.datetime) -> str:
    """The last period that has ended (and whose late writes are in) at ``now``."""
    return seal_period(now - MAX_WRITE_LAG - dt.timedelta(hours=1))


@dataclass(frozen=True)
class SealRun:
    """What one run of the sealer did: its last seal, how many seals and entries it sealed."""

    last: Seal
    seals: int
    entries: int
    closed_months: tuple[str, ...] = ()  # months whose last hour this run sealed


class Sealer:
    def __init__(self, log: ProvisionLog, key_id: str, clock: Clock, archive: SealArchive) -> None:
        self.log = log
        self.key_id = key_id
        self.clock = clock
        self.archive = archive

    def seal_day(self, day: str) -> SealRun:
        """Seal every period up to the last hour of ``day`` (an operator's catch-up)."""
        return self.seal_through(f"{day}T23", first=f"{day}T00")

    def seal_through(self, last: str, first: str | None = None) -> SealRun:
        """Seal each unsealed period after the chain's end up to ``last``, in order. ``first``:
        where a chain starts when there is none yet (default: ``last`` itself)."""
        now = self.clock()
        if period_end(last) + MAX_WRITE_LAG > now:
            raise ValueError(f"period {last} has not ended in Japan time (plus {MAX_WRITE_LAG} for late writes); "
                             "it can be sealed from then on")
        head = self._true_head(first or last)
        if head is not None and head.period >= last:
            return SealRun(self.log.seal(last) or head, 0, 0)
        period = next_period(head.period) if head is not None else (first or last)
        prev = head.id if head is not None else GENESIS
        run = SealRun(head, 0, 0)  # type: ignore[arg-type]
        sealed_today: dict[str, set[str]] = {}
        present: dict[str, dict[str, str]] = {}  # a day's index, read once a run
        while period <= last and run.seals < MAX_SEALS_PER_RUN:
            seal = self._seal_one(period, prev, now, sealed_today, present)
            closed = (period[:7],) if next_period(period)[:7] != period[:7] else ()
            run = SealRun(seal, run.seals + 1, run.entries + seal.count, run.closed_months + closed)
            prev, period = seal.id, next_period(period)
        return run

    def _true_head(self, start: str) -> Seal | None:
        """Where the chain ends: the table's last seal is a hint; the archive decides. Seals
        the archive holds beyond the table's are restored into the table."""
        head = self.log.latest_seal()
        if head is not None:
            copy = self.archive.get(head.period)
            if copy is None or copy[0].id != head.id:
                raise SealChainBroken(f"the table's last seal ({head.period}) is not the archived one")
            period = next_period(head.period)
        else:
            period = self.archive.first_period() or start
        while (copy := self.archive.get(period)) is not None:
            seal, refs = copy
            head = self.log.write_seal(seal, refs) if self.log.seal(period) is None else self.log.seal(period)
            period = next_period(period)
        return head

    def _seal_one(self, period: str, prev: str, now: dt.datetime, sealed_today: dict[str, set[str]],
                  present_by_day: dict[str, dict[str, str]]) -> Seal:
        day = period_day(period)
        if day not in sealed_today:
            sealed: set[str] = set()
            earlier = self.log.seals(f"{day}T00", previous_period(period)) if not period.endswith("T00") else {}
            for p, s in earlier.items():
                sealed |= self.log.manifest(p, s.parts).keys()
            sealed_today.clear()
            sealed_today[day] = sealed
        if day not in present_by_day:
            present_by_day.clear()
            present_by_day[day] = self.log.day_hashes(day)
        refs = {ref: h for ref, h in present_by_day[day].items() if ref not in sealed_today[day]}
        digest = manifest_digest(period, list(refs.items()))
        signature = aws.client("kms").sign(KeyId=self.key_id, Message=seal_message(period, len(refs), digest, prev),
                                           MessageType="RAW", SigningAlgorithm=SEAL_ALGORITHM)["Signature"]
        seal = Seal(period, len(refs), digest, prev, signature, self.key_id, SEAL_ALGORITHM, 0,
                    now.astimezone(dt.UTC).isoformat())
        self.archive.put(seal, refs)  # first the copy nobody can rewrite, then the table
        seal = self.log.write_seal(seal, refs)
        self.log.set_expiry(refs, day)
        sealed_today[day] |= refs.keys()
        return seal


# --- the month's statistics against the log ------------------------------------------------


@dataclass(frozen=True)
class StatsMismatch:
    """One statistics row whose counter differs from the log: ``what`` is
    ``<affair>/<function>`` or ``prefecture <code>``."""

    recipient: str
    what: str
    counted: int  # the state table's counter (what provision-stats prints)
    logged: int  # the provisions the log holds

    def __str__(self) -> str:
        return f"{self.recipient} {self.what}: counted {self.counted}, log holds {self.logged}"


@dataclass(frozen=True)
class StatsCheck:
    """The month's counters against the provision log. ``entries``: distinct provisions in
    the log; ``sealed``: of those, in a seal's manifest; ``missing``: refs a seal names that
    the table no longer holds (``jukinet verify`` says more)."""

    month: str
    entries: int
    sealed: int
    missing: int
    mismatches: tuple[StatsMismatch, ...]

    @property
    def ok(self) -> bool:
        return not self.mismatches


def month_days(month: str, until: str | None = None) -> list[str]:
    """The JST days of ``month`` (``YYYY-MM``), up to ``until`` (a day) if given."""
    first = dt.date.fromisoformat(f"{month}-01")
    days, day = [], first
    while day.month == first.month and (until is None or day.isoformat() <= until):
        days.append(day.isoformat())
        day += dt.timedelta(days=1)
    return days


def logged_provisions(log: ProvisionLog, month: str, *, now: dt.datetime
                      ) -> tuple[Counter, Counter, int, int, int]:
    """Count the month's provisions from the log itself: every entry of the month's days
    named by a seal's manifest (the signed record) or held by the table for an hour not sealed
    yet. A provision is counted once per ``(provision id, resident)``: a batch chunk retried
    after a failure logs its rows again under the same provision id but counts them once
    (``ProvisionService.record``). Returns the counts per ``(recipient, affair, function)``
    and per ``(recipient, prefecture)``, the provisions, how many are sealed, and the refs
    a seal names that the table no longer holds."""
    by_affair: Counter = Counter()
    by_prefecture: Counter = Counter()
    seen: set[tuple[str, str]] = set()
    missing = sealed = 0
    for day in month_days(month, until=today_jst(now).isoformat()):
        in_seals: set[str] = set()
        for period, seal in log.seals(f"{day}T00", f"{day}T23").items():
            in_seals |= log.manifest(period, seal.parts).keys()
        refs = in_seals | log.day_hashes(day).keys()
        entries = log.entries(refs)
        missing += len(in_seals - entries.keys())
        for ref, entry in entries.items():
            c = entry.content
            key = (str(c.get("provision_id", "")), str(c.get("resident_code", "")))
            if key in seen:
                continue
            seen.add(key)
            sealed += ref in in_seals
            recipient = str(c.get("recipient_id", ""))
            by_affair[(recipient, str(c.get("affair_code", "")), str(c.get("function", "")))] += 1
            if c.get("prefecture"):
                by_prefecture[(recipient, str(c["prefecture"]))] += 1
    return by_affair, by_prefecture, len(seen), sealed, missing


def check_statistics(log: ProvisionLog, month: str, *, now: dt.datetime) -> StatsCheck:
    """Compare the month's counters (``STAT#<month>``: per recipient, affair and function,
    and per resident's prefecture) with the provisions the log holds (``logged_provisions``).
    Exact once the month has ended and its last hour is sealed; during the month a request
    served between the two reads may show as a difference of its records (the sealer
    therefore checks a month only when it seals its last hour)."""
    by_affair, by_prefecture, entries, sealed, missing = logged_provisions(log, month, now=now)
    counted = {k: v for k, v in log.statistics(month).items() if v}
    counted_pref = {k: v for k, v in log.statistics_by_prefecture(month).items() if v}
    rows = [StatsMismatch(r, f"{a}/{f}", counted.get((r, a, f), 0), by_affair.get((r, a, f), 0))
            for (r, a, f) in sorted(set(counted) | set(by_affair))
            if counted.get((r, a, f), 0) != by_affair.get((r, a, f), 0)]
    rows += [StatsMismatch(r, f"prefecture {p}", counted_pref.get((r, p), 0), by_prefecture.get((r, p), 0))
             for (r, p) in sorted(set(counted_pref) | set(by_prefecture))
             if counted_pref.get((r, p), 0) != by_prefecture.get((r, p), 0)]
    return StatsCheck(month, entries, sealed, missing, tuple(rows))


# --- verification ------------------------------------------------------------------------


def signature_ok(seal: Seal, public_key: bytes) -> bool:
    """Whether the deployment's key (``public_key``, DER — pinned by the caller, never the
    ``key_id`` the seal names) signed ``seal``."""
    key = load_der_public_key(public_key)
    try:
        key.verify(seal.signature, seal_message(seal.period, seal.count, seal.digest, seal.prev),  # type: ignore[call-arg,union-attr]
                   ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg]
    except InvalidSignature:
        return False
    return True


@dataclass
class DayReport:
    day: str
    entries: int
    sealed: bool  # every period of the day sealed
    problems: list[Problem] = field(default_factory=list)
    sealed_periods: int = 0
    unsealed: set[str] = field(default_factory=set)  # refs present that no seal covers yet
    expired: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_day(log: ProvisionLog, day: str, public_key: bytes, *, now: dt.datetime,
               archive: SealArchive | None = None) -> DayReport:
    """Check one day against the seals of its 24 periods: each due period has a seal, each
    seal is signed by the pinned key, links to the seal before it and matches its archived
    copy; the day's entries match the union of the seals' manifests. Entries no seal covers
    yet are returned in ``unsealed`` (their chains are the caller's to check)."""
    present = log.day_hashes(day)
    if expired(day, now):
        return DayReport(day, len(present), False, expired=True)
    seals = log.seals(f"{day}T00", f"{day}T23")
    genesis = chain_start(log, archive)
    report = DayReport(day, len(present), False)
    sealed_refs: dict[str, str] = {}
    valid = 0
    before = log.latest_seal(before=f"{day}T00")
    previous: Seal | None = before if before is not None and before.period == previous_period(f"{day}T00") else None
    for period in periods_of_day(day):
        seal = seals.get(period)
        if seal is None:
            due = period_end(period) + SEAL_GRACE <= now
            if due and genesis is not None and period >= genesis:
                held = archive is not None and archive.get(period) is not None
                report.problems.append(Problem(period, "seal_missing", "this hour has no seal in the log" + (
                    " (the seal archive holds it: the table was rewritten)" if held else "")))
            previous = None
            continue
        problems = _check_seal(log, seal, previous, genesis, public_key, archive)
        previous = seal
        if problems:
            report.problems.extend(problems)
            continue
        manifest = log.manifest(period, seal.parts)
        if len(manifest) != seal.count or manifest_digest(period, list(manifest.items())) != seal.digest:
            report.problems.append(Problem(period, "manifest", "the stored manifest does not match the signed digest"))
            continue
        sealed_refs.update(manifest)
        valid += 1
    report.sealed_periods = valid
    report.sealed = valid == 24
    if genesis is None or f"{day}T23" < genesis:
        # Before the chain's first seal: nothing of this day was sealed, nor will be.
        report.unsealed = set(present)
        return report
    entries = log.entries(present)
    # An index item without its entry (a decoy left behind a removed entry) recomputes to "".
    recomputed = {ref: (e.recomputed() if e.claimed_n == e.n else "") if (e := entries.get(ref)) else ""
                  for ref in present}
    if report.sealed:
        report.problems.extend(compare_manifest(day, sealed_refs, present, recomputed))
    else:
        covered = {ref: h for ref, h in present.items() if ref in sealed_refs}
        report.problems.extend(compare_manifest(day, sealed_refs, covered, recomputed))
        report.unsealed = set(present) - set(sealed_refs)
    return report


def chain_start(log: ProvisionLog, archive: SealArchive | None) -> str | None:
    """The period the seal chain began with: the archive's first copy (nobody can remove it);
    without an archive, the table's first seal if it is a first seal (prev = GENESIS) — if the
    table's first seal links to one before it, seals were removed, and every period counts
    (``""``)."""
    if archive is not None:
        first = archive.first_period()
        if first is not None:
            return first
    seal = log.first_seal()
    if seal is None:
        return None
    return seal.period if seal.prev == GENESIS else ""


def _check_seal(log: ProvisionLog, seal: Seal, previous: Seal | None, genesis: str | None, public_key: bytes,
                archive: SealArchive | None) -> list[Problem]:
    period = seal.period
    if not signature_ok(seal, public_key):
        return [Problem(period, "seal_invalid", "the seal's signature does not verify with the deployment's key")]
    problems = []
    if seal.prev == GENESIS:
        if genesis != period:
            problems.append(Problem(period, "seal_chain", "a second first seal: the chain was restarted"))
    else:
        if previous is None:
            previous = log.seal(previous_period(period))
        if previous is None:
            problems.append(Problem(previous_period(period), "seal_missing",
                                    "the seal this hour's seal links to is gone"))
        elif previous.id != seal.prev:
            problems.append(Problem(period, "seal_chain", "does not link to the seal of the hour before"))
    if archive is not None:
        copy = archive.get(period)
        if copy is None:
            problems.append(Problem(period, "seal_archive", "the seal archive holds no copy of this seal"))
        elif copy[0].id != seal.id or copy[0].signature != seal.signature:
            problems.append(Problem(period, "seal_rewritten", "differs from the copy in the seal archive"))
    return problems


@dataclass
class ResidentsCheck:
    problems: list[Problem]
    unsealed: dict[str, set[str]]  # resident code -> days with entries no seal covers yet


def check_residents(log: ProvisionLog, codes: Iterable[str], public_key: bytes, *,
                    now: dt.datetime) -> ResidentsCheck:
    """Each resident's chain, checked against the seals: the chain must reach the last entry
    the sealer recorded for the resident (its sealed head, confirmed by that period's signed
    manifest — the writers' head is only a hint), and every entry of a sealed period must be in
    its day's signed manifests with the same hash (an entry kept out of the ``by_day`` index,
    or added after the seal with correct links, shows here). Entries past retention at ``now``
    may be gone (``verify_chain``)."""
    problems: list[Problem] = []
    unsealed: dict[str, set[str]] = {}
    manifests: dict[str, tuple[dict[str, str], bool]] = {}

    def day_manifest(day: str) -> tuple[dict[str, str], bool]:
        if day not in manifests:
            manifests[day] = _signed_day_manifest(log, day, public_key, problems)
        return manifests[day]

    for code in codes:
        entries, head = log.chain_and_head(code)
        length = None
        if head is not None:
            head_day = entry_day(head[1])
            if head_day is None or not expired(head_day, now):
                length = head[0]
        sealed_head = log.sealed_head(code)
        if sealed_head is not None and not expired(period_day(sealed_head[0]), now):
            period, n, digest = sealed_head
            manifest, _ = day_manifest(period_day(period))
            if manifest.get(f"{code}#{n:08d}") == digest:  # otherwise the seal's own problem is reported
                length = max(length or 0, n)
        problems.extend(verify_chain(code, entries, length, now=now))
        for e in entries:
            day = entry_day(e.content.get("at"))
            if day is None:  # an edited time: verify_chain has reported the entry
                continue
            if expired(day, now):  # its seal's manifest may be gone before it is (TTL is not instant)
                continue
            sealed, complete = day_manifest(day)
            if e.ref in sealed:
                if sealed[e.ref] != e.hash:
                    problems.append(Problem(e.ref, "edited", f"not as sealed on {day}"))
            elif complete:
                problems.append(Problem(e.ref, "inserted", f"not as sealed on {day}"))
            else:
                unsealed.setdefault(code, set()).add(day)
    return ResidentsCheck(problems, unsealed)


def verify_residents(log: ProvisionLog, codes: Iterable[str], public_key: bytes, *,
                     now: dt.datetime) -> list[Problem]:
    return check_residents(log, codes, public_key, now=now).problems


def _signed_day_manifest(log: ProvisionLog, day: str, public_key: bytes,
                         problems: list[Problem]) -> tuple[dict[str, str], bool]:
    """The union of the manifests of ``day``'s valid seals, and whether all 24 are there."""
    out: dict[str, str] = {}
    seals = log.seals(f"{day}T00", f"{day}T23")
    valid = 0
    for period, seal in sorted(seals.items()):
        if not signature_ok(seal, public_key):
            problems.append(Problem(period, "seal_invalid",
                                    "the seal's signature does not verify with the deployment's key"))
            continue
        manifest = log.manifest(period, seal.parts)
        if manifest_digest(period, list(manifest.items())) != seal.digest:
            problems.append(Problem(period, "manifest", "the stored manifest does not match the signed digest"))
            continue
        out.update(manifest)
        valid += 1
    return out, valid == 24


def unconfirmed_provisions(log: ProvisionLog, entries: Iterable[ChainEntry]) -> list[tuple[str, str]]:
    """(provision id, resident code) of the provision entries among ``entries`` whose answer was
    never confirmed as handed back (decision 0034): logged, perhaps not delivered. Not a problem
    of the log — its chains and seals are intact — but shown wherever entries are shown."""
    provisions = {(str(e.content.get("provision_id", "")), str(e.content.get("resident_code", "")))
                  for e in entries if e.content.get("kind") != "disclosure"}
    answered = log.answered(pid for pid, _ in provisions)
    return sorted(p for p in provisions if p[0] not in answered)


def kms_public_key(key_id: str) -> bytes:
    """The public key of the deployment's seal key (``key_id``: its ARN or alias, from the
    configuration — never from a seal)."""
    return aws.client("kms").get_public_key(KeyId=key_id)["PublicKey"]
