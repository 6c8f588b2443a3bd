"""What the prefecture and national tiers do with one inbound signed message.

verify sender and signature → (national) verify each municipality's own signature on the
payloads the prefecture forwards → validate each notice → check that its municipality may
change the residents it touches (``domain.authority``) → store under the ordering rule,
recording the signature each notice was accepted under → record the sequence runs and
report gaps → return what to forward (prefecture: the municipalities' signed payloads,
verbatim, with the indices it dead-lettered).

Failures that can never succeed (malformed envelope, unknown or disallowed sender, bad
signature, malformed notice, a notice its municipality may not send) are *permanent*: the
message, the origin or the single notice goes to this tier's dead-letter queue with its
reason and is counted; the SQS record is then acknowledged so it never blocks good ones.
Counts move a municipality's reconciliation row only when a verified signature vouches for
them; a message whose sender is not verified is counted under ``unknown`` (``UNKNOWN_SENDER``).
Anything else (throttling, network) raises, the record is reported as a batch item failure,
and SQS retries it; after ``maxReceiveCount`` receives the queue's redrive policy moves it
to the same DLQ.

A message an operator redrove from the DLQ (``jukinet redrive``: message attribute
``jukinet.redrive``) that is now processed — not dead-lettered again as a whole — releases the
dead letter it had been counted as (``IdentityStore.release_dead_letters``): its notices count
once, as stored or as dead-lettered one by one, never also as the whole message's dead letter.
The attribute only makes the processor look for markers of this very content; it cannot
release anything else.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from ..adapters import queues
from ..adapters.identity_store import ApplyResult, Attestation, IdentityStore
from ..adapters.kms import PublicKeys, SenderKey, UnknownSender
from ..clock import Clock, month_jst
from ..domain.authority import screen
from ..domain.errors import ValidationError
from ..domain.ledger import GAP_ALARM_AFTER
from ..domain.message import Origin, Payload, SignedMessage, verify_signature
from ..domain.notice import JST, UpdateNotice
from ..observability import MetricUnit, logger, metrics

UNKNOWN_SENDER = "unknown"
"""The ledger that counts dead letters whose sender no signature vouches for."""
REDRIVE_ATTRIBUTE = "jukinet.redrive"
"""Message attribute ``jukinet redrive`` puts on a message it moves back: the redrive's id."""


class PermanentFailure(Exception):
    def __init__(self, reason: str, detail: str, field: str = "", rule: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.field, self.rule = reason, detail, field, rule


@dataclass
class MessageOutcome:
    forward: list[Origin] = field(default_factory=list)
    applied: ApplyResult = field(default_factory=ApplyResult)
    dead_lettered: int = 0
    gaps: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    dead_lettered_whole: bool = False  # the message itself went to the DLQ (not one notice or origin)


@dataclass
class TierPolicy:
    """Who may send to this tier, and for which municipalities each sender may carry notices."""

    tier: str
    allows_sender: Callable[[str], bool]
    allows_municipality: Callable[[str, str], bool]  # (sender, municipality code) → may carry
    describe: str
    # The senders forward municipalities' signed payloads (``Origin``), never bare notices.
    lineage: bool = False


def prefecture_policy(prefecture_code: str) -> TierPolicy:
    number = prefecture_code[:2]
    return TierPolicy(
        tier="prefecture",
        allows_sender=lambda s: s[:2] == number and s[2:5] != "000",
        allows_municipality=lambda s, m: m == s,
        describe=f"municipalities of prefecture {prefecture_code}",
    )


def national_policy(allowed_prefectures: list[str] | tuple[str, ...]) -> TierPolicy:
    allowed = frozenset(allowed_prefectures)
    return TierPolicy(
        tier="national",
        allows_sender=lambda s: s in allowed,
        allows_municipality=lambda s, m: m[:2] == s[:2] and m[2:5] != "000",
        describe=f"prefectures {', '.join(sorted(allowed))}",
        lineage=True,
    )


@dataclass
class _Signed:
    """A municipality's payload whose signature verified, and what this tier did with it."""

    message: SignedMessage
    key: SenderKey
    payload: Payload
    skip: set[int] = field(default_factory=set)  # not to be processed (dead-lettered before)
    upstream_skip: frozenset[int] = frozenset()  # of those, the ones the forwarding tier dead-lettered

    @property
    def attestation(self) -> Attestation:
        return Attestation(self.message.sender, self.key.arn, self.message.digest.hex(), self.message.signature)


class TierProcessor:
    def __init__(self, policy: TierPolicy, store: IdentityStore, public_keys: PublicKeys, dead_letter_queue_url: str,
                 *, clock: Clock):
        self.policy = policy
        self.clock = clock
        self.store = store
        self.public_keys = public_keys
        self.dead_letter_queue_url = dead_letter_queue_url
        self.clock = clock

    def process(self, body: str, message_id: str, *, redriven: bool = False) -> MessageOutcome:
        outcome = self._process(body, message_id)
        if redriven and not outcome.dead_lettered_whole:
            sender, digest, claims = _claimed(body, self._month_now())
            content = [(ledger, f"{digest}|{month}") for (municipality, month) in claims
                       for ledger in (municipality, sender or UNKNOWN_SENDER, UNKNOWN_SENDER)]
            released = self.store.release_dead_letters(content)
            if released:
                logger.info("redriven message processed: its dead letter no longer counts",
                            extra={"message_id": message_id, "released": dict(released)})
                metrics.add_metric(name="NoticesRedriven", unit=MetricUnit.Count, value=sum(released.values()))
        return outcome

    def _process(self, body: str, message_id: str) -> MessageOutcome:
        try:
            message, key = self._verified(body)
        except PermanentFailure as failure:
            self._dead_letter_message(body, message_id, failure, verified=False)
            return MessageOutcome(dead_lettered=1, dead_lettered_whole=True)
        try:
            payload = self._payload(message)
            if self.policy.lineage and (payload.notices or not payload.origins):
                raise PermanentFailure("lineage_missing", "a forwarded message must carry each municipality's signed "
                                       "payload (origins), not bare notices", "payload.origins", "lineage")
            if not self.policy.lineage and payload.origins:
                raise PermanentFailure("malformed_payload", "a municipality sends notices, not origins",
                                       "payload.origins", "format")
        except PermanentFailure as failure:
            self._dead_letter_message(body, message_id, failure, verified=True)
            return MessageOutcome(dead_lettered=1, dead_lettered_whole=True)
        outcome = MessageOutcome()
        batches: list[_Signed] = []
        if self.policy.lineage:
            for origin in payload.origins:
                try:
                    batches.append(self._verified_origin(message.sender, origin))
                except PermanentFailure as failure:
                    outcome.dead_lettered += self._dead_letter_origin(message, origin, failure)
        else:
            batches.append(_Signed(message, key, payload))

        parsed: list[tuple[_Signed, int, UpdateNotice]] = []
        for batch in batches:
            signer = batch.message.sender
            for index, raw in enumerate(batch.payload.notices):
                if index in batch.skip:
                    continue
                try:
                    notice = UpdateNotice.from_dict(raw)
                    if notice.municipality.value != signer:
                        raise ValidationError("municipality", "signer",
                                              f"a notice of {notice.municipality.value} signed by {signer}")
                except ValidationError as exc:
                    self._dead_letter_notice(raw, index, batch, exc, "invalid_notice", via=message.sender)
                    batch.skip.add(index)
                    outcome.dead_lettered += 1
                    continue
                parsed.append((batch, index, notice))

        # A redelivered notice already in the history was checked when it first came: it passes
        # as a duplicate, whatever has happened to the resident since.
        # One read for the whole message (history keys, current states, ledgers), used by every
        # step below and by the write (IdentityStore.read).
        where = {id(n): (batch, index) for batch, index, n in parsed}
        snapshot = self.store.read([n for _, _, n in parsed], {n.municipality.value for _, _, n in parsed})
        seen = self.store.stored_ids([n for _, _, n in parsed], snapshot) if parsed else set()
        repeated = [n for _, _, n in parsed if n.notice_id in seen]
        fresh = [n for _, _, n in parsed if n.notice_id not in seen]
        # A notice refused here before stays refused (and counted once), whatever has happened
        # to the resident since: it is skipped, not screened again.
        refused_before = self.store.dead_lettered_before(fresh, snapshot) if fresh else set()
        for notice in [n for n in fresh if n.notice_id in refused_before]:
            where[id(notice)][0].skip.add(where[id(notice)][1])
            logger.info("notice dead-lettered before; skipped", extra={"notice_id": notice.notice_id})
        fresh = [n for n in fresh if n.notice_id not in refused_before]
        codes = [c for n in fresh
                 for c in (n.resident_code.value, *((n.previous_resident_code.value,) if n.previous_resident_code else ()))]
        valid, refused = screen(fresh, self.store.holdings(codes, snapshot) if codes else {})
        valid = repeated + valid
        for notice, exc in refused:
            batch, index = where[id(notice)]
            self._dead_letter_notice(notice.to_dict(), index, batch, exc, "not_holder", via=message.sender)
            batch.skip.add(index)
            outcome.dead_lettered += 1
        if refused:
            metrics.add_metric(name="NoticesRefusedNotHolder", unit=MetricUnit.Count, value=len(refused))

        lineage = {n.notice_id: where[id(n)][0].attestation for n in valid}
        # The notices, the current states and the municipalities' ledgers (sequence runs, stored
        # counts) are written together, 100 items to a transaction.
        now = self.clock()
        metrics.set_timestamp(now)  # the datapoints belong to the instant the clock says (docs/decisions/0030-*)
        outcome.applied = self.store.apply(valid, now=now, lineage=lineage, snapshot=snapshot, ledgers=True)
        for municipality, ledger in sorted(outcome.applied.ledgers.items()):
            if ledger.gaps:
                outcome.gaps[municipality] = ledger.gaps
                missing = sum(last - first + 1 for first, last in ledger.gaps)
                # A young gap is normal (a later message overtook an earlier one): logged and
                # counted, never alarmed. Only a gap older than GAP_ALARM_AFTER is (AgedSequenceGaps).
                aged = ledger.aged_missing(now, GAP_ALARM_AFTER)
                logger.info("sequence gap", extra={"municipality": municipality, "gaps": ledger.gaps[:20],
                                                   "missing": missing, "aged": aged})
                metrics.add_metric(name="SequenceGaps", unit=MetricUnit.Count, value=missing)
                if aged:
                    logger.warning("aged sequence gap", extra={"municipality": municipality, "aged": aged,
                                                               "gaps": ledger.aged_gaps(now, GAP_ALARM_AFTER)[:20]})
                    metrics.add_metric(name="AgedSequenceGaps", unit=MetricUnit.Count, value=aged)
        metrics.add_metric(name="NoticesStored", unit=MetricUnit.Count, value=len(outcome.applied.stored))
        metrics.add_metric(name="NoticesDuplicate", unit=MetricUnit.Count, value=len(outcome.applied.duplicates))
        # A payload whose notices were all dead-lettered here is forwarded too (all skipped), so
        # the next tier learns that their sequence numbers arrived (no gap there).
        forwarded = {id(where[id(n)][0]) for n in valid} | {id(b) for b in batches if b.skip}
        outcome.forward = [Origin(b.message, tuple(sorted(b.skip))) for b in batches if id(b) in forwarded]
        for batch in batches:
            self._record_dead_lettered_upstream(batch)
        return outcome

    def _record_dead_lettered_upstream(self, batch: _Signed) -> None:
        """The sequence numbers of the notices an earlier tier dead-lettered (the origin's
        ``skip``) arrived there and were counted there: record them as received here too, or
        this tier's ledger would show them as a sequence gap for ever. Nothing is counted as
        stored; a forwarder that skips a notice it did not dead-letter still leaves its own row
        unbalanced (stored at prefecture ≠ stored nationally + dead-lettered there)."""
        sequences = []
        for index in batch.upstream_skip:
            raw = batch.payload.notices[index] if 0 <= index < len(batch.payload.notices) else None
            sequence = raw.get("sequence") if isinstance(raw, dict) else None
            if (isinstance(sequence, int) and not isinstance(sequence, bool) and sequence > 0
                    and raw.get("municipality") == batch.message.sender):
                sequences.append(sequence)
        if sequences:
            self.store.update_ledger(batch.message.sender, received=sequences, now=self.clock())

    def _verified(self, body: str) -> tuple[SignedMessage, SenderKey]:
        try:
            message = SignedMessage.from_body(body)
        except ValidationError as exc:
            raise PermanentFailure("malformed_envelope", exc.detail, exc.field, exc.rule) from None
        if not self.policy.allows_sender(message.sender):
            raise PermanentFailure("sender_not_allowed", f"{message.sender} is not one of {self.policy.describe}",
                                   "envelope.sender", "sender")
        return message, self._check_signature(message, "envelope", "signature_invalid")

    def _check_signature(self, message: SignedMessage, where: str, reason: str) -> SenderKey:
        return check_signature(self.public_keys, message, where, reason)

    @staticmethod
    def _payload(message: SignedMessage, where: str = "payload") -> Payload:
        try:
            payload = Payload.from_bytes(message.payload)
        except ValidationError as exc:
            raise PermanentFailure("malformed_payload", exc.detail, exc.field, exc.rule) from None
        if payload.sender != message.sender:
            raise PermanentFailure("malformed_payload", "payload sender differs from the signer",
                                   f"{where}.sender", "consistency")
        return payload

    def _verified_origin(self, forwarder: str, origin: Origin) -> _Signed:
        """A municipality's own signed payload, carried by the prefecture: the prefecture must
        be allowed to carry it, and the municipality's signature must verify."""
        sender = origin.message.sender
        if not self.policy.allows_municipality(forwarder, sender):
            raise PermanentFailure("origin_not_allowed", f"{forwarder} may not forward notices of {sender}",
                                   "origin.sender", "sender")
        key = self._check_signature(origin.message, "origin", "origin_signature_invalid")
        payload = self._payload(origin.message, "origin.payload")
        if payload.origins:
            raise PermanentFailure("malformed_payload", "a municipality's payload carries no origins",
                                   "origin.payload.origins", "format")
        return _Signed(origin.message, key, payload, set(origin.skip), frozenset(origin.skip))

    # --- dead letters --------------------------------------------------------------------
    def _dead_letter_message(self, body: str, message_id: str, failure: PermanentFailure, *, verified: bool) -> None:
        sender, digest, claims = _claimed(body, self._month_now())
        logger.warning("message dead-lettered", extra={"reason": failure.reason, "detail": failure.detail,
                                                        "sender": sender, "message_id": message_id,
                                                        "verified": verified})
        queues.send_dead_letter(self.dead_letter_queue_url, body, tier=self.policy.tier, reason=failure.reason,
                                field=failure.field, rule=failure.rule, detail=failure.detail, sender=sender)
        # Counted by content (the payload's digest), not by SQS message id: the same bytes sent
        # again count once. Only a verified sender's claims move a municipality's row (a forged
        # message naming another municipality could otherwise make a real loss look balanced);
        # an unverified message is counted under UNKNOWN_SENDER.
        counted: dict[tuple[str, str], int] = defaultdict(int)
        for (municipality, month), count in claims.items():
            if not verified:
                municipality = UNKNOWN_SENDER
            elif municipality != sender and not self.policy.allows_municipality(sender, municipality):
                municipality = sender
            counted[(municipality, month)] += count
        for (municipality, month), count in sorted(counted.items()):
            self.store.record_dead_letter(municipality, f"{digest}|{month}", month, count)
        metrics.add_metric(name="NoticesDeadLettered", unit=MetricUnit.Count, value=sum(claims.values()))

    def _dead_letter_origin(self, message: SignedMessage, origin: Origin, failure: PermanentFailure) -> int:
        """An origin whose municipality signature (or content) fails: the prefecture that carried it
        is verified, so it counts against that municipality if the prefecture may carry it."""
        forwarder, sender = message.sender, origin.message.sender
        municipality = sender if self.policy.allows_municipality(forwarder, sender) else forwarder
        try:
            notices = [n for i, n in enumerate(Payload.from_bytes(origin.message.payload).notices)
                       if i not in origin.skip]
        except ValidationError:
            notices = [{}]
        months: dict[str, int] = defaultdict(int)
        for raw in notices or [{}]:
            months[_month_of((raw if isinstance(raw, dict) else {}).get("notice_time"), self._month_now())] += 1
        logger.warning("origin dead-lettered", extra={"reason": failure.reason, "detail": failure.detail,
                                                       "sender": sender, "forwarder": forwarder})
        queues.send_dead_letter(self.dead_letter_queue_url, {"kind": "origin", "forwarder": forwarder,
                                                             "origin": origin.to_dict()},
                                tier=self.policy.tier, reason=failure.reason, field=failure.field, rule=failure.rule,
                                detail=failure.detail, sender=sender)
        digest = origin.message.digest.hex()
        for month, count in sorted(months.items()):
            self.store.record_dead_letter(municipality, f"{digest}|{month}", month, count)
        total = sum(months.values())
        metrics.add_metric(name="NoticesDeadLettered", unit=MetricUnit.Count, value=total)
        return total

    def _dead_letter_notice(self, raw: object, index: int, batch: _Signed, exc: ValidationError, reason: str,
                            via: str) -> None:
        signer = batch.message.sender
        raw_dict = raw if isinstance(raw, dict) else {}
        claimed = _ledger_name(raw_dict.get("municipality"), "")
        sequence = raw_dict.get("sequence")
        # Only the signer is authenticated: a notice is counted against the municipality it names
        # only if that is its signer; otherwise against the signer, and its sequence number never
        # counts as received (it could hide another's lost notice).
        trusted = claimed == signer
        municipality = signer
        has_sequence = trusted and isinstance(sequence, int) and not isinstance(sequence, bool) and sequence > 0
        item_id = f"{claimed}-{sequence}" if has_sequence else f"{batch.message.digest.hex()}#{index}"
        month = _month_of(raw_dict.get("notice_time"), self._month_now())
        logger.warning("notice dead-lettered", extra={"reason": reason, "field": exc.field, "rule": exc.rule,
                                                       "sender": signer})
        body = {"kind": "notice", "sender": signer, "notice": raw}
        if via != signer:
            body["via"] = via
        queues.send_dead_letter(self.dead_letter_queue_url, body, tier=self.policy.tier, reason=reason,
                                field=exc.field, rule=exc.rule, detail=exc.detail, sender=signer)
        # The count and the sequence number received, in one transaction (dead_lettered_before).
        self.store.record_dead_letter(municipality, item_id, month, 1, received=[sequence] if has_sequence else [],
                                      now=self.clock())
        metrics.add_metric(name="NoticesDeadLettered", unit=MetricUnit.Count, value=1)

    def _month_now(self) -> str:
        return month_jst(self.clock())


def check_signature(public_keys: PublicKeys, message: SignedMessage, where: str, reason: str) -> SenderKey:
    """The sender's pinned key if ``message``'s signature verifies with it; else a
    ``PermanentFailure`` (``unknown_sender``, or ``reason``), counted in ``SignatureFailures``.
    The one signature check of every receiver: the tiers' processors and the channel."""
    try:
        key = public_keys.get(message.sender)
    except UnknownSender as exc:
        raise PermanentFailure("unknown_sender", str(exc), f"{where}.sender", "sender") from None
    if not verify_signature(key.public_key, message):
        metrics.add_metric(name="SignatureFailures", unit=MetricUnit.Count, value=1)
        raise PermanentFailure(reason, f"signature does not verify with {message.sender}'s key",
                               f"{where}.sig", "signature")
    return key


def _month_of(notice_time: object, fallback: str) -> str:
    try:
        return dt.datetime.fromisoformat(str(notice_time).replace("Z", "+00:00")).astimezone(JST).strftime("%Y-%m")
    except (ValueError, OverflowError, TypeError):
        return fallback


def _ledger_name(claimed: object, fallback: str) -> str:
    """A ledger key from an untrusted claim: a 6-digit code, else the sender, else 'unknown'."""
    text = str(claimed or "")
    if len(text) == 6 and text.isascii() and text.isdigit():
        return text
    return fallback or UNKNOWN_SENDER


def _claimed(body: str, now: str) -> tuple[str, str, dict[tuple[str, str], int]]:
    """Best effort, without trusting it: who the message claims to be from, a digest of its
    content, and how many notices it carries per (municipality, month). Whether the claims
    may move a municipality's counts is the caller's decision (only if the sender verified)."""
    digest = hashlib.sha256(body.encode("utf-8", "replace")).hexdigest()
    try:
        message = SignedMessage.from_body(body)
    except ValidationError:
        return "", digest, {(UNKNOWN_SENDER, now): 1}
    digest = message.digest.hex()
    try:
        payload = Payload.from_bytes(message.payload)
    except ValidationError:
        return message.sender, digest, {(message.sender, now): 1}
    claims: dict[tuple[str, str], int] = defaultdict(int)
    for raw in payload.notices:
        raw = raw if isinstance(raw, dict) else {}
        claims[(_ledger_name(raw.get("municipality"), message.sender), _month_of(raw.get("notice_time"), now))] += 1
    for origin in payload.origins:
        try:
            inner = Payload.from_bytes(origin.message.payload).notices
        except ValidationError:
            inner = [{}]
        for i, raw in enumerate(inner):
            raw = raw if isinstance(raw, dict) else {}
            if i not in origin.skip:
                claims[(origin.message.sender, _month_of(raw.get("notice_time"), now))] += 1
    return message.sender, digest, dict(claims) or {(message.sender, now): 1}
