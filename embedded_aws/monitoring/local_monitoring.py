"""The parts wired for a deployed environment: ``LocalMonitoring``."""

from __future__ import annotations

import datetime as dt
from typing import Any, Self, TextIO

from .alarm_data import AlarmVerdict
from .alarms import NotificationLog, evaluate_alarms
from .emf import MetricSink
from .filters import LogMetricFilters, MetricFilterReport
from .service_metrics import ServiceMetrics

# -- all together --------------------------------------------------------------------------------


class LocalMonitoring:
    """The parts wired for a deployed environment::

        monitoring = LocalMonitoring(env, stream=log_file)
        with LocalRunner(env, log_stream=monitoring.sink) as runner:
            ...
        verdicts = monitoring.evaluate()          # flush EMF, apply metric filters, evaluate
        print_alarm_status(console, verdicts)

    ``service_metrics=True`` also publishes the ``AWS/SQS`` and ``AWS/Lambda`` metrics local
    mode can observe before each evaluation (``ServiceMetrics``; pass the runner to
    ``evaluate`` for the Lambda ones), so alarms such as ``-dlq-not-empty`` or
    ``-processor-errors`` see data."""

    def __init__(self, env: Any, *, stream: TextIO | None = None, forward_logs: bool = True,
                 since: dt.datetime | int | None = None, service_metrics: bool = False,
                 notifications: NotificationLog | None = None) -> None:
        self.env = env
        self.notifications = notifications
        self.sink = MetricSink(env, stream, forward_logs=forward_logs)
        self.filters = LogMetricFilters(env, since=since)
        self.service_metrics = ServiceMetrics(env) if service_metrics else None
        self.last_filter_report: MetricFilterReport | None = None

    def evaluate(self, now: dt.datetime | None = None, *, runner: Any | None = None,
                 **kwargs: Any) -> list[AlarmVerdict]:
        """Flush the sink, apply the metric filters, publish service metrics (if enabled) and
        evaluate every alarm (``evaluate_alarms`` keyword arguments pass through)."""
        self.sink.flush()
        self.last_filter_report = self.filters.apply(now)
        if self.service_metrics is not None:
            if runner is not None:
                self.service_metrics.runner = runner
            self.service_metrics.publish(now)
        kwargs.setdefault("notifications", self.notifications)
        return evaluate_alarms(self.env, now, **kwargs)

    def close(self) -> None:
        self.sink.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
