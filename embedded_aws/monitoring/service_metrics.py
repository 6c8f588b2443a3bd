"""The metrics AWS services would publish themselves that local mode can observe
(``AWS/SQS``, ``AWS/Lambda``): ``ServiceMetrics``."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from jukinet.clock import system_clock

from ._base import _client, _factory_and_locations, _paginate
from .emf import MetricDatum, put_metric_data

# -- metrics of AWS services ---------------------------------------------------------------------


class ServiceMetrics:
    """Publishes, on demand, the metrics AWS services would publish themselves, from what local
    mode can observe (opt-in: without it, alarms on ``AWS/*`` metrics see no data):

    * ``AWS/SQS`` ``ApproximateNumberOfMessagesVisible``, ``...NotVisible``, ``...Delayed`` of
      every queue (dimension ``QueueName``), from ``GetQueueAttributes`` at ``now``. SQS
      publishes them every minute; here one sample per ``publish()``.
      ``ApproximateAgeOfOldestMessage`` is not published: moto does not report it, and
      receiving to find out would change the messages' receive counts.
    * ``AWS/Lambda`` ``Invocations`` and ``Errors`` per function (dimension ``FunctionName``),
      the runner's counts since the last ``publish()``, if a runner is given. ``Throttles``,
      ``Duration``, ``ConcurrentExecutions`` are not published (the runner neither throttles
      nor runs concurrently).
    """

    def __init__(self, env: Any, runner: Any | None = None) -> None:
        self.factory, self.locations = _factory_and_locations(env, None)
        self.runner = runner
        self._seen: dict[str, tuple[int, int]] = {}

    def publish(self, now: dt.datetime | None = None) -> int:
        now = now or system_clock()
        by_location: dict[tuple[str | None, str | None], list[MetricDatum]] = defaultdict(list)
        for region, account in self.locations:
            sqs = _client(self.factory, "sqs", region, account)
            for url in _paginate(sqs.list_queues, "QueueUrls"):
                attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                    "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed"]).get("Attributes", {})
                dims = (("QueueName", url.rsplit("/", 1)[-1]),)
                for attribute, metric in (("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesVisible"),
                                          ("ApproximateNumberOfMessagesNotVisible",
                                           "ApproximateNumberOfMessagesNotVisible"),
                                          ("ApproximateNumberOfMessagesDelayed",
                                           "ApproximateNumberOfMessagesDelayed")):
                    by_location[(region, account)].append(MetricDatum(
                        "AWS/SQS", metric, dims, (float(attributes.get(attribute, 0)),), now, "Count"))
        for name, stats in (self.runner.stats.items() if self.runner is not None else ()):
            invocations, errors = self._seen.get(name, (0, 0))
            if stats.invocations == invocations:
                continue
            self._seen[name] = (stats.invocations, stats.errors)
            fn = self.runner.functions[name]
            dims = (("FunctionName", name),)
            by_location[(fn.region, fn.account)] += [
                MetricDatum("AWS/Lambda", "Invocations", dims, (float(stats.invocations - invocations),), now, "Count"),
                MetricDatum("AWS/Lambda", "Errors", dims, (float(stats.errors - errors),), now, "Count")]
        put = 0
        for (region, account), data in by_location.items():
            put += put_metric_data(_client(self.factory, "cloudwatch", region, account), data)
        return put
