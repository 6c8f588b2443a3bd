"""Detection: the CIS AWS Foundations monitoring set on each account trail, and the provision
API's anomaly alarms. Meanings and first responses: ``docs/operations.md`` ("Alarms").

**CIS monitoring** (CIS AWS Foundations Benchmark section 4 "Monitoring", 4.1-4.14; AWS Security
Hub controls CloudWatch.1-14): a metric filter per control on the CloudWatch Logs group the
account's trail delivers to (``AccountTrail.log_group``, every region's events, global services
included), each counting matching events as ``1`` into namespace ``CIS_NAMESPACE`` without
dimensions, and an alarm on any match in five minutes to the hosting tier's topic. The
patterns are the ones the benchmark and Security Hub document (the events and conditions
exactly; only the spacing is made uniform). Where the benchmark offers two,
the console sign-in without MFA uses the one for organisations that sign in through SSO
(successful IAM-user sign-ins only): federated sign-ins report ``MFAUsed: No`` because the
identity provider did the MFA, and the root user is watched by the root-usage filter anyway.
CIS 4.15 (AWS Organizations changes) belongs to the organisation's management account.

**Beyond the benchmark** (``TRAIL_CONTROLS``, the same shape, alarm without the ``cis-``
prefix): key administration — ``PutKeyPolicy``, ``CreateAlias``, ``UpdateAlias``,
``DeleteAlias`` on any KMS key. Receivers trust senders' signing keys, so re-pointing an alias
or rewriting a key policy is as sensitive as an IAM policy change; CIS 4.7 covers only disabling
and deleting keys. (The receivers also pin each sender to its key's ARN: ``adapters/kms.py``.)

**Provision anomalies** (the provision API's metrics, ``{service: <prefix>-provision, tier:
national}``, emitted by ``lambdas/jukinet/handlers/provision_api.py``):

* ``OutsideAgreedHours`` > 0: a look-up outside its agreement's agreed hours (served, flagged);
* ``SequentialCodes`` ≥ ``SEQUENTIAL_CODES_THRESHOLD`` in five minutes: codes whose 10-digit
  bodies are consecutive, i.e. someone walking through the code space;
* ``NotFoundAnswers`` / (``RecordsProvided`` + ``NotFoundAnswers``) > ``NOT_FOUND_RATIO_PERCENT``
  with at least ``NOT_FOUND_MIN_ANSWERS`` answers in 15 minutes: resident codes are sparse, so
  made-up codes are mostly unknown (probing);
* per recipient, ``RecordsProvidedByRecipient`` (``{service, recipient}``) summed per day above
  the upper edge of its anomaly-detection band (``VOLUME_STD_DEVS`` wide): an agency's daily
  volume far above its own trailing level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_logs as logs
from constructs import Construct

from ..naming import METRICS_NAMESPACE, NATIONAL, Names
from .monitoring import PERIOD, TierAlarms, custom_metric

CIS_NAMESPACE = f"{METRICS_NAMESPACE}/CIS"


@dataclass(frozen=True)
class CisControl:
    """One control: ``metric`` (the metric filter's metric), ``kind`` (the alarm name's suffix
    after ``cis-``), the Security Hub control, the CIS recommendation and the filter pattern."""

    metric: str
    kind: str
    security_hub: str
    cis: str
    title: str
    pattern: str
    benchmark: bool = True  # False: this project's own control in the benchmark's style


def _any_event(*names: str) -> str:
    return " || ".join(f"($.eventName = {n})" for n in names)


CIS_CONTROLS: tuple[CisControl, ...] = (
    CisControl("UnauthorizedApiCalls", "unauthorized-api-calls", "CloudWatch.2", "4.1", "unauthorised API calls",
               '{ ($.errorCode = "*UnauthorizedOperation") || ($.errorCode = "AccessDenied*") }'),
    CisControl("ConsoleSignInWithoutMfa", "console-sign-in-without-mfa", "CloudWatch.3", "4.2",
               "console sign-in without MFA",
               '{ ($.eventName = "ConsoleLogin") && ($.additionalEventData.MFAUsed != "Yes") && '
               '($.userIdentity.type = "IAMUser") && ($.responseElements.ConsoleLogin = "Success") }'),
    CisControl("RootAccountUsage", "root-account-usage", "CloudWatch.1", "4.3", "use of the root user",
               '{ $.userIdentity.type = "Root" && $.userIdentity.invokedBy NOT EXISTS && '
               '$.eventType != "AwsServiceEvent" }'),
    CisControl("IamPolicyChanges", "iam-policy-changes", "CloudWatch.4", "4.4", "IAM policy changes",
               "{ " + _any_event("DeleteGroupPolicy", "DeleteRolePolicy", "DeleteUserPolicy", "PutGroupPolicy",
                                 "PutRolePolicy", "PutUserPolicy", "CreatePolicy", "DeletePolicy",
                                 "CreatePolicyVersion", "DeletePolicyVersion", "AttachRolePolicy",
                                 "DetachRolePolicy", "AttachUserPolicy", "DetachUserPolicy", "AttachGroupPolicy",
                                 "DetachGroupPolicy") + " }"),
    CisControl("CloudTrailConfigChanges", "cloudtrail-changes", "CloudWatch.5", "4.5",
               "CloudTrail configuration changes",
               "{ " + _any_event("CreateTrail", "UpdateTrail", "DeleteTrail", "StartLogging", "StopLogging")
               + " }"),
    CisControl("ConsoleSignInFailures", "console-sign-in-failures", "CloudWatch.6", "4.6",
               "console authentication failures",
               '{ ($.eventName = ConsoleLogin) && ($.errorMessage = "Failed authentication") }'),
    CisControl("KmsKeyDisabledOrScheduledForDeletion", "kms-key-disabled-or-deleted", "CloudWatch.7", "4.7",
               "customer managed keys disabled or scheduled for deletion",
               "{ ($.eventSource = kms.amazonaws.com) && (($.eventName = DisableKey) || "
               "($.eventName = ScheduleKeyDeletion)) }"),
    CisControl("S3BucketPolicyChanges", "s3-bucket-policy-changes", "CloudWatch.8", "4.8",
               "S3 bucket policy changes",
               "{ ($.eventSource = s3.amazonaws.com) && (" + _any_event(
                   "PutBucketAcl", "PutBucketPolicy", "PutBucketCors", "PutBucketLifecycle", "PutBucketReplication",
                   "DeleteBucketPolicy", "DeleteBucketCors", "DeleteBucketLifecycle", "DeleteBucketReplication")
               + ") }"),
    CisControl("ConfigChanges", "config-changes", "CloudWatch.9", "4.9", "AWS Config configuration changes",
               "{ ($.eventSource = config.amazonaws.com) && (" + _any_event(
                   "StopConfigurationRecorder", "DeleteDeliveryChannel", "PutDeliveryChannel",
                   "PutConfigurationRecorder") + ") }"),
    CisControl("SecurityGroupChanges", "security-group-changes", "CloudWatch.10", "4.10", "security group changes",
               "{ " + _any_event("AuthorizeSecurityGroupIngress", "AuthorizeSecurityGroupEgress",
                                 "RevokeSecurityGroupIngress", "RevokeSecurityGroupEgress", "CreateSecurityGroup",
                                 "DeleteSecurityGroup") + " }"),
    CisControl("NaclChanges", "nacl-changes", "CloudWatch.11", "4.11", "network ACL changes",
               "{ " + _any_event("CreateNetworkAcl", "CreateNetworkAclEntry", "DeleteNetworkAcl",
                                 "DeleteNetworkAclEntry", "ReplaceNetworkAclEntry", "ReplaceNetworkAclAssociation")
               + " }"),
    CisControl("NetworkGatewayChanges", "network-gateway-changes", "CloudWatch.12", "4.12",
               "network gateway changes",
               "{ " + _any_event("CreateCustomerGateway", "DeleteCustomerGateway", "AttachInternetGateway",
                                 "CreateInternetGateway", "DeleteInternetGateway", "DetachInternetGateway") + " }"),
    CisControl("RouteTableChanges", "route-table-changes", "CloudWatch.13", "4.13", "route table changes",
               "{ ($.eventSource = ec2.amazonaws.com) && (" + _any_event(
                   "CreateRoute", "CreateRouteTable", "ReplaceRoute", "ReplaceRouteTableAssociation",
                   "DeleteRouteTable", "DeleteRoute", "DisassociateRouteTable") + ") }"),
    CisControl("VpcChanges", "vpc-changes", "CloudWatch.14", "4.14", "VPC changes",
               "{ " + _any_event("CreateVpc", "DeleteVpc", "ModifyVpcAttribute", "AcceptVpcPeeringConnection",
                                 "CreateVpcPeeringConnection", "DeleteVpcPeeringConnection",
                                 "RejectVpcPeeringConnection", "AttachClassicLinkVpc", "DetachClassicLinkVpc",
                                 "DisableVpcClassicLink", "EnableVpcClassicLink") + " }"),
)


TRAIL_CONTROLS: tuple[CisControl, ...] = (
    CisControl("KmsKeyPolicyOrAliasChanges", "kms-key-policy-or-alias-changes", "-", "-",
               "a KMS key policy or alias change (key administration)",
               "{ ($.eventSource = kms.amazonaws.com) && ("
               + _any_event("PutKeyPolicy", "CreateAlias", "UpdateAlias", "DeleteAlias") + ") }",
               benchmark=False),
)


def cis_alarm_kind(control: CisControl) -> str:
    return f"cis-{control.kind}" if control.benchmark else control.kind


class CisMonitoring(Construct):
    """The CIS monitoring set on one trail's log group, alarmed to ``alarms``' topic."""

    def __init__(self, scope: Construct, id: str, *, log_group: logs.ILogGroup, alarms: TierAlarms, names: Names,
                 tier: str) -> None:
        super().__init__(scope, id)
        self.filters: list[logs.MetricFilter] = []
        for control in (*CIS_CONTROLS, *TRAIL_CONTROLS):
            self.filters.append(logs.MetricFilter(
                self, control.metric, log_group=log_group, filter_name=f"{names.prefix}-{cis_alarm_kind(control)}",
                filter_pattern=logs.FilterPattern.literal(control.pattern), metric_namespace=CIS_NAMESPACE,
                metric_name=control.metric, metric_value="1"))
            alarms.alarm(
                f"Cis{control.metric}", name=names.alarm(tier, cis_alarm_kind(control)),
                description=(f"CIS {control.cis} / Security Hub {control.security_hub}: the account trail recorded "
                             f"{control.title}." if control.benchmark else
                             f"Key administration (beyond CIS): the account trail recorded {control.title}."),
                metric=cloudwatch.Metric(namespace=CIS_NAMESPACE, metric_name=control.metric,
                                         statistic=cloudwatch.Stats.SUM, period=PERIOD))


# --- the provision API's anomalies ---------------------------------------------------------------

SEQUENTIAL_CODES_THRESHOLD = 20  # codes with a consecutive neighbour, summed over five minutes
NOT_FOUND_PERIOD = Duration.minutes(15)
NOT_FOUND_MIN_ANSWERS = 50  # below this many answers in the period the ratio says nothing
NOT_FOUND_RATIO_PERCENT = 50
VOLUME_PERIOD = Duration.days(1)
VOLUME_STD_DEVS = 3

OUTSIDE_HOURS_KIND = "provision-outside-agreed-hours"
SEQUENTIAL_CODES_KIND = "provision-sequential-codes"
NOT_FOUND_RATIO_KIND = "provision-not-found-ratio"
VOLUME_ANOMALY_KIND = "provision-volume-anomaly"  # + "-<recipient id>"


def recipient_volume_metric(names: Names, recipient_id: str, *, period: Duration = VOLUME_PERIOD) -> cloudwatch.Metric:
    """``RecordsProvidedByRecipient`` of one recipient: dimensions exactly ``{service, recipient}``
    (the handler emits it with ``single_metric``, without ``tier``)."""
    return cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name="RecordsProvidedByRecipient",
                             dimensions_map={"service": names.provision_service(), "recipient": recipient_id},
                             statistic=cloudwatch.Stats.SUM, period=period, label=recipient_id)


def provision_anomaly_alarms(alarms: TierAlarms, *, names: Names, recipient_ids: Sequence[str]) -> None:
    """The provision API's anomaly alarms (module docstring) on the national tier's topic."""
    service = names.provision_service()
    alarms.alarm("ProvisionOutsideAgreedHours", name=names.alarm(NATIONAL, OUTSIDE_HOURS_KIND),
                 description="A recipient looked up residents outside the agreed hours of its agreement (served "
                             "and flagged).",
                 metric=custom_metric("OutsideAgreedHours", service=service, tier=NATIONAL))
    alarms.alarm("ProvisionSequentialCodes", name=names.alarm(NATIONAL, SEQUENTIAL_CODES_KIND),
                 description=f"At least {SEQUENTIAL_CODES_THRESHOLD} resident codes with consecutive bodies were "
                             "looked up in five minutes: someone may be walking through the code space.",
                 metric=custom_metric("SequentialCodes", service=service, tier=NATIONAL),
                 threshold=SEQUENTIAL_CODES_THRESHOLD,
                 comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD)

    def answers(metric_name: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name=metric_name,
                                 dimensions_map={"service": service, "tier": NATIONAL},
                                 statistic=cloudwatch.Stats.SUM, period=NOT_FOUND_PERIOD)

    ratio = cloudwatch.MathExpression(
        expression=f"IF((found + missing) >= {NOT_FOUND_MIN_ANSWERS}, 100 * missing / (found + missing), 0)",
        using_metrics={"found": answers("RecordsProvided"), "missing": answers("NotFoundAnswers")},
        period=NOT_FOUND_PERIOD, label="Not-found answers (%)")
    alarms.alarm("ProvisionNotFoundRatio", name=names.alarm(NATIONAL, NOT_FOUND_RATIO_KIND),
                 description=f"More than {NOT_FOUND_RATIO_PERCENT}% of at least {NOT_FOUND_MIN_ANSWERS} provision "
                             "answers in 15 minutes were 'not found': someone may be probing with made-up codes.",
                 metric=ratio, threshold=NOT_FOUND_RATIO_PERCENT)
    for recipient_id in sorted(recipient_ids):
        camel = "".join(part.capitalize() for part in recipient_id.split("-"))
        alarms.anomaly_alarm(
            f"ProvisionVolumeAnomaly{camel}", name=names.alarm(NATIONAL, f"{VOLUME_ANOMALY_KIND}-{recipient_id}"),
            description=f"Recipient {recipient_id} received far more records today than its trailing level "
                        f"(daily RecordsProvidedByRecipient above its anomaly band, {VOLUME_STD_DEVS} standard "
                        "deviations).",
            metric=recipient_volume_metric(names, recipient_id), std_devs=VOLUME_STD_DEVS)
