"""KMS keys per tier and purpose, with key policies that separate administrators from users.

Every key policy has the same shape:

* **Administration** — the account root (i.e. whoever that account's IAM policies name;
  narrowed to ``Operations.key_administrators`` plus the CDK deployment role when those are
  configured) may manage the key: describe, enable/disable, tag, rotate, schedule deletion,
  edit the policy. Administration never includes a cryptographic operation, and grants may
  be created only for AWS services (``kms:GrantIsForAWSResource``).
* **Use** — explicit statements per purpose: function roles identified by their IAM path
  (``naming.Names.role_path``), usually only through one service (``kms:ViaService``);
  service principals (CloudWatch Logs, CloudTrail, CloudWatch alarms) bound to this
  account's resources by encryption context or source ARN.

So no principal holds ``kms:*``, and a role outside a tier's path cannot use its keys even if
an IAM policy in the account tried to grant it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from ..naming import PARTITION

ADMIN_ACTIONS = [
    "kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias",
    "kms:DescribeKey", "kms:ListAliases", "kms:ListGrants", "kms:ListKeyPolicies", "kms:ListResourceTags",
    "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:PutKeyPolicy",
    "kms:EnableKey", "kms:DisableKey", "kms:EnableKeyRotation", "kms:DisableKeyRotation", "kms:RotateKeyOnDemand",
    "kms:UpdateKeyDescription", "kms:TagResource", "kms:UntagResource", "kms:RevokeGrant", "kms:RetireGrant",
    "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion",
]
# CDK's bootstrap deployment role (CloudFormation execution role) must be able to manage the
# keys it deploys, also when key administrators are configured.
_CDK_DEPLOY_ROLE = "arn:{partition}:iam::{account}:role/cdk-*-cfn-exec-role-*"


def administration(account: str, administrators: Sequence[str] = ()) -> list[iam.PolicyStatement]:
    conditions = None
    if administrators:
        conditions = {"ArnLike": {"aws:PrincipalArn": [
            *administrators, _CDK_DEPLOY_ROLE.format(partition=PARTITION, account=account)]}}
    return [
        iam.PolicyStatement(
            sid="Administration", principals=[iam.AccountPrincipal(account)], actions=ADMIN_ACTIONS,
            resources=["*"], conditions=conditions,
        ),
        iam.PolicyStatement(
            sid="GrantsForAwsServicesOnly", principals=[iam.AccountPrincipal(account)], actions=["kms:CreateGrant"],
            resources=["*"], conditions={**(conditions or {}), "Bool": {"kms:GrantIsForAWSResource": "true"}},
        ),
    ]


def use_by_roles(sid: str, account: str, role_patterns: Iterable[str], actions: Sequence[str], *,
                 via_services: Sequence[str] = (), region: str | None = None,
                 conditions: dict | None = None) -> iam.PolicyStatement:
    """Use of the key by function roles of ``account`` whose ARN matches ``role_patterns``.

    The principal is the account (so the role also needs an IAM policy: two independent
    checks), narrowed by ``aws:PrincipalArn``; ``via_services`` restricts the use to
    requests those services make on the role's behalf.
    """
    merged: dict = {"ArnLike": {"aws:PrincipalArn": sorted(set(role_patterns))}}
    if via_services:
        merged["StringEquals"] = {"kms:ViaService": [f"{s}.{region}.amazonaws.com" for s in via_services]}
    for op, values in (conditions or {}).items():
        merged.setdefault(op, {}).update(values)
    return iam.PolicyStatement(sid=sid, principals=[iam.AccountPrincipal(account)], actions=list(actions),
                               resources=["*"], conditions=merged)


def use_through_dynamodb(account: str, region: str) -> iam.PolicyStatement:
    """Table encryption: the key works only inside DynamoDB; IAM on the table decides who reads."""
    return iam.PolicyStatement(
        sid="UseThroughDynamoDbOnly", principals=[iam.AccountPrincipal(account)],
        actions=["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey",
                 "kms:CreateGrant"],
        resources=["*"],
        conditions={"StringEquals": {"kms:ViaService": f"dynamodb.{region}.amazonaws.com",
                                     "kms:CallerAccount": account}},
    )


def use_by_cloudwatch_logs(account: str, region: str) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        sid="CloudWatchLogsOfThisAccount", principals=[iam.ServicePrincipal(f"logs.{region}.amazonaws.com")],
        actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
        resources=["*"],
        conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                f"arn:{PARTITION}:logs:{region}:{account}:log-group:*"}},
    )


def use_by_cloudwatch_alarms(account: str, region: str) -> iam.PolicyStatement:
    """CloudWatch publishes alarm notifications to the KMS-encrypted SNS topic."""
    return iam.PolicyStatement(
        sid="CloudWatchAlarmsOfThisAccount", principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
        actions=["kms:Decrypt", "kms:GenerateDataKey*"], resources=["*"],
        conditions={"StringEquals": {"aws:SourceAccount": account},
                    "ArnLike": {"aws:SourceArn": f"arn:{PARTITION}:cloudwatch:{region}:{account}:alarm:*"}},
    )


def use_by_cloudtrail(account: str, trail_arn: str) -> list[iam.PolicyStatement]:
    return [
        iam.PolicyStatement(
            sid="CloudTrailEncryptsThisTrail", principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")],
            actions=["kms:GenerateDataKey*"], resources=["*"],
            conditions={"StringEquals": {"aws:SourceArn": trail_arn},
                        "StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn":
                                       f"arn:{PARTITION}:cloudtrail:*:{account}:trail/*"}},
        ),
        iam.PolicyStatement(
            sid="CloudTrailDescribesKey", principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")],
            actions=["kms:DescribeKey"], resources=["*"], conditions={"StringEquals": {"aws:SourceArn": trail_arn}},
        ),
        iam.PolicyStatement(
            sid="AuditorsReadTrailLogs", principals=[iam.AccountPrincipal(account)],
            actions=["kms:Decrypt", "kms:ReEncryptFrom"], resources=["*"],
            conditions={"StringEquals": {"kms:CallerAccount": account},
                        "StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn":
                                       f"arn:{PARTITION}:cloudtrail:*:{account}:trail/*"}},
        ),
    ]


def symmetric_key(scope: Construct, id: str, *, alias: str, description: str, account: str,
                  administrators: Sequence[str], statements: Iterable[iam.PolicyStatement]) -> kms.Key:
    """An AES-256 key with yearly rotation and an explicit policy (no CDK default ``kms:*``)."""
    policy = iam.PolicyDocument(statements=[*administration(account, administrators), *statements])
    return kms.Key(
        scope, id, alias=alias, description=description, enable_key_rotation=True,
        rotation_period=Duration.days(365), pending_window=Duration.days(30), policy=policy,
        removal_policy=RemovalPolicy.RETAIN,
    )


def signing_key(scope: Construct, id: str, *, alias: str, description: str, account: str,
                administrators: Sequence[str], statements: Iterable[iam.PolicyStatement]) -> kms.Key:
    """An ECC_NIST_P256 signing key. KMS cannot rotate asymmetric keys automatically: a new key
    under the same alias is the rotation (receivers resolve the public key by alias)."""
    policy = iam.PolicyDocument(statements=[*administration(account, administrators), *statements])
    return kms.Key(
        scope, id, alias=alias, description=description, key_spec=kms.KeySpec.ECC_NIST_P256,
        key_usage=kms.KeyUsage.SIGN_VERIFY, enable_key_rotation=False, pending_window=Duration.days(30),
        policy=policy, removal_policy=RemovalPolicy.RETAIN,
    )
