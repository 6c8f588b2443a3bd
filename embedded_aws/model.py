"""What a local deployment produced: the records the deployer hands to the runner and
prints for the user."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

ResourceState = Literal[
    "CREATED",  # by moto's CloudFormation
    "CREATED_VIA_API",  # dropped from the template, created through the service API
    "PRECREATED_VIA_API",  # created through the API before the stack (KMS asymmetric keys)
    "DRIVEN_BY_RUNNER",  # exists disabled; the local runner plays its part (SQS mappings)
    "SKIPPED",  # irrelevant locally (CDK metadata)
    "NOT_EMULATED",
]


@dataclass(frozen=True)
class ResourceStatus:
    logical_id: str
    resource_type: str
    state: ResourceState
    physical_id: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class NotEmulated:
    """Something of the deployed design that local mode does not reproduce."""

    stack: str | None  # None: applies to the whole environment
    logical_id: str | None
    resource_type: str | None
    feature: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.stack}/{self.logical_id} ({self.resource_type})" if self.logical_id else (self.stack or "all")
        return f"{where}: {self.feature} — {self.reason}"


@dataclass(frozen=True)
class EventSourceMappingSpec:
    """An SQS event source mapping as synthesized (moto holds it disabled)."""

    stack: str
    logical_id: str
    uuid: str
    function_arn: str
    event_source_arn: str
    enabled: bool  # as synthesized: the runner drives only enabled mappings


@dataclass(frozen=True)
class BucketNotification:
    """One S3 → Lambda notification of a bucket (CloudFormation's LambdaConfigurations), or one
    S3 → SQS notification (QueueConfigurations: ``queue_arn`` set, ``function_arn`` empty), which
    the embedded AWS delivers itself; the runner needs to know which queues carry S3 events."""

    stack: str
    bucket_logical_id: str
    bucket: str
    function_arn: str
    event: str  # "s3:ObjectCreated:*", "s3:ObjectCreated:Put"...
    prefix: str = ""
    suffix: str = ""
    configuration_id: str = ""
    queue_arn: str = ""


@dataclass
class StackReport:
    artifact_id: str
    stack_name: str
    stack_id: str
    account: str
    region: str
    status: str
    resources: list[ResourceStatus] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)  # the template's own outputs
    seconds: float = 0.0

    def physical_id(self, logical_id: str) -> str | None:
        for r in self.resources:
            if r.logical_id == logical_id:
                return r.physical_id
        return None

    def resources_of_type(self, resource_type: str) -> list[ResourceStatus]:
        return [r for r in self.resources if r.resource_type == resource_type]


@dataclass
class DeployedEnvironment:
    endpoint_url: str
    stacks: dict[str, StackReport]  # by stack name, in deployment order
    event_source_mappings: list[EventSourceMappingSpec]
    bucket_notifications: list[BucketNotification]
    not_emulated: list[NotEmulated]
    asset_buckets: dict[tuple[str, str], str]  # (account, region) -> bootstrap bucket
    dead_letter_targets: dict[str, str] = field(default_factory=dict)  # function ARN -> SQS/SNS ARN
    template_notes: dict[str, list[Any]] = field(default_factory=dict)  # stack -> template.Note
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def regions(self) -> list[str]:
        return sorted({s.region for s in self.stacks.values()})

    def client(self, service: str, region: str | None = None, account_id: str | None = None) -> Any:
        """A client of the embedded AWS, one per service, region and account for the life of this
        object (a new boto3 client costs tens of milliseconds; the flow-log recorder asks for one
        at every flush)."""
        from .server import local_client

        first = next(iter(self.stacks.values()))
        key = (service, region or first.region, account_id or first.account)
        cache = self.__dict__.setdefault("_clients", {})
        if key not in cache:
            cache[key] = local_client(self.endpoint_url, *key)
        return cache[key]

    def physical_id(self, stack: str, logical_id: str) -> str | None:
        return self.stacks[stack].physical_id(logical_id)

    def function_arns(self) -> list[str]:
        arns: list[str] = []
        for stack in self.stacks.values():
            for r in stack.resources_of_type("AWS::Lambda::Function"):
                if r.physical_id and r.state == "CREATED":
                    arns.append(f"arn:aws:lambda:{stack.region}:{stack.account}:function:{r.physical_id}")
        return arns

    def print_report(self, file: TextIO | None = None) -> None:
        out = file or sys.stdout
        for stack in self.stacks.values():
            counts: dict[str, int] = {}
            for r in stack.resources:
                counts[r.state] = counts.get(r.state, 0) + 1
            summary = ", ".join(f"{n} {state.lower().replace('_', ' ')}" for state, n in sorted(counts.items()))
            print(f"{stack.stack_name} [{stack.region}] {stack.status} in {stack.seconds:.1f}s: {summary}", file=out)
            for r in stack.resources:
                if r.state not in ("CREATED",):
                    what = " ".join(x for x in (r.physical_id, r.detail) if x)
                    print(f"  {r.state:<19} {r.logical_id} ({r.resource_type}) {what}", file=out)
        if self.not_emulated:
            print("Not emulated locally:", file=out)
            for item in self.not_emulated:
                print(f"  - {item}", file=out)
