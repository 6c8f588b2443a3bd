"""Operator reports on the provision log: ``jukinet verify``, ``jukinet disclose``,
``jukinet provision-stats`` (``docs/provision.md``).

Everything reads the national tier's provision tables through the runtime's own adapter
(``jukinet.adapters.provision_log.ProvisionLog``) and checks with the runtime's own functions
(``jukinet.services.provision_audit``), so the commands see exactly what the functions wrote.
They use the standard AWS credential chain; ``AWS_ENDPOINT_URL`` points them at the embedded AWS.

The building of each report is pure (``verify_log`` aside, which reads) and separate from its
printing, so that tests check the rows and the commands only render them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from jukinet.adapters.provision_log import ProvisionLog, SealArchive
from jukinet.domain.agreements import ProvisionFunction
from jukinet.clock import today_jst
from jukinet.domain.notice import JST
from jukinet.domain.provision import ChainEntry, Problem, entry_ref
from jukinet.services.provision import disclosure
from jukinet.services.provision_audit import (
    SEAL_GRACE,
    check_residents,
    kms_public_key,
    unconfirmed_provisions,
    verify_day,
)

DEFAULT_VERIFY_DAYS = 7


# --- where the tables are ---------------------------------------------------------------


@dataclass(frozen=True)
class ProvisionTables:
    log_table: str
    state_table: str
    seal_key: str = ""  # the deployment's seal key (alias), from the configuration
    seal_archive_bucket: str = ""

    def log(self) -> ProvisionLog:
        return ProvisionLog(self.log_table, self.state_table)

    def archive(self) -> SealArchive | None:
        return SealArchive(self.seal_archive_bucket) if self.seal_archive_bucket else None


def provision_tables(deployment) -> ProvisionTables:  # deployment: infra.config.Deployment
    """The national provision log and state tables, the seal key and the seal archive, named as
    the national stack names them."""
    from infra.naming import NATIONAL, Names

    names = Names.of(deployment)
    return ProvisionTables(log_table=names.provision_log_table(), state_table=names.provision_state_table(),
                           seal_key=names.key_alias(NATIONAL, "provision-seal"),
                           seal_archive_bucket=names.provision_seal_archive_bucket(deployment.national.env))


# --- verify -----------------------------------------------------------------------------


def day_range(start: dt.date, end: dt.date) -> list[str]:
    if start > end:
        raise ValueError(f"--from {start} is after --to {end}")
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def default_days(today: dt.date, count: int = DEFAULT_VERIFY_DAYS) -> list[str]:
    """The last ``count`` JST days up to and including today."""
    return day_range(today - dt.timedelta(days=count - 1), today)


def public_key_der(data: bytes) -> bytes:
    """The DER (SubjectPublicKeyInfo) of a public key given as DER or PEM."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return load_pem_public_key(data).public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return data


def key_source(public_key_file: bytes | None, configured_key: str) -> bytes:
    """The deployment's seal public key (DER), pinned: the auditor's published copy if given,
    else KMS GetPublicKey of the key the configuration names (``configured_key``: the seal
    key's alias). Never the key a seal names: a seal signed by any other key fails."""
    if public_key_file is not None:
        return public_key_der(public_key_file)
    return kms_public_key(configured_key)


def _code_of(ref: str) -> str:
    return ref.rsplit("#", 1)[0]


@dataclass
class DayCheck:
    """One day of the log. A sealed day is checked against its seal (signature, manifest,
    every entry); a day not sealed yet by the chains of the residents with entries that day."""

    day: str
    entries: int
    sealed: bool
    residents: list[str] = field(default_factory=list)  # chains verified for entries not sealed yet
    problems: list[Problem] = field(default_factory=list)
    sealed_periods: int = 0  # hours of the day with a valid seal
    expired: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def status(self) -> str:
        if self.problems:
            return f"{len(self.problems)} problem(s)"
        if self.expired:
            return "past retention (7 years): expired"
        if not self.entries and not self.sealed and not self.sealed_periods:
            return "no entries"
        if not self.sealed and self.sealed_periods:
            return f"{self.sealed_periods}/24 hours sealed; {len(self.residents)} chain(s) verified"
        if not self.sealed:
            return f"not sealed yet; {len(self.residents)} chain(s) verified"
        return "verified against the seal"


@dataclass
class VerifyReport:
    days: list[DayCheck]
    residents: list[str]  # every chain verified (asked for, and those of unsealed days)
    chain_problems: list[Problem]
    # (provision id, resident code) logged without a delivery confirmation (decision 0034):
    # shown, not a problem — the answer may never have reached the recipient.
    unconfirmed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def problems(self) -> list[Problem]:
        """Every problem once: the sealed days' and the chains'."""
        seen: dict[tuple[str, str], Problem] = {}
        for p in [*(p for d in self.days for p in d.problems), *self.chain_problems]:
            seen.setdefault((p.where, p.kind), p)
        return list(seen.values())

    @property
    def ok(self) -> bool:
        return not self.problems


# A day with entries and no seal at all (before the seal chain began, or the sealer never ran):
# a problem once its last hour is well past its seal's run.
UNSEALED_DAY_GRACE = SEAL_GRACE + dt.timedelta(hours=1)


def verify_log(log: ProvisionLog, days: Sequence[str], residents: Sequence[str], public_key: bytes, *,
               now: dt.datetime, archive: SealArchive | None = None) -> VerifyReport:
    """Check ``days`` against their hourly seals (``verify_day``: signature with the pinned
    ``public_key``, the seal chain, the archive's copies, the manifests), the chains of the
    residents with entries no seal covers yet, and the chains of ``residents`` — each chain
    once, against the sealed manifests and the sealer's record of where it ends. ``now`` (from
    the caller) decides which hours are due and what is past retention."""
    checks: list[DayCheck] = []
    for day in days:
        report = verify_day(log, day, public_key, now=now, archive=archive)
        checks.append(DayCheck(day, report.entries, report.sealed, sorted({_code_of(ref) for ref in report.unsealed}),
                               list(report.problems), report.sealed_periods, report.expired))
    codes = list(dict.fromkeys([*residents, *(c for d in checks for c in d.residents)]))
    chain_problems = check_residents(log, codes, public_key, now=now).problems
    for d in checks:
        if d.residents:
            mine = set(d.residents)
            d.problems += [p for p in chain_problems if _code_of(p.where) in mine and p not in d.problems]
            due = dt.datetime.combine(dt.date.fromisoformat(d.day) + dt.timedelta(days=1), dt.time(), tzinfo=JST)
            if not d.sealed_periods and d.entries and now >= due + UNSEALED_DAY_GRACE and \
                    not any(p.kind == "seal_missing" for p in d.problems):
                d.problems.insert(0, Problem(d.day, "seal_missing",
                                             "the day has ended but has no seal: the sealer did not run"))
    shown: dict[str, ChainEntry] = {}
    for day in days:
        shown.update(log.entries(list(log.day_hashes(day))))
    for code in codes:
        shown.update((e.ref, e) for e in log.chain(code)[0])
    return VerifyReport(checks, codes, chain_problems, unconfirmed_provisions(log, shown.values()))


def verify_table(report: VerifyReport) -> Table:
    table = Table(title="Provision log (提供記録) — verification")
    for name, justify in [("day (JST)", "left"), ("sealed", "left"), ("entries", "right"), ("result", "left")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for d in report.days:
        style = "bold red" if d.problems else ("yellow" if not d.sealed and d.entries else None)
        table.add_row(d.day, "yes" if d.sealed else "no", f"{d.entries:,}", d.status, style=style)
    asked = [c for c in report.residents if not any(c in d.residents for d in report.days)]
    if asked:
        bad = {_code_of(p.where) for p in report.chain_problems}
        for code in asked:
            table.add_row(f"resident {code}", "", "", "chain broken" if code in bad else "chain verified",
                          style="bold red" if code in bad else None)
    return table


def print_verify(report: VerifyReport, console: Console | None = None) -> None:
    console = console or Console()
    console.print(verify_table(report))
    problems = report.problems
    if problems:
        console.print(f"[bold red]{len(problems)} problem(s):[/]")
        for p in problems:
            console.print(f"  {escape(str(p))}", highlight=False)
    else:
        console.print(f"[green]No problem: {len(report.days)} day(s), {len(report.residents)} chain(s) checked.[/]")
    if report.unconfirmed:
        console.print(f"[yellow]{len(report.unconfirmed)} entr(y/ies) logged with delivery unconfirmed[/] (the "
                      "function stopped between the log write and the answer; decision 0034):")
        for provision_id, code in report.unconfirmed:
            console.print(f"  provision {provision_id}, resident {code}", highlight=False)


def verify_json(report: VerifyReport) -> str:
    return json.dumps({
        "ok": report.ok,
        "days": [{"day": d.day, "entries": d.entries, "sealed": d.sealed, "status": d.status,
                  "problems": [str(p) for p in d.problems]} for d in report.days],
        "residents": report.residents,
        "problems": [{"where": p.where, "kind": p.kind, "detail": p.detail} for p in report.problems],
        "unconfirmed": [{"provision_id": pid, "resident_code": code} for pid, code in report.unconfirmed],
    }, ensure_ascii=False, indent=2)


# --- disclose ---------------------------------------------------------------------------


def disclosure_table(result: Mapping) -> Table:
    table = Table(title=f"Provisions of {result['resident_code']} (提供状況) {result['from']} – {result['to']}")
    for name in ["date", "recipient", "affair", "function", "fields", "provider", "delivery"]:
        table.add_column(name)
    # Rows whose entry the chain check faults are shown in red: their content cannot be trusted.
    faulted = {problem.split(":", 1)[0] for problem in result["chain"]["problems"]}
    for p in result["provisions"]:
        function = f"{p['function_label']} ({p['function']})" if p.get("function_label") else str(p["function"])
        bad = entry_ref(result["resident_code"], int(p["entry"])) in faulted if p.get("entry") else False
        table.add_row(p["date"], str(p.get("recipient") or p.get("recipient_id") or ""),
                      f"{p.get('affair_code', '')} {p.get('affair') or ''}".strip(), function,
                      ", ".join(p.get("fields", [])), str(p.get("provider") or ""),
                      "delivered" if p.get("delivery") == "delivered" else "unconfirmed (配信未確認)",
                      style="bold red" if bad else None)
    return table


def chain_line(result: Mapping) -> str:
    chain = result["chain"]
    if chain["verified"]:
        unsealed = chain.get("unsealed_days") or []
        tail = f"; not sealed yet: {', '.join(unsealed)} (hash chain only)" if unsealed else ""
        return f"chain of {result['resident_code']}: {chain['entries']} entries, verified against the seals{tail}"
    return (f"chain of {result['resident_code']}: {chain['entries']} entries, NOT verified "
            f"({len(chain['problems'])} problem(s))")


def print_disclosure(result: Mapping, console: Console | None = None) -> None:
    console = console or Console()
    console.print(disclosure_table(result))
    unconfirmed = sum(1 for p in result["provisions"] if p.get("delivery") != "delivered")
    console.print(f"{len(result['provisions'])} provision(s)."
                  + (f" {unconfirmed} logged with delivery unconfirmed: the answer may never have reached the "
                     "recipient (docs/provision.md)." if unconfirmed else ""))
    for d in result.get("disclosures", []):
        console.print(f"disclosed on {d['date']} by {escape(d['office'])} ({escape(d['staff'])})", highlight=False)
    verified = result["chain"]["verified"]
    console.print(f"[{'green' if verified else 'bold red'}]{escape(chain_line(result))}[/]", highlight=False)
    for problem in result["chain"]["problems"]:
        console.print(f"  {escape(problem)}", highlight=False)


def disclose(log: ProvisionLog, resident_code: str, start: dt.date | None, end: dt.date | None, *,
             public_key: bytes, now: dt.datetime) -> dict:
    return disclosure(log, resident_code, start or dt.date(1970, 1, 1), end or today_jst(now),
                      public_key=public_key, now=now)


# --- provision-stats --------------------------------------------------------------------


@dataclass(frozen=True)
class StatsRow:
    recipient_id: str
    name_ja: str
    name: str
    affair_code: str
    affair: str
    function: str
    records: int

    @property
    def function_label(self) -> str:
        try:
            return ProvisionFunction(self.function).label_ja
        except ValueError:
            return ""

    @property
    def is_total(self) -> bool:
        return self.recipient_id == ""


def stats_rows(counts: Mapping[tuple[str, str, str], int], agencies: Iterable) -> list[StatsRow]:
    """The month's statistics in the seed's shape: one row per recipient and affair/function
    with records provided (configuration order of recipients, then affair code and function),
    then a total row (``recipient_id == ""``). ``agencies``: the deployment's ``Recipient`` objects (``jukinet.domain.agreements``).
    Counts of a recipient or affair no longer configured are still shown (names left empty)."""
    order: dict[str, int] = {}
    names: dict[str, tuple[str, str]] = {}
    affairs: dict[tuple[str, str], str] = {}
    for i, a in enumerate(agencies):
        order[a.recipient_id] = i
        names[a.recipient_id] = (a.name_ja, a.name)
        for g in a.agreements:
            affairs[(a.recipient_id, g.affair_code)] = g.affair
    rows = [StatsRow(recipient, *names.get(recipient, ("", "")), affair, affairs.get((recipient, affair), ""),
                     function, n)
            for (recipient, affair, function), n in counts.items() if n]
    rows.sort(key=lambda r: (order.get(r.recipient_id, len(order)), r.recipient_id, r.affair_code, r.function))
    rows.append(StatsRow("", "合計", "total", "", "", "", sum(r.records for r in rows)))
    return rows


def monthly_statistics(log: ProvisionLog, month: str, agencies: Sequence) -> list[StatsRow]:
    return stats_rows(log.statistics(month, [a.recipient_id for a in agencies]), agencies)


def stats_table(rows: Sequence[StatsRow], month: str) -> Table:
    table = Table(title=f"Provisions {month} (本人確認情報の提供件数)")
    for name, justify in [("recipient", "left"), ("name", "left"), ("affair", "left"), ("function", "left"),
                          ("records", "right")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for i, r in enumerate(rows):
        function = f"{r.function_label} ({r.function})" if r.function_label else r.function
        last_before_total = i + 1 < len(rows) and rows[i + 1].is_total
        table.add_row(r.name_ja or r.recipient_id, r.name, f"{r.affair_code} {r.affair}".strip(), function,
                      f"{r.records:,}", style="bold" if r.is_total else None, end_section=last_before_total)
    return table


def stats_csv(rows: Sequence[StatsRow], month: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["month", "recipient_id", "name_ja", "name", "affair_code", "affair", "function",
                     "function_label", "records"])
    for r in rows:
        writer.writerow([month, r.recipient_id, r.name_ja, r.name, r.affair_code, r.affair, r.function,
                         r.function_label, r.records])
    return out.getvalue()


def stats_json(rows: Sequence[StatsRow], month: str) -> str:
    body = [r for r in rows if not r.is_total]
    return json.dumps({
        "month": month,
        "rows": [{"recipient_id": r.recipient_id, "name_ja": r.name_ja, "name": r.name, "affair_code": r.affair_code,
                  "affair": r.affair, "function": r.function, "function_label": r.function_label,
                  "records": r.records} for r in body],
        "total": sum(r.records for r in body),
    }, ensure_ascii=False, indent=2)


# --- provision-stats --by prefecture, --check ------------------------------------------------


@dataclass(frozen=True)
class PrefectureRow:
    """The seed's provision table per prefecture: records of residents of ``prefecture``
    provided to ``recipient_id`` in the month. The last row (``prefecture == ""``) is the total."""

    prefecture: str
    prefecture_name: str
    recipient_id: str
    recipient_name: str
    records: int

    @property
    def is_total(self) -> bool:
        return self.prefecture == ""


def prefecture_rows(counts: Mapping[tuple[str, str], int], agencies: Iterable = (),
                    prefectures: Iterable = ()) -> list[PrefectureRow]:
    """Rows per prefecture (code order) and recipient (configuration order), then the total.
    ``agencies``/``prefectures``: ``infra.config`` objects, for the names."""
    order: dict[str, int] = {}
    names: dict[str, str] = {}
    for i, a in enumerate(agencies):
        order[a.recipient_id] = i
        names[a.recipient_id] = a.name_ja or a.name
    pref_names = {p.code: p.name for p in prefectures}
    rows = [PrefectureRow(p, pref_names.get(p, ""), r, names.get(r, ""), n) for (r, p), n in counts.items() if n]
    rows.sort(key=lambda x: (x.prefecture, order.get(x.recipient_id, len(order)), x.recipient_id))
    rows.append(PrefectureRow("", "合計", "", "total", sum(r.records for r in rows)))
    return rows


def monthly_statistics_by_prefecture(log: ProvisionLog, month: str, deployment) -> list[PrefectureRow]:
    return prefecture_rows(log.statistics_by_prefecture(month, [a.recipient_id for a in deployment.agencies]),
                           deployment.agencies, deployment.prefectures)


def prefecture_table(rows: Sequence[PrefectureRow], month: str) -> Table:
    table = Table(title=f"Provisions {month} per prefecture of the resident (都道府県別 本人確認情報の提供件数)")
    for name, justify in [("prefecture", "left"), ("recipient", "left"), ("month", "left"), ("records", "right")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for i, r in enumerate(rows):
        last_before_total = i + 1 < len(rows) and rows[i + 1].is_total
        table.add_row(f"{r.prefecture_name} {r.prefecture}".strip(),
                      f"{r.recipient_name} ({r.recipient_id})" if r.recipient_id else r.recipient_name,
                      "" if r.is_total else month, f"{r.records:,}", style="bold" if r.is_total else None,
                      end_section=last_before_total)
    return table


def prefecture_csv(rows: Sequence[PrefectureRow], month: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["prefecture", "prefecture_name", "recipient_id", "recipient_name", "month", "records"])
    for r in rows:
        writer.writerow([r.prefecture, r.prefecture_name, r.recipient_id, r.recipient_name, month, r.records])
    return out.getvalue()


def prefecture_json(rows: Sequence[PrefectureRow], month: str) -> str:
    body = [r for r in rows if not r.is_total]
    return json.dumps({"month": month, "rows": [
        {"prefecture": r.prefecture, "prefecture_name": r.prefecture_name, "recipient_id": r.recipient_id,
         "recipient_name": r.recipient_name, "records": r.records} for r in body],
        "total": sum(r.records for r in body)}, ensure_ascii=False, indent=2)


def print_stats_check(check, console: Console | None = None) -> None:  # check: provision_audit.StatsCheck
    console = console or Console()
    if check.ok:
        console.print(f"[green]Counters of {check.month} equal the log: {check.entries:,} provision(s), "
                      f"{check.sealed:,} sealed.[/]")
        return
    console.print(f"[bold red]Counters of {check.month} differ from the log ({check.entries:,} provision(s), "
                  f"{check.sealed:,} sealed, {check.missing} named by a seal but gone):[/]")
    for row in check.mismatches:
        console.print(f"  {escape(str(row))}", highlight=False)
