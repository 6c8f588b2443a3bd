"""``jukinet access-review``: who holds which role in which tier, in the configuration and as deployed.

The rows come from the deployment configuration (``config.People``: assignments, the
security officers who may break glass, the contractors' contracts with their expiry) and,
when an account is reachable with the current credentials (``--endpoint-url`` for the
embedded AWS), from the people roles actually deployed there: ``iam:ListRoles`` under
``/<prefix>/`` and each role's trust policy, whose principals and ``DateLessThan
aws:CurrentTime`` bound are compared with the configuration. Differences are listed as
drift. A contract that has expired but whose role is still deployed is a problem: exit 1
(``--strict``: any drift too). Markdown (default) or CSV. docs/security.md describes the review.

The review itself (``build_review``) is pure; reading the deployment (``read_deployed``) is
separate, so tests can give it deployed roles of their own.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from infra.config import (
    BREAK_GLASS_ROLE,
    RESPONSIBILITY_ROLES,
    ConfigError,
    Deployment,
    Person,
    load_deployment,
)
from infra.naming import Names, municipality_tier
from jukinet.clock import JST, today_jst

from embedded_aws.iam_policy import as_list, date_bounds, statements
from embedded_aws.iam_policy import document as _document

EXPIRING_WITHIN_DAYS = 30
CONTRACTOR = "contractor"
# The one role per municipality through which its existing registry system puts exports into
# its drop zone (infra/stacks/municipality.py); kind ``drop-zone-writer-<code>``.
WRITER = "drop-zone-writer"
# The one role per municipality through which its counter staff call the counter API (resident
# cards, infra/components/counter.py; docs/card.md); kind ``counter-staff-<code>``.
COUNTER = "counter-staff"
TITLES = {**RESPONSIBILITY_ROLES, BREAK_GLASS_ROLE: "緊急時閲覧 (break-glass)", CONTRACTOR: "委託",
          WRITER: "既存住基システム (drop-zone writer)", COUNTER: "窓口 (counter staff, resident cards)"}
COLUMNS = ("tier", "role", "title", "role_name", "person", "name", "organisation", "principal", "since", "until",
           "status", "deployed", "notes")


def principal_key(person: Person) -> str:
    """How a person appears in a trust policy: the ARN, or the SAML provider with the NameID."""
    return f"{person.principal} saml:sub={person.saml_subject}" if person.is_saml else person.principal


@dataclass(frozen=True)
class DeployedRole:
    """A people role found in an account: its principals and, for a contractor, its expiry (JST date)."""

    tier: str
    kind: str
    name: str
    principals: frozenset[str]
    expires: dt.date | None = None


@dataclass
class Row:
    tier: str
    role: str
    role_name: str
    person: str
    name: str
    organisation: str
    principal: str
    since: dt.date | None = None
    until: dt.date | None = None
    status: str = "active"
    deployed: str = "not checked"
    notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        for prefix in (CONTRACTOR, WRITER, COUNTER):
            if self.role.startswith(f"{prefix}-"):
                return TITLES[prefix]
        return TITLES[self.role]

    def cells(self) -> list[str]:
        return [self.tier, self.role, self.title, self.role_name, self.person, self.name, self.organisation,
                self.principal, self.since.isoformat() if self.since else "",
                self.until.isoformat() if self.until else "", self.status, self.deployed, "; ".join(self.notes)]


@dataclass(frozen=True)
class QueueRight:
    """What a people role may do on its tier's message queues (infra/components/responsibility.py)."""

    tier: str
    role_name: str
    queues: str
    rights: str


@dataclass
class Review:
    deployment: str
    today: dt.date
    rows: list[Row]
    checked: dict[str, str]                      # tier → "checked in account …" or why not
    problems: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    queue_rights: list[QueueRight] = field(default_factory=list)

    def exit_code(self, *, strict: bool = False) -> int:
        return 1 if self.problems or (strict and self.drift) else 0


# --- the configuration side -------------------------------------------------------------


def _status(until: dt.date | None, today: dt.date) -> str:
    if until is None:
        return "active"
    days = (until - today).days
    if days <= 0:
        return "expired"
    if days <= EXPIRING_WITHIN_DAYS:
        return f"expires in {days} day{'s' if days != 1 else ''}"
    return "active"


def configured_rows(deployment: Deployment, today: dt.date) -> list[Row]:
    names, people = Names.of(deployment), deployment.people
    rows: list[Row] = []

    def row(tier: str, kind: str, person: Person, since: dt.date | None, until: dt.date | None = None) -> Row:
        return Row(tier=tier, role=kind, role_name=names.people_role(tier, kind), person=person.person_id,
                   name=person.name, organisation=person.organisation, principal=principal_key(person), since=since,
                   until=until, status=_status(until, today))

    for tier in deployment.tiers():
        for kind in RESPONSIBILITY_ROLES:
            for a in people.assignments:
                if a.tier == tier and a.role == kind:
                    rows.append(row(tier, kind, people.person(a.person), a.since))
        for a in people.assignments:
            if a.tier == tier and a.role == "security-officer":
                rows.append(row(tier, BREAK_GLASS_ROLE, people.person(a.person), a.since))
        for c in people.contracts_of(tier):
            for pid in c.people:
                r = row(tier, c.role_kind, people.person(pid), c.since, c.expires)
                r.notes.append(f"contract {c.contract_id}: {c.company}")
                rows.append(r)
    rows += writer_rows(deployment)
    rows += counter_rows(deployment)
    return rows


def writer_rows(deployment: Deployment) -> list[Row]:
    """One row per municipality: its drop-zone writer role, trusted by the tier's account (whose
    own IAM decides which principal of the existing system may assume it)."""
    names = Names.of(deployment)
    return _per_municipality(deployment, WRITER, names.drop_zone_writer, "existing-system", "既存住基システム",
                             "puts exports into incoming/ only, through the tier's S3 endpoints")


def counter_rows(deployment: Deployment) -> list[Row]:
    """One row per municipality: its counter-staff role, trusted by the tier's account (whose
    identity provider decides which clerk may assume it); the counter API's only callers."""
    names = Names.of(deployment)
    return _per_municipality(deployment, COUNTER, names.counter_role, "counter", "窓口",
                             "calls the counter API of its tier only (resident cards, docs/card.md)")


def _per_municipality(deployment: Deployment, role: str, role_name, person: str, title: str, note: str) -> list[Row]:
    """A role per municipality of every municipality tier, trusted by that tier's account."""
    rows = []
    for prefecture in deployment.prefectures:
        tier_config = prefecture.municipality_tier
        tier = municipality_tier(prefecture.code)
        for m in sorted(tier_config.municipalities, key=lambda m: m.code):
            rows.append(Row(tier=tier, role=f"{role}-{m.code}", role_name=role_name(m.code),
                            person=f"{person}-{m.code}", name=f"{m.name} {title}", organisation=m.name,
                            principal=f"arn:aws:iam::{tier_config.env.account}:root", notes=[note]))
    return rows


def queue_rights(deployment: Deployment) -> list[QueueRight]:
    """The people roles' rights on each tier's message queues, as ``infra/components/
    responsibility.py`` writes them (decisions 0022, 0047): per processing tier its inbound queue
    and DLQ, per municipality tier with the channel its channel queue and DLQ. Only roles
    someone holds are listed (a role nobody holds is not deployed). Purging any of them is
    denied to every person (and the channel queues' policies deny it to every principal)."""
    from infra.naming import NATIONAL, prefecture_tier

    names, people = Names.of(deployment), deployment.people
    tiers = [(prefecture_tier(p.code), names.inbound_queue(prefecture_tier(p.code))) for p in deployment.prefectures]
    tiers.append((NATIONAL, names.inbound_queue(NATIONAL)))
    if deployment.channel:
        tiers += [(municipality_tier(p.code), names.channel_queue(p.code)) for p in deployment.prefectures]
    out = []
    for tier, queue in tiers:
        dlq = names.dead_letter_queue(queue)
        stop = ("stop the consuming function (reserved concurrency 0) and pause its queue mapping"
                + (f"; hold {queue} (retention raised)" if tier != NATIONAL else ""))
        grants = [
            ("operator", f"{dlq} → {queue}", "redrive (jukinet redrive): receive and delete dead letters, send them "
             "back to the source queue, the transport key through SQS for these two queues only; "
             f"{stop}; never read {queue}, never purge"),
            ("chief-security-officer", queue, stop),
            ("deputy-chief-security-officer", queue, stop),
            (BREAK_GLASS_ROLE, dlq, "read dead letters (session with the officer's source identity and a reason; "
             "alarmed)"),
        ]
        for kind, queues, rights in grants:
            holders = people.holders(tier, "security-officer" if kind == BREAK_GLASS_ROLE else kind)
            if holders:
                out.append(QueueRight(tier, names.people_role(tier, kind), queues, rights))
    return out


# --- the deployment side ----------------------------------------------------------------


def trust_principals(document: Mapping[str, Any]) -> frozenset[str]:
    """The principals an Allow of a trust policy names, as ``principal_key`` writes them."""
    found: set[str] = set()
    for st in statements(document):
        if st.get("Effect") != "Allow":
            continue
        principal = st.get("Principal") or {}
        if principal == "*":
            found.add("*")
            continue
        for arn in as_list(principal.get("AWS")):
            found.add(str(arn))
        for provider in as_list(principal.get("Federated")):
            subjects = []
            for operator, keys in (st.get("Condition") or {}).items():
                if operator.endswith(("StringEquals", "StringLike")):
                    subjects += [v for k, vs in keys.items() if k.lower() == "saml:sub" for v in as_list(vs)]
            if subjects:
                found.update(f"{provider} saml:sub={s}" for s in subjects)
            else:
                found.add(str(provider))
    return frozenset(found)


def trust_expiry(document: Mapping[str, Any]) -> dt.date | None:
    """The earliest ``DateLessThan aws:CurrentTime`` of the trust policy, as the JST date it falls on."""
    bounds = date_bounds(document)
    return min(bounds).astimezone(JST).date() if bounds else None


def parse_role(deployment: Deployment, role: Mapping[str, Any]) -> DeployedRole | None:
    """A role of ``iam:ListRoles`` if it is a people role of a tier of this deployment."""
    names = Names.of(deployment)
    path, name = role.get("Path", ""), role.get("RoleName", "")
    for prefecture in deployment.prefectures:
        if path == names.drop_zone_writers_path(prefecture.code) and name.startswith(names.drop_zone_writer("")):
            document = _document(role.get("AssumeRolePolicyDocument", "{}"))
            code = name[len(names.drop_zone_writer("")):]
            return DeployedRole(tier=municipality_tier(prefecture.code), kind=f"{WRITER}-{code}", name=name,
                                principals=trust_principals(document), expires=trust_expiry(document))
        if path == names.counter_roles_path(prefecture.code) and name.startswith(names.counter_role("")):
            document = _document(role.get("AssumeRolePolicyDocument", "{}"))
            code = name[len(names.counter_role("")):]
            return DeployedRole(tier=municipality_tier(prefecture.code), kind=f"{COUNTER}-{code}", name=name,
                                principals=trust_principals(document), expires=trust_expiry(document))
    for tier in deployment.tiers():
        if path == names.people_path(tier) and name.startswith(f"{names.people_role(tier, '')}"):
            document = _document(role.get("AssumeRolePolicyDocument", "{}"))
            return DeployedRole(tier=tier, kind=name[len(names.people_role(tier, "")):], name=name,
                                principals=trust_principals(document), expires=trust_expiry(document))
    return None


def read_deployed(deployment: Deployment, *, iam: Any = None,
                  sts: Any = None) -> tuple[list[DeployedRole], dict[str, str]]:
    """The people roles of every tier in the account the credentials reach, and per tier whether it was read."""
    # here: the configuration-only review needs no AWS SDK
    from botocore.exceptions import BotoCoreError, ClientError

    from .clients import operator_client

    unreachable = (BotoCoreError, ClientError, OSError)

    region = os.environ.get("AWS_DEFAULT_REGION") or deployment.region
    try:
        sts = sts or operator_client("sts", region)
        account = sts.get_caller_identity()["Account"]
    except unreachable as exc:  # no credentials, no network, an embedded AWS that is not running
        reason = f"not checked: {type(exc).__name__}: {exc}".splitlines()[0][:200]
        return [], {tier: reason for tier in deployment.tiers()}
    checked: dict[str, str] = {}
    wanted = []
    for tier in deployment.tiers():
        env = deployment.tier_env(tier)
        if env.account == account:
            checked[tier] = f"checked in account {account}"
            wanted.append(tier)
        else:
            checked[tier] = f"not checked: the tier is in account {env.account}, the credentials are for {account}"
    if not wanted:
        return [], checked
    iam = iam or operator_client("iam", region)
    found: list[DeployedRole] = []
    prefix = f"/{Names.of(deployment).prefix}/"
    try:
        for page in iam.get_paginator("list_roles").paginate(PathPrefix=prefix):
            for role in page.get("Roles", []):
                parsed = parse_role(deployment, role)
                if parsed is not None and parsed.tier in wanted:
                    found.append(parsed)
    except unreachable as exc:
        reason = f"not checked: iam:ListRoles failed: {type(exc).__name__}: {exc}".splitlines()[0][:200]
        return [], {tier: (reason if tier in wanted else why) for tier, why in checked.items()}
    return found, checked


# --- the review ----------------------------------------------------------------------------


def build_review(deployment: Deployment, today: dt.date, deployed: Iterable[DeployedRole] | None = None,
                 checked: Mapping[str, str] | None = None) -> Review:
    """Configuration rows, matched against ``deployed`` for the tiers ``checked`` says were read."""
    rows = configured_rows(deployment, today)
    checked = dict(checked or {tier: "not checked: configuration only" for tier in deployment.tiers()})
    review = Review(deployment=deployment.name, today=today, rows=rows, checked=checked,
                    queue_rights=queue_rights(deployment))
    read = {tier for tier, why in checked.items() if why.startswith("checked")}
    by_role = {(d.tier, d.kind): d for d in deployed or ()}
    people = deployment.people
    known_principals = {principal_key(p): p for p in people.persons}
    contracts = {(c.tier, c.role_kind): c for c in people.contracts}

    for r in rows:
        if r.tier not in read:
            continue
        role = by_role.get((r.tier, r.role))
        contract = contracts.get((r.tier, r.role))
        if role is None:
            r.deployed = "no"
            if not (contract and contract.is_expired(today)):
                r.notes.append("role not deployed")
                review.drift.append(f"{r.role_name}: not deployed, but configured for {r.person}")
        elif r.principal in role.principals:
            r.deployed = "yes"
        else:
            r.deployed = "no"
            r.notes.append("not in the deployed trust policy")
            review.drift.append(f"{r.role_name}: {r.person} is configured but not in the deployed trust policy")
        if role is not None and contract is not None and role.expires != contract.expires:
            note = f"deployed expiry {role.expires or 'none'}, configured {contract.expires}"
            if note not in r.notes:
                r.notes.append(note)
                review.drift.append(f"{r.role_name}: {note}")

    configured = {(r.tier, r.role, r.principal) for r in rows}
    for d in sorted(by_role.values(), key=lambda d: (d.tier, d.name)):
        if d.tier not in read:
            continue
        in_config = any(t == d.tier and k == d.kind for t, k, _ in configured)
        for principal in sorted(d.principals):
            if (d.tier, d.kind, principal) in configured:
                continue
            person = known_principals.get(principal)
            why = ("in the deployed trust policy, not in the configuration" if in_config
                   else "role deployed but not in the configuration")
            rows.append(Row(tier=d.tier, role=d.kind, role_name=d.name, person=person.person_id if person else "?",
                            name=person.name if person else "(unknown principal)",
                            organisation=person.organisation if person else "", principal=principal,
                            until=d.expires, status=_status(d.expires, today) if d.expires else "unknown",
                            deployed="deployed only", notes=[why]))
            review.drift.append(f"{d.name}: {principal} {why}")
        contract = contracts.get((d.tier, d.kind))
        expires = d.expires or (contract.expires if contract else None)
        if d.kind.startswith(f"{CONTRACTOR}-") and expires is not None and today >= expires and d.principals:
            review.problems.append(f"{d.name}: contract expired on {expires} but its role is still deployed "
                                   f"(trusting {', '.join(sorted(d.principals))}); remove the contract and redeploy")
    rows.sort(key=lambda r: (deployment.tiers().index(r.tier) if r.tier in deployment.tiers() else 99,
                             _role_order(r.role), r.person))
    return review


def _role_order(kind: str) -> int:
    order = [*RESPONSIBILITY_ROLES, BREAK_GLASS_ROLE]
    if kind.startswith(f"{WRITER}-"):
        return len(order) + 1
    if kind.startswith(f"{COUNTER}-"):
        return len(order) + 2
    return order.index(kind) if kind in order else len(order)


# --- rendering ---------------------------------------------------------------------------


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def review_markdown(review: Review) -> str:
    out = [f"# Access review (アクセス権の確認) — {review.deployment}, {review.today.isoformat()} (JST)", ""]
    out.append("Who holds which role in which tier: from the deployment configuration and, where the account was "
               "reachable, from the deployed roles' trust policies (docs/security.md).")
    out += ["", "| tier | deployment checked |", "| --- | --- |"]
    out += [f"| {tier} | {_md(why)} |" for tier, why in review.checked.items()]
    out += ["", "| " + " | ".join(COLUMNS) + " |", "| " + " | ".join("---" for _ in COLUMNS) + " |"]
    out += ["| " + " | ".join(_md(c) for c in r.cells()) + " |" for r in review.rows]
    expiring = [r for r in review.rows if r.status.startswith("expires in")]
    expired = [r for r in review.rows if r.status == "expired"]
    out += ["", "## Contractors (委託)", ""]
    if not expiring and not expired:
        out.append("No contract expires within the next "
                   f"{EXPIRING_WITHIN_DAYS} days, none has expired.")
    out += [f"- **expires soon**: {r.role_name} — {r.person} ({r.name}), refused from {r.until}" for r in expiring]
    out += [f"- **expired**: {r.role_name} — {r.person} ({r.name}), refused since {r.until}" for r in expired]
    if review.queue_rights:
        out += ["", "## Rights on the message queues", "",
                "Who may touch the queues that carry notices and channel messages (decisions 0022, 0047); no person "
                "may purge them, no other person may read them.", "",
                "| tier | role_name | queues | rights |", "| --- | --- | --- | --- |"]
        out += [f"| {q.tier} | {q.role_name} | {_md(q.queues)} | {_md(q.rights)} |" for q in review.queue_rights]
    out += ["", "## Problems", ""]
    out += [f"- {_md(p)}" for p in review.problems] or ["None."]
    out += ["", "## Drift between configuration and deployment", ""]
    out += [f"- {_md(d)}" for d in review.drift] or ["None."]
    return "\n".join(out) + "\n"


def review_csv(review: Review) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in review.rows:
        writer.writerow(r.cells())
    return buffer.getvalue()


# --- the command -------------------------------------------------------------------------


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"date must be YYYY-MM-DD, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["markdown", "csv"], default="markdown")
    parser.add_argument("--endpoint-url", default=None, help="AWS endpoint (e.g. the embedded AWS)")
    parser.add_argument("--config-only", action="store_true",
                        help="do not read the deployed roles (no AWS call): the configuration alone")
    parser.add_argument("--today", type=_date, default=None, metavar="YYYY-MM-DD",
                        help="review as of this day, Japan time (default: today)")
    parser.add_argument("--strict", action="store_true", help="exit 1 on any drift, not only on expired contracts")
    parser.add_argument("--out", default=None, metavar="FILE", help="write the report here instead of stdout")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "endpoint_url", None):
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint_url
    try:
        deployment = load_deployment(args.deployment)
    except ConfigError as exc:
        print(f"jukinet access-review: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("AWS_DEFAULT_REGION", deployment.region)
    today = args.today or today_jst(args.now)
    deployed: Sequence[DeployedRole] = []
    checked = None
    if not args.config_only:
        deployed, checked = read_deployed(deployment)
    review = build_review(deployment, today, deployed, checked)
    text = review_csv(review) if args.format == "csv" else review_markdown(review)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    for problem in review.problems:
        print(f"jukinet access-review: {problem}", file=sys.stderr)
    return review.exit_code(strict=args.strict)


__all__ = ["DeployedRole", "Review", "Row", "add_arguments", "build_review", "configured_rows", "parse_role",
           "read_deployed", "review_csv", "review_markdown", "run", "trust_expiry", "trust_principals"]
