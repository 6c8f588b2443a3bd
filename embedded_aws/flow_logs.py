"""Flow-log records for what a function does on the network, in local mode.

Locally the functions run on the host network (``VPC isolation`` is listed as not emulated):
nothing stops a call, and no VPC writes a flow log. ``FlowLogRecorder`` writes, into the tier's
flow-log group, the records the VPC would have written for what the runner can see of an
invocation, in the deployed format (``infra/components/network_watch.py``: the 14 default
version-2 fields, then ``flow-direction`` and ``pkt-dst-aws-service``), so the deployed metric
filters and alarms (``flow-log-rejects``, ``flow-log-leaving-vpc``) are evaluated on them by
``monitoring/`` like any other log:

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

**DNS**: into the tier's query-log group (the one the deployed ``dns-outside-endpoint-zones``
filter reads), a Route 53 Resolver query-log record (JSON) for each call's regional service name
(``sqs.<region>.amazonaws.com.``) and for each name the function resolves itself
(``socket.getaddrinfo``): such a name gets a public documentation-range address, as the VPC's
resolver would answer a public name, and the connection that follows is recorded as leaving.

**What it cannot see** (said again in ``docs/local-mode.md``): an endpoint policy's refusal
(an HTTP 403 inside an accepted connection, not a flow-log matter; endpoint policies are not
evaluated locally anyway), traffic that does not start in a function (the existing systems'
uploads, API clients), and addresses: the function's and the endpoints' addresses are made up
inside the VPC's CIDR, public ones from documentation ranges.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
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


REJECTS_SUFFIX, DNS_SUFFIX = "-flow-log-rejects", "-dns-outside-endpoint-zones"  # infra/components/network_watch.py
PUBLIC_AMAZON = "52.95.0.{n}"  # a stand-in public AWS address for services without an endpoint
GATEWAY_ADDRESS = {"s3": ("52.219.0.{n}", "S3"), "dynamodb": ("52.94.0.{n}", "DYNAMODB")}
ALLOWED_PORT = 443


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


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
    dns_log_group: str | None = None  # the VPC's Route 53 Resolver query log group

    def address(self, key: str) -> str:
        return _host(ipaddress.ip_network(self.cidr), key)

    def inside(self, address: str) -> bool:
        with contextlib.suppress(ValueError):
            return ipaddress.ip_address(address) in ipaddress.ip_network(self.cidr)
        return False


def view_of_function(client: Callable[[str, str, str], Any], name: str, region: str, account: str,
                     vpcs: dict[tuple[str, str, str], TierNetworkView | None] | None = None
                     ) -> TierNetworkView | None:
    """The VPC of a deployed function from the embedded AWS: its subnets' VPC, CIDR, flow-log
    group (``DescribeFlowLogs``) and endpoints (``DescribeVpcEndpoints``); None outside a VPC.
    ``vpcs``: the views already read, by (VPC, region, account) — a tier's functions share its
    VPC, so each VPC is described once (79 functions, 5 VPCs in the Nagano assembly)."""
    config = client("lambda", region, account).get_function(FunctionName=name)["Configuration"]
    subnets = (config.get("VpcConfig") or {}).get("SubnetIds") or []
    if not subnets:
        return None
    ec2 = client("ec2", region, account)
    vpc_id = ec2.describe_subnets(SubnetIds=subnets[:1])["Subnets"][0]["VpcId"]
    if vpcs is None:
        return _view_of_vpc(client, ec2, vpc_id, region, account)
    if (vpc_id, region, account) not in vpcs:
        vpcs[(vpc_id, region, account)] = _view_of_vpc(client, ec2, vpc_id, region, account)
    return vpcs[(vpc_id, region, account)]


def _view_of_vpc(client: Callable[[str, str, str], Any], ec2: Any, vpc_id: str, region: str, account: str
                 ) -> TierNetworkView | None:
    cidr = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]["CidrBlock"]
    flow = [f for f in ec2.describe_flow_logs(Filters=[{"Name": "resource-id", "Values": [vpc_id]}])["FlowLogs"]
            if f.get("LogDestinationType", "cloud-watch-logs") == "cloud-watch-logs" and f.get("LogGroupName")]
    if not flow:
        return None
    interface, gateway = set(), set()
    for e in ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["VpcEndpoints"]:
        service = e["ServiceName"].rsplit(".", 1)[-1]
        (gateway if e.get("VpcEndpointType") == "Gateway" else interface).add(service)
    group = flow[0]["LogGroupName"]
    return TierNetworkView(vpc_id, cidr, group, region, account, frozenset(interface), frozenset(gateway),
                           _dns_log_group(client("logs", region, account), group))


def _dns_log_group(logs: Any, flow_group: str) -> str | None:
    """The query-log group of the same tier: the Resolver's query logging config is not emulated,
    so it is found through the deployed metric filters — ``<prefix>-<tier>-flow-log-rejects`` on the
    flow-log group names the tier, ``<prefix>-<tier>-dns-outside-endpoint-zones`` the DNS group."""
    for f in logs.describe_metric_filters(logGroupName=flow_group).get("metricFilters", []):
        if f["filterName"].endswith(REJECTS_SUFFIX):
            tier_prefix = f["filterName"][:-len(REJECTS_SUFFIX)]
            found = logs.describe_metric_filters(filterNamePrefix=tier_prefix + DNS_SUFFIX).get("metricFilters", [])
            return found[0]["logGroupName"] if found else None
    return None


@dataclass
class _Active:
    function: str
    view: TierNetworkView
    lines: list[tuple[int, str]] = field(default_factory=list)
    queries: list[tuple[int, str]] = field(default_factory=list)


class FlowLogRecorder:
    """Writes flow-log records for the invocations it is armed for (``armed(function, view)``),
    once ``installed()``. ``now`` gives the records' time (default: the process clock); the
    records are put when the armed block ends (``PutLogEvents`` into the view's log group)."""

    def __init__(self, client: Callable[[str, str, str], Any], *,
                 now: Callable[[], float] | None = None, embedded_endpoint: tuple[str, int] | None = None) -> None:
        self.client = client
        self.now = now or time.time
        self.embedded_endpoint = embedded_endpoint
        self.records: list[str] = []  # every flow-log line written, for tests and reports
        self.queries: list[str] = []  # every DNS query-log line written
        self._local = threading.local()
        self._views: dict[tuple[str, str, str], TierNetworkView | None] = {}
        self._vpcs: dict[tuple[str, str, str], TierNetworkView | None] = {}  # by (VPC, region, account)

    def view(self, function: str, region: str, account: str) -> TierNetworkView | None:
        key = (function, region, account)
        if key not in self._views:
            try:
                self._views[key] = view_of_function(self.client, function, region, account, self._vpcs)
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

        real_getaddrinfo = socket.getaddrinfo

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            active = getattr(recorder._local, "active", None)
            if active is not None and isinstance(host, str) and not getattr(_MACHINERY, "on", False) \
                    and not _is_address(host) and host != "localhost":
                host = recorder._resolve(active, host)
            return real_getaddrinfo(host, port, *args, **kwargs)

        socket.socket.connect = connect  # type: ignore[method-assign]
        socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
        BaseClient._make_api_call = call  # type: ignore[method-assign]
        try:
            yield self
        finally:
            socket.socket.connect = real_connect  # type: ignore[method-assign]
            socket.getaddrinfo = real_getaddrinfo  # type: ignore[assignment]
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

    def _query(self, active: _Active, name: str, answer: str) -> None:
        """A Route 53 Resolver query-log record (JSON, version 1.100000) for ``name``."""
        if active.view.dns_log_group is None:
            return
        view, now = active.view, self.now()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        active.queries.append((int(now * 1000), json.dumps({
            "version": "1.100000", "account_id": view.account, "region": view.region, "vpc_id": view.vpc_id,
            "query_timestamp": stamp, "query_name": name.rstrip(".") + ".", "query_type": "A", "query_class": "IN",
            "rcode": "NOERROR", "answers": [{"Rdata": answer, "Type": "A", "Class": "IN"}],
            "srcaddr": view.address(active.function), "srcport": "53000", "transport": "UDP",
            "srcids": {"resolver_endpoint": "-", "instance": self._eni(active.function)}})))

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
        name = f"{prefix}.{region}.amazonaws.com"  # the name boto3 resolves on AWS
        if region == view.region and prefix in view.interface_services:
            address = view.address(f"vpce-{prefix}")  # the endpoint's private DNS answers inside the VPC
            self._query(active, name, address)
            self._record(active, address, ALLOWED_PORT, "ACCEPT")
        elif region == view.region and prefix in view.gateway_services:
            pattern, service = GATEWAY_ADDRESS[prefix]
            self._query(active, name, pattern.format(n=n))
            self._record(active, pattern.format(n=n), ALLOWED_PORT, "ACCEPT", service)
        else:  # no endpoint: the public name, the public address, no route
            self._query(active, name, PUBLIC_AMAZON.format(n=n))
            self._record(active, PUBLIC_AMAZON.format(n=n), ALLOWED_PORT, "ACCEPT", "AMAZON")

    def _resolve(self, active: _Active, host: str) -> str:
        """A name the function resolves itself: the VPC's resolver answers public names too, so it
        gets a (documentation-range) public address, and its query is logged."""
        n = int(hashlib.sha256(host.encode()).hexdigest(), 16) % 250 + 1
        address = f"198.51.100.{n}"
        self._query(active, host, address)
        return address

    def _direct(self, active: _Active, address: str, port: int) -> None:
        allowed = port == ALLOWED_PORT
        self._record(active, address, port, "ACCEPT" if allowed else "REJECT")
        if not active.view.inside(address) or not allowed:
            raise TimeoutError(f"{address}:{port}: no route from the VPC (flow log: "
                               f"{'ACCEPT' if allowed else 'REJECT'}); local mode refuses it as the VPC would")

    def _flush(self, active: _Active) -> None:
        view = active.view
        for group, lines, kept in ((view.log_group, active.lines, self.records),
                                   (view.dns_log_group, active.queries, self.queries)):
            if not lines or group is None:
                continue
            logs = self.client("logs", view.region, view.account)
            stream = f"{self._eni(active.function)}-all"
            with contextlib.suppress(ClientError):
                logs.create_log_stream(logGroupName=group, logStreamName=stream)
            events = sorted(lines)
            logs.put_log_events(logGroupName=group, logStreamName=stream,
                                logEvents=[{"timestamp": t, "message": m} for t, m in events])
            kept += [m for _, m in events]
