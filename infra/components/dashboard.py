"""One CloudWatch dashboard per tier stack, named ``<prefix>-<tier>`` (docs/operations.md, "Dashboards").

Every tier: the status of all the tier's alarms (found at synth time by name, ``<prefix>-<tier>-…``,
in every stack of the tier's account and region — the CS alarms live in the CS stacks, added
after the base stack; alarms added to the tier by any construct are listed too), then:

* prefecture and national: notices stored, duplicate and dead-lettered; the inbound queue's
  depth and age and its DLQ; the processor's invocations, errors, throttles, concurrency and
  duration; signature failures and sequence gaps;
* national with recipients, also the provision API: requests, records provided, not-found
  answers, disclosures; refusals, unauthorised attempts and gateway refusals; the anomaly
  signals; records provided per configured recipient; the REST API and the provision
  functions; the batch queue and its DLQ; the hourly seals;
* municipality: notices sent, rows rejected and duplicate files of the tier's CSs; the CSs'
  invocations, errors, throttles and longest duration summed over every CS of the tier
  (metric math over each function by name); the failed-S3-event queue; with the channel between
  municipalities, its messages (requests sent, answers sent, settled, repeated, dead-lettered),
  the channel queue and its DLQ, and the channel function.

Metric names and dimensions are those the runtime emits (``lambdas/``: ``add_metric``), the
same as the alarms use.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import aws_cdk as cdk
import jsii
from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from ..naming import METRICS_NAMESPACE, NATIONAL, PARTITION
from .counter import widgets_metrics
from .monitoring import PERIOD, custom_metric
from .security_monitoring import (
    NOT_FOUND_MIN_ANSWERS,
    NOT_FOUND_PERIOD,
    NOT_FOUND_RATIO_PERCENT,
    SEQUENTIAL_CODES_THRESHOLD,
    recipient_volume_metric,
)

if TYPE_CHECKING:
    from ..stacks.processing import Processing
    from ..stacks.provision import ProvisionApi
    from ..stacks.tier import TierStack

FULL_WIDTH = 24
GRAPH_HEIGHT = 6
ALARMS_PER_WIDGET = 100  # CloudWatch's limit for an alarm status widget
METRICS_PER_WIDGET = 500  # … and for a metric widget (a CS graph holds one metric per CS)
SUM, MAX, AVG = cloudwatch.Stats.SUM, cloudwatch.Stats.MAXIMUM, cloudwatch.Stats.AVERAGE


@jsii.implements(cloudwatch.IWidget)
class AlarmStatusWidgets:
    """Alarm status widgets of alarms whose names ``produce`` returns at synth time (so alarms
    added after the dashboard, or in other stacks of the tier, are listed too)."""

    def __init__(self, produce: Callable[[], list[str]], *, title: str) -> None:
        self._produce = produce
        self._title = title
        self._x = self._y = 0

    def _chunks(self) -> list[list[str]]:
        arns = self._produce()
        return [arns[i:i + ALARMS_PER_WIDGET] for i in range(0, len(arns), ALARMS_PER_WIDGET)] or [[]]

    @staticmethod
    def _height(n: int) -> int:
        return 2 + math.ceil(max(n, 1) / 4)

    @property
    def width(self) -> int:
        return FULL_WIDTH

    @property
    def height(self) -> int:
        return sum(self._height(len(c)) for c in self._chunks())

    @property
    def warnings(self) -> list[str] | None:
        return None

    @property
    def warnings_v2(self) -> dict[str, str] | None:
        return None

    def position(self, x: int, y: int) -> None:
        self._x, self._y = x, y

    def to_json(self) -> list[Any]:
        widgets, y = [], self._y
        chunks = self._chunks()
        for i, chunk in enumerate(chunks):
            title = self._title if len(chunks) == 1 else f"{self._title} ({i + 1}/{len(chunks)})"
            height = self._height(len(chunk))
            widgets.append({"type": "alarm", "width": FULL_WIDTH, "height": height, "x": self._x, "y": y,
                            "properties": {"title": title, "alarms": chunk, "sortBy": "stateUpdatedTimestamp"}})
            y += height
        return widgets


def _graph(title: str, left: Sequence[cloudwatch.IMetric], *, right: Sequence[cloudwatch.IMetric] = (),
           width: int = 8, right_label: str | None = None) -> cloudwatch.GraphWidget:
    return cloudwatch.GraphWidget(
        title=title, left=list(left), right=list(right), width=width, height=GRAPH_HEIGHT,
        right_y_axis=cloudwatch.YAxisProps(label=right_label, show_units=False) if right_label else None)


def _heading(markdown: str) -> cloudwatch.TextWidget:
    return cloudwatch.TextWidget(markdown=markdown, width=FULL_WIDTH, height=1)


class TierDashboard(Construct):
    """The dashboard of one tier stack (see the module docstring).

    ``processing``: the prefecture or national tier's queue and processor (``tier_label`` its
    metrics' ``tier`` dimension); ``provision``: the national provision API; ``cs_function_names``
    and ``cs_failed_events``: the municipality tier's CSs and their failed-event queue.
    """

    def __init__(self, scope: Construct, id: str, *, stack: TierStack, tier_label: str,
                 processing: Processing | None = None, provision: ProvisionApi | None = None,
                 cs_function_names: Sequence[str] = (), cs_failed_events: sqs.IQueue | None = None,
                 counter_service: str | None = None, channel: Any = None) -> None:
        """``channel``: the municipality tier's ``components.channel.MunicipalityChannel``."""
        super().__init__(scope, id)
        self._stack = stack
        names, tier = stack.names, stack.tier
        self.dashboard_name = f"{names.prefix}-{tier}"
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=self.dashboard_name,
                                              default_interval=Duration.hours(6))
        self.dashboard.add_widgets(cloudwatch.TextWidget(
            markdown=f"# {self.dashboard_name}\n{tier_label} tier of `{stack.deployment.name}`. What each alarm "
                     "means and what to do first: `docs/operations.md` (Alarms; the provision API's own alarms: "
                     "`docs/provision.md`).", width=FULL_WIDTH, height=2))
        self.dashboard.add_widgets(AlarmStatusWidgets(self.alarm_arns, title=f"Alarms of {self.dashboard_name}"))
        service = names.service_name(tier)
        if processing is not None:
            self._processing(processing, service=service, tier_label=tier_label)
        if provision is not None:
            self._provision(provision)
        if cs_function_names:
            self._municipality(cs_function_names, cs_failed_events, service=service, tier_label=tier_label)
        if channel is not None:
            self._channel(channel, service=service)
        if counter_service is not None:
            self.dashboard.add_widgets(_heading("## Counter API: resident cards (docs/card.md)"))
            self.dashboard.add_widgets(*(_graph(title, metrics, width=12)
                                         for title, metrics in widgets_metrics(counter_service).items()))

    # --- the alarm list ---------------------------------------------------------------------
    def alarm_names(self) -> list[str]:
        """Every alarm of this tier in the app, by name, in this stack's account and region."""
        stack = self._stack
        prefix = f"{stack.names.alarm(stack.tier, '')}"
        found: set[str] = set()
        for construct in self.node.root.node.find_all():
            if not isinstance(construct, cloudwatch.CfnAlarm):
                continue
            name = construct.alarm_name
            if not isinstance(name, str) or cdk.Token.is_unresolved(name) or not name.startswith(prefix):
                continue
            other = cdk.Stack.of(construct)
            if (other.account, other.region) == (stack.account, stack.region):
                found.add(name)
        return sorted(found)

    def alarm_arns(self) -> list[str]:
        env = self._stack.tier_env
        return [f"arn:{PARTITION}:cloudwatch:{env.region}:{env.account}:alarm:{n}" for n in self.alarm_names()]

    # --- prefecture and national ------------------------------------------------------------
    def _processing(self, p: Processing, *, service: str, tier_label: str) -> None:
        def m(name: str) -> cloudwatch.Metric:
            return custom_metric(name, service=service, tier=tier_label)

        queue, dlq, fn = p.inbound.queue, p.inbound.dead_letter_queue, p.processor.function
        self.dashboard.add_widgets(_heading("## Notices: inbound queue and processor"))
        self.dashboard.add_widgets(
            _graph("Notices stored, duplicate, dead-lettered", [m("NoticesStored"), m("NoticesDuplicate"),
                                                                m("NoticesDeadLettered")]),
            _graph("Inbound queue", [queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic=MAX),
                                     queue.metric_number_of_messages_received(period=PERIOD, statistic=SUM)],
                   right=[queue.metric_approximate_age_of_oldest_message(period=PERIOD, statistic=MAX)],
                   right_label="oldest message (s)"),
            _graph("Inbound dead-letter queue",
                   [dlq.metric_approximate_number_of_messages_visible(period=PERIOD, statistic=MAX),
                    dlq.metric_number_of_messages_sent(period=PERIOD, statistic=SUM)]),
        )
        self.dashboard.add_widgets(
            _graph("Processor invocations, errors, throttles",
                   [fn.metric_invocations(period=PERIOD, statistic=SUM), fn.metric_errors(period=PERIOD, statistic=SUM),
                    fn.metric_throttles(period=PERIOD, statistic=SUM)],
                   right=[fn.metric("ConcurrentExecutions", period=PERIOD, statistic=MAX)],
                   right_label="concurrent executions"),
            _graph("Processor duration (ms)", [fn.metric_duration(period=PERIOD, statistic=s)
                                               for s in (cloudwatch.Stats.p(50), cloudwatch.Stats.p(99), MAX)]),
            _graph("Signature failures and sequence gaps", [m("SignatureFailures"), m("SequenceGaps")]),
            # What the alarms read: gaps 15 minutes old, notices overdue (the ledger watch, decision 0030).
            _graph("Aged sequence gaps and notices overdue", [m("AgedSequenceGaps"), m("NoticesOverdue")]),
        )

    # --- national: the provision API ----------------------------------------------------------
    def _provision(self, api: ProvisionApi) -> None:
        names = self._stack.names
        service = names.provision_service()

        def m(name: str, period: Duration = PERIOD) -> cloudwatch.Metric:
            return cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name=name,
                                     dimensions_map={"service": service, "tier": NATIONAL}, statistic=SUM,
                                     period=period)

        recipients = sorted(a.recipient_id for a in self._stack.deployment.agencies)
        not_found = cloudwatch.MathExpression(
            expression=f"IF((found + missing) >= {NOT_FOUND_MIN_ANSWERS}, 100 * missing / (found + missing), 0)",
            using_metrics={"found": m("RecordsProvided", NOT_FOUND_PERIOD),
                           "missing": m("NotFoundAnswers", NOT_FOUND_PERIOD)},
            period=NOT_FOUND_PERIOD, label="not found (% of answers, 15 min)")
        gateway_refusals = cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name="GatewayRefusals",
                                             statistic=SUM, period=PERIOD)
        self.dashboard.add_widgets(_heading("## Provision API (本人確認情報の提供)"))
        self.dashboard.add_widgets(
            _graph("Requests and records provided", [m("ProvisionRequests"), m("RecordsProvided"),
                                                     m("NotFoundAnswers"), m("DisclosuresServed")]),
            _graph("Refusals", [m("ProvisionRefusals"), m("UnauthorisedAttempts"), gateway_refusals]),
            cloudwatch.GraphWidget(
                title="Anomaly signals", left=[m("OutsideAgreedHours"), m("SequentialCodes")], right=[not_found],
                width=8, height=GRAPH_HEIGHT,
                left_annotations=[cloudwatch.HorizontalAnnotation(
                    value=SEQUENTIAL_CODES_THRESHOLD, label="sequential codes alarm")],
                right_annotations=[cloudwatch.HorizontalAnnotation(
                    value=NOT_FOUND_RATIO_PERCENT, label="not-found alarm")],
                right_y_axis=cloudwatch.YAxisProps(label="%", show_units=False, min=0, max=100)),
        )
        by_recipient = [recipient_volume_metric(names, r, period=Duration.hours(1)) for r in recipients]
        self.dashboard.add_widgets(
            _graph("Records provided by recipient (per hour)", by_recipient, width=12),
            _graph("REST API", [api.api.metric_count(period=PERIOD, statistic=SUM),
                                api.api.metric_client_error(period=PERIOD, statistic=SUM),
                                api.api.metric_server_error(period=PERIOD, statistic=SUM)],
                   right=[api.api.metric_latency(period=PERIOD, statistic=cloudwatch.Stats.p(99))],
                   right_label="latency p99 (ms)", width=12),
        )
        functions = [(f.function_name.rsplit("-", 1)[-1], f.function) for f in api.functions]
        self.dashboard.add_widgets(
            _graph("Provision functions: errors and throttles",
                   [fn.metric_errors(period=PERIOD, statistic=SUM, label=f"{what} errors") for what, fn in functions]
                   + [fn.metric_throttles(period=PERIOD, statistic=SUM, label=f"{what} throttles")
                      for what, fn in functions]),
            _graph("Batch queue", [api.queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic=MAX),
                                   api.dead_letters.metric_approximate_number_of_messages_visible(
                                       period=PERIOD, statistic=MAX, label="dead letters"),
                                   m("BatchRowsProcessed"), m("BatchJobsRefused")],
                   right=[api.queue.metric_approximate_age_of_oldest_message(period=PERIOD, statistic=MAX)],
                   right_label="oldest task (s)"),
            _graph("Hourly seals of the provision log", [m("ProvisionLogSealed", Duration.hours(1))],
                   right=[m("ProvisionLogSealLagHours", Duration.hours(1))], right_label="hours since the last seal"),
        )

    # --- the channel between municipalities (components/channel.py) ---------------------------
    def _channel(self, channel: Any, *, service: str) -> None:
        def m(name: str) -> cloudwatch.Metric:
            return custom_metric(name, service=service, tier="municipality")

        fn = channel.function.function
        self.dashboard.add_widgets(_heading("## Channel between municipalities (docs/second-phase.md)"))
        self.dashboard.add_widgets(
            _graph("Channel: requests sent, answers sent, settled, refused, timed out, repeated, dead-lettered",
                   [m("ChannelRequestsSent"), m("ChannelAnswersSent"), m("ChannelRequestsSettled"),
                    m("ChannelRefusalsReceived"), m("ChannelRequestsTimedOut"), m("ChannelRequestsRepeated"),
                    m("ChannelDeadLettered")], width=8),
            _graph("Channel queue and dead letters", [
                channel.queue.metric_approximate_number_of_messages_visible(
                    period=PERIOD, statistic=MAX, label="waiting"),
                channel.dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=PERIOD, statistic=MAX, label="dead letters")], width=8),
            _graph("Channel function", [fn.metric_invocations(period=PERIOD, statistic=SUM),
                                        fn.metric_errors(period=PERIOD, statistic=SUM),
                                        fn.metric_throttles(period=PERIOD, statistic=SUM)],
                   right=[fn.metric_duration(period=PERIOD, statistic=MAX)], right_label="ms", width=8),
        )

    # --- municipality -----------------------------------------------------------------------
    def _municipality(self, functions: Sequence[str], failed_events: sqs.IQueue | None, *, service: str,
                      tier_label: str) -> None:
        def m(name: str) -> cloudwatch.Metric:
            return custom_metric(name, service=service, tier=tier_label)

        if len(functions) > METRICS_PER_WIDGET:
            raise ValueError(f"{len(functions)} CSs exceed the {METRICS_PER_WIDGET} metrics of a dashboard widget")

        def over_all(metric_name: str, statistic: str, combine: str) -> cloudwatch.MathExpression:
            using = {f"f{i}": cloudwatch.Metric(namespace="AWS/Lambda", metric_name=metric_name,
                                                dimensions_map={"FunctionName": f}, statistic=statistic,
                                                period=PERIOD)
                     for i, f in enumerate(functions)}
            return cloudwatch.MathExpression(expression=f"{combine}(FILL(METRICS(), 0))", using_metrics=using,
                                             period=PERIOD, label=f"{metric_name} ({combine.lower()} of "
                                                                  f"{len(functions)} CSs)")

        self.dashboard.add_widgets(_heading(f"## Communication servers ({len(functions)} CSs)"))
        queue_metrics = ([failed_events.metric_approximate_number_of_messages_visible(
            period=PERIOD, statistic=MAX, label="failed S3 events waiting")] if failed_events is not None else [])
        self.dashboard.add_widgets(
            _graph("Notices sent, rows rejected, duplicate files",
                   [m("NoticesSent"), m("RowsRejected"), m("DuplicateFiles")], width=12),
            _graph("Failed S3 events", queue_metrics, width=12),
        )
        self.dashboard.add_widgets(
            _graph("CS invocations (files)", [over_all("Invocations", SUM, "SUM")], width=6),
            _graph("CS errors", [over_all("Errors", SUM, "SUM")], width=6),
            _graph("CS throttles", [over_all("Throttles", SUM, "SUM")], width=6),
            _graph("CS longest duration (ms)", [over_all("Duration", MAX, "MAX")], width=6),
        )
