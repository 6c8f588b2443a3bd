"""Flow-log records for what a function does on the network, in local mode.

Locally the functions run on the host network (``VPC isolation`` is listed as not emulated):
nothing stops a call, and no VPC writes a flow log. ``FlowLogRecorder`` writes, into the tier's
flow-log group, the records the VPC would have written for what the runner can see of an
invocation, in the deployed format (``infra/components/network_watch.py``: the 14 default
version-2 fields, then ``flow-direction`` and ``pkt-dst-aws-service``), so the deployed metric
filters and alarms (``flow-log-rejects``, ``flow-log-leaving-vpc``) are evaluated on them by
``monitoring.py`` like any other log:

* **each AWS call** the function makes through boto3 (``BaseClient._make_api_call``, wrapped): if the
  tier's VPC has an endpoint for the service in that region (``DescribeVpcEndpoints``), an
  ``ACCEPT`` ``egress`` record to the endpoint — an address inside the VPC for an interface
  endpoint, the service's public range with ``pkt-dst-aws-service`` ``S3``/``DYNAMODB`` for a
  gateway endpoint; otherwise the call would resolve to the service's public address and find
  no route: an ``ACCEPT`` ``egress`` record to a public address (``AMAZON``). The call itself
  still goes to the embedded AWS.
* **each other socket connection** the function opens (``socket.connect`` during the
  invocation): to TCP 443 an ``ACCEPT`` ``egress`` record to that address (leaving, unless it is
  inside the VPC); to any other port a ``REJECT`` record — the functions' security group
  allows only TCP 443 out. Either way the connection **fails** with ``TimeoutError``, as it
  would in the VPC (no route; a rejected packet is dropped, not refused).

**What it cannot see** (said again in ``docs/local-mode.md``): an endpoint policy's refusal
(an HTTP 403 inside an accepted connection, not a flow-log matter; endpoint policies are not
evaluated locally anyway), DNS lookups (a function's ``getaddrinfo`` is not recorded: the DNS
query log of the deployed design has no local source), traffic that does not start in a
function (the existing systems' uploads, API clients), and addresses: the function's and the
endpoints' addresses are made up inside the VPC's CIDR, public ones from documentation ranges.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import ClientError

__all__ = ["FlowLogRecorder", "TierNetworkView", "flow_log_line", "not_the_function"]

_MACHINERY = threading.local()


@contextlib.contextmanager
def not_the_function() -> Iterator[None]:
    """Calls made in this block belong to local mode's own machinery (the log agent forwarding
    a function's output, ``MetricSink``), not to the function: no flow-log record."""
    previous = getattr(_MACHINERY, "on", False)
    _MACHINERY.on = True
    try:
        yield
    finally:
        _MACHINERY.on = previous

PUBLIC_AMAZON = "52.95.0.{n}"  # a stand-in public AWS address for services without an endpoint
GATEWAY_ADDRESS = {"s3": ("52.219.0.{n}", "S3"), "dynamodb": ("52.94.0.{n}", "DYNAMODB")}
ALLOWED_PORT = 443


def flow_log_line(*, account: str, eni: str, src: str, dst: str, src_port: int, dst_port: int, action: str,
                  start: int, direction: str = "egress", service: str = "-", protocol: int = 6, packets: int = 1,
                  size: int = 60) -> str:
    """One record in the deployed format (default v2 fields, flow-direction, pkt-dst-aws-service)."""
    return (f"2 {account} {eni} {src} {dst} {src_port} {dst_port} {protocol} {packets} {size} {start} {start + 60} "
            f"{action} OK {direction} {service}")


def _host(network: ipaddress.IPv4Network, key: str) -> str:
    """A stable made-up address inside ``network`` for ``key`` (skipping AWS's first four)."""
    hosts = network.num_addresses - 5
    n = int(hashlib.sha256(key.encode()).hexdigest(), 16) % hosts
    return str(network.network_address + 4 + n)


@dataclass
class TierNetworkView:
    """What the recorder needs of one function's VPC."""

    vpc_id: str
    cidr: str
    log_group: str
    region: str
    account: str
    interface_services: frozenset[str] = frozenset()  # endpoint prefixes: "sqs", "kms", ...
    gateway_services: frozenset[str] = frozenset()  # "s3", "dynamodb"

    def address(self, key: str) -> str:
        return _host(ipaddress.ip_network(self.cidr), key)

    def inside(self, address: str) -> bool:
        with contextlib.suppress(ValueError):
            return ipaddress.ip_address(address) in ipaddress.ip_network(self.cidr)
        return False


def view_of_function(client: Callable[[str, str, str], Any], name: str, region: str, account: str
                     ) -> TierNetworkView | None:
    """The VPC of a deployed function from the embedded AWS: its subnets' VPC, CIDR, flow-log
    group (``DescribeFlowLogs``) and endpoints (``DescribeVpcEndpoints``); None outside a VPC."""
    config = client("lambda", region, account).get_function(FunctionName=name)["Configuration"]
    subnets = (config.get("VpcConfig") or {}).get("SubnetIds") or []
    if not subnets:
        return None
    ec2 = client("ec2", region, account)
    vpc_id = ec2.describe_subnets(SubnetIds=subnets[:1])["Subnets"][0]["VpcId"]
    cidr = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]["CidrBlock"]
    flow = [f for f in ec2.describe_flow_logs(Filters=[{"Name": "resource-id", "Values": [vpc_id]}])["FlowLogs"]
            if f.get("LogDestinationType", "cloud-watch-logs") == "cloud-watch-logs" and f.get("LogGroupName")]
    if not flow:
        return None
    interface, gateway = set(), set()
    for e in ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["VpcEndpoints"]:
        service = e["ServiceName"].rsplit(".", 1)[-1]
        (gateway if e.get("VpcEndpointType") == "Gateway" else interface).add(service)
    return TierNetworkView(vpc_id, cidr, flow[0]["LogGroupName"], region, account, frozenset(interface),
                           frozenset(gateway))


@dataclass
class _Active:
    function: str
    view: TierNetworkView
    lines: list[tuple[int, str]] = field(default_factory=list)


class FlowLogRecorder:
    """Writes flow-log records for the invocations it is armed for (``armed(function, view)``),
    once ``installed()``. ``now`` gives the records' time (default: the process clock); the
    records are put when the armed block ends (``PutLogEvents`` into the view's log group)."""

    def __init__(self, client: Callable[[str, str, str], Any], *,
                 now: Callable[[], float] | None = None, embedded_endpoint: tuple[str, int] | None = None) -> None:
        self.client = client
        self.now = now or time.time
        self.embedded_endpoint = embedded_endpoint
        self.records: list[str] = []  # every line written, for tests and reports
        self._local = threading.local()
        self._views: dict[tuple[str, str, str], TierNetworkView | None] = {}

    def view(self, function: str, region: str, account: str) -> TierNetworkView | None:
        key = (function, region, account)
        if key not in self._views:
            try:
                self._views[key] = view_of_function(self.client, function, region, account)
            except (ClientError, KeyError, IndexError):
                self._views[key] = None
        return self._views[key]

    # -- arming ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def installed(self) -> Iterator[FlowLogRecorder]:
        real_call = BaseClient._make_api_call
        real_connect = socket.socket.connect
        recorder = self

        def call(client: Any, operation: str, params: Any) -> Any:
            recorder._before_call(client.meta.service_model.endpoint_prefix, client.meta.region_name)
            return real_call(client, operation, params)

        def connect(sock: socket.socket, address: Any) -> Any:
            active = getattr(recorder._local, "active", None)
            if active is not None and sock.family == socket.AF_INET and not recorder._embedded(address) \
                    and not getattr(_MACHINERY, "on", False):
                recorder._direct(active, str(address[0]), int(address[1]))
            return real_connect(sock, address)

        socket.socket.connect = connect  # type: ignore[method-assign]
        BaseClient._make_api_call = call  # type: ignore[method-assign]
        try:
            yield self
        finally:
            socket.socket.connect = real_connect  # type: ignore[method-assign]
            BaseClient._make_api_call = real_call  # type: ignore[method-assign]

    @contextlib.contextmanager
    def armed(self, function: str, view: TierNetworkView | None) -> Iterator[None]:
        if view is None:
            yield
            return
        previous = getattr(self._local, "active", None)
        active = self._local.active = _Active(function, view)
        try:
            yield
        finally:
            self._local.active = previous
            self._flush(active)

    def _embedded(self, address: Any) -> bool:
        if self.embedded_endpoint is None:
            return str(address[0]) in ("127.0.0.1", "::1", "localhost")
        return (str(address[0]), int(address[1])) == self.embedded_endpoint

    # -- records -----------------------------------------------------------------------------

    def _record(self, active: _Active, dst: str, port: int, action: str, service: str = "-") -> None:
        view = active.view
        start = int(self.now())
        src_port = 32768 + len(active.lines) % 28000
        line = flow_log_line(account=view.account, eni=self._eni(active.function), src=view.address(active.function),
                             dst=dst, src_port=src_port, dst_port=port, action=action, start=start,
                             service=service)
        active.lines.append((start * 1000, line))

    @staticmethod
    def _eni(function: str) -> str:
        return "eni-" + hashlib.sha256(function.encode()).hexdigest()[:17]

    def _before_call(self, prefix: str, region: str | None) -> None:
        active = getattr(self._local, "active", None)
        if active is None or getattr(_MACHINERY, "on", False):
            return
        region = region or active.view.region
        view = active.view
        n = len(active.lines) % 250 + 1
        if region == view.region and prefix in view.interface_services:
            self._record(active, view.address(f"vpce-{prefix}"), ALLOWED_PORT, "ACCEPT")
        elif region == view.region and prefix in view.gateway_services:
            address, service = GATEWAY_ADDRESS[prefix]
            self._record(active, address.format(n=n), ALLOWED_PORT, "ACCEPT", service)
        else:  # no endpoint: the public name, the public address, no route
            self._record(active, PUBLIC_AMAZON.format(n=n), ALLOWED_PORT, "ACCEPT", "AMAZON")

    def _direct(self, active: _Active, address: str, port: int) -> None:
        allowed = port == ALLOWED_PORT
        self._record(active, address, port, "ACCEPT" if allowed else "REJECT")
        if not active.view.inside(address) or not allowed:
            raise TimeoutError(f"{address}:{port}: no route from the VPC (flow log: "
                               f"{'ACCEPT' if allowed else 'REJECT'}); local mode refuses it as the VPC would")

    def _flush(self, active: _Active) -> None:
        if not active.lines:
            return
        view = active.view
        logs = self.client("logs", view.region, view.account)
        stream = f"{self._eni(active.function)}-all"
        with contextlib.suppress(ClientError):
            logs.create_log_stream(logGroupName=view.log_group, logStreamName=stream)
        events = sorted(active.lines)
        logs.put_log_events(logGroupName=view.log_group, logStreamName=stream,
                            logEvents=[{"timestamp": t, "message": m} for t, m in events])
        self.records += [m for _, m in events]
