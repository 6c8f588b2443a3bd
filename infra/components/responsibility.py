"""The responsibility structure as IAM: the roles people hold in each tier (docs/security.md, decision 0011).

Every tier stack (national, prefecture, municipality base) gets, for the people its
configuration names (``config.People``):

* one role per responsibility (``config.RESPONSIBILITY_ROLES``): chief security officer,
  deputy, security officer, network administrator, operator, auditor — each
  ``<prefix>-<tier>-<role>`` under ``/<prefix>/<tier>-people/``, assumable only by the
  persons holding it, with MFA, for at most an hour;
* one role per contractor's contract (委託), ``<prefix>-<tier>-contractor-<id>``: operator-like
  read rights whose trust policy and every Allow carry ``DateLessThan aws:CurrentTime`` of
  the contract's expiry, so it stops working by itself;
* ``<prefix>-<tier>-break-glass``: the one way for a person to read plaintext identity facts,
  assumable only by the tier's security officers with fresh MFA, their own
  ``sts:SourceIdentity`` and a ``reason`` session tag; every AssumeRole of it raises the
  tier's ``break-glass-used`` alarm (a metric filter on the account trail's log group).

Permissions are written out statement by statement in one customer-managed policy per role.
Every role but break-glass also carries the tier's guardrail policy: explicit Denies of the
keys, items, messages and objects that hold identity facts — so no later Allow, in this
account's IAM, can open them to a person by accident.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from jukinet.domain.metrics import SECURITY_NAMESPACE, break_glass_metric

from ..config import BREAK_GLASS_ROLE, RESPONSIBILITY_ROLES, SAML_AUDIENCE, Contract, Deployment, Person
from ..naming import NATIONAL, PARTITION, Names
from . import keys, nag
from .monitoring import PERIOD

BREAK_GLASS = BREAK_GLASS_ROLE
GUARDRAILS = "people-guardrails"
MAX_SESSION_SECONDS = 3600
# A break-glass session needs an MFA sign-in of the last 15 minutes.
BREAK_GLASS_MFA_MAX_AGE_SECONDS = 900
REASON_TAG = "reason"
ROLE_TAG = "responsibility"  # tag key (under the prefix) of every people role: its kind
EXPIRES_TAG = "expires"
# Identity-table items people may read: the per-municipality ledgers (counts and sequence runs,
# no identity facts), which reconciliation needs. Everything else in the table is a resident's.
LEDGER_KEYS = "LEDGER#*"
ISOLATION_MARK_KEYS = "ISOLATED#*"  # jukinet.adapters.recipient_state.isolation_key

FACT_KEY_ACTIONS = ["kms:Decrypt", "kms:Encrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:CreateGrant"]
KEY_USE_ACTIONS = [*FACT_KEY_ACTIONS, "kms:Sign", "kms:Verify", "kms:GenerateMac", "kms:VerifyMac"]
TABLE_BULK_READS = ["dynamodb:Scan", "dynamodb:Query", "dynamodb:PartiQLSelect", "dynamodb:ExportTableToPointInTime",
                    "dynamodb:RestoreTableToPointInTime", "dynamodb:RestoreTableFromBackup", "dynamodb:CreateBackup"]
TABLE_ITEM_READS = ["dynamodb:GetItem", "dynamodb:BatchGetItem"]
OBJECT_READS = ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectAttributes", "s3:GetObjectTorrent"]
LOG_READS = ["logs:FilterLogEvents", "logs:GetLogEvents", "logs:StartQuery", "logs:DescribeLogStreams",
             "logs:GetLogGroupFields"]
LOG_LISTS = ["logs:DescribeLogGroups", "logs:GetQueryResults", "logs:StopQuery", "logs:DescribeQueries"]
METRIC_READS = ["cloudwatch:GetMetricData", "cloudwatch:GetMetricStatistics", "cloudwatch:ListMetrics",
                "cloudwatch:ListDashboards"]
ALARM_READS = ["cloudwatch:DescribeAlarms", "cloudwatch:DescribeAlarmHistory"]
TRAIL_READS = ["cloudtrail:GetTrailStatus", "cloudtrail:GetEventSelectors", "cloudtrail:GetTrail"]
TRAIL_LISTS = ["cloudtrail:LookupEvents", "cloudtrail:DescribeTrails", "cloudtrail:ListTrails"]
ROLE_READS = ["iam:GetRole", "iam:ListRoleTags", "iam:ListAttachedRolePolicies", "iam:ListRolePolicies",
              "iam:GetRolePolicy"]
POLICY_READS = ["iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyVersions"]
KEY_READS = ["kms:DescribeKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListResourceTags",
             "kms:ListKeyPolicies"]
CONFIG_READS = ["config:DescribeConfigurationRecorders", "config:DescribeConfigurationRecorderStatus",
                "config:DescribeConfigRules", "config:DescribeComplianceByConfigRule",
                "config:DescribeComplianceByResource", "config:GetComplianceDetailsByConfigRule",
                "config:GetResourceConfigHistory", "config:SelectResourceConfig"]
NETWORK_READS = ["ec2:DescribeVpcs", "ec2:DescribeSubnets", "ec2:DescribeRouteTables", "ec2:DescribeNetworkAcls",
                 "ec2:DescribeSecurityGroups", "ec2:DescribeSecurityGroupRules", "ec2:DescribeVpcEndpoints",
                 "ec2:DescribeFlowLogs", "ec2:DescribeNetworkInterfaces", "ec2:DescribePrefixLists"]
NETWORK_CHANGES = ["ec2:AuthorizeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupEgress",
                   "ec2:RevokeSecurityGroupIngress", "ec2:RevokeSecurityGroupEgress",
                   "ec2:UpdateSecurityGroupRuleDescriptionsIngress", "ec2:UpdateSecurityGroupRuleDescriptionsEgress",
                   "ec2:ModifySecurityGroupRules", "ec2:ModifyVpcEndpoint"]
EMERGENCY_FUNCTION_ACTIONS = ["lambda:PutFunctionConcurrency", "lambda:DeleteFunctionConcurrency",
                              "lambda:GetFunctionConcurrency", "lambda:GetFunctionConfiguration"]
MAPPING_ACTIONS = ["lambda:UpdateEventSourceMapping", "lambda:GetEventSourceMapping"]
ALARM_CHANGES = ["cloudwatch:SetAlarmState", "cloudwatch:DisableAlarmActions", "cloudwatch:EnableAlarmActions",
                 "cloudwatch:DeleteAlarms", "cloudwatch:PutMetricAlarm"]

# The role that may redrive its tier's dead letters, and what it needs of the transport key
# (SQS decrypts a message for the receiver and makes a data key for the sender).
REDRIVE_ROLE = "operator"
REDRIVE_KEY_ACTIONS = ["kms:Decrypt", "kms:GenerateDataKey"]

TITLES: dict[str, str] = {**RESPONSIBILITY_ROLES, BREAK_GLASS: "緊急時閲覧 (break-glass)", "contractor": "委託"}



def break_glass_filter_pattern(account: str, role_name: str) -> str:
    """CloudTrail's AssumeRole of the role, also when the caller names it without its path."""
    return ("{ ($.eventSource = \"sts.amazonaws.com\") && ($.eventName = \"AssumeRole\") && "
            f"($.requestParameters.roleArn = \"arn:{PARTITION}:iam::{account}:role/*{role_name}\") }}")


# --- trust policies (plain JSON: also what jukinet access-review reads back) ----------------


def _camel(text: str) -> str:
    return "".join(part.capitalize() for part in text.replace("_", "-").split("-"))


def trust_policy(persons: Sequence[Person], *, expires_at: str | None = None,
                 break_glass: bool = False) -> dict[str, Any]:
    """Who may assume a people role: each named person, with MFA; ``expires_at`` bounds it in time.

    Break-glass: one statement per person, binding ``sts:SourceIdentity`` to the person's id,
    requiring an MFA sign-in of the last 15 minutes and a ``reason`` session tag (and no other).
    """
    mfa = {"aws:MultiFactorAuthPresent": "true"}
    until = {"DateLessThan": {"aws:CurrentTime": expires_at}} if expires_at else {}
    statements: list[dict[str, Any]] = []
    iam_people = sorted((p for p in persons if not p.is_saml), key=lambda p: p.person_id)
    if break_glass:
        for p in iam_people:
            statements.append({
                "Sid": f"BreakGlass{_camel(p.person_id)}", "Effect": "Allow", "Principal": {"AWS": p.principal},
                "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"],
                "Condition": {
                    "Bool": mfa,
                    "NumericLessThan": {"aws:MultiFactorAuthAge": str(BREAK_GLASS_MFA_MAX_AGE_SECONDS)},
                    "StringEquals": {"sts:SourceIdentity": p.person_id},
                    "Null": {f"aws:RequestTag/{REASON_TAG}": "false"},
                    "ForAllValues:StringEquals": {"aws:TagKeys": [REASON_TAG]},
                    **until,
                },
            })
        return {"Version": "2012-10-17", "Statement": statements}
    if iam_people:
        principals = [p.principal for p in iam_people]
        statements.append({
            "Sid": "NamedPeopleWithMfa", "Effect": "Allow",
            "Principal": {"AWS": principals if len(principals) > 1 else principals[0]},
            "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"],
            "Condition": {"Bool": mfa, **until},
        })
    providers: dict[str, list[str]] = {}
    for p in persons:
        if p.is_saml:
            providers.setdefault(p.principal, []).append(p.saml_subject or "")
    for i, (provider, subjects) in enumerate(sorted(providers.items())):
        statements.append({
            "Sid": f"NamedPeopleThroughSaml{i}", "Effect": "Allow", "Principal": {"Federated": provider},
            "Action": ["sts:AssumeRoleWithSAML", "sts:SetSourceIdentity"],
            "Condition": {"StringEquals": {"SAML:aud": SAML_AUDIENCE, "saml:sub": sorted(subjects)}, **until},
        })
    return {"Version": "2012-10-17", "Statement": statements}


# --- what the policies of one tier name -----------------------------------------------------


@dataclass
class TierScope:
    """The resources of one tier stack that people's policies name (see ``scope_of``)."""

    fact_keys: list[kms.IKey] = field(default_factory=list)         # their plaintext is identity facts
    dynamodb_only_keys: list[kms.IKey] = field(default_factory=list)  # usable by people only inside DynamoDB
    identity_tables: list[str] = field(default_factory=list)
    fact_objects: list[str] = field(default_factory=list)
    fact_queues: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)               # ARN patterns
    function_logs: list[str] = field(default_factory=list)           # log-group ARN patterns
    other_logs: list[str] = field(default_factory=list)              # the stack's other log groups
    flow_logs: list[str] = field(default_factory=list)
    state_tables: list[str] = field(default_factory=list)            # counts only: reconciliation reads them
    provision_tables: list[str] = field(default_factory=list)        # the provision log (field names, not facts)
    seal_keys: list[str] = field(default_factory=list)
    seal_archives: list[str] = field(default_factory=list)        # the seal archive bucket (reads for auditors)
    seal_archive_keys: list[str] = field(default_factory=list)
    security_reports: list[str] = field(default_factory=list)     # the tier's security-reports bucket
    security_report_keys: list[str] = field(default_factory=list)
    unstoppable_functions: list[str] = field(default_factory=list)  # no one's emergency rights stop these
    # Functions fed by an SQS queue that the emergency roles may stop and pause but never invoke
    # (the municipality tier's channel function: decision 0047).
    queue_functions: list[str] = field(default_factory=list)
    api_keys: bool = False
    queue_mappings: bool = False                                     # functions fed by SQS event source mappings
    # Emergency isolation (jukinet_ops/emergency.py): what this tier's isolations change and record.
    isolation_records: list[str] = field(default_factory=list)      # SSM parameter name patterns
    held_queues: list[str] = field(default_factory=list)            # inbound/channel queue whose retention is raised
    drop_zone_buckets: list[str] = field(default_factory=list)      # bucket ARN patterns (notifications)
    batch_bucket: str | None = None                                  # its policy holds an agency's Deny
    isolation_marks: list[str] = field(default_factory=list)        # provision state table: ISOLATED#<agency>
    # Break-glass: what it may open, and how.
    envelope_key: kms.IKey | None = None
    envelope_context: Mapping[str, str] = field(default_factory=dict)
    dead_letter_queues: list[str] = field(default_factory=list)
    transport_key: kms.IKey | None = None
    # Redrive (jukinet redrive, decision 0022): the operator moves dead letters back to their queue.
    redrive: tuple[str, str] | None = None                           # (dead-letter queue ARN, its source queue ARN)
    drop_zone_key: kms.IKey | None = None
    drop_zone_bucket_prefix: str | None = None


def scope_of(stack: Any) -> TierScope:
    """A ``TierStack``'s scope: a processing tier (national, prefecture) or a municipality base."""
    names, env, tier = stack.names, stack.tier_env, stack.tier
    region, account = env.region, env.account
    scope = TierScope()
    log_arn = f"arn:{PARTITION}:logs:{region}:{account}:log-group:"
    processing = getattr(stack, "processing", None)
    if processing is not None:
        table = names.table_arn(env, names.identity_table(tier))
        scope.fact_keys += [processing.envelope_key, processing.transport_key]
        scope.identity_tables.append(table)
        inbound = names.inbound_queue(tier)
        # Literal ARNs (the queues' names are fixed): the guardrail tells the two queues apart.
        scope.fact_queues += [names.queue_arn(env, inbound), names.queue_arn(env, names.dead_letter_queue(inbound))]
        scope.functions.append(f"arn:{PARTITION}:lambda:{region}:{account}:function:{names.prefix}-{tier}-*")
        scope.function_logs.append(f"{log_arn}/aws/lambda/{names.prefix}-{tier}-*")
        scope.envelope_key = processing.envelope_key
        scope.envelope_context = dict(processing.envelope_context)
        scope.transport_key = processing.transport_key
        scope.dead_letter_queues.append(processing.inbound.dead_letter_queue.queue_arn)
        scope.redrive = (names.queue_arn(env, names.dead_letter_queue(inbound)), names.queue_arn(env, inbound))
        scope.queue_mappings = True
        if tier != NATIONAL:
            scope.isolation_records.append(f"prefecture/{tier.removeprefix('pref-')}")
            scope.held_queues.append(names.queue_arn(env, names.inbound_queue(tier)))
    provision = getattr(stack, "provision", None)
    if provision is not None:
        scope.fact_keys.append(provision.batch_key)
        scope.fact_objects.append(f"{provision.bucket.bucket_arn}/*")
        scope.function_logs.append(provision.access_logs.log_group_arn)
        scope.provision_tables += [names.table_arn(env, names.provision_log_table()),
                                   f"{names.table_arn(env, names.provision_log_table())}/index/*",
                                   names.table_arn(env, names.provision_state_table())]
        scope.seal_keys.append(provision.seal_key.key_arn)
        scope.seal_archives.append(provision.seal_archive.bucket_arn)
        scope.seal_archive_keys.append(provision.seal_archive_key.key_arn)
        # Stopping the sealer would leave the log unsealed: it is not part of any emergency stop
        # (isolation never needs it: it reads the log and signs, it provides nothing).
        scope.unstoppable_functions.append(
            f"arn:{PARTITION}:lambda:{region}:{account}:function:{names.provision_function('sealer')}")
        scope.api_keys = True
        scope.isolation_records.append("agency/*")
        scope.batch_bucket = provision.bucket.bucket_arn
        scope.isolation_marks.append(names.table_arn(env, names.provision_state_table()))
    if processing is None:  # the municipality tier's base stack
        code = stack.prefecture.code
        scope.dynamodb_only_keys.append(stack.at_rest_key)
        scope.drop_zone_key = stack.at_rest_key
        scope.drop_zone_bucket_prefix = names.drop_zone_bucket_prefix(env)
        scope.fact_objects.append(f"arn:{PARTITION}:s3:::{names.drop_zone_bucket_prefix(env)}*/*")
        scope.state_tables.append(names.table_arn(env, names.cs_state_table(code)))
        scope.isolation_records.append(f"municipality/{code[:2]}*")
        scope.drop_zone_buckets.append(f"arn:{PARTITION}:s3:::{names.drop_zone_bucket_prefix(env)}*")
        cs = f"{names.prefix}-cs-{code[:2]}*"
        scope.functions.append(f"arn:{PARTITION}:lambda:{region}:{account}:function:{cs}")
        # The CSs' inboxes (decision 0051): an isolated CS's mapping disabled, its inbox tagged.
        scope.queue_mappings = True
        scope.held_queues.append(names.queue_arn(env, names.cs_inbox_queue(f"{code[:2]}*")))
        scope.function_logs.append(f"{log_arn}/aws/lambda/{cs}")
        channel = getattr(stack, "channel", None)
        if channel is not None:
            # The channel between municipalities (decision 0047): its queue and dead-letter queue
            # are to the tier's people what a processing tier's inbound queues are — closed but
            # for the operator's redrive and break-glass, never purged; the channel function
            # stopped and its mapping paused by the emergency roles; its transport key closed
            # like a processing tier's.
            queue = names.channel_queue(code)
            dead = names.dead_letter_queue(queue)
            scope.fact_keys.append(channel.transport_key)
            scope.fact_queues += [names.queue_arn(env, queue), names.queue_arn(env, dead)]
            scope.transport_key = channel.transport_key
            scope.dead_letter_queues.append(channel.dead_letter_queue.queue_arn)
            scope.redrive = (names.queue_arn(env, dead), names.queue_arn(env, queue))
            function = names.channel_function(code)
            scope.queue_functions.append(f"arn:{PARTITION}:lambda:{region}:{account}:function:{function}")
            scope.function_logs.append(f"{log_arn}/aws/lambda/{function}")
            scope.queue_mappings = True
            scope.held_queues.append(names.queue_arn(env, queue))
    reports = getattr(stack, "security_reports", None)
    if reports is not None:
        # Literal (the name is fixed): people's policies name it as they name the tier's other resources.
        scope.security_reports.append(names.bucket_arn(names.security_reports_bucket(env, tier)))
        scope.security_report_keys.append(reports.key.key_arn)
    flow = stack.network.flow_log_group.log_group_arn
    scope.flow_logs.append(flow)
    known = {flow, *scope.function_logs}
    for child in stack.node.find_all():
        if isinstance(child, logs.LogGroup) and child.log_group_arn not in known:
            name = child.node.default_child.log_group_name if child.node.default_child else None  # type: ignore[union-attr]
            if isinstance(name, str) and name.startswith("/aws/lambda/"):
                continue  # a function's: already covered by the tier's function-log pattern
            scope.other_logs.append(child.log_group_arn)
    return scope


# --- the roles of one tier --------------------------------------------------------------------


class TierPeople(Construct):
    """The people roles, their policies, the guardrails and the break-glass alarm of one tier stack."""

    def __init__(self, stack: Any, id: str, *, deployment: Deployment, today: dt.date) -> None:
        super().__init__(stack, id)
        self.stack = stack
        self.deployment = deployment
        self.names: Names = stack.names
        self.tier: str = stack.tier
        self.env = stack.tier_env
        self.scope = scope_of(stack)
        people = deployment.people
        names, tier, env = self.names, self.tier, self.env
        self.path = names.people_path(tier)
        self.alarm_prefix = f"arn:{PARTITION}:cloudwatch:{env.region}:{env.account}:alarm:{names.prefix}-{tier}-"
        self.break_glass_alarm = f"{self.alarm_prefix}break-glass-used"
        self.roles: dict[str, iam.CfnRole] = {}
        self.policies: dict[str, iam.ManagedPolicy] = {}

        self.guardrails = iam.ManagedPolicy(
            self, "Guardrails", managed_policy_name=names.people_role(tier, GUARDRAILS), path=self.path,
            description=f"{tier}: what no person's role may do (identity facts stay closed; break-glass excepted)",
            statements=self._guardrail_statements())
        builders = {
            "chief-security-officer": self._chief, "deputy-chief-security-officer": self._chief,
            "security-officer": self._security_officer, "network-administrator": self._network_administrator,
            "operator": self._operator, "auditor": self._auditor,
        }
        for kind, build in builders.items():
            holders = people.holders(tier, kind)
            if holders:
                self._role(kind, holders, build(), description=f"{kind} of {tier} (docs/security.md)")
        for contract in people.contracts_of(tier):
            if contract.is_expired(today):
                cdk.Annotations.of(stack).add_warning_v2(
                    "jukinet:contract-expired",
                    f"contract {contract.contract_id} ({contract.company}) expired on {contract.expires}: its role "
                    f"{names.people_role(tier, contract.role_kind)} is no longer synthesized; remove the contract "
                    "from the configuration (jukinet access-review lists it)")
                continue
            holders = tuple(people.person(p) for p in contract.people)
            self._role(contract.role_kind, holders, self._contractor(contract), contract=contract,
                       description=f"contractor {contract.contract_id} on {tier}, refused from {contract.expires} "
                                   "(docs/security.md)")
        officers = people.holders(tier, "security-officer")
        if officers:
            self._break_glass(officers)

    # --- helpers ------------------------------------------------------------------------
    def _role(self, kind: str, holders: Sequence[Person], statements: list[iam.PolicyStatement], *,
              description: str, contract: Contract | None = None, guardrails: bool = True) -> iam.CfnRole:
        names, tier = self.names, self.tier
        cid = _camel(kind)
        policy = iam.ManagedPolicy(self, f"{cid}Policy", managed_policy_name=names.people_role(tier, kind),
                                   path=self.path, description=f"Permissions of the {description}"[:1000],
                                   statements=statements)
        tags = [cdk.CfnTag(key=f"{names.prefix}:{ROLE_TAG}", value="contractor" if contract else kind)]
        if contract is not None:
            tags.append(cdk.CfnTag(key=f"{names.prefix}:{EXPIRES_TAG}", value=contract.expires.isoformat()))
        role = iam.CfnRole(
            self, f"{cid}Role", role_name=names.people_role(tier, kind), path=self.path,
            description=description[:1000], max_session_duration=MAX_SESSION_SECONDS,
            assume_role_policy_document=trust_policy(holders, expires_at=contract.expires_at if contract else None,
                                                     break_glass=kind == BREAK_GLASS),
            managed_policy_arns=[policy.managed_policy_arn, *([self.guardrails.managed_policy_arn] if guardrails
                                                              else [])],
            tags=tags)
        self.roles[kind] = role
        self.policies[kind] = policy
        self._acknowledge(policy, statements)
        return role

    def _acknowledge(self, policy: iam.ManagedPolicy, statements: Sequence[iam.PolicyStatement]) -> None:
        """IAM5 findings of a people policy, each wildcard named: ``*`` for actions without
        resource-level permissions, and this tier's name patterns (``naming``)."""
        wildcards: set[str] = set()
        tokens = anything = seals = False
        for st in statements:
            if st.effect != iam.Effect.ALLOW:
                continue
            for r in st.resources:
                if r == "*":
                    anything = True
                elif "*" not in r:
                    continue
                elif cdk.Token.is_unresolved(r) and r.endswith("/seals/*"):
                    seals = True
                elif cdk.Token.is_unresolved(r):
                    tokens = True
                else:
                    wildcards.add(r)
        acks: list[nag.Acknowledgement] = []
        if anything:
            acks.append(("AwsSolutions-IAM5", ("Read-only listing and metric actions that support no resource-level "
                         "permission (GetMetricData, ListMetrics, LookupEvents, DescribeLogGroups, GetQueryResults, "
                         "ec2:Describe*, config reads, ListEventSourceMappings, iam:ListRoles)."), ["Resource::*"]))
        if wildcards:
            acks.append(("AwsSolutions-IAM5", (f"Only this tier's ({self.tier}) resources, by the fixed names infra/"
                         "naming.py gives them (alarms, queues, functions and their log groups, event source mappings "
                         "of its functions, IAM roles and policies, tagged network resources, keys of its account)."),
                         [f"Resource::{r}" for r in sorted(wildcards)]))
        if tokens:
            acks.append(("AwsSolutions-IAM5", ("CloudTrail's log files under AWSLogs/ in this stack's trail bucket: "
                         "auditors validate and read the trail."),
                         [r"/^Resource::<AccountTrailBucket[A-F0-9]+\.Arn>\/AWSLogs\/\*$/"]))
        if seals:
            acks.append(("AwsSolutions-IAM5", ("The provision log's seal archive (seals/<period>.json, one object per "
                         "sealed hour, under Object Lock): auditors read it to check each seal's copy."),
                         [r"/^Resource::<ProvisionSealArchive[A-F0-9]+\.Arn>\/seals\/\*$/"]))
        if acks:
            nag.acknowledge(policy, acks)

    def _logs(self, *groups: list[str]) -> list[str]:
        return sorted({g for group in groups for g in group})

    def _observe(self, *, all_logs: bool) -> list[iam.PolicyStatement]:
        """Metrics, this tier's alarms and logs, queue depths: what every operating role reads."""
        s, env = self.scope, self.env
        log_groups = self._logs(s.function_logs, *((s.other_logs, s.flow_logs) if all_logs else ()))
        queues = f"arn:{PARTITION}:sqs:{env.region}:{env.account}:{self.names.prefix}-{self.tier}-*"
        return [
            iam.PolicyStatement(sid="ReadMetrics", actions=METRIC_READS, resources=["*"]),
            iam.PolicyStatement(sid="ReadTierAlarms", actions=ALARM_READS, resources=[f"{self.alarm_prefix}*"]),
            iam.PolicyStatement(sid="ReadTierLogs", actions=LOG_READS, resources=log_groups),
            iam.PolicyStatement(sid="ListLogsAndQueries", actions=LOG_LISTS, resources=["*"]),
            iam.PolicyStatement(sid="ReadQueueDepths", actions=["sqs:GetQueueAttributes",
                                                                "sqs:ListDeadLetterSourceQueues"],
                                resources=[queues]),
        ]

    def _trail_reads(self) -> list[iam.PolicyStatement]:
        trail = self.names.trail_arn(self.env, self.names.trail())
        return [
            iam.PolicyStatement(sid="ReadAccountTrail", actions=TRAIL_READS, resources=[trail]),
            iam.PolicyStatement(sid="LookUpTrailEvents", actions=TRAIL_LISTS, resources=["*"]),
        ]

    def _iam_reads(self) -> list[iam.PolicyStatement]:
        """The tier's roles (functions, services, people) and policies: access reviews."""
        names, env, tier = self.names, self.env, self.tier
        iam_arn = f"arn:{PARTITION}:iam::{env.account}:"
        return [
            iam.PolicyStatement(sid="ReviewTierRoles", actions=ROLE_READS,
                                resources=[f"{iam_arn}role/{names.prefix}/{tier}*"]),
            iam.PolicyStatement(sid="ReviewTierPolicies", actions=POLICY_READS,
                                resources=[f"{iam_arn}policy{self.path}*", f"{iam_arn}policy/{names.prefix}-{tier}-*"]),
            iam.PolicyStatement(sid="ListRoles", actions=["iam:ListRoles"], resources=["*"]),
        ]

    def _emergency(self) -> list[iam.PolicyStatement]:
        """The emergency plan's isolation and restoration of this tier's targets (``jukinet isolate``,
        ``jukinet restore``, ``jukinet isolation-status``: jukinet_ops/emergency.py, docs/operations.md)."""
        s, env, prefix = self.scope, self.env, self.names.prefix
        ssm = f"arn:{PARTITION}:ssm:{env.region}:{env.account}:parameter/{prefix}/isolation"
        statements = [
            iam.PolicyStatement(sid="StopAndRestartFunctions", actions=EMERGENCY_FUNCTION_ACTIONS,
                                resources=[*s.functions, *s.queue_functions]),
            *([iam.PolicyStatement(sid="NeverStopTheSealer", effect=iam.Effect.DENY,
                                   actions=["lambda:PutFunctionConcurrency", "lambda:DeleteFunctionConcurrency"],
                                   resources=s.unstoppable_functions)] if s.unstoppable_functions else []),
            iam.PolicyStatement(sid="RecordIsolations", actions=["ssm:GetParameter", "ssm:PutParameter",
                                                                 "ssm:GetParameterHistory"],
                                resources=[f"{ssm}/{target}" for target in s.isolation_records]),
            iam.PolicyStatement(sid="ReadIsolationRecords", actions=["ssm:GetParametersByPath"],
                                resources=[ssm, f"{ssm}/*"]),
        ]
        if s.queue_mappings:
            statements += [
                iam.PolicyStatement(
                    sid="PauseAndResumeQueueMappings", actions=MAPPING_ACTIONS,
                    resources=[f"arn:{PARTITION}:lambda:{env.region}:{env.account}:event-source-mapping:*"],
                    conditions={"ArnLike": {"lambda:FunctionArn": [*s.functions, *s.queue_functions]}}),
                iam.PolicyStatement(sid="ListQueueMappings", actions=["lambda:ListEventSourceMappings"],
                                    resources=["*"]),
            ]
        if s.held_queues:
            # Retention raised while the processor is stopped, the queue tagged with the isolation.
            statements.append(iam.PolicyStatement(
                sid="HoldNoticesInTheInboundQueue",
                actions=["sqs:GetQueueUrl", "sqs:SetQueueAttributes", "sqs:TagQueue", "sqs:UntagQueue",
                         "sqs:ListQueueTags"], resources=s.held_queues))
        if s.drop_zone_buckets:
            # The drop zone's S3 → CS notification off and back; on restoration the CS is invoked
            # for each file left under incoming/ (keys are listed, never read).
            statements += [
                iam.PolicyStatement(sid="SwitchDropZoneNotifications",
                                    actions=["s3:GetBucketNotification", "s3:PutBucketNotification", "s3:ListBucket"],
                                    resources=s.drop_zone_buckets),
                iam.PolicyStatement(sid="ReplayHeldExports", actions=["lambda:InvokeFunction"],
                                    resources=s.functions),
            ]
        if s.api_keys:
            statements.append(iam.PolicyStatement(
                sid="SuspendAndRestoreRecipientKeys", actions=["apigateway:GET", "apigateway:PATCH"],
                resources=[f"arn:{PARTITION}:apigateway:{env.region}::/apikeys",
                           f"arn:{PARTITION}:apigateway:{env.region}::/apikeys/*"]))
        if s.isolation_marks:
            # The isolation mark the provision functions check on every request (the API key
            # alone can be bypassed with another recipient's key): these items only.
            statements.append(iam.PolicyStatement(
                sid="MarkIsolatedRecipients", actions=["dynamodb:GetItem", "dynamodb:PutItem"],
                resources=s.isolation_marks,
                conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [ISOLATION_MARK_KEYS]}}))
        if s.batch_bucket is not None:
            # An isolated batch recipient's Deny in the batch bucket's policy (objects stay closed to
            # people by the guardrail's Deny, whatever the bucket policy says).
            statements.append(iam.PolicyStatement(
                sid="HoldBatchRecipients", actions=["s3:GetBucketPolicy", "s3:PutBucketPolicy",
                                                    "s3:DeleteBucketPolicy"],
                resources=[s.batch_bucket]))
        return statements

    def _ledger_reads(self) -> list[iam.PolicyStatement]:
        """Reconciliation's counts: the identity tables' ledger items, the CS state table."""
        s = self.scope
        statements = []
        if s.identity_tables:
            statements.append(iam.PolicyStatement(
                sid="ReadLedgers", actions=["dynamodb:GetItem", "dynamodb:DescribeTable"], resources=s.identity_tables,
                conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [LEDGER_KEYS]}}))
        if s.state_tables:
            statements.append(iam.PolicyStatement(
                sid="ReadCsState", actions=["dynamodb:GetItem", "dynamodb:Query", "dynamodb:DescribeTable"],
                resources=s.state_tables))
        return statements

    # --- guardrails --------------------------------------------------------------------
    def _guardrail_statements(self) -> list[iam.PolicyStatement]:
        s, region = self.scope, self.env.region
        deny = iam.Effect.DENY
        statements = []
        redrive_key = s.transport_key if s.redrive else None
        fact_keys = [k.key_arn for k in s.fact_keys if k is not redrive_key]
        if fact_keys:  # (a municipality tier's only one is the channel transport key: the redrive key)
            statements.append(iam.PolicyStatement(
                sid="DenyIdentityFactKeys", effect=deny, actions=FACT_KEY_ACTIONS, resources=fact_keys))
        if redrive_key is not None and s.redrive:
            # The transport key carries notices in the queues: closed to every person but the
            # tier's operator, and to the operator open only through SQS for the two queues a
            # redrive touches (each Deny alone closes it: conditions of one statement are ANDed).
            key, operator = [redrive_key.key_arn], [self.names.people_role_arn(self.env, self.tier, REDRIVE_ROLE)]
            statements += [
                iam.PolicyStatement(sid="DenyTransportKeyButToRedrive", effect=deny, actions=FACT_KEY_ACTIONS,
                                    resources=key, conditions={"ArnNotEquals": {"aws:PrincipalArn": operator}}),
                iam.PolicyStatement(sid="DenyTransportKeyOutsideSqs", effect=deny, actions=FACT_KEY_ACTIONS,
                                    resources=key,
                                    conditions={"StringNotEquals": {"kms:ViaService": f"sqs.{region}.amazonaws.com"}}),
                iam.PolicyStatement(sid="DenyTransportKeyForOtherQueues", effect=deny, actions=FACT_KEY_ACTIONS,
                                    resources=key,
                                    conditions={"StringNotEquals": {"kms:EncryptionContext:aws:sqs:arn":
                                                                    list(s.redrive)}}),
            ]
        if s.dynamodb_only_keys:
            statements.append(iam.PolicyStatement(
                sid="DenyAtRestKeyOutsideDynamoDb", effect=deny, actions=FACT_KEY_ACTIONS,
                resources=[k.key_arn for k in s.dynamodb_only_keys],
                conditions={"StringNotEquals": {"kms:ViaService": f"dynamodb.{region}.amazonaws.com"}}))
        if s.identity_tables:
            tables = [*s.identity_tables, *(f"{t}/*" for t in s.identity_tables)]
            statements += [
                iam.PolicyStatement(sid="DenyIdentityTableBulkReads", effect=deny, actions=TABLE_BULK_READS,
                                    resources=tables),
                iam.PolicyStatement(sid="DenyResidentItems", effect=deny, actions=TABLE_ITEM_READS,
                                    resources=s.identity_tables,
                                    conditions={"ForAnyValue:StringNotLike": {"dynamodb:LeadingKeys": [LEDGER_KEYS]}}),
            ]
        if s.fact_queues:
            dead_letters = s.redrive[0] if s.redrive else None
            statements.append(iam.PolicyStatement(sid="DenyNoticeMessages", effect=deny,
                                                  actions=["sqs:ReceiveMessage", "sqs:PurgeQueue"],
                                                  resources=[q for q in s.fact_queues if q != dead_letters]))
            if dead_letters:
                statements += [
                    iam.PolicyStatement(sid="DenyDeadLettersButToRedrive", effect=deny,
                                        actions=["sqs:ReceiveMessage", "sqs:DeleteMessage"], resources=[dead_letters],
                                        conditions={"ArnNotEquals": {"aws:PrincipalArn": [
                                            self.names.people_role_arn(self.env, self.tier, REDRIVE_ROLE)]}}),
                    iam.PolicyStatement(sid="DenyPurgingDeadLetters", effect=deny, actions=["sqs:PurgeQueue"],
                                        resources=[dead_letters]),
                ]
        if s.fact_objects:
            statements.append(iam.PolicyStatement(sid="DenyIdentityFactObjects", effect=deny, actions=OBJECT_READS,
                                                  resources=s.fact_objects))
        statements.append(iam.PolicyStatement(sid="DenyChangingTheBreakGlassAlarm", effect=deny,
                                              actions=ALARM_CHANGES, resources=[self.break_glass_alarm]))
        return statements

    # --- the roles -----------------------------------------------------------------------
    def _security_officer(self) -> list[iam.PolicyStatement]:
        return [
            *self._observe(all_logs=True), *self._trail_reads(), *self._iam_reads(),
            iam.PolicyStatement(sid="AcknowledgeTierAlarms", actions=["cloudwatch:SetAlarmState"],
                                resources=[f"{self.alarm_prefix}*"]),
            *self._security_report_reads(),
        ]

    def _security_report_reads(self) -> list[iam.PolicyStatement]:
        """The tier's security reports (reconciliation; decision 0033): the bucket policy lets no
        other person read them."""
        s, region = self.scope, self.env.region
        if not s.security_reports:
            return []
        return [
            iam.PolicyStatement(sid="ReadSecurityReports",
                                actions=["s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket",
                                         "s3:ListBucketVersions"],
                                resources=[*s.security_reports, *(f"{b}/*" for b in s.security_reports)]),
            iam.PolicyStatement(sid="DecryptSecurityReports", actions=["kms:Decrypt"],
                                resources=s.security_report_keys,
                                conditions={"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}),
        ]

    def _chief(self) -> list[iam.PolicyStatement]:
        """統括責任者 and 副統括責任者: oversee (the security officer's reads) and order the emergency stop."""
        return [*self._security_officer(), *self._emergency()]

    def _network_administrator(self) -> list[iam.PolicyStatement]:
        s, env, prefix = self.scope, self.env, self.names.prefix
        ec2_arn = f"arn:{PARTITION}:ec2:{env.region}:{env.account}:"
        return [
            iam.PolicyStatement(sid="ReadMetrics", actions=METRIC_READS, resources=["*"]),
            iam.PolicyStatement(sid="ReadTierAlarms", actions=ALARM_READS, resources=[f"{self.alarm_prefix}*"]),
            iam.PolicyStatement(sid="ReadFlowLogs", actions=LOG_READS, resources=s.flow_logs),
            iam.PolicyStatement(sid="ListLogsAndQueries", actions=LOG_LISTS, resources=["*"]),
            iam.PolicyStatement(sid="DescribeNetwork", actions=NETWORK_READS, resources=["*"]),
            iam.PolicyStatement(
                sid="ManageTierEndpointsAndSecurityGroups", actions=NETWORK_CHANGES,
                resources=[f"{ec2_arn}{kind}/*" for kind in ("security-group", "security-group-rule", "vpc-endpoint",
                                                             "subnet", "route-table")],
                conditions={"StringEquals": {f"aws:ResourceTag/{prefix}:tier": self.tier}}),
            iam.PolicyStatement(sid="DenyAnyKeyUse", effect=iam.Effect.DENY, actions=KEY_USE_ACTIONS,
                                resources=["*"]),
        ]

    def _operator(self) -> list[iam.PolicyStatement]:
        return [*self._observe(all_logs=False), *self._emergency(), *self._ledger_reads(), *self._redrive()]

    def _redrive(self) -> list[iam.PolicyStatement]:
        """``jukinet redrive`` (jukinet_ops/redrive.py, decision 0022): read this tier's dead
        letters, put them back into its inbound queue and delete them, record each redrive.
        Nothing else: no other queue, no purge, the transport key only through SQS for these two
        queues (the key policy says the same)."""
        s, env, names, tier = self.scope, self.env, self.names, self.tier
        if s.redrive is None or s.transport_key is None:
            return []
        dead_letters, source = s.redrive
        ssm = f"arn:{PARTITION}:ssm:{env.region}:{env.account}:parameter/{names.prefix}/redrive/{tier}"
        s.transport_key.add_to_resource_policy(keys.use_by_roles(
            "OperatorRedrives", env.account, [names.people_role_arn(env, tier, REDRIVE_ROLE)],
            REDRIVE_KEY_ACTIONS, via_services=["sqs"], region=env.region,
            conditions={"StringEquals": {"kms:EncryptionContext:aws:sqs:arn": [dead_letters, source]}}))
        return [
            iam.PolicyStatement(sid="RedriveReadsDeadLetters", actions=["sqs:ReceiveMessage", "sqs:DeleteMessage",
                                                                        "sqs:ChangeMessageVisibility"],
                                resources=[dead_letters]),
            iam.PolicyStatement(sid="RedriveSendsToTheSourceQueue", actions=["sqs:SendMessage"], resources=[source]),
            iam.PolicyStatement(sid="RedriveQueueEncryption", actions=REDRIVE_KEY_ACTIONS,
                                resources=[s.transport_key.key_arn],
                                conditions={"StringEquals": {
                                    "kms:ViaService": f"sqs.{env.region}.amazonaws.com",
                                    "kms:EncryptionContext:aws:sqs:arn": [dead_letters, source]}}),
            iam.PolicyStatement(sid="RecordRedrives", actions=["ssm:GetParameter", "ssm:PutParameter",
                                                               "ssm:GetParametersByPath"],
                                resources=[ssm, f"{ssm}/*"]),
        ]

    def _auditor(self) -> list[iam.PolicyStatement]:
        s, env = self.scope, self.env
        statements = [
            *[st for st in self._observe(all_logs=True) if st.sid != "ReadQueueDepths"],
            *self._trail_reads(), *self._iam_reads(), *self._ledger_reads(),
            iam.PolicyStatement(sid="ReadConfigRecords", actions=CONFIG_READS, resources=["*"]),
            iam.PolicyStatement(sid="ReadKeyConfiguration", actions=KEY_READS,
                                resources=[self.names.keys_arn_pattern(env)]),
            iam.PolicyStatement(sid="ReadFunctionConfiguration",
                                actions=["lambda:GetFunctionConfiguration", "lambda:GetPolicy"],
                                resources=[*s.functions, *s.queue_functions]),
        ]
        trail = getattr(self.stack, "trail", None)
        if trail is not None:
            statements += [
                iam.PolicyStatement(sid="ReadTrailFiles", actions=["s3:GetObject", "s3:ListBucket"],
                                    resources=[trail.bucket.bucket_arn, trail.bucket.arn_for_objects("AWSLogs/*")]),
                iam.PolicyStatement(sid="DecryptTrailFiles", actions=["kms:Decrypt"],
                                    resources=[self.stack.audit_key.key_arn],
                                    conditions={"StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn":
                                                               f"arn:{PARTITION}:cloudtrail:*:{env.account}:trail/*"}}),
            ]
        if s.provision_tables:
            # Disclosure audits (jukinet verify / disclose): entries name fields, never their values.
            statements += [
                iam.PolicyStatement(sid="ReadProvisionLog",
                                    actions=["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"],
                                    resources=s.provision_tables),
                iam.PolicyStatement(sid="ReadSealPublicKey", actions=["kms:GetPublicKey"], resources=s.seal_keys),
            ]
        if s.seal_archives:
            # jukinet verify compares every seal with its copy in the seal archive (Object Lock).
            statements += [
                iam.PolicyStatement(sid="ReadSealArchive", actions=["s3:GetObject", "s3:ListBucket"],
                                    resources=[*s.seal_archives, *(f"{a}/seals/*" for a in s.seal_archives)]),
                iam.PolicyStatement(sid="DecryptSealArchive", actions=["kms:Decrypt"], resources=s.seal_archive_keys,
                                    conditions={"StringEquals": {"kms:ViaService": f"s3.{env.region}.amazonaws.com"}}),
            ]
        return statements

    def _contractor(self, contract: Contract) -> list[iam.PolicyStatement]:
        """Operator-like reads on this tier only, every Allow bounded by the contract's expiry."""
        statements = self._observe(all_logs=False)
        for st in statements:
            st.add_condition("DateLessThan", {"aws:CurrentTime": contract.expires_at})
        return statements

    def _break_glass(self, officers: Sequence[Person]) -> None:
        s, names, tier, env = self.scope, self.names, self.tier, self.env
        role_arn = names.people_role_arn(env, tier, BREAK_GLASS)
        session = {"Null": {"aws:SourceIdentity": "false", f"aws:PrincipalTag/{REASON_TAG}": "false"}}
        statements: list[iam.PolicyStatement] = []
        if s.envelope_key is not None:
            context = {f"kms:EncryptionContext:{k}": v for k, v in s.envelope_context.items()}
            statements += [
                iam.PolicyStatement(sid="OpenIdentityFacts", actions=["kms:Decrypt"], resources=[s.envelope_key.key_arn],
                                    conditions={"StringEquals": context, **session}),
                iam.PolicyStatement(sid="NeverTheBlindIndexKey", effect=iam.Effect.DENY, actions=["kms:Decrypt"],
                                    resources=[s.envelope_key.key_arn],
                                    conditions={"StringEquals": {"kms:EncryptionContext:purpose": "blind-index"}}),
                iam.PolicyStatement(sid="ReadResidentItems",
                                    actions=["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query",
                                             "dynamodb:DescribeTable"],
                                    resources=s.identity_tables, conditions=session),
            ]
            s.envelope_key.add_to_resource_policy(keys.use_by_roles(
                "BreakGlassOpensFacts", env.account, [role_arn], ["kms:Decrypt"],
                conditions={"StringEquals": context}))
        if s.transport_key is not None and s.dead_letter_queues:
            statements += [
                iam.PolicyStatement(sid="ReadDeadLetters", actions=["sqs:ReceiveMessage", "sqs:GetQueueAttributes"],
                                    resources=s.dead_letter_queues, conditions=session),
                iam.PolicyStatement(sid="DeadLettersEncryption", actions=["kms:Decrypt"],
                                    resources=[s.transport_key.key_arn],
                                    conditions={"StringEquals": {"kms:ViaService": f"sqs.{env.region}.amazonaws.com"},
                                                **session}),
            ]
            s.transport_key.add_to_resource_policy(keys.use_by_roles(
                "BreakGlassReadsDeadLetters", env.account, [role_arn], ["kms:Decrypt"], via_services=["sqs"],
                region=env.region))
        if s.drop_zone_key is not None and s.drop_zone_bucket_prefix:
            buckets = f"arn:{PARTITION}:s3:::{s.drop_zone_bucket_prefix}*"
            statements += [
                iam.PolicyStatement(sid="ReadDropZoneFiles", actions=["s3:GetObject", "s3:GetObjectVersion"],
                                    resources=[f"{buckets}/*"], conditions=session),
                iam.PolicyStatement(sid="DropZoneEncryption", actions=["kms:Decrypt"],
                                    resources=[s.drop_zone_key.key_arn],
                                    conditions={"StringEquals": {"kms:ViaService": f"s3.{env.region}.amazonaws.com"},
                                                "StringLike": {"kms:EncryptionContext:aws:s3:arn": f"{buckets}/*"},
                                                **session}),
            ]
            s.drop_zone_key.add_to_resource_policy(keys.use_by_roles(
                "BreakGlassReadsDropZones", env.account, [role_arn], ["kms:Decrypt"], via_services=["s3"],
                region=env.region))
        self._role(BREAK_GLASS, officers, statements, guardrails=False,
                   description=f"Break-glass of {tier}: plaintext identity facts, logged and alarmed (docs/security.md)")
        self.stack.alarms.alarm(
            "BreakGlassUsed", name=names.alarm(tier, "break-glass-used"),
            description=f"Someone assumed {names.people_role(tier, BREAK_GLASS)}: plaintext identity facts of the "
                        f"{tier} tier may have been read.",
            metric=cloudwatch.Metric(namespace=SECURITY_NAMESPACE, metric_name=break_glass_metric(tier),
                                     statistic=cloudwatch.Stats.SUM, period=PERIOD))


def break_glass_filters(host: Any, tiers: Sequence[str]) -> list[logs.MetricFilter]:
    """On the account trail's log group (``host`` hosts the trail): one filter per tier of that
    account with a break-glass role, counting its AssumeRole calls (failed ones too)."""
    names, env = host.names, host.tier_env
    filters = []
    for tier in tiers:
        filters.append(logs.MetricFilter(
            host, f"BreakGlassFilter{_camel(tier)}", log_group=host.trail.log_group,
            filter_name=names.alarm(tier, "break-glass-used"),
            filter_pattern=logs.FilterPattern.literal(break_glass_filter_pattern(
                env.account, names.people_role(tier, BREAK_GLASS))),
            metric_namespace=SECURITY_NAMESPACE, metric_name=break_glass_metric(tier), metric_value="1"))
    return filters


def attach_people(deployment: Deployment, stacks: Sequence[Any], *, today: dt.date) -> dict[str, TierPeople]:
    """Give each tier stack its people's roles, and each account trail the break-glass filters
    of the tiers in its account (called by ``composition.build`` once every stack exists)."""
    people = {stack.tier: TierPeople(stack, "People", deployment=deployment, today=today) for stack in stacks}
    for host in stacks:
        if getattr(host, "trail", None) is None:
            continue
        tiers = [s.tier for s in stacks if s.tier_env.account == host.tier_env.account
                 and BREAK_GLASS in people[s.tier].roles]
        break_glass_filters(host, tiers)
    return people


__all__ = ["BREAK_GLASS", "TierPeople", "attach_people", "break_glass_filter_pattern",
           "break_glass_metric", "scope_of", "trust_policy"]
