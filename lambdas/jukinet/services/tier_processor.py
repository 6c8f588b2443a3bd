"""What the prefecture and national tiers do with one inbound signed message.

verify sender and signature → validate each notice → store under the ordering rule →
record the sequence runs and report gaps → return the notices to forward (prefecture).

Failures that can never succeed (malformed envelope, unknown or disallowed sender, bad
signature, malformed notice) are *permanent*: the message, or the single notice, goes to
this tier's dead-letter queue with its reason and is counted; the SQS record is then
acknowledged so it never blocks good ones. Anything else (throttling, network) raises,
the record is reported as a batch item failure, and SQS retries it; after
``maxReceiveCount`` receives the queue's redrive policy moves it to the same DLQ.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from ..adapters import queues
from ..adapters.identity_store import ApplyResult, IdentityStore
from ..adapters.kms import PublicKeys, UnknownSender
from ..clock import Clock, month_jst
from ..domain.errors import ValidationError
from ..domain.message import Payload, SignedMessage, verify_signature
from ..domain.notice import JST, UpdateNotice
from ..observability import MetricUnit, logger, metrics


class PermanentFailure(Exception):
    def __init__(self, reason: str, detail: str, field: str = "", rule: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.field, self.rule = reason, detail, field, rule


@dataclass
class MessageOutcome:
    forward: list[UpdateNotice] = field(default_factory=list)
    applied: ApplyResult = field(default_factory=ApplyResult)
    dead_lettered: int = 0
    gaps: dict[str, list[tuple[int, int]]] = field(default_factory=dict)


@dataclass
class TierPolicy:
    """Who may send to this tier, and for which municipalities each sender may carry notices."""

    tier: str
    allows_sender: Callable[[str], bool]
    allows_municipality: Callable[[str, str], bool]  # (sender, municipality code) → may carry
    describe: str

    def allows_notice(self, sender: str, notice: UpdateNotice) -> bool:
        return self.allows_municipality(sender, notice.municipality.value)


def prefecture_policy(prefecture_code: str) -> TierPolicy:
    number = prefecture_code[:2]
    return TierPolicy(
        tier="prefecture",
        allows_sender=lambda s: s[:2] == number and s[2:5] != "000",
        allows_municipality=lambda s, m: m == s,
        describe=f"municipalities of prefecture {prefecture_code}",
    )


def national_policy(allowed_prefectures: list[str]) -> TierPolicy:
    allowed = frozenset(allowed_prefectures)
    return TierPolicy(
        tier="national",
        allows_sender=lambda s: s in allowed,
        allows_municipality=lambda s, m: m[:2] == s[:2] and m[2:5] != "000",
        describe=f"prefectures {', '.join(sorted(allowed))}",
    )


class TierProcessor:
    def __init__(self, policy: TierPolicy, store: IdentityStore, public_keys: PublicKeys, dead_letter_queue_url: str,
                 *, clock: Clock):
        self.policy = policy
        self.clock = clock
        self.store = store
        self.public_keys = public_keys
        self.dead_letter_queue_url = dead_letter_queue_url

    def process(self, body: str, message_id: str) -> MessageOutcome:
        try:
            message, payload = self._verified(body)
        except PermanentFailure as failure:
            self._dead_letter_message(body, message_id, failure)
            return MessageOutcome(dead_lettered=1)
        outcome = MessageOutcome()
        valid: list[UpdateNotice] = []
        for index, raw in enumerate(payload.notices):
            try:
                notice = UpdateNotice.from_dict(raw)
                if not self.policy.allows_notice(message.sender, notice):
                    raise ValidationError("municipality", "sender", f"sender {message.sender} may not send this notice")
            except ValidationError as exc:
                self._dead_letter_notice(raw, index, message, exc)
                outcome.dead_lettered += 1
                continue
            valid.append(notice)
        outcome.applied = self.store.apply(valid, now=self.clock())
        by_municipality: dict[str, list[UpdateNotice]] = defaultdict(list)
        for notice in valid:
            by_municipality[notice.municipality.value].append(notice)
        for municipality, notices in sorted(by_municipality.items()):
            ledger = self.store.update_ledger(
                municipality, stored=[(n.sequence, n.reporting_month) for n in notices])
            if ledger.gaps:
                outcome.gaps[municipality] = ledger.gaps
                missing = sum(last - first + 1 for first, last in ledger.gaps)
                logger.warning("sequence gap", extra={"municipality": municipality, "gaps": ledger.gaps[:20],
                                                      "missing": missing})
                metrics.add_metric(name="SequenceGaps", unit=MetricUnit.Count, value=missing)
        metrics.add_metric(name="NoticesStored", unit=MetricUnit.Count, value=len(outcome.applied.stored))
        metrics.add_metric(name="NoticesDuplicate", unit=MetricUnit.Count, value=len(outcome.applied.duplicates))
        outcome.forward = valid
        return outcome

    def _verified(self, body: str) -> tuple[SignedMessage, Payload]:
        try:
            message = SignedMessage.from_body(body)
        except ValidationError as exc:
            raise PermanentFailure("malformed_envelope", exc.detail, exc.field, exc.rule) from None
        if not self.policy.allows_sender(message.sender):
            raise PermanentFailure("sender_not_allowed", f"{message.sender} is not one of {self.policy.describe}",
                                   "envelope.sender", "sender")
        try:
            public_key = self.public_keys.get(message.sender)
        except UnknownSender as exc:
            raise PermanentFailure("unknown_sender", str(exc), "envelope.sender", "sender") from None
        if not verify_signature(public_key, message):
            metrics.add_metric(name="SignatureFailures", unit=MetricUnit.Count, value=1)
            raise PermanentFailure("signature_invalid", f"signature does not verify with {message.sender}'s key",
                                   "envelope.sig", "signature")
        try:
            payload = Payload.from_bytes(message.payload)
        except ValidationError as exc:
            raise PermanentFailure("malformed_payload", exc.detail, exc.field, exc.rule) from None
        if payload.sender != message.sender:
            raise PermanentFailure("malformed_payload", "payload sender differs from envelope sender",
                                   "payload.sender", "consistency")
        return message, payload

    # --- dead letters --------------------------------------------------------------------
    def _dead_letter_message(self, body: str, message_id: str, failure: PermanentFailure) -> None:
        sender, digest, claims = _claimed(body, self.clock())
        logger.warning("message dead-lettered", extra={"reason": failure.reason, "detail": failure.detail,
                                                        "sender": sender, "message_id": message_id})
        queues.send_dead_letter(self.dead_letter_queue_url, body, tier=self.policy.tier, reason=failure.reason,
                                field=failure.field, rule=failure.rule, detail=failure.detail, sender=sender)
        # Counted by content (the payload's digest), not by SQS message id: the same bytes sent
        # again count once.
        for (municipality, month), count in sorted(claims.items()):
            self.store.record_dead_letter(municipality, f"{digest}|{month}", month, count)
        metrics.add_metric(name="NoticesDeadLettered", unit=MetricUnit.Count, value=sum(claims.values()))

    def _dead_letter_notice(self, raw: object, index: int, message: SignedMessage, exc: ValidationError) -> None:
        sender = message.sender
        raw_dict = raw if isinstance(raw, dict) else {}
        claimed = _ledger_name(raw_dict.get("municipality"), "")
        sequence = raw_dict.get("sequence")
        # Only the sender is authenticated: a notice is counted against the municipality it names
        # only if this sender may carry that municipality's notices; otherwise against the sender,
        # and its sequence number never counts as received (it could hide another's lost notice).
        trusted = bool(claimed) and self.policy.allows_municipality(sender, claimed)
        municipality = claimed if trusted else sender
        has_sequence = trusted and isinstance(sequence, int) and not isinstance(sequence, bool) and sequence > 0
        item_id = f"{claimed}-{sequence}" if has_sequence else f"{message.digest.hex()}#{index}"
        month = _month_of(raw_dict.get("notice_time"), self.clock())
        logger.warning("notice dead-lettered", extra={"field": exc.field, "rule": exc.rule, "sender": sender})
        queues.send_dead_letter(self.dead_letter_queue_url, {"kind": "notice", "sender": sender, "notice": raw},
                                tier=self.policy.tier, reason="invalid_notice", field=exc.field, rule=exc.rule,
                                detail=exc.detail, sender=sender)
        if has_sequence:
            self.store.update_ledger(municipality, received=[sequence])
        self.store.record_dead_letter(municipality, item_id, month, 1)
        metrics.add_metric(name="NoticesDeadLettered", unit=MetricUnit.Count, value=1)


def _month_of(notice_time: object, now: dt.datetime) -> str:
    """The JST month of a claimed notice time; the month of ``now`` when it is unreadable."""
    try:
        return dt.datetime.fromisoformat(str(notice_time).replace("Z", "+00:00")).astimezone(JST).strftime("%Y-%m")
    except (ValueError, OverflowError):
        return month_jst(now)


def _ledger_name(claimed: object, fallback: str) -> str:
    """A ledger key from an untrusted claim: a 6-digit code, else the sender, else 'unknown'."""
    text = str(claimed or "")
    if len(text) == 6 and text.isascii() and text.isdigit():
        return text
    return fallback or "unknown"


def _claimed(body: str, at: dt.datetime) -> tuple[str, str, dict[tuple[str, str], int]]:
    """Best effort, without trusting it: who the message claims to be from, a digest of its
    content, and how many notices it carries per (municipality, month) — so a rejected message
    is counted against the municipalities it claims to carry and shows in their rows."""
    now = month_jst(at)
    digest = hashlib.sha256(body.encode("utf-8", "replace")).hexdigest()
    try:
        message = SignedMessage.from_body(body)
    except ValidationError:
        return "", digest, {("unknown", now): 1}
    digest = message.digest.hex()
    try:
        payload = Payload.from_bytes(message.payload)
    except ValidationError:
        return message.sender, digest, {(message.sender, now): 1}
    claims: dict[tuple[str, str], int] = defaultdict(int)
    for raw in payload.notices:
        raw = raw if isinstance(raw, dict) else {}
        claims[(_ledger_name(raw.get("municipality"), message.sender), _month_of(raw.get("notice_time"), at))] += 1
    return message.sender, digest, dict(claims) or {(message.sender, now): 1}
