"""Alarms evaluated for real in local mode.

moto stores alarms, metric filters and metric data but never evaluates anything: an alarm
stays in the state it was created in, a metric filter never counts a log line, and the EMF
lines Powertools prints are just text. This module closes the loop, over whatever the
deployment put into the embedded AWS (no list of alarms or metrics is kept here):

* ``MetricSink`` - a text stream for ``LocalRunner(log_stream=...)``. It passes every line
  on to an optional underlying stream and turns Embedded Metric Format lines into
  ``PutMetricData`` calls, as CloudWatch Logs does for a Lambda function's output: each
  dimension set of each directive, values, unit, storage resolution and timestamp as
  printed, into the account and region of the function that printed it (the credentials
  and region of the invocation's environment). With ``forward_logs`` every line written
  during an invocation also goes to the function's log group, as Lambda's log agent would.
* ``apply_metric_filters`` / ``LogMetricFilters`` - reads the deployed metric filters
  (``DescribeMetricFilters``), evaluates their patterns on new events of their log groups
  (``FilterLogEvents``) and puts the resulting metric data (metric value, dimensions, unit,
  default value). Unsupported pattern syntax raises ``UnsupportedFilterPattern``.
* ``evaluate_alarms`` - computes every deployed alarm's state from the metric data in
  moto's CloudWatch (``GetMetricData``) with CloudWatch's rules: aligned periods,
  ``EvaluationPeriods``, ``DatapointsToAlarm``, the statistic, threshold, comparison and
  ``TreatMissingData``; metric math alarms with the expression subset below; anomaly
  detection bands with an explicit local approximation. The state is set in moto
  (``SetAlarmState``) so ``DescribeAlarms`` shows it, and a transition notifies the alarm's
  SNS actions as CloudWatch would — and, with a ``NotificationLog``, is written as one line
  (time, tier, alarm, old→new, reason) to ``.jukinet/notifications.log``: what would be sent.
* ``print_alarm_status`` - the verdicts as a rich table.

What is deliberately *not* reproduced (and said so in each verdict's reason): metrics AWS
services publish themselves (``AWS/Lambda``, ``AWS/SQS``, ``AWS/ApiGateway``...) have no
local source, so alarms on them see no data; CloudWatch's anomaly-detection model is
approximated (mean +/- k standard deviations of the preceding history, and only with at
least ``ANOMALY_MIN_HISTORY`` of it). ``docs/local-mode.md`` ("Alarms locally") has the
details and moto's limits.

The package is split along its seams (decision 0052), this module re-exports their names:
``_base`` (states, limits, errors, clients), ``emf`` (metric data), ``filters`` (metric filter
patterns and their application), ``alarm_data`` (verdicts, statistic queries, the anomaly band),
``metric_math``, ``alarms`` (evaluation, notification, presentation), ``service_metrics``,
``local_monitoring`` (``LocalMonitoring``).
"""

from __future__ import annotations

from ._base import (
    ALARM,
    ANOMALY_MIN_DATAPOINTS,
    ANOMALY_MIN_HISTORY,
    ANOMALY_TRAINING_WINDOW,
    INSUFFICIENT_DATA,
    MAX_METRIC_AGE,
    MAX_METRIC_FUTURE,
    NEEDS_HISTORY,
    OK,
    STATES,
    UTC,
    ClientFactory,
    EmfError,
    MonitoringError,
    UnsupportedAlarm,
    UnsupportedFilterPattern,
)
from .alarm_data import (
    AlarmVerdict,
    EvaluatedDatapoint,
)
from .alarms import (
    NotificationLog,
    evaluate_alarms,
    print_alarm_status,
)
from .emf import (
    MetricDatum,
    MetricSink,
    parse_emf,
    put_metric_data,
)
from .filters import (
    FilterPattern,
    LogMetricFilters,
    MetricFilterReport,
    apply_metric_filters,
    parse_filter_pattern,
)
from .local_monitoring import (
    LocalMonitoring,
)
from .service_metrics import (
    ServiceMetrics,
)

__all__ = [
    "ALARM",
    "ANOMALY_MIN_DATAPOINTS",
    "ANOMALY_MIN_HISTORY",
    "ANOMALY_TRAINING_WINDOW",
    "AlarmVerdict",
    "ClientFactory",
    "EmfError",
    "EvaluatedDatapoint",
    "FilterPattern",
    "INSUFFICIENT_DATA",
    "LocalMonitoring",
    "LogMetricFilters",
    "MAX_METRIC_AGE",
    "MAX_METRIC_FUTURE",
    "MetricDatum",
    "MetricFilterReport",
    "MetricSink",
    "MonitoringError",
    "NEEDS_HISTORY",
    "NotificationLog",
    "OK",
    "STATES",
    "ServiceMetrics",
    "UTC",
    "UnsupportedAlarm",
    "UnsupportedFilterPattern",
    "apply_metric_filters",
    "evaluate_alarms",
    "parse_emf",
    "parse_filter_pattern",
    "print_alarm_status",
    "put_metric_data",
]
