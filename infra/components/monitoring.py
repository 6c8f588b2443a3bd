"""Alarms of a tier, all to one KMS-encrypted SNS topic. Meanings and first responses:
``docs/operations.md`` (one section per alarm name suffix; the provision API's alarms in
``docs/provision.md``). The CIS set and the provision anomalies: ``security_monitoring.py``;
each tier's dashboard: ``dashboard.py``."""

from __future__ import annotations

import re
from typing import TypeVar

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from ..naming import METRICS_NAMESPACE

PERIOD = Duration.minutes(5)
GT = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
_AlarmT = TypeVar("_AlarmT", bound=cloudwatch.Alarm)


_TIER = re.compile(r"^.*?-(national|pref-\d{6}|muni-\d{6})-")
_SPAN = re.compile(r"-\d{6}-\d{6}$")
_RECIPIENT = re.compile(r"^(provision-volume-anomaly)-[a-z][a-z0-9-]*$")


def alarm_kind(name: str) -> str:
    """The runbook section of an alarm: ``jukinet-pref-200000-sequence-gaps`` → ``sequence-gaps``;
    ``…-cs-errors-202011-202100`` → ``cs-errors``; ``…-provision-volume-anomaly-nenkin`` →
    ``provision-volume-anomaly``."""
    return _RECIPIENT.sub(r"\1", _SPAN.sub("", _TIER.sub("", name)))


def runbook_link(doc: str, name: str, anchor: str | None = None) -> str:
    """``See docs/operations.md#sequence-gaps.``: the section (a heading ``### `<kind>` ``) that
    gives the alarm's meaning and first response; tests/infra checks every anchor exists."""
    return f"See {doc}#{anchor or alarm_kind(name)}."


def custom_metric(name: str, *, service: str, tier: str) -> cloudwatch.Metric:
    """A handler metric; the dimension set must equal what Powertools emits: service + tier."""
    return cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name=name,
                             dimensions_map={"service": service, "tier": tier},
                             statistic=cloudwatch.Stats.SUM, period=PERIOD)


class TierAlarms(Construct):
    def __init__(self, scope: Construct, id: str, *, topic_name: str, key: kms.IKey, email: str | None,
                 chat_url: str | None = None) -> None:
        """The tier's alarm topic (KMS-encrypted, TLS only) and its subscribers from the
        deployment's ``Operations``: an e-mail address, a chat tool's HTTPS webhook, or both."""
        super().__init__(scope, id)
        self.topic = sns.Topic(self, "Topic", topic_name=topic_name, master_key=key, enforce_ssl=True,
                               display_name="jukinet alarms")
        if email:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        if chat_url:
            self.topic.add_subscription(subscriptions.UrlSubscription(chat_url,
                                                                      protocol=sns.SubscriptionProtocol.HTTPS))
        self._action = actions.SnsAction(self.topic)
        self.alarms: list[cloudwatch.Alarm] = []

    def alarm(self, id: str, *, name: str, description: str, metric: cloudwatch.IMetric, threshold: float = 0,
              evaluation_periods: int = 1, datapoints_to_alarm: int = 1,
              comparison: cloudwatch.ComparisonOperator = GT, doc: str = "docs/operations.md",
              treat_missing_data: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
              anchor: str | None = None) -> cloudwatch.Alarm:
        """``treat_missing_data``: NOT_BREACHING for counts of bad things; BREACHING for a
        heartbeat (a metric whose absence is the problem)."""
        alarm = cloudwatch.Alarm(
            self, id, alarm_name=name, alarm_description=f"{description} {runbook_link(doc, name, anchor)}",
            metric=metric, threshold=threshold, comparison_operator=comparison, evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm, treat_missing_data=treat_missing_data,
        )
        return self._arm(alarm)

    def anomaly_alarm(self, id: str, *, name: str, description: str, metric: cloudwatch.IMetric, std_devs: float,
                      doc: str = "docs/operations.md") -> cloudwatch.AnomalyDetectionAlarm:
        """Above the upper edge of CloudWatch's anomaly-detection band of ``metric`` (a model
        trained on the metric's own history: its trailing level and its daily and weekly
        pattern), ``std_devs`` wide, in one period of the metric."""
        alarm = cloudwatch.AnomalyDetectionAlarm(
            self, id, alarm_name=name, alarm_description=f"{description} {runbook_link(doc, name)}",
            metric=metric, std_devs=std_devs, evaluation_periods=1, datapoints_to_alarm=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_UPPER_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        return self._arm(alarm)

    def _arm(self, alarm: _AlarmT) -> _AlarmT:
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.alarms.append(alarm)
        return alarm

    def queue_alarms(self, id: str, *, tier_name: str, queue_label: str, dead_letter_queue: sqs.IQueue,
                     queue: sqs.IQueue | None = None, max_age_seconds: int | None = None,
                     doc: str = "docs/operations.md") -> None:
        self.alarm(f"{id}DlqNotEmpty", name=f"{tier_name}-{queue_label}-dlq-not-empty",
                   description=f"Messages are waiting in the {queue_label} dead-letter queue: something could not "
                               "be processed and needs a person.",
                   metric=dead_letter_queue.metric_approximate_number_of_messages_visible(
                       period=PERIOD, statistic=cloudwatch.Stats.MAXIMUM), doc=doc)
        if queue is not None and max_age_seconds is not None:
            self.alarm(f"{id}OldestMessage", name=f"{tier_name}-{queue_label}-oldest-message-age",
                       description=f"The oldest message has waited more than {max_age_seconds} s: the tier is not "
                                   "keeping up or not consuming.",
                       metric=queue.metric_approximate_age_of_oldest_message(
                           period=PERIOD, statistic=cloudwatch.Stats.MAXIMUM),
                       threshold=max_age_seconds, evaluation_periods=2, datapoints_to_alarm=2, doc=doc)
