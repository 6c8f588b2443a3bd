"""DynamoDB tables (``AWS::DynamoDB::Table``; TableV2 is not deployable on the embedded AWS).

Every table: customer-managed key, point-in-time recovery, deletion protection, on-demand
billing, retained on stack deletion.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from . import nag

S = dynamodb.AttributeType.STRING
# The search API's blind index (HMAC of kana name and birth date) → resident partition.
BY_BLIND_INDEX = "by_blind_index"
# The provision log's entries of one day (sharded), for the hourly seals (lambdas/jukinet/adapters/provision_log.py).
BY_DAY = "by_day"
# The municipality tier's local records of one household (lambdas/jukinet/adapters/local_records.py).
BY_HOUSEHOLD = "by_household"
EXPIRES_AT = "expires_at"


def _table(scope: Construct, id: str, *, table_name: str, key: kms.IKey, time_to_live_attribute: str | None = None,
           resource_policy: iam.PolicyDocument | None = None) -> dynamodb.Table:
    table = dynamodb.Table(
        scope, id, table_name=table_name, time_to_live_attribute=time_to_live_attribute,
        resource_policy=resource_policy,
        partition_key=dynamodb.Attribute(name="pk", type=S), sort_key=dynamodb.Attribute(name="sk", type=S),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED, encryption_key=key,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True),
        deletion_protection=True,
        removal_policy=RemovalPolicy.RETAIN,
    )
    nag.acknowledge(table, [
        ("NIST.800.53.R5-DynamoDBInBackupPlan",
         ("Point-in-time recovery (35 days) and deletion protection are on; long-term, cross-account backup copies "
         "are set by the organisation's AWS Backup policy (AWS Organizations), not per application. See "
         "docs/operations.md, Backups.")),
    ])
    return table


def identity_table(scope: Construct, id: str, *, table_name: str, key: kms.IKey) -> dynamodb.Table:
    """The prefecture's or the nation's identity facts (see lambdas/jukinet/adapters/identity_store.py)."""
    table = _table(scope, id, table_name=table_name, key=key)
    table.add_global_secondary_index(
        index_name=BY_BLIND_INDEX, partition_key=dynamodb.Attribute(name="bidx", type=S),
        sort_key=dynamodb.Attribute(name="pk", type=S), projection_type=dynamodb.ProjectionType.KEYS_ONLY)
    return table


def cs_state_table(scope: Construct, id: str, *, table_name: str, key: kms.IKey) -> dynamodb.Table:
    """The municipality CSs' counters, file records and statistics (one partition per municipality)."""
    return _table(scope, id, table_name=table_name, key=key)


def provision_log_table(scope: Construct, id: str, *, table_name: str, key: kms.IKey,
                        resource_policy: iam.PolicyDocument | None) -> dynamodb.Table:
    """The provision log (提供記録): hash-chained entries per resident and the hourly seals.
    ``by_day`` projects only each entry's hash: what the sealer needs, nothing about a person."""
    table = _table(scope, id, table_name=table_name, key=key, time_to_live_attribute=EXPIRES_AT,
                   resource_policy=resource_policy)
    table.add_global_secondary_index(
        index_name=BY_DAY, partition_key=dynamodb.Attribute(name="day_shard", type=S),
        sort_key=dynamodb.Attribute(name="entry_ref", type=S), projection_type=dynamodb.ProjectionType.INCLUDE,
        non_key_attributes=["hash"])
    return table


def provision_state_table(scope: Construct, id: str, *, table_name: str, key: kms.IKey) -> dynamodb.Table:
    """The provision functions' mutable bookkeeping: chain heads, monthly counts, batch jobs."""
    return _table(scope, id, table_name=table_name, key=key, time_to_live_attribute=EXPIRES_AT)


def card_table(scope: Construct, id: str, *, table_name: str, key: kms.IKey) -> dynamodb.Table:
    """The municipality tier's resident cards: records, signed events, challenges (TTL), the
    register the CSs write, call records and statistics (lambdas/jukinet/adapters/card_store.py)."""
    return _table(scope, id, table_name=table_name, key=key, time_to_live_attribute=EXPIRES_AT)


def local_record_table(scope: Construct, id: str, *, table_name: str, key: kms.IKey) -> dynamodb.Table:
    """The municipality tier's local records: each change of a resident with the fields that never
    leave the tier, appended once (lambdas/jukinet/adapters/local_records.py; decision 0044).
    ``by_household`` projects only the keys: which residents were ever in a household; the record
    now is read from the table."""
    table = _table(scope, id, table_name=table_name, key=key)
    table.add_global_secondary_index(
        index_name=BY_HOUSEHOLD, partition_key=dynamodb.Attribute(name="household", type=S),
        sort_key=dynamodb.Attribute(name="pk", type=S), projection_type=dynamodb.ProjectionType.KEYS_ONLY)
    return table
