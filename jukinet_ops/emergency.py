"""Emergency isolation (緊急時対応): cut one municipality, one prefecture or one agency off the
network within a minute, hold what would have flowed, and restore it exactly.

``jukinet isolate <kind> <target> --reason TEXT``, ``jukinet restore <kind> <target> --reason
TEXT`` and ``jukinet isolation-status`` (``cli.py``) call ``Emergency``. Runbooks:
``docs/emergency.md``. Nothing here is deployed: every action is an AWS API call on resources
the stacks already have.

| kind | isolate | held where, how long | restore |
| --- | --- | --- | --- |
| municipality | the CS's reserved concurrency → 0; the drop zone's S3 → CS notification removed | export files in the drop zone under ``incoming/`` (30 days lifecycle) | notification and concurrency put back as recorded; the CS invoked (asynchronously) for every file under ``incoming/`` without a newer summary report |
| prefecture | the processor's inbound event source mapping disabled; the inbound queue's retention raised to 14 days | signed notices in the prefecture's inbound queue (14 days from sending) | mapping set back to its recorded state; retention set back once the queue is empty |
| agency | its isolation mark set in the provision state table (the provision functions refuse its principals whatever API key they send, its queued batch chunks stop, and each such call raises the isolated-recipient alarm); its API key disabled (API Gateway answers 403); for a batch recipient, a Deny of its own ``in/``/``out/`` prefixes added to the batch bucket policy | in-flight batch results under ``out/<id>/`` (30 days lifecycle); a job stopped by the isolation is failed, not resumed | mark cleared; key enabled as recorded; the Deny removed |

**The isolation record.** Before anything changes, the state to restore is written to the SSM
parameter ``/<prefix>/isolation/<kind>/<target>`` (JSON: who, when, reason, previous state);
after the change the record holds what was changed and how long it took. Each transition
overwrites the parameter, so its version history is the audit trail of the target's
isolations (``aws ssm get-parameter-history``). The resources show their own state (reserved
concurrency 0, mapping Disabled, key disabled); an isolated prefecture's inbound queue is also
tagged ``jukinet:isolation`` = the record id, which is what the local runner reads (moto holds
every mapping Disabled, so its State cannot carry an operator's decision; and moto cannot tag
Lambda resources that CloudFormation created: it stores their tags as a list).

**Idempotent.** Isolating an isolated target changes nothing unless a control has drifted
(e.g. a deployment re-added the notification), which is re-applied without touching the
recorded previous state. Restoring a target that is not isolated changes nothing.
``isolation-status`` checks every active isolation against the live resources.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import posixpath
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from jukinet.adapters.aws import error_code
from jukinet.adapters.recipient_state import isolation_key
from jukinet.clock import Clock, system_clock
from jukinet.domain.isolation import ISOLATION_TAG

from .clients import ClientCache

KINDS = ("municipality", "prefecture", "agency")
RECORD_VERSION = 1
ISOLATING, ISOLATED, RESTORED = "isolating", "isolated", "restored"
SQS_MAX_RETENTION_S = 14 * 24 * 3600  # SQS's maximum MessageRetentionPeriod
PENDING_RETENTION = "queue-retention"  # a restored prefecture whose queue still holds messages
# Batch files of a recipient (infra/stacks/provision.py IN, OUT; docs/provision.md).
BATCH_IN, BATCH_OUT = "in/", "out/"
INCOMING, REPORTS = "incoming/", "reports/"  # drop-zone prefixes (infra/stacks/municipality.py)
MAPPING_OFF = ("Disabled", "Disabling")
RENOTIFIED_KEYS_KEPT = 20  # keys listed in the record (SSM values are small); the count is exact

InvokeEvent = Callable[[str, dict[str, Any]], None]  # (function name, event): an asynchronous invocation


class EmergencyError(Exception):
    """Refused before anything changed (unknown target, no reason, a resource not found)."""


@dataclass(frozen=True)
class Target:
    kind: str
    id: str
    name: str
    account: str
    region: str

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.name})"


@dataclass
class Change:
    """One change to one resource: what it was and what it became."""

    resource: str
    action: str  # the API action, e.g. lambda:PutFunctionConcurrency
    before: Any = None
    after: Any = None

    def describe(self) -> str:
        return f"{self.action} {self.resource}: {_short(self.before)} -> {_short(self.after)}"


@dataclass
class IsolationRecord:
    kind: str
    target: str
    name: str
    status: str  # isolating (written before the first change) | isolated | restored
    reason: str
    isolated_by: str
    isolated_at: str
    previous: dict[str, Any]
    changes: list[dict[str, Any]] = field(default_factory=list)
    isolate_seconds: float | None = None
    restored_by: str | None = None
    restored_at: str | None = None
    restore_reason: str | None = None
    restore_changes: list[dict[str, Any]] = field(default_factory=list)
    restore_seconds: float | None = None
    pending: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    version: int = RECORD_VERSION

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.target}@{self.isolated_at}"

    @property
    def active(self) -> bool:
        return self.status != RESTORED

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, text: str) -> IsolationRecord:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Outcome:
    action: str  # isolate | restore
    target: Target
    changed: bool
    message: str
    seconds: float  # the command's own time, from the first read to the last record write
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    record: IsolationRecord | None = None
    parameter: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "kind": self.target.kind, "target": self.target.id, "name": self.target.name,
                "changed": self.changed, "message": self.message, "seconds": round(self.seconds, 3),
                "changes": [dataclasses.asdict(c) for c in self.changes], "notes": self.notes,
                "parameter": self.parameter,
                "record": dataclasses.asdict(self.record) if self.record else None}


@dataclass
class StatusLine:
    record: IsolationRecord
    parameter: str
    drift: list[str]  # controls of an active isolation no longer in force

    def to_dict(self) -> dict[str, Any]:
        return {"parameter": self.parameter, "drift": self.drift, "record": dataclasses.asdict(self.record)}


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def _camel(text: str) -> str:
    return "".join(part.capitalize() for part in text.split("-"))


# -- records -------------------------------------------------------------------------------------


class RecordStore:
    """Isolation records as SSM parameters ``/<prefix>/isolation/<kind>/<target>``."""

    def __init__(self, ssm: Any, prefix: str) -> None:
        self.ssm = ssm
        self.root = f"/{prefix}/isolation"

    def parameter(self, kind: str, target: str) -> str:
        return f"{self.root}/{kind}/{target}"

    def get(self, kind: str, target: str) -> IsolationRecord | None:
        try:
            value = self.ssm.get_parameter(Name=self.parameter(kind, target))["Parameter"]["Value"]
        except ClientError as exc:
            if error_code(exc) == "ParameterNotFound":
                return None
            raise
        return IsolationRecord.from_json(value)

    def put(self, record: IsolationRecord) -> None:
        # Intelligent-Tiering: a standard parameter (4 KB), advanced only if a record outgrows it.
        self.ssm.put_parameter(Name=self.parameter(record.kind, record.target), Value=record.to_json(),
                               Type="String", Overwrite=True, Tier="Intelligent-Tiering")

    def all(self) -> Iterator[tuple[str, IsolationRecord]]:
        request: dict[str, Any] = {"Path": self.root, "Recursive": True}
        while True:
            page = self.ssm.get_parameters_by_path(**request)
            for p in page.get("Parameters", []):
                yield p["Name"], IsolationRecord.from_json(p["Value"])
            if not page.get("NextToken"):
                return
            request["NextToken"] = page["NextToken"]

    def history(self, kind: str, target: str) -> list[IsolationRecord]:
        """Every version of the target's record, oldest first."""
        found: list[IsolationRecord] = []
        request: dict[str, Any] = {"Name": self.parameter(kind, target)}
        while True:
            try:
                page = self.ssm.get_parameter_history(**request)
            except ClientError as exc:
                if error_code(exc) == "ParameterNotFound":
                    return found
                raise
            found += [IsolationRecord.from_json(p["Value"]) for p in page.get("Parameters", [])]
            if not page.get("NextToken"):
                return found
            request["NextToken"] = page["NextToken"]


# -- what each kind of isolation does -----------------------------------------------------------------


class _Controls:
    """The controls of one kind of isolation on one target."""

    def __init__(self, em: Emergency, target: Target) -> None:
        self.em = em
        self.target = target

    def previous(self, prior: IsolationRecord | None) -> dict[str, Any]:
        raise NotImplementedError

    def apply(self, record: IsolationRecord) -> tuple[list[Change], list[str]]:
        """Put every control in force that is not; returns the changes and notes."""
        raise NotImplementedError

    def drift(self, record: IsolationRecord) -> list[str]:
        raise NotImplementedError

    def undo(self, record: IsolationRecord) -> tuple[list[Change], list[str], list[str]]:
        """Put back the recorded state; returns the changes, notes and what is still pending."""
        raise NotImplementedError

    def finish(self, record: IsolationRecord) -> tuple[list[Change], list[str], list[str]]:
        """Complete what a restore left pending."""
        return [], [], list(record.pending)


class _MunicipalityControls(_Controls):
    """The CS stops: reserved concurrency 0 (nothing already emitted runs; Lambda keeps the
    asynchronous events and retries them for up to 6 hours, then its dead-letter queue; the
    events already in its inbox wait there — throttled receives count, so after the inbox's
    maxReceiveCount they move to the failed-event queue, decision 0051) and no S3 event for new
    files (they wait in the drop zone for as long as needed). Undoing re-notifies the CS of
    every file without a newer report, whatever became of its event."""

    def __init__(self, em: Emergency, target: Target) -> None:
        super().__init__(em, target)
        names = em.names
        prefecture = em.prefecture_of(target.id)
        self.function = names.cs_function(target.id)
        self.inbox = names.cs_inbox_queue(target.id)
        self.bucket = names.drop_zone_bucket(prefecture.municipality_tier.env, target.id)

    def _concurrency(self) -> int | None:
        got = self.em.client("lambda").get_function_concurrency(FunctionName=self.function)
        value = got.get("ReservedConcurrentExecutions")
        return None if value is None else int(value)

    def _notifications(self) -> dict[str, Any]:
        config = self.em.client("s3").get_bucket_notification_configuration(Bucket=self.bucket)
        return {k: v for k, v in config.items() if k != "ResponseMetadata"}

    def _to_cs(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        """The bucket's notifications that invoke this CS directly (before decision 0051). The
        notification to its inbox stays: the events wait in the inbox, its mapping disabled."""
        return [c for c in config.get("LambdaFunctionConfigurations", [])
                if c.get("LambdaFunctionArn", "").split(":")[6:7] == [self.function]]

    # -- the inbox (decision 0051): its mapping disabled and the queue tagged while isolated --

    def _inbox_url(self) -> str | None:
        try:
            return str(self.em.client("sqs").get_queue_url(
                QueueName=self.inbox, QueueOwnerAWSAccountId=self.target.account)["QueueUrl"])
        except ClientError:
            return None  # a deployment from before the inbox

    def _inbox_mapping(self) -> dict[str, Any] | None:
        arn = f"arn:aws:sqs:{self.target.region}:{self.target.account}:{self.inbox}"
        found = self.em.client("lambda").list_event_source_mappings(
            FunctionName=self.function, EventSourceArn=arn).get("EventSourceMappings", [])
        return found[0] if len(found) == 1 else None

    def _set_inbox_mapping(self, mapping: dict[str, Any], enabled: bool) -> str:
        lam = self.em.client("lambda")
        state = lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=enabled).get("State", "")
        goal = "Enabled" if enabled else "Disabled"
        deadline = time.monotonic() + self.em.wait_timeout_s
        while state != goal and time.monotonic() < deadline:
            time.sleep(self.em.poll_s)
            state = lam.get_event_source_mapping(UUID=mapping["UUID"]).get("State", "")
        return state

    def _inbox_tags(self, url: str) -> dict[str, str]:
        return dict(self.em.client("sqs").list_queue_tags(QueueUrl=url).get("Tags", {}))

    def _hold_inbox(self, record: IsolationRecord) -> tuple[list[Change], list[str]]:
        changes: list[Change] = []
        notes: list[str] = []
        url = self._inbox_url()
        if url is None:
            return changes, notes
        mapping = self._inbox_mapping()
        if mapping is not None and mapping.get("State", "") not in MAPPING_OFF:
            state = mapping.get("State", "")
            reached = self._set_inbox_mapping(mapping, False)
            changes.append(Change(mapping["UUID"], "lambda:UpdateEventSourceMapping", state, reached))
        if self._inbox_tags(url).get(ISOLATION_TAG) != record.id:
            self.em.client("sqs").tag_queue(QueueUrl=url, Tags={ISOLATION_TAG: record.id})
            changes.append(Change(self.inbox, "sqs:TagQueue", None, {ISOLATION_TAG: record.id}))
        notes.append(f"new files' events wait in {self.inbox} (14 days)")
        return changes, notes

    def _release_inbox(self, record: IsolationRecord) -> tuple[list[Change], list[str]]:
        changes: list[Change] = []
        notes: list[str] = []
        url = self._inbox_url()
        if url is None:
            return changes, notes
        if ISOLATION_TAG in self._inbox_tags(url):
            self.em.client("sqs").untag_queue(QueueUrl=url, TagKeys=[ISOLATION_TAG])
            changes.append(Change(self.inbox, "sqs:UntagQueue", ISOLATION_TAG, None))
        mapping = self._inbox_mapping()
        was_enabled = record.previous.get("inbox_mapping_state") not in (None, *MAPPING_OFF)
        if mapping is not None and was_enabled and mapping.get("State", "") in MAPPING_OFF:
            state = mapping.get("State", "")
            reached = self._set_inbox_mapping(mapping, True)
            changes.append(Change(mapping["UUID"], "lambda:UpdateEventSourceMapping", state, reached))
        return changes, notes

    @staticmethod
    def _with(config: dict[str, Any], kept: list[dict[str, Any]]) -> dict[str, Any]:
        """``config`` whose Lambda and queue notifications are exactly ``kept``."""
        out = dict(config)
        for key, arn in (("LambdaFunctionConfigurations", "LambdaFunctionArn"), ("QueueConfigurations", "QueueArn")):
            out[key] = [c for c in kept if arn in c]
        return {k: v for k, v in out.items() if v or k not in ("LambdaFunctionConfigurations", "QueueConfigurations")}

    def previous(self, prior: IsolationRecord | None) -> dict[str, Any]:
        try:
            concurrency = self._concurrency()
        except ClientError as exc:
            raise EmergencyError(f"{self.target}: CS function {self.function}: {exc}") from None
        try:
            notifications = self._to_cs(self._notifications())
        except ClientError as exc:
            raise EmergencyError(f"{self.target}: drop zone {self.bucket}: {exc}") from None
        try:
            mapping = self._inbox_mapping() if self._inbox_url() else None
        except ClientError as exc:
            raise EmergencyError(f"{self.target}: inbox {self.inbox}: {exc}") from None
        return {"function": self.function, "bucket": self.bucket, "reserved_concurrency": concurrency,
                "notifications": notifications, "inbox_mapping_state": mapping.get("State") if mapping else None}

    def apply(self, record: IsolationRecord) -> tuple[list[Change], list[str]]:
        lam, changes, notes = self.em.client("lambda"), [], []
        before = self._concurrency()
        if before != 0:
            lam.put_function_concurrency(FunctionName=self.function, ReservedConcurrentExecutions=0)
            changes.append(Change(self.function, "lambda:PutFunctionConcurrency", before, 0))
        config = self._notifications()
        mine = self._to_cs(config)
        if mine:
            rest = [c for key in ("LambdaFunctionConfigurations", "QueueConfigurations")
                    for c in config.get(key, []) if c not in mine]
            self.em.client("s3").put_bucket_notification_configuration(
                Bucket=self.bucket, NotificationConfiguration=self._with(config, rest))
            changes.append(Change(self.bucket, "s3:PutBucketNotificationConfiguration", mine, []))
        more, more_notes = self._hold_inbox(record)
        return changes + more, notes + more_notes

    def drift(self, record: IsolationRecord) -> list[str]:
        found = []
        concurrency = self._concurrency()
        if concurrency != 0:
            found.append(f"{self.function}: reserved concurrency is {concurrency}, not 0")
        if self._to_cs(self._notifications()):
            found.append(f"{self.bucket}: the notification to {self.function} is back")
        url = self._inbox_url()
        if url is not None and ISOLATION_TAG not in self._inbox_tags(url):
            found.append(f"{self.inbox}: tag {ISOLATION_TAG} missing")
        mapping = self._inbox_mapping() if url is not None else None
        if mapping is not None and mapping.get("State") not in MAPPING_OFF:
            found.append(f"{self.function}'s mapping on {self.inbox} is {mapping.get('State')}")
        return found

    def undo(self, record: IsolationRecord) -> tuple[list[Change], list[str], list[str]]:
        lam, s3, changes, notes = self.em.client("lambda"), self.em.client("s3"), [], []
        previous = record.previous
        config = self._notifications()
        present = self._to_cs(config)
        missing = [c for c in previous.get("notifications", []) if not any(_same_notification(c, p) for p in present)]
        if missing:
            every = [c for key in ("LambdaFunctionConfigurations", "QueueConfigurations") for c in config.get(key, [])]
            s3.put_bucket_notification_configuration(Bucket=self.bucket,
                                                     NotificationConfiguration=self._with(config, [*every, *missing]))
            changes.append(Change(self.bucket, "s3:PutBucketNotificationConfiguration", present, [*present, *missing]))
        wanted, now = previous.get("reserved_concurrency"), self._concurrency()
        if wanted != now:
            if wanted is None:
                lam.delete_function_concurrency(FunctionName=self.function)
            else:
                lam.put_function_concurrency(FunctionName=self.function, ReservedConcurrentExecutions=int(wanted))
            changes.append(Change(self.function, "lambda:PutFunctionConcurrency"
                                  if wanted is not None else "lambda:DeleteFunctionConcurrency", now, wanted))
        more, more_notes = self._release_inbox(record)
        changes, notes = changes + more, notes + more_notes
        keys = self.renotify(previous.get("notifications", []))
        if keys is None:
            notes.append("re-notification skipped (no invoker: the embedded AWS cannot run functions; the local "
                         "runner delivers the events it held once the concurrency is back)")
        else:
            changes.append(Change(self.function, "lambda:InvokeFunction (Event)", None,
                                  {"files": len(keys), "keys": keys[:RENOTIFIED_KEYS_KEPT]}))
            notes.append(f"re-notified the CS of {len(keys)} file(s) under incoming/ without a newer report")
        return changes, notes, []

    def renotify(self, notifications: list[dict[str, Any]]) -> list[str] | None:
        """Invoke the CS (asynchronously, as S3 does) for every export file that has no summary
        report newer than the file: what arrived while no event was sent, and what failed.
        Listings give times to the second, so a report of the same second as its file does not
        count as newer: when in doubt, notify. The CS takes a file once by its SHA-256, so a file
        already done is answered 'duplicate'."""
        if self.em.invoke_event is None:
            return None
        incoming = _filter_prefix(notifications) or INCOMING
        base = incoming[: -len(INCOMING)] if incoming.endswith(INCOMING) else ""
        s3 = self.em.client("s3")
        objects = [o for o in _list(s3, self.bucket, incoming) if not o["Key"].endswith("/")]
        reports = {o["Key"]: o["LastModified"] for o in _list(s3, self.bucket, f"{base}{REPORTS}")}
        keys = []
        for obj in sorted(objects, key=lambda o: (o["LastModified"], o["Key"])):
            summary = f"{base}{REPORTS}{posixpath.basename(obj['Key'])}.summary.json"
            if summary in reports and reports[summary] > obj["LastModified"]:
                continue
            self.em.invoke_event(self.function, s3_event(self.bucket, obj, self.target.region))
            keys.append(obj["Key"])
        return keys


class _PrefectureControls(_Controls):
    """The processor stops consuming: its inbound mapping disabled. The municipalities' CSs keep
    sending; the signed notices wait in the inbound queue (retention raised to SQS's maximum,
    14 days), and nothing is forwarded to the national tier."""

    def __init__(self, em: Emergency, target: Target) -> None:
        super().__init__(em, target)
        from infra.naming import Names, prefecture_tier

        names = em.names
        prefecture = em.deployment.prefecture(target.id)
        tier = prefecture_tier(target.id)
        self.function = names.processor_function(tier)
        self.queue = names.inbound_queue(tier)
        self.queue_arn = Names.queue_arn(prefecture.env, self.queue)
        self._queue_url: str | None = None

    @property
    def queue_url(self) -> str:
        if self._queue_url is None:
            self._queue_url = self.em.client("sqs").get_queue_url(
                QueueName=self.queue, QueueOwnerAWSAccountId=self.target.account)["QueueUrl"]
        return self._queue_url

    def _mapping(self) -> dict[str, Any]:
        found = self.em.client("lambda").list_event_source_mappings(
            FunctionName=self.function, EventSourceArn=self.queue_arn).get("EventSourceMappings", [])
        if len(found) != 1:
            raise EmergencyError(f"{self.target}: expected one event source mapping of {self.function} on "
                                 f"{self.queue}, found {len(found)}")
        return found[0]

    def _retention(self) -> int:
        got = self.em.client("sqs").get_queue_attributes(QueueUrl=self.queue_url,
                                                         AttributeNames=["MessageRetentionPeriod"])
        return int(got["Attributes"]["MessageRetentionPeriod"])

    def _messages(self) -> int:
        got = self.em.client("sqs").get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed"])["Attributes"]
        return sum(int(v) for v in got.values())

    def _mapping_arn(self, mapping: dict[str, Any]) -> str:
        return mapping.get("EventSourceMappingArn") or (
            f"arn:aws:lambda:{self.target.region}:{self.target.account}:event-source-mapping:{mapping['UUID']}")

    def _set_mapping(self, mapping: dict[str, Any], enabled: bool) -> str:
        """Update and wait (up to the configured time) until the mapping reaches its state."""
        lam = self.em.client("lambda")
        state = lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=enabled).get("State", "")
        goal = "Enabled" if enabled else "Disabled"
        deadline = time.monotonic() + self.em.wait_timeout_s
        while state != goal and time.monotonic() < deadline:
            time.sleep(self.em.poll_s)
            state = lam.get_event_source_mapping(UUID=mapping["UUID"]).get("State", "")
        return state

    def previous(self, prior: IsolationRecord | None) -> dict[str, Any]:
        try:
            mapping = self._mapping()
            retention = self._retention()
        except ClientError as exc:
            raise EmergencyError(f"{self.target}: {exc}") from None
        if prior is not None and PENDING_RETENTION in prior.pending:
            retention = int(prior.previous["retention_s"])  # the last isolation's raise is still in force
        return {"function": self.function, "queue": self.queue, "mapping_uuid": mapping["UUID"],
                "mapping_arn": self._mapping_arn(mapping), "mapping_state": mapping.get("State"),
                "retention_s": retention}

    def apply(self, record: IsolationRecord) -> tuple[list[Change], list[str]]:
        changes, notes = [], []
        mapping = self._mapping()
        state = mapping.get("State", "")
        if state not in MAPPING_OFF:
            reached = self._set_mapping(mapping, False)
            changes.append(Change(self._mapping_arn(mapping), "lambda:UpdateEventSourceMapping", state, reached))
            if reached != "Disabled":
                notes.append(f"the mapping is {reached}, not yet Disabled, after {self.em.wait_timeout_s:.0f} s: "
                             "check with isolation-status")
        retention = self._retention()
        if retention < SQS_MAX_RETENTION_S:
            self.em.client("sqs").set_queue_attributes(
                QueueUrl=self.queue_url, Attributes={"MessageRetentionPeriod": str(SQS_MAX_RETENTION_S)})
            changes.append(Change(self.queue_arn, "sqs:SetQueueAttributes MessageRetentionPeriod", retention,
                                  SQS_MAX_RETENTION_S))
        if self._tags().get(ISOLATION_TAG) != record.id:
            self.em.client("sqs").tag_queue(QueueUrl=self.queue_url, Tags={ISOLATION_TAG: record.id})
            changes.append(Change(self.queue_arn, "sqs:TagQueue", None, {ISOLATION_TAG: record.id}))
        return changes, notes

    def _tags(self) -> dict[str, str]:
        return dict(self.em.client("sqs").list_queue_tags(QueueUrl=self.queue_url).get("Tags", {}))

    def drift(self, record: IsolationRecord) -> list[str]:
        found = []
        mapping = self._mapping()
        if mapping.get("State") not in MAPPING_OFF:
            found.append(f"{self.function}'s mapping on {self.queue} is {mapping.get('State')}")
        if ISOLATION_TAG not in self._tags():
            found.append(f"{self.queue}: tag {ISOLATION_TAG} missing")
        retention = self._retention()
        if retention < SQS_MAX_RETENTION_S:
            found.append(f"{self.queue}: retention is {retention} s, not {SQS_MAX_RETENTION_S} s")
        return found

    def undo(self, record: IsolationRecord) -> tuple[list[Change], list[str], list[str]]:
        changes, notes = [], []
        previous = record.previous
        mapping = self._mapping()
        arn = self._mapping_arn(mapping)
        if ISOLATION_TAG in self._tags():
            self.em.client("sqs").untag_queue(QueueUrl=self.queue_url, TagKeys=[ISOLATION_TAG])
            changes.append(Change(self.queue_arn, "sqs:UntagQueue", ISOLATION_TAG, None))
        was_enabled = previous.get("mapping_state") not in MAPPING_OFF
        state = mapping.get("State", "")
        if was_enabled and state in MAPPING_OFF:
            reached = self._set_mapping(mapping, True)
            changes.append(Change(arn, "lambda:UpdateEventSourceMapping", state, reached))
            if reached != "Enabled":
                notes.append(f"the mapping is {reached}, not yet Enabled, after {self.em.wait_timeout_s:.0f} s")
        elif not was_enabled:
            notes.append(f"the mapping was {previous.get('mapping_state')} before the isolation: left so (in local "
                         "mode the deployer holds every mapping disabled and the runner drives it)")
        more, more_notes, pending = self.finish(record)
        return changes + more, notes + more_notes, pending

    def finish(self, record: IsolationRecord) -> tuple[list[Change], list[str], list[str]]:
        """Set the retention back — only once the queue is empty: lowering it while notices held
        longer than the old retention wait would delete them."""
        wanted, now = int(record.previous["retention_s"]), self._retention()
        if wanted == now:
            return [], [], []
        waiting = self._messages()
        if waiting:
            note = (f"{self.queue} still holds {waiting} message(s): its retention stays {now} s until it is "
                    f"empty; run restore again then to set it back to {wanted} s")
            return [], [note], [PENDING_RETENTION]
        self.em.client("sqs").set_queue_attributes(QueueUrl=self.queue_url,
                                                   Attributes={"MessageRetentionPeriod": str(wanted)})
        return [Change(self.queue_arn, "sqs:SetQueueAttributes MessageRetentionPeriod", now, wanted)], [], []


class _AgencyControls(_Controls):
    """The recipient's API access stops. The isolation mark in the provision state table makes
    the provision functions refuse the recipient's own principals (the key alone is not
    enough: a principal holding another recipient's enabled key would still pass the
    gateway); its API key is disabled, so API Gateway answers 403 before the handler; a batch
    recipient's roles are also denied its own prefixes of the batch bucket (results of
    in-flight jobs stay under out/<id>/ until restored or expired)."""

    def __init__(self, em: Emergency, target: Target) -> None:
        super().__init__(em, target)
        names = em.names
        self.agency = em.agency(target.id)
        self.state_table = names.provision_state_table()
        self.key_name = names.provision_api_key(target.id)
        self.bucket = names.provision_batch_bucket(em.deployment.national.env) if self.agency.uses_batch else None
        self.sid = f"JukinetIsolation{_camel(target.id)}"

    def _key(self) -> dict[str, Any]:
        items = self.em.client("apigateway").get_api_keys(nameQuery=self.key_name, limit=500).get("items", [])
        found = [k for k in items if k.get("name") == self.key_name]
        if len(found) != 1:
            raise EmergencyError(f"{self.target}: expected one API key named {self.key_name}, found {len(found)}")
        return found[0]

    def _policy(self) -> dict[str, Any]:
        try:
            return json.loads(self.em.client("s3").get_bucket_policy(Bucket=self.bucket)["Policy"])
        except ClientError as exc:
            if error_code(exc) == "NoSuchBucketPolicy":
                return {"Version": "2012-10-17", "Statement": []}
            raise

    def _statement(self) -> dict[str, Any]:
        arn = f"arn:aws:s3:::{self.bucket}"
        return {"Sid": self.sid, "Effect": "Deny", "Principal": "*",
                "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
                "Resource": [f"{arn}/{BATCH_IN}{self.target.id}/*", f"{arn}/{BATCH_OUT}{self.target.id}/*"],
                "Condition": {"ArnLike": {"aws:PrincipalArn": sorted(self.agency.all_principals)}}}

    @staticmethod
    def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
        statements = policy.get("Statement", [])
        return [statements] if isinstance(statements, dict) else list(statements)

    def _marked(self) -> bool:
        item = self.em.client("dynamodb").get_item(TableName=self.state_table, Key=isolation_key(self.target.id),
                                                   ConsistentRead=True).get("Item")
        return bool(item and item.get("isolated", {}).get("BOOL"))

    def _mark(self, isolated: bool, record: IsolationRecord) -> Change:
        self.em.client("dynamodb").put_item(TableName=self.state_table, Item={
            **isolation_key(self.target.id), "isolated": {"BOOL": isolated}, "record": {"S": record.id},
            "changed_by": {"S": self.em.caller()}})
        return Change(f"{self.state_table} {isolation_key(self.target.id)['pk']['S']}", "dynamodb:PutItem",
                      not isolated, isolated)

    def previous(self, prior: IsolationRecord | None) -> dict[str, Any]:
        key = self._key()
        return {"api_key_id": key["id"], "api_key_name": self.key_name, "api_key_enabled": bool(key.get("enabled")),
                "batch_bucket": self.bucket, "statement_sid": self.sid if self.bucket else None,
                "state_table": self.state_table}

    def _set_key(self, key_id: str, enabled: bool) -> None:
        self.em.client("apigateway").update_api_key(apiKey=key_id, patchOperations=[
            {"op": "replace", "path": "/enabled", "value": "true" if enabled else "false"}])

    def apply(self, record: IsolationRecord) -> tuple[list[Change], list[str]]:
        changes: list[Change] = []
        if not self._marked():  # first: it holds even if the gateway's key is bypassed
            changes.append(self._mark(True, record))
        key = self._key()
        if key.get("enabled"):
            self._set_key(key["id"], False)
            changes.append(Change(f"apikey/{key['id']} ({self.key_name})", "apigateway:UpdateApiKey", True, False))
        if self.bucket:
            policy = self._policy()
            statements = self._statements(policy)
            if not any(s.get("Sid") == self.sid for s in statements):
                statement = self._statement()
                self.em.client("s3").put_bucket_policy(Bucket=self.bucket, Policy=json.dumps(
                    dict(policy, Statement=[*statements, statement])))
                changes.append(Change(self.bucket, "s3:PutBucketPolicy", None, statement))
        return changes, []

    def drift(self, record: IsolationRecord) -> list[str]:
        found = []
        if not self._marked():
            found.append(f"{self.state_table}: isolation mark of {self.target.id} not set")
        if self._key().get("enabled"):
            found.append(f"API key {self.key_name} is enabled")
        if self.bucket and not any(s.get("Sid") == self.sid for s in self._statements(self._policy())):
            found.append(f"{self.bucket}: statement {self.sid} missing")
        return found

    def undo(self, record: IsolationRecord) -> tuple[list[Change], list[str], list[str]]:
        changes: list[Change] = []
        previous = record.previous
        if self._marked():
            changes.append(self._mark(False, record))
        key = self._key()
        if previous.get("api_key_enabled") and not key.get("enabled"):
            self._set_key(key["id"], True)
            changes.append(Change(f"apikey/{key['id']} ({self.key_name})", "apigateway:UpdateApiKey", False, True))
        if previous.get("batch_bucket"):
            policy = self._policy()
            statements = self._statements(policy)
            kept = [s for s in statements if s.get("Sid") != previous["statement_sid"]]
            if len(kept) != len(statements):
                s3 = self.em.client("s3")
                if kept:
                    s3.put_bucket_policy(Bucket=self.bucket, Policy=json.dumps(dict(policy, Statement=kept)))
                else:
                    s3.delete_bucket_policy(Bucket=self.bucket)
                changes.append(Change(self.bucket, "s3:PutBucketPolicy", previous["statement_sid"], None))
        return changes, [], []


_CONTROLS: dict[str, type[_Controls]] = {"municipality": _MunicipalityControls, "prefecture": _PrefectureControls,
                                         "agency": _AgencyControls}


# -- the commands ---------------------------------------------------------------------------------


class Emergency:
    """Isolation and restoration of one deployment's targets (``infra.config.Deployment``).

    ``invoke_event(function, event)``: how the restore of a municipality invokes its CS
    asynchronously; default Lambda ``Invoke`` with ``InvocationType=Event``. ``None`` skips
    the re-notification (the embedded AWS cannot run functions: in-process callers pass the
    local runner's ``invoke_async``). ``clients``: service -> boto3 client (default: clients
    in the deployment's region, honouring ``AWS_ENDPOINT_URL``)."""

    _DEFAULT: Any = object()

    def __init__(self, deployment: Any, *, invoke_event: InvokeEvent | None = _DEFAULT,
                 clients: Callable[[str], Any] | None = None, wait_timeout_s: float = 50.0,
                 poll_s: float = 1.0, clock: Clock = system_clock) -> None:
        from infra.naming import Names

        self.deployment = deployment
        self.names = Names.of(deployment)
        self.region = deployment.region
        self.wait_timeout_s = wait_timeout_s
        self.poll_s = poll_s
        self.clock = clock  # when records and notes say something happened
        self._clients = ClientCache(self.region, clients)
        self.invoke_event: InvokeEvent | None = self._lambda_invoke if invoke_event is Emergency._DEFAULT \
            else invoke_event
        self.store = RecordStore(self.client("ssm"), deployment.prefix)
        self._caller: str | None = None

    def _now(self) -> str:
        return self.clock().astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def client(self, service: str) -> Any:
        return self._clients(service)

    def _lambda_invoke(self, function: str, event: dict[str, Any]) -> None:
        got = self.client("lambda").invoke(FunctionName=function, InvocationType="Event",
                                           Payload=json.dumps(event).encode())
        if got.get("StatusCode") != 202:
            raise RuntimeError(f"asynchronous invocation of {function} answered {got.get('StatusCode')}")

    def caller(self) -> str:
        if self._caller is None:
            try:
                self._caller = str(self.client("sts").get_caller_identity()["Arn"])
            except (ClientError, BotoCoreError) as exc:  # the record must still say something
                self._caller = f"unknown ({type(exc).__name__})"
        return self._caller

    # -- targets ---------------------------------------------------------------------------------

    def prefecture_of(self, municipality: str) -> Any:
        for p in self.deployment.prefectures:
            if any(m.code == municipality for m in p.municipality_tier.municipalities):
                return p
        raise EmergencyError(f"unknown municipality {municipality!r}")

    def agency(self, agency_id: str) -> Any:
        for a in self.deployment.agencies:
            if a.recipient_id == agency_id:
                return a
        known = ", ".join(a.recipient_id for a in self.deployment.agencies) or "none"
        raise EmergencyError(f"unknown agency {agency_id!r} (recipients of this deployment: {known})")

    def target(self, kind: str, target_id: str) -> Target:
        if kind == "municipality":
            prefecture = self.prefecture_of(target_id)
            name = next(m.name for m in prefecture.municipality_tier.municipalities if m.code == target_id)
            env = prefecture.municipality_tier.env
        elif kind == "prefecture":
            try:
                prefecture = self.deployment.prefecture(target_id)
            except KeyError:
                known = ", ".join(p.code for p in self.deployment.prefectures)
                raise EmergencyError(f"unknown prefecture {target_id!r} (this deployment has {known})") from None
            name, env = prefecture.name, prefecture.env
        elif kind == "agency":
            agency = self.agency(target_id)
            name, env = agency.name_ja or agency.name, self.deployment.national.env
        else:
            raise EmergencyError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        return Target(kind, target_id, name, env.account, env.region)

    def _controls(self, target: Target) -> _Controls:
        return _CONTROLS[target.kind](self, target)

    # -- actions ---------------------------------------------------------------------------------

    def isolate(self, kind: str, target_id: str, *, reason: str) -> Outcome:
        started = time.perf_counter()
        reason = (reason or "").strip()
        if not reason:
            raise EmergencyError("a reason is required (--reason): it goes into the isolation record")
        target = self.target(kind, target_id)
        controls = self._controls(target)
        parameter = self.store.parameter(kind, target_id)
        existing = self.store.get(kind, target_id)
        if existing is not None and existing.active:
            record = existing
            changes, notes = controls.apply(record)
            if record.status == ISOLATING or changes:
                record.status = ISOLATED
                record.changes += [dataclasses.asdict(c) for c in changes]
                record.notes.append(f"{self._now()} isolate again by {self.caller()} ({reason}): "
                                    f"{len(changes)} control(s) re-applied")
                self.store.put(record)
            message = (f"already isolated since {record.isolated_at} by {record.isolated_by}: "
                       + (f"re-applied {len(changes)} control(s) not in force" if changes else "nothing changed"))
            return Outcome("isolate", target, bool(changes), message, time.perf_counter() - started, changes,
                           notes, record, parameter)
        record = IsolationRecord(kind=kind, target=target_id, name=target.name, status=ISOLATING, reason=reason,
                                 isolated_by=self.caller(), isolated_at=self._now(), previous=controls.previous(existing))
        self.store.put(record)  # before any change: whatever happens next, the way back is recorded
        changes, notes = controls.apply(record)
        record.status = ISOLATED
        record.changes = [dataclasses.asdict(c) for c in changes]
        record.notes += notes
        record.isolate_seconds = round(time.perf_counter() - started, 3)
        self.store.put(record)
        seconds = time.perf_counter() - started
        return Outcome("isolate", target, True, f"isolated in {seconds:.2f} s", seconds, changes, notes, record,
                       parameter)

    def restore(self, kind: str, target_id: str, *, reason: str) -> Outcome:
        started = time.perf_counter()
        reason = (reason or "").strip()
        if not reason:
            raise EmergencyError("a reason is required (--reason): it goes into the isolation record")
        target = self.target(kind, target_id)
        parameter = self.store.parameter(kind, target_id)
        record = self.store.get(kind, target_id)
        if record is None:
            return Outcome("restore", target, False, "not isolated (no isolation record): nothing to restore",
                           time.perf_counter() - started, parameter=parameter)
        controls = self._controls(target)
        if not record.active:
            if not record.pending:
                return Outcome("restore", target, False, f"not isolated: restored at {record.restored_at} by "
                               f"{record.restored_by}; nothing to restore", time.perf_counter() - started,
                               record=record, parameter=parameter)
            changes, notes, pending = controls.finish(record)
            record.restore_changes += [dataclasses.asdict(c) for c in changes]
            record.pending = pending
            record.notes.append(f"{self._now()} pending restore steps {'still open' if pending else 'completed'} "
                                f"by {self.caller()} ({reason})")
            self.store.put(record)
            seconds = time.perf_counter() - started
            message = ("restored earlier; " + ("still pending: " + ", ".join(pending) if pending
                                               else "pending steps completed"))
            return Outcome("restore", target, bool(changes), message, seconds, changes, notes, record, parameter)
        changes, notes, pending = controls.undo(record)
        record.status = RESTORED
        record.restored_by, record.restored_at, record.restore_reason = self.caller(), self._now(), reason
        record.restore_changes = [dataclasses.asdict(c) for c in changes]
        record.pending = pending
        record.notes += notes
        record.restore_seconds = round(time.perf_counter() - started, 3)
        self.store.put(record)
        seconds = time.perf_counter() - started
        message = f"restored in {seconds:.2f} s" + (f"; pending: {', '.join(pending)}" if pending else "")
        return Outcome("restore", target, True, message, seconds, changes, notes, record, parameter)

    def status(self, *, include_restored: bool = False) -> list[StatusLine]:
        """Current isolations (and restores with a pending step), each checked against the live
        resources; ``include_restored`` adds the last record of every target ever isolated."""
        lines = []
        for parameter, record in self.store.all():
            if not (record.active or record.pending or include_restored):
                continue
            drift: list[str] = []
            if record.active:
                try:
                    drift = self._controls(self.target(record.kind, record.target)).drift(record)
                except (EmergencyError, ClientError) as exc:
                    drift = [f"cannot check: {exc}"]
            lines.append(StatusLine(record, parameter, drift))
        return sorted(lines, key=lambda line: (line.record.kind, line.record.target))


# -- helpers -------------------------------------------------------------------------------------------


def _same_notification(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("LambdaFunctionArn", "QueueArn", "Events", "Filter")
    return all(a.get(k) == b.get(k) for k in keys)


def _filter_prefix(notifications: list[dict[str, Any]]) -> str | None:
    for n in notifications:
        for rule in n.get("Filter", {}).get("Key", {}).get("FilterRules", []):
            if str(rule.get("Name", "")).lower() == "prefix":
                return str(rule.get("Value", ""))
    return None


def _list(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found += page.get("Contents", [])
    return found


def s3_event(bucket: str, obj: dict[str, Any], region: str) -> dict[str, Any]:
    """The S3 event S3 would have sent for ``obj`` (one record, ObjectCreated:Put)."""
    modified = obj["LastModified"]
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": region,
        "eventTime": modified.strftime("%Y-%m-%dT%H:%M:%S.") + f"{modified.microsecond // 1000:03d}Z",
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "jukinet-restore"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "jukinet-restore",
               "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": urllib.parse.quote_plus(obj["Key"], safe="/"), "size": int(obj.get("Size", 0)),
                          "eTag": str(obj.get("ETag", "")).strip('"')}},
    }]}


# -- printing (cli.py) ---------------------------------------------------------------------------------


def format_outcome(outcome: Outcome) -> str:
    lines = [f"{outcome.action} {outcome.target}: {outcome.message}"]
    lines += [f"  changed  {c.describe()}" for c in outcome.changes]
    lines += [f"  note     {n}" for n in outcome.notes]
    if outcome.record is not None:
        lines.append(f"  record   {outcome.parameter} (status {outcome.record.status}; history: "
                     f"aws ssm get-parameter-history --name {outcome.parameter})")
    lines.append(f"  took     {outcome.seconds:.2f} s")
    return "\n".join(lines)


def format_status(lines: list[StatusLine]) -> str:
    if not lines:
        return "no isolation in force"
    out = []
    for line in lines:
        r = line.record
        state = r.status + (f", pending: {', '.join(r.pending)}" if r.pending else "")
        out.append(f"{r.kind} {r.target} ({r.name}): {state} since {r.isolated_at} by {r.isolated_by} "
                   f"- reason: {r.reason}")
        if r.status == RESTORED:
            out.append(f"  restored {r.restored_at} by {r.restored_by} - reason: {r.restore_reason}")
        for d in line.drift:
            out.append(f"  DRIFT    {d}")
        if r.active and not line.drift:
            out.append("  in force (every control checked against the live resources)")
    return "\n".join(out)


# -- the commands (registered by cli.py) --------------------------------------------------------------


def add_commands(sub: Any) -> None:
    """``isolate``, ``restore`` and ``isolation-status`` on the ``jukinet`` parser's subparsers."""
    for action in ("isolate", "restore"):
        doing = "Isolate" if action == "isolate" else "Restore"
        p = sub.add_parser(action, help=f"{action} one municipality, prefecture or agency (emergency plan)",
                           description=f"{doing} one target of the emergency plan (docs/emergency.md) and record "
                                       "who, when, why and the previous state in the SSM parameter "
                                       "/<prefix>/isolation/<kind>/<target>. Idempotent. Prints what changed "
                                       "and how long it took. Exit 2 if refused (unknown target, no reason), "
                                       "1 if an AWS call failed (the record keeps the way back).")
        p.add_argument("kind", choices=KINDS)
        p.add_argument("target", help="municipality code (202011), prefecture code (200000) or recipient id "
                                      "(nenkin)")
        p.add_argument("--reason", required=True, help="why (incident or ticket reference): kept in the record")
        _common_arguments(p)
        p.set_defaults(func=_cmd_action, action=action)
    st = sub.add_parser("isolation-status", help="list isolations in force, checked against the live resources",
                        description="Every isolation in force (and every restore with a pending step), each "
                                    "control checked against the live resources. Exit 1 if a control of an "
                                    "isolation is no longer in force (DRIFT): run isolate again to re-apply it.")
    st.add_argument("--all", action="store_true", help="also list restored targets (their last record)")
    _common_arguments(st)
    st.set_defaults(func=_cmd_status)


def _common_arguments(p: Any) -> None:
    p.add_argument("--deployment", default=None, help="deployment configuration name (default: nagano-demo)")
    p.add_argument("--endpoint-url", default=None,
                   help="the embedded AWS (local mode); functions are not invoked through it (see docs/emergency.md)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _emergency(args: Any) -> Emergency:
    import os

    from infra.config import load_deployment

    deployment = load_deployment(args.deployment)
    invoke: Any = Emergency._DEFAULT
    if args.endpoint_url:
        from embedded_aws.server import local_credentials

        os.environ["AWS_ENDPOINT_URL"] = args.endpoint_url
        for name, value in local_credentials(args.endpoint_url, deployment.region).items():
            os.environ.setdefault(name, value)
        invoke = None  # moto would try Docker; the local runner delivers what it held itself
    os.environ.setdefault("AWS_DEFAULT_REGION", deployment.region)
    return Emergency(deployment, invoke_event=invoke, clock=args.clock)


def _cmd_action(args: Any) -> int:
    import sys

    try:
        em = _emergency(args)
        act = em.isolate if args.action == "isolate" else em.restore
        outcome = act(args.kind, args.target, reason=args.reason)
    except EmergencyError as exc:
        print(f"jukinet {args.action}: {exc}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError) as exc:
        print(f"jukinet {args.action}: an AWS call failed: {exc}\nThe isolation record (if written) keeps the "
              f"previous state: fix the cause and run the command again.", file=sys.stderr)
        return 1
    print(json.dumps(outcome.to_dict(), ensure_ascii=False, indent=2, default=str) if args.json
          else format_outcome(outcome))
    return 0


def _cmd_status(args: Any) -> int:
    import sys

    try:
        lines = _emergency(args).status(include_restored=args.all)
    except (ClientError, BotoCoreError) as exc:
        print(f"jukinet isolation-status: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([line.to_dict() for line in lines], ensure_ascii=False, indent=2, default=str))
    else:
        print(format_status(lines))
    return 1 if any(line.drift for line in lines) else 0
