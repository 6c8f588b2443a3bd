"""``jukinet redrive``: put dead-lettered messages back into the queue they came from, once
their cause is fixed (docs/operations.md, "Redriving dead letters"; decision 0022).

Per processing tier (``national``, ``pref-<code>``) the inbound queue's dead-letter queue
holds two kinds of message:

* **whole messages** — the signed message as it arrived: dead-lettered by the processor with
  its reason in the attributes (``jukinet.reason``: ``unknown_sender``, ``signature_invalid``…),
  or moved there by SQS after five failed receives (no reason: shown as ``none``). These can
  go back: the processor checks them again from the start (signature included), so a redrive
  can return a message, never make one up;
* **fragments** — one notice (``invalid_notice``, ``not_holder``) or one forwarded payload
  (``origin_*``) cut out of a message whose other notices were stored: no longer a message a
  sender signed, so they cannot go back. The sender re-sends (``docs/operations.md``).

The default is a dry run: every dead letter is received (held invisible while counted) and
released, and the counts per reason are printed. ``--reason`` selects reasons (default: every
reason but the security events ``SECURITY_REASONS`` — a failed signature, a forwarded payload
its municipality did not sign — which move only when named). ``--apply`` sends each selected message to
the source queue with the attribute ``jukinet.redrive`` = the redrive's id, *then* deletes it
from the dead-letter queue (a crash in between leaves a copy in both; the tiers store a notice
once). A redriven message that the processor then handles releases the dead letter it had been
counted as (``IdentityStore.release_dead_letters``), so the reconciliation balances.

**The channel between municipalities** (decision 0047). With ``Deployment.channel`` each
municipality tier (``muni-<code>``) is a tier here too: its channel queue's dead-letter queue,
redriven into the channel queue by the tier's operator. A channel message (a request, an answer
or a refusal; in a channel DLQ or in a processing tier's inbound DLQ, where the routers put
theirs) whose **deadline has passed is never redriven**, whatever ``--reason`` says: its
requester has already timed out (the request counts as timed out in the reconciliation, and the
counter asks again with a new correlation id), so a late request would be answered for nobody
and a late answer could not settle anything (the requester's conditional update refuses it
past the deadline). They are counted per reason as ``past deadline``, left in the queue (they
expire with its 14-day retention; nobody may purge it), and the record says how many.

**The redrive record.** Before anything moves, ``/<prefix>/redrive/<tier>/<id>`` (SSM, JSON:
who, when, queues, the reasons asked for, the counts planned) is written; when done, the same
parameter gets the counts moved and the end time. ``<id>`` is the start time (UTC,
``YYYYMMDDTHHMMSSZ``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from jukinet.clock import Clock, system_clock
from jukinet.domain import channel
from jukinet.domain.errors import ValidationError
from jukinet.domain.message import SignedMessage
from jukinet.services.tier_processor import REDRIVE_ATTRIBUTE

from .clients import ClientCache

NO_REASON = "none"  # moved by SQS after maxReceiveCount failed receives: no reason attribute
# Security events until explained (docs/operations.md): moved only when named with --reason.
SECURITY_REASONS = ("signature_invalid", "origin_signature_invalid", "lineage_missing", "not_holder")
FRAGMENT_KINDS = ("notice", "origin")  # dead letters cut out of a message (tier_processor._dead_letter_*)
RECORD_VERSION = 1
# A dead letter stays invisible this long while it is counted or moved: longer than a scan.
HOLD_SECONDS = 300
_EMPTY_RECEIVES = 3  # SQS short polling may answer empty while messages remain: ask again


class RedriveError(RuntimeError):
    """A redrive that cannot start: unknown tier or reason."""


@dataclass
class DeadLetter:
    receipt: str
    body: str
    attributes: dict[str, dict[str, Any]]
    reason: str
    sender: str
    redrivable: bool
    deadline: dt.datetime | None = None  # a channel message's deadline (its headers), else None


@dataclass
class RedriveRecord:
    id: str
    tier: str
    dead_letter_queue: str
    source_queue: str
    requested_by: str
    started_at: str
    reasons: list[str]  # asked for; empty: every reason
    planned: dict[str, int]
    moved: dict[str, int] = field(default_factory=dict)
    past_deadline: dict[str, int] = field(default_factory=dict)  # channel messages left: requester timed out
    finished_at: str | None = None
    status: str = "moving"
    version: int = RECORD_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RedriveRecord:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class QueueReport:
    """One tier's dead-letter queue: what is there, what was (or would be) moved."""

    tier: str
    dead_letter_queue: str
    source_queue: str
    redrivable: dict[str, int] = field(default_factory=dict)      # selected by the reasons asked for
    not_selected: dict[str, int] = field(default_factory=dict)    # redrivable, another reason
    fragments: dict[str, int] = field(default_factory=dict)       # cannot go back: the sender re-sends
    past_deadline: dict[str, int] = field(default_factory=dict)   # channel messages past their deadline: left
    senders: dict[str, list[str]] = field(default_factory=dict)   # per reason, the senders named
    moved: dict[str, int] = field(default_factory=dict)
    record: str | None = None                                     # SSM parameter of the redrive

    @property
    def total(self) -> int:
        return (sum(self.redrivable.values()) + sum(self.not_selected.values()) + sum(self.fragments.values())
                + sum(self.past_deadline.values()))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def classify(body: str, attributes: dict[str, dict[str, Any]]) -> tuple[str, str, bool]:
    """(reason, sender, redrivable) of one dead letter, from its attributes and body."""
    def value(name: str) -> str:
        return str((attributes.get(name) or {}).get("StringValue") or "")

    reason = value("jukinet.reason") or NO_REASON
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    fragment = isinstance(parsed, dict) and parsed.get("kind") in FRAGMENT_KINDS
    sender = value("jukinet.sender") or (str(parsed.get("sender", ""))[:12] if isinstance(parsed, dict) else "")
    return reason, sender, not fragment


def channel_deadline(body: str) -> dt.datetime | None:
    """The deadline in a channel message's headers (``domain.channel.Envelope``), or None for
    anything else (a notice message, a fragment, a body that does not parse). Read, not
    verified: a forged later deadline only gets a message redriven, where the receiver verifies
    its signature; a forged earlier one leaves it here."""
    try:
        payload = SignedMessage.from_body(body).payload
    except ValidationError:
        return None
    if not channel.is_channel_payload(payload):
        return None
    try:
        raw = json.loads(payload)
        return dt.datetime.strptime(raw["deadline"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except (ValueError, KeyError, TypeError):
        return None


class Redrive:
    """Redrive of one deployment's dead letters (``infra.config.Deployment``). ``clients``:
    service -> boto3 client (default: clients in the tier's region, honouring
    ``AWS_ENDPOINT_URL``)."""

    def __init__(self, deployment: Any, *, clients: Callable[[str], Any] | None = None, clock: Clock = system_clock,
                 hold_seconds: int = HOLD_SECONDS, queue_urls: dict[str, tuple[str, str]] | None = None) -> None:
        from infra.naming import Names

        self.deployment = deployment
        self.names = Names.of(deployment)
        self.clock = clock
        self.hold_seconds = hold_seconds
        self._clients = ClientCache(self.deployment.region, clients)
        self._caller: str | None = None
        self._queue_urls = queue_urls  # tier → (DLQ URL, source URL), instead of the deployment's names

    def client(self, service: str) -> Any:
        return self._clients(service)

    def caller(self) -> str:
        if self._caller is None:
            try:
                self._caller = str(self.client("sts").get_caller_identity()["Arn"])
            except (ClientError, BotoCoreError) as exc:  # the record must still say something
                self._caller = f"unknown ({type(exc).__name__})"
        return self._caller

    def tiers(self) -> dict[str, Any]:
        """Processing tiers (they have an inbound queue and its DLQ) and, with the channel, the
        municipality tiers (their channel queue and its DLQ) → their environment."""
        from infra.naming import NATIONAL, municipality_tier, prefecture_tier

        found = {prefecture_tier(p.code): p.env for p in self.deployment.prefectures}
        found[NATIONAL] = self.deployment.national.env
        if getattr(self.deployment, "channel", False):
            found.update({municipality_tier(p.code): p.municipality_tier.env for p in self.deployment.prefectures})
        return found

    def queues(self, tier: str) -> tuple[str, str]:
        """(dead-letter queue URL, source queue URL) of a tier."""
        if self._queue_urls is not None and tier in self._queue_urls:
            return self._queue_urls[tier]
        tiers = self.tiers()
        if tier not in tiers:
            raise RedriveError(f"unknown tier {tier!r}: one of {', '.join(sorted(tiers))}")
        source = (self.names.channel_queue(tier.removeprefix("muni-")) if tier.startswith("muni-")
                  else self.names.inbound_queue(tier))
        env = tiers[tier]
        return (self.names.queue_url(env, self.names.dead_letter_queue(source)),
                self.names.queue_url(env, source))

    # -- the redrive -------------------------------------------------------------------------

    def run(self, *, tiers: Sequence[str] = (), reasons: Sequence[str] = (), apply: bool = False) -> list[QueueReport]:
        """Count (and with ``apply`` move) the dead letters of ``tiers`` (default: every
        processing tier) whose reason is in ``reasons`` (default: every reason)."""
        chosen = list(tiers) or sorted(self.tiers())
        return [self._run_tier(tier, set(reasons), apply) for tier in chosen]

    def _run_tier(self, tier: str, reasons: set[str], apply: bool) -> QueueReport:
        dlq, source = self.queues(tier)
        report = QueueReport(tier, dlq.rsplit("/", 1)[-1], source.rsplit("/", 1)[-1])
        letters = list(self._receive_all(dlq))
        now = self.clock()
        senders: dict[str, set[str]] = {}
        selected: list[DeadLetter] = []
        for letter in letters:
            if letter.sender:
                senders.setdefault(letter.reason, set()).add(letter.sender)
            if not letter.redrivable:
                _bump(report.fragments, letter.reason)
            elif letter.deadline is not None and letter.deadline < now:
                _bump(report.past_deadline, letter.reason)  # the requester has timed out: never redriven
            elif (reasons and letter.reason not in reasons) or (not reasons and letter.reason in SECURITY_REASONS):
                _bump(report.not_selected, letter.reason)
            else:
                _bump(report.redrivable, letter.reason)
                selected.append(letter)
        report.senders = {r: sorted(s) for r, s in sorted(senders.items())}
        moving = {id(x) for x in selected} if apply else set()
        keep = [x for x in letters if id(x) not in moving]
        try:
            if apply and selected:
                record = RedriveRecord(
                    id=self.clock().astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ"), tier=tier,
                    dead_letter_queue=report.dead_letter_queue, source_queue=report.source_queue,
                    requested_by=self.caller(), started_at=self._now(), reasons=sorted(reasons),
                    planned=dict(report.redrivable), past_deadline=dict(report.past_deadline))
                report.record = self._parameter(tier, record.id)
                self._put(report.record, record)
                try:
                    for letter in selected:
                        self._move(letter, dlq, source, record.id)
                        _bump(report.moved, letter.reason)
                finally:
                    record.moved, record.finished_at = dict(report.moved), self._now()
                    record.status = "done" if report.moved == report.redrivable else "incomplete"
                    self._put(report.record, record)
        finally:
            self._release(dlq, keep)
        return report

    def _receive_all(self, dlq: str) -> Iterable[DeadLetter]:
        sqs = self.client("sqs")
        empty = 0
        while empty < _EMPTY_RECEIVES:
            got = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=self.hold_seconds,
                                      MessageAttributeNames=["All"], WaitTimeSeconds=0).get("Messages", [])
            if not got:
                empty += 1
                continue
            empty = 0
            for m in got:
                attributes = m.get("MessageAttributes") or {}
                reason, sender, redrivable = classify(m["Body"], attributes)
                yield DeadLetter(m["ReceiptHandle"], m["Body"], attributes, reason, sender, redrivable,
                                 channel_deadline(m["Body"]) if redrivable else None)

    def _move(self, letter: DeadLetter, dlq: str, source: str, redrive_id: str) -> None:
        sqs = self.client("sqs")
        # The dead-letter attributes (jukinet.reason…) stay behind: the message goes back as sent.
        kept = {k: _attribute(v) for k, v in letter.attributes.items() if not k.startswith("jukinet.")}
        kept[REDRIVE_ATTRIBUTE] = {"DataType": "String", "StringValue": redrive_id}
        sqs.send_message(QueueUrl=source, MessageBody=letter.body, MessageAttributes=kept)
        sqs.delete_message(QueueUrl=dlq, ReceiptHandle=letter.receipt)

    def _release(self, dlq: str, letters: list[DeadLetter]) -> None:
        """Make the dead letters counted but not moved visible again at once."""
        sqs = self.client("sqs")
        for start in range(0, len(letters), 10):
            chunk = letters[start:start + 10]
            sqs.change_message_visibility_batch(QueueUrl=dlq, Entries=[
                {"Id": str(i), "ReceiptHandle": x.receipt, "VisibilityTimeout": 0} for i, x in enumerate(chunk)])

    # -- records -----------------------------------------------------------------------------

    def _parameter(self, tier: str, redrive_id: str) -> str:
        return f"/{self.deployment.prefix}/redrive/{tier}/{redrive_id}"

    def _put(self, name: str, record: RedriveRecord) -> None:
        self.client("ssm").put_parameter(Name=name, Value=record.to_json(), Type="String", Overwrite=True,
                                         Tier="Intelligent-Tiering")

    def records(self, tier: str) -> list[RedriveRecord]:
        """Every redrive recorded for ``tier``, oldest first."""
        found: list[RedriveRecord] = []
        request: dict[str, Any] = {"Path": f"/{self.deployment.prefix}/redrive/{tier}", "Recursive": True}
        while True:
            page = self.client("ssm").get_parameters_by_path(**request)
            found += [RedriveRecord.from_json(p["Value"]) for p in page.get("Parameters", [])]
            if not page.get("NextToken"):
                return sorted(found, key=lambda r: r.started_at)
            request["NextToken"] = page["NextToken"]

    def _now(self) -> str:
        return self.clock().astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bump(counts: dict[str, int], reason: str) -> None:
    counts[reason] = counts.get(reason, 0) + 1


def _attribute(value: dict[str, Any]) -> dict[str, Any]:
    """A received message attribute as SendMessage takes it."""
    return {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}


def print_reports(reports: Sequence[QueueReport], *, apply: bool, out: Any = None) -> None:
    import sys

    out = out or sys.stdout
    for r in reports:
        if not r.total:
            print(f"{r.tier}: {r.dead_letter_queue} is empty", file=out)
            continue
        print(f"{r.tier}: {r.dead_letter_queue} → {r.source_queue}", file=out)
        moving = "moved {moved}" if apply else "would be moved with --apply"
        held = {reason: n for reason, n in r.not_selected.items() if reason in SECURITY_REASONS}
        others = {reason: n for reason, n in r.not_selected.items() if reason not in held}
        for counts, what in ((r.redrivable, moving), (others, "not selected (--reason)"),
                             (held, "not selected: a security event until explained; name it with --reason"),
                             (r.fragments, "cannot go back (one notice or payload cut out of a message): "
                                           "the sender re-sends"),
                             (r.past_deadline, "past its deadline: not redriven (the requester has timed out "
                                               "and asks again)")):
            for reason, count in sorted(counts.items()):
                senders = ", ".join(r.senders.get(reason, [])[:5])
                print(f"  {reason:<26} {count:>6}  {what.format(moved=r.moved.get(reason, 0))}"
                      + (f"  (senders: {senders})" if senders else ""), file=out)
        if r.record:
            print(f"  recorded in {r.record}", file=out)
    if not apply:
        total = sum(sum(r.redrivable.values()) for r in reports)
        print(f"dry run: nothing moved; --apply moves {total} message(s)", file=out)
    late = sum(sum(r.past_deadline.values()) for r in reports)
    if late:
        print(f"{late} channel message(s) past their deadline left in place (never redriven)", file=out)
