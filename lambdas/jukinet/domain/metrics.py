"""The names the runtime's metrics and the alarms that watch them agree on: one home for both
(the runtime publishes under them, ``infra/`` builds alarms, dashboards and metric filters on
them, the monthly monitoring report reads them). No AWS here.

The handlers' metrics carry the dimensions ``tier`` and ``service`` (``observability.use_tier``);
the network watch's metric filters cannot add a dimension, so each tier's network metrics get a
namespace of their own (``network_namespace``)."""

from __future__ import annotations

METRICS_NAMESPACE = "Jukinet"
SECURITY_NAMESPACE = f"{METRICS_NAMESPACE}/Security"

BREAK_GLASS_METRIC_PREFIX = "BreakGlassUsed-"


def break_glass_metric(tier: str) -> str:
    """The metric the account trail's filter counts AssumeRole calls of a tier's break-glass role in
    (namespace ``SECURITY_NAMESPACE``)."""
    return f"{BREAK_GLASS_METRIC_PREFIX}{tier}"


# The network watch (infra/components/network_watch.py): a metric filter per kind, per tier.
REJECTS_METRIC = "FlowLogRejects"
LEAVING_METRIC = "FlowLogLeavingVpc"
DNS_METRIC = "DnsOutsideEndpointZones"
NETWORK_WATCH_METRICS: tuple[str, ...] = (REJECTS_METRIC, LEAVING_METRIC, DNS_METRIC)
"""Summed per tier as "flow-log rejects" by the monitoring report; a name with no data is 0."""


def network_namespace(tier: str) -> str:
    """The namespace of one tier's network-watch metrics."""
    return f"{METRICS_NAMESPACE}/Network/{tier}"


__all__ = ["BREAK_GLASS_METRIC_PREFIX", "DNS_METRIC", "LEAVING_METRIC", "METRICS_NAMESPACE", "NETWORK_WATCH_METRICS", "REJECTS_METRIC",
           "SECURITY_NAMESPACE", "break_glass_metric", "network_namespace"]
