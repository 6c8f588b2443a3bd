"""The municipality tier's local-record table (decision 0044): where the resident record lives.

Each CS appends every change it sends, with the row's municipality-only fields (世帯, 続柄,
本籍 …; ``lambdas/jukinet/domain/local_record.py``), to one table per municipality tier,
``<prefix>-muni-<prefecture>-local-records``: its own customer-managed key, point-in-time
recovery, deletion protection, the ``by_household`` index. Nothing of it is ever sent upward.

Who may write what: a CS's role may ``PutItem`` (alone or inside ``TransactWriteItems``, which
IAM authorises item by item as ``PutItem``) only items whose partition key begins with its own
municipality's code (``dynamodb:LeadingKeys``, with a ``Null`` guard so a request without keys
matches nothing), and is denied every way of rewriting or removing one. The runtime's puts are
conditional (``attribute_not_exists``): append-only.

Used by ``infra/stacks/municipality.py``: ``LocalRecordStore`` in the base stack,
``cs_environment`` and ``cs_statements`` for each CS.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from constructs import Construct

from ..config import Environment
from ..naming import Names, local_record_partition_prefix, municipality_tier
from . import keys
from .tables import BY_HOUSEHOLD, local_record_table

ENV_VAR = "LOCAL_RECORD_TABLE_NAME"
WRITE_ACTIONS = ["dynamodb:PutItem"]
# Every way to change or remove an item that exists (BatchWriteItem's puts cannot be conditional).
REWRITE_ACTIONS = ["dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
                   "dynamodb:PartiQLUpdate", "dynamodb:PartiQLDelete", "dynamodb:PartiQLInsert"]


class LocalRecordStore(Construct):
    """The table and its key, and the tier's DynamoDB endpoint admitting the CSs' appends."""

    def __init__(self, scope: Construct, id: str, *, stack) -> None:
        super().__init__(scope, id)
        names, env = stack.names, stack.tier_env
        pcode = stack.prefecture.code
        tier = municipality_tier(pcode)
        self.table_name = names.local_record_table(pcode)
        self.key = keys.symmetric_key(
            self, "Key", alias=names.key_alias(tier, "local-records"), account=env.account,
            administrators=stack.administrators,
            description=f"{tier}: the local-record table (fields kept only in the municipality tier)",
            statements=[keys.use_through_dynamodb(env.account, env.region)])
        self.table = local_record_table(self, "Table", table_name=self.table_name, key=self.key)
        stack.network.allow_through("DynamoDb", iam.PolicyStatement(
            sid="LocalRecordAppends", principals=[iam.AnyPrincipal()], actions=WRITE_ACTIONS,
            resources=[names.table_arn(env, self.table_name)],
            conditions={"ArnLike": {"aws:PrincipalArn": [stack.role_pattern]}}))


def cs_environment(names: Names, prefecture_code: str) -> dict[str, str]:
    return {ENV_VAR: names.local_record_table(prefecture_code)}


def cs_statements(names: Names, env: Environment, prefecture_code: str, code: str) -> list[iam.PolicyStatement]:
    """The CS of municipality ``code``: append its own municipality's records, rewrite none."""
    table_arn = names.table_arn(env, names.local_record_table(prefecture_code))
    return [
        iam.PolicyStatement(
            sid="AppendOwnLocalRecordsOnly", actions=WRITE_ACTIONS, resources=[table_arn],
            conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{local_record_partition_prefix(code)}*"]},
                        "Null": {"dynamodb:LeadingKeys": "false"}}),
        iam.PolicyStatement(
            sid="NeverRewriteLocalRecords", effect=iam.Effect.DENY, actions=REWRITE_ACTIONS,
            resources=[table_arn, f"{table_arn}/index/{BY_HOUSEHOLD}"]),
    ]
