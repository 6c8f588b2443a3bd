"""The embedded AWS: the synthesized CDK app deployed into a local AWS (a moto server on
127.0.0.1) and its Lambda functions run in this process from their deployed triggers. See
docs/local-mode.md; decision 0052 (a package of its own: it imports nothing from ``jukinet_ops``).

The public interface — what the demo, ``jukinet up`` and the end-to-end tests use — is
re-exported here; everything else is in the modules named below and may change::

    from embedded_aws import LocalApi, LocalMonitoring, LocalRunner, MotoServer, deploy_assembly, local_principals

    with MotoServer() as aws:                                      # start the embedded AWS
        env = deploy_assembly("cdk.out", aws.endpoint_url)         # deploy an assembly
        with LocalMonitoring(env) as monitoring, \\
                LocalRunner(env, log_stream=monitoring.sink) as runner:
            runner.run_until_idle(timeout_s=120)                   # run until idle
            verdicts = monitoring.evaluate()                       # evaluate the alarms
            callers = local_principals({role_arn: vpce_id})        # signed-in callers of a role
            with LocalApi(env, runner, credentials=callers) as api:   # serve an API
                api.request(callers[role_arn], "GET", "/v1/...")

| to | use | module |
| --- | --- | --- |
| start the embedded AWS, and talk to it | ``MotoServer``, ``local_credentials``, ``local_client``, ``local_session`` | ``server.py`` |
| deploy an assembly | ``deploy_assembly`` → ``DeployedEnvironment`` | ``deploy.py``, ``model.py`` |
| run the functions until idle | ``LocalRunner`` (``run_until_idle``, ``invoke``), ``replace_environ`` | ``runner.py`` |
| serve a private REST API | ``LocalApi``, ``LocalPrincipal``, ``local_principals`` | ``api/`` |
| evaluate the alarms | ``LocalMonitoring``, ``evaluate_alarms``, ``MetricSink``, ``AlarmVerdict``, ``NotificationLog``, ``print_alarm_status``, ``ALARM``, ``OK``, ``INSUFFICIENT_DATA`` | ``monitoring/`` |
| fire the schedules | ``LocalSchedules`` | ``schedules.py`` |
| record flow and DNS query logs | ``FlowLogRecorder`` | ``flow_logs.py`` |
| inject faults | ``FaultInjector``, ``Rule``, ``FunctionKilled`` | ``faults.py`` |
| evaluate IAM policies | ``iam_policy`` (the module: ``evaluate``, ``ALLOW``, ``DENY``, ``IMPLICIT_DENY``) | ``iam_policy.py`` |

Importing this package is cheap: each name imports its module on first use (PEP 562), so
``import embedded_aws`` loads neither moto nor boto3, and the ``jukinet`` command of a plain
install (without the ``ops`` extra, which brings moto) can import it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the module (of this package) that defines it
_EXPORTS: dict[str, str] = {
    "MotoServer": "server", "MotoServerError": "server", "local_credentials": "server", "local_client": "server",
    "local_session": "server",
    "deploy_assembly": "deploy", "DeployError": "deploy", "DeployedEnvironment": "model",
    "LocalRunner": "runner", "replace_environ": "runner", "RunTimeout": "runner",
    "LocalApi": "api", "LocalPrincipal": "api", "local_principals": "api",
    "LocalMonitoring": "monitoring", "evaluate_alarms": "monitoring", "MetricSink": "monitoring",
    "AlarmVerdict": "monitoring", "NotificationLog": "monitoring", "ALARM": "monitoring", "OK": "monitoring",
    "INSUFFICIENT_DATA": "monitoring", "print_alarm_status": "monitoring",
    "LocalSchedules": "schedules",
    "FlowLogRecorder": "flow_logs",
    "FaultInjector": "faults", "Rule": "faults", "FunctionKilled": "faults",
}
_SUBMODULES = frozenset({"iam_policy"})

# written out, for the linters and readers; tests/local/test_public_interface.py keeps it equal to the above
__all__ = ["ALARM", "AlarmVerdict", "DeployError", "DeployedEnvironment", "FaultInjector", "FlowLogRecorder",
           "FunctionKilled", "INSUFFICIENT_DATA", "LocalApi", "LocalMonitoring", "LocalPrincipal", "LocalRunner",
           "LocalSchedules", "MetricSink", "MotoServer", "MotoServerError", "NotificationLog", "OK", "Rule",
           "RunTimeout", "deploy_assembly", "evaluate_alarms", "iam_policy", "local_client", "local_credentials",
           "local_principals", "local_session", "print_alarm_status", "replace_environ"]

if TYPE_CHECKING:  # what a type checker and an IDE see; at run time __getattr__ imports on first use
    from . import iam_policy
    from .api import LocalApi, LocalPrincipal, local_principals
    from .deploy import DeployError, deploy_assembly
    from .faults import FaultInjector, FunctionKilled, Rule
    from .flow_logs import FlowLogRecorder
    from .model import DeployedEnvironment
    from .monitoring import (
        ALARM,
        INSUFFICIENT_DATA,
        OK,
        AlarmVerdict,
        LocalMonitoring,
        MetricSink,
        NotificationLog,
        evaluate_alarms,
        print_alarm_status,
    )
    from .runner import LocalRunner, RunTimeout, replace_environ
    from .schedules import LocalSchedules
    from .server import MotoServer, MotoServerError, local_client, local_credentials, local_session


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
