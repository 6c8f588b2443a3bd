"""The request/response channel between municipalities (issue 16, part 1).

A municipality tier's ``ChannelEndpoint`` sends a request for one of its municipalities (A)
to another municipality (B), answers the requests addressed to its own municipalities, and
settles the answers to its requests. The prefecture and national tiers' ``ChannelRouter``
carry the messages: they verify the originator's signature (the same pinned-key check as the
notices, ``tier_processor.check_signature``) and pass the message on **verbatim** — they never
re-sign and cannot read the body.

    A's tier ──request──▶ A's prefecture ─(same prefecture)─▶ B's tier (B answers)
                               │                                  │
                               └──▶ national ──▶ B's prefecture ──┘  the answer comes back the same way

Delivery is at least once (SQS); the effect is exactly once: a request is recorded under its
correlation id once; B records the answer it gave under the correlation id and sends that
same signed answer again to any redelivery or replay of the request; A settles a request
once (conditional: pending and not past the deadline). What can never succeed goes to the
tier's dead-letter queue with ``jukinet.reason``/``field``/``rule`` and is counted once per
content (``adapters.channel_store.ChannelDeadLetters``); a request lost on the way times out
at A's deadline, so every request ends answered, refused or timed out (``reconcile``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..adapters import aws, queues
from ..adapters.channel_store import ChannelDeadLetters, ChannelStore
from ..adapters.kms import PublicKeys, Signer
from ..clock import Clock, month_jst
from ..domain import channel
from ..domain.channel import Envelope, Kind, Outcome
from ..domain.envelope import SealedDataError, Sealer
from ..domain.errors import ValidationError
from ..domain.message import SignedMessage, load_json
from ..domain.special_move import REFUSALS as MOVE_REFUSALS
from ..observability import MetricUnit, count_channel_dead_letter, logger, metrics
from .tier_processor import PermanentFailure, check_signature

MAX_BODY_PLAINTEXT = 32_000


@dataclass(frozen=True)
class Refused:
    """The home municipality's refusal: a documented code (``REFUSAL_CODES``)."""

    code: str
    detail: str = ""


REFUSAL_CODES = {
    "unknown_query": "the home municipality does not answer this kind of query",
    "unknown_resident": "no resident with this code in the home municipality's register",
    "not_resident_here": "the resident's latest notice is another municipality's",
    "invalid_query": "the query is malformed (field and rule in the detail)",
    # the wide-area copy (domain/wide_area_copy.py REFUSALS)
    "resident_removed": "the resident's record is closed in the home municipality (moved out, died, deleted)",
    "not_in_household": "a requested member is not in the applicant's household",
    "card_suspended": "the card the applicant authenticated with is no longer valid",
    # the special move-out/move-in (domain/special_move.py REFUSALS)
    **{code: meaning for code, meaning in MOVE_REFUSALS.items() if code != "invalid_query"},
}

Responder = Callable[[str, str, dict], "dict | Refused"]
"""(requester, home municipality, query) → answer or refusal. The endpoint adds the request's
correlation id to the query as ``_correlation`` (overriding any the sender put there), so a
responder can record what it answered under it."""


# --- KMS: the bodies' data keys ------------------------------------------------------------
class ChannelKeys:
    """Seal a body for a reader (``GenerateDataKey`` on the reader tier's channel key, by alias:
    the sender may only encrypt with it) and open a body addressed to this tier (``Decrypt`` on
    its own key). Both bind the encryption context of the message (kind, correlation, from, to)."""

    def __init__(self, own_key_id: str, alias_prefix: str) -> None:
        self.own_key_id = own_key_id
        self.alias_prefix = alias_prefix

    def key_alias_for(self, municipality: str) -> str:
        return f"{self.alias_prefix}{municipality[:2]}"

    def seal(self, kind: Kind, correlation: str, sender: str, recipient: str, plaintext: bytes) -> tuple[bytes, bytes]:
        context = channel.encryption_context(kind, correlation, sender, recipient)
        response = aws.client("kms").generate_data_key(KeyId=self.key_alias_for(recipient), KeySpec="AES_256",
                                                       EncryptionContext=context)
        body = Sealer(response["Plaintext"]).seal(plaintext, channel.aad(kind, correlation, sender, recipient))
        return response["CiphertextBlob"], body

    def open(self, envelope: Envelope) -> bytes:
        try:
            data_key = aws.client("kms").decrypt(CiphertextBlob=envelope.wrapped_key, KeyId=self.own_key_id,
                                                 EncryptionContext=envelope.context)["Plaintext"]
        except Exception as exc:
            if aws.error_code(exc) in ("InvalidCiphertextException", "IncorrectKeyException", "AccessDeniedException"):
                raise PermanentFailure("undecryptable", f"the body's data key does not open here "
                                       f"({aws.error_code(exc)})", "channel.key", "decrypt") from None
            raise
        try:
            return Sealer(data_key).open(envelope.body, envelope.aad)
        except SealedDataError as exc:
            raise PermanentFailure("undecryptable", exc.detail, "channel.body", exc.rule) from None


def _verified(body: str, public_keys: PublicKeys) -> tuple[SignedMessage, Envelope]:
    """The signed message and its channel envelope, signature first (as for the notices:
    nothing the signature does not vouch for is read beyond the claimed sender)."""
    try:
        message = SignedMessage.from_body(body)
    except ValidationError as exc:
        raise PermanentFailure("malformed_envelope", exc.detail, exc.field, exc.rule) from None
    check_signature(public_keys, message, "envelope", "signature_invalid")
    if not channel.is_channel_payload(message.payload):
        raise PermanentFailure("malformed_payload", "not a channel payload", "payload", "format")
    try:
        envelope = Envelope.from_bytes(message.payload)
    except ValidationError as exc:
        raise PermanentFailure("malformed_payload", exc.detail, exc.field, exc.rule) from None
    if envelope.sender != message.sender:
        raise PermanentFailure("malformed_payload", "the envelope's from differs from the signer",
                               "channel.from", "consistency")
    return message, envelope


def is_channel_message(body: str) -> bool:
    """Whether an inbound body is a channel message: its signed payload is a JSON object with a
    ``channel`` version. Anything else — a body that does not parse, ``{}`` — is the notice
    processor's, which dead-letters it with its reason and counts it in the notice ledgers (an
    unverified one under ``unknown``), as before the channel existed."""
    try:
        payload = SignedMessage.from_body(body).payload
        if not channel.is_channel_payload(payload):
            return False
        raw = load_json(payload, field="channel", max_bytes=channel.MAX_ENVELOPE_BYTES)
    except ValidationError:
        return False
    return isinstance(raw, dict) and "channel" in raw


def _dead_letter(tier: str, queue_url: str, dead: ChannelDeadLetters, body: str, failure: PermanentFailure,
                 now: dt.datetime) -> None:
    sender = ""
    try:
        sender = SignedMessage.from_body(body).sender
    except ValidationError:
        pass
    logger.warning("channel message dead-lettered", extra={"reason": failure.reason, "detail": failure.detail,
                                                            "sender": sender, "tier": tier})
    queues.send_dead_letter(queue_url, body, tier=tier, reason=failure.reason, field=failure.field,
                            rule=failure.rule, detail=failure.detail, sender=sender)
    digest = hashlib.sha256(body.encode("utf-8", "replace")).hexdigest()
    if dead.record(month_jst(now), failure.reason, digest, sender):
        count_channel_dead_letter(failure.reason)


# --- the routers ---------------------------------------------------------------------------
class ChannelRouter:
    """A prefecture's or the national tier's part: verify, route, pass on verbatim.

    ``routes``: ``"municipalities"`` (a prefecture's own municipality tier), ``"national"``
    (a prefecture's way up) or a prefecture-level code (the national tier's way down) → queue URL.
    """

    def __init__(self, tier: str, here: str, public_keys: PublicKeys, routes: Mapping[str, str],
                 dead_letter_queue_url: str, dead_letters: ChannelDeadLetters, *, clock: Clock,
                 allowed_prefectures: tuple[str, ...] = ()) -> None:
        self.tier, self.here, self.public_keys, self.routes = tier, here, public_keys, dict(routes)
        self.dead_letter_queue_url, self.dead_letters, self.clock = dead_letter_queue_url, dead_letters, clock
        self.allowed_prefectures = frozenset(p[:2] for p in allowed_prefectures)

    def route(self, body: str) -> str | None:
        """The route taken, or ``None`` if the message was dead-lettered."""
        now = self.clock()
        try:
            message, envelope = _verified(body, self.public_keys)
            self._may_carry(envelope)
            try:
                channel.check_timely(envelope, now)
            except ValidationError as exc:
                raise PermanentFailure("deadline_passed" if exc.rule == "expired" else "malformed_payload",
                                       exc.detail, exc.field, exc.rule) from None
            where = channel.route(self.tier, self.here, envelope.recipient)
            queue_url = self.routes.get(where)
            if not queue_url:
                raise PermanentFailure("no_route", f"{self.tier} {self.here} has no route to {where}",
                                       "channel.to", "route")
        except PermanentFailure as failure:
            _dead_letter(self.tier, self.dead_letter_queue_url, self.dead_letters, body, failure, now)
            return None
        aws.client("sqs").send_message(QueueUrl=queue_url, MessageBody=body)
        metrics.add_metric(name="ChannelRouted", unit=MetricUnit.Count, value=1)
        return where

    def _may_carry(self, envelope: Envelope) -> None:
        if self.tier == "prefecture":
            ours = self.here[:2]
            if ours not in (envelope.sender[:2], envelope.recipient[:2]):
                raise PermanentFailure("not_routable", f"neither {envelope.sender} nor {envelope.recipient} is of "
                                       f"prefecture {self.here}", "channel.to", "route")
        elif {envelope.sender[:2], envelope.recipient[:2]} - self.allowed_prefectures:
            raise PermanentFailure("not_routable", "a municipality of a prefecture this tier does not serve",
                                   "channel.to", "route")


# --- the municipality tier -----------------------------------------------------------------
@dataclass(frozen=True)
class Result:
    correlation: str
    outcome: Outcome
    answer: dict | None = None
    refusal: str = ""


class ChannelEndpoint:
    """A municipality tier's end of the channel (its municipalities' requests and answers)."""

    def __init__(self, prefecture: str, store: ChannelStore, keys: ChannelKeys, public_keys: PublicKeys,
                 signer_for: Callable[[str], Signer], outbound_queue_url: str, dead_letter_queue_url: str,
                 responder: Responder, *, clock: Clock) -> None:
        self.prefecture, self.store, self.keys, self.public_keys = prefecture, store, keys, public_keys
        self.signer_for, self.outbound_queue_url = signer_for, outbound_queue_url
        self.dead_letter_queue_url, self.responder, self.clock = dead_letter_queue_url, responder, clock

    def serves(self, municipality: str) -> bool:
        return municipality[:2] == self.prefecture[:2] and municipality[2:5] != "000"

    # --- asking ----------------------------------------------------------------------------
    def request(self, sender: str, recipient: str, query: dict, *, wait: dt.timedelta = channel.DEFAULT_DEADLINE,
                correlation: str | None = None) -> str:
        """Send ``query`` from ``sender`` (a municipality of this tier) to ``recipient``; the
        correlation id to read the outcome with. The signed request is recorded before it is
        sent: called again with the same ``correlation`` (a retry after an error) it sends the
        very same bytes again and records nothing twice."""
        if not self.serves(sender):
            raise ValidationError("from", "tier", f"{sender} is not a municipality of this tier")
        now = self.clock().replace(microsecond=0)
        correlation = correlation or channel.new_correlation_id(sender, now)
        deadline = channel.deadline_for(now, wait)
        plaintext = json.dumps(query, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if len(plaintext) > MAX_BODY_PLAINTEXT:
            raise ValidationError("query", "size", f"a query is at most {MAX_BODY_PLAINTEXT} bytes")
        existing = self.store.request(correlation)
        if existing is None:
            wrapped, body = self.keys.seal(Kind.REQUEST, correlation, sender, recipient, plaintext)
            envelope = Envelope(Kind.REQUEST, sender, recipient, correlation, now, deadline, wrapped, body)
            signed = self.signer_for(sender).sign_bytes(envelope.to_bytes()).to_body()
            if not self.store.put_request(correlation, recipient, deadline, now, signed):
                existing = self.store.request(correlation)  # a concurrent retry recorded it first
        if existing is not None:
            if existing["to"]["S"] != recipient:
                raise ValidationError("correlation", "unique", f"{correlation} was sent to {existing['to']['S']}")
            signed = existing["request"]["S"]  # a retry sends the very same signed request again
        aws.client("sqs").send_message(QueueUrl=self.outbound_queue_url, MessageBody=signed)
        metrics.add_metric(name="ChannelRequestsSent", unit=MetricUnit.Count, value=1)
        return correlation

    def result(self, correlation: str) -> Result:
        """The request's outcome now; a pending request past its deadline is marked timed out."""
        item = self.store.request(correlation)
        if item is None:
            raise ValidationError("correlation", "unknown", f"no request {correlation} was sent from this tier")
        now = self.clock()
        deadline = dt.datetime.strptime(item["deadline"]["S"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        outcome = channel.outcome_of(item["status"]["S"], deadline, now)
        if outcome is Outcome.TIMED_OUT and item["status"]["S"] == Outcome.PENDING.value:
            self._time_out(correlation, now)
        if outcome not in (Outcome.ANSWERED, Outcome.REFUSED):
            return Result(correlation, outcome)
        envelope = Envelope.from_bytes(bytes(item["answer"]["B"]))
        content = json.loads(self.keys.open(envelope))
        if outcome is Outcome.REFUSED:
            return Result(correlation, outcome, refusal=str(content.get("code", "")))
        return Result(correlation, outcome, answer=content)

    def _time_out(self, correlation: str, now: dt.datetime) -> None:
        """Mark a pending request past its deadline timed out; ``ChannelRequestsTimedOut`` once
        per request (the conditional update succeeds once, whoever marks it first)."""
        if self.store.time_out(correlation, now):
            metrics.add_metric(name="ChannelRequestsTimedOut", unit=MetricUnit.Count, value=1)

    def reconcile(self, municipality: str, month: str) -> channel.ChannelRow:
        return channel.reconcile(municipality, month, self.store.records(municipality, month), self.clock())

    # --- receiving -------------------------------------------------------------------------
    def receive(self, body: str) -> str:
        """Handle one inbound channel message; what happened (``answered``, ``answered_again``,
        ``settled``, ``already_settled``, ``dead_lettered``)."""
        now = self.clock()
        try:
            message, envelope = _verified(body, self.public_keys)
            if not self.serves(envelope.recipient):
                raise PermanentFailure("not_routable", f"{envelope.recipient} is not a municipality of this tier",
                                       "channel.to", "route")
            if envelope.kind is Kind.REQUEST:
                return self._answer(message, envelope, now)
            return self._settle(envelope, now)
        except PermanentFailure as failure:
            _dead_letter("municipality", self.dead_letter_queue_url, self.store.dead_letters, body, failure, now)
            return "dead_lettered"

    def _answer(self, message: SignedMessage, envelope: Envelope, now: dt.datetime) -> str:
        given = self.store.answer_given(envelope.recipient, envelope.correlation)
        if given is not None:
            if given["request_digest"]["S"] != message.digest.hex():
                raise PermanentFailure("correlation_reused", "another request already used this correlation id",
                                       "channel.correlation", "unique")
            # A redelivery or a replay: the same signed answer again, no second effect.
            aws.client("sqs").send_message(QueueUrl=self.outbound_queue_url, MessageBody=given["body"]["S"])
            metrics.add_metric(name="ChannelRequestsRepeated", unit=MetricUnit.Count, value=1)
            return "answered_again"
        try:
            channel.check_timely(envelope, now)
        except ValidationError as exc:
            raise PermanentFailure("deadline_passed" if exc.rule == "expired" else "malformed_payload",
                                   exc.detail, exc.field, exc.rule) from None
        try:
            query = json.loads(self.keys.open(envelope))
        except ValueError:
            query = None
        outcome = self.responder(envelope.sender, envelope.recipient, {**query, "_correlation": envelope.correlation}) \
            if isinstance(query, dict) \
            else Refused("invalid_query", "the query is not a JSON object")
        if isinstance(outcome, Refused):
            kind, content = Kind.REFUSAL, {"code": outcome.code, "detail": outcome.detail}
        else:
            kind, content = Kind.ANSWER, outcome
        plaintext = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        wrapped, sealed = self.keys.seal(kind, envelope.correlation, envelope.recipient, envelope.sender, plaintext)
        answer = Envelope(kind, envelope.recipient, envelope.sender, envelope.correlation, now.replace(microsecond=0),
                          envelope.deadline, wrapped, sealed)
        try:
            signed = self.signer_for(envelope.recipient).sign_bytes(answer.to_bytes()).to_body()
        except Exception as exc:
            if aws.error_code(exc) in ("NotFoundException", "DisabledException"):
                raise PermanentFailure("unknown_recipient", f"{envelope.recipient} has no signing key in this tier",
                                       "channel.to", "recipient") from None
            raise
        if not self.store.record_answer(envelope.recipient, envelope.correlation, envelope.sender, kind.value, signed,
                                        message.digest.hex()):
            return self._answer(message, envelope, now)  # another instance answered first: send that one
        aws.client("sqs").send_message(QueueUrl=self.outbound_queue_url, MessageBody=signed)
        metrics.add_metric(name="ChannelAnswersSent", unit=MetricUnit.Count, value=1)
        return "answered"

    def _settle(self, envelope: Envelope, now: dt.datetime) -> str:
        item = self.store.request(envelope.correlation)
        if item is None or item["to"]["S"] != envelope.sender:
            raise PermanentFailure("unknown_request", f"no request {envelope.correlation} was sent to "
                                   f"{envelope.sender}", "channel.correlation", "request")
        self.keys.open(envelope)  # an answer this tier cannot open is refused now, not at the counter
        outcome = Outcome.ANSWERED if envelope.kind is Kind.ANSWER else Outcome.REFUSED
        if self.store.settle(envelope.correlation, outcome, envelope.to_bytes(), now):
            metrics.add_metric(name="ChannelRequestsSettled", unit=MetricUnit.Count, value=1)
            if outcome is Outcome.REFUSED:  # answered = settled − refused (monthly monitoring report)
                metrics.add_metric(name="ChannelRefusalsReceived", unit=MetricUnit.Count, value=1)
            return "settled"
        deadline = dt.datetime.strptime(item["deadline"]["S"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        if item["status"]["S"] == Outcome.PENDING.value and now > deadline:
            self._time_out(envelope.correlation, now)  # a late answer: the request has timed out
        return "already_settled"  # redelivered, or late: the request keeps its first outcome


# --- the part-1 query: a resident's status in the home municipality's register -------------
def register_responder(register_of: Callable[[str], object]) -> Responder:
    """Answers ``{"query": "resident-status", "resident_code": ...}`` from the home tier's register
    of residents (``CardStore.register``): the holding municipality, the latest reason and
    whether the resident is active there."""
    from ..domain.codes import ResidentCode

    def respond(requester: str, home: str, query: dict) -> dict | Refused:
        if query.get("query") != "resident-status":
            return Refused("unknown_query", f"query {query.get('query')!r}")
        try:
            code = ResidentCode.parse(query.get("resident_code"), "resident_code").value
        except ValidationError as exc:
            return Refused("invalid_query", f"{exc.field}: {exc.rule}")
        register = register_of(code)
        if register is None:
            return Refused("unknown_resident")
        if register.municipality != home:
            return Refused("not_resident_here")
        return {"resident_code": code, "municipality": home, "reason": register.reason.value,
                "active": register.active}

    return respond
