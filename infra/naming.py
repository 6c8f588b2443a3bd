"""Every name, ARN and URL one tier needs of another, computed from configuration.

Tiers may live in separate accounts, where a CloudFormation reference cannot reach. So
anything crossing a tier boundary — queue names and URLs, signing-key aliases, role paths,
bucket and function names — is derived here from the deployment configuration alone,
never from another stack's output. The runtime (``lambdas/``) and the embedded AWS get
these values only through the functions' environment variables.
"""

from __future__ import annotations

from dataclasses import dataclass

from jukinet.domain.message import ALGORITHM as SIGNING_ALGORITHM
from jukinet.domain.metrics import METRICS_NAMESPACE

from .config import Deployment, Environment
from .tier_names import NATIONAL, municipality_tier, prefecture_tier

# SIGNING_ALGORITHM: the algorithm of every notice signature, the runtime's own constant
# (jukinet/domain/message.py ALGORITHM), imported, not copied; key policies allow kms:Sign
# with this algorithm only.
__all__ = ["METRICS_NAMESPACE", "NATIONAL", "PARTITION", "PROVISION_API_STAGE", "SIGNING_ALGORITHM", "Names",
           "cs_state_partition", "local_record_partition_prefix", "municipality_tier", "prefecture_tier"]

PARTITION = "aws"
# The provision API's stage: URLs read …/api/v1/lookups (the version is in the path).
PROVISION_API_STAGE = "api"


@dataclass(frozen=True)
class Names:
    """Names under one deployment prefix (``jukinet`` unless configured otherwise)."""

    prefix: str

    @classmethod
    def of(cls, deployment: Deployment) -> Names:
        return cls(deployment.prefix)

    # --- stacks and exports ---------------------------------------------------------
    def national_stack(self) -> str:
        return f"{self.prefix}-national"

    def prefecture_stack(self, code: str) -> str:
        return f"{self.prefix}-pref-{code}"

    def municipality_base_stack(self, prefecture_code: str) -> str:
        return f"{self.prefix}-muni-{prefecture_code}-base"

    def municipality_stack(self, prefecture_code: str, index: int) -> str:
        return f"{self.prefix}-muni-{prefecture_code}-{index:02d}"

    def sqs_endpoint_export(self, tier: str) -> str:
        """CloudFormation export of a tier's SQS endpoint id (used only within one account/region)."""
        return f"{self.prefix}-{tier}-sqs-endpoint-id"

    def execute_api_endpoint_export(self, tier: str) -> str:
        """CloudFormation export of a prefecture tier's execute-api endpoint id (the provision API admits it)."""
        return f"{self.prefix}-{tier}-execute-api-endpoint-id"

    # --- queues ---------------------------------------------------------------------
    def inbound_queue(self, tier: str) -> str:
        return f"{self.prefix}-{tier}-inbound"

    def dead_letter_queue(self, queue_name: str) -> str:
        return f"{queue_name}-dlq"

    def channel_queue(self, prefecture_code: str) -> str:
        """The municipality tier's channel queue: messages between municipalities routed down by
        its prefecture (docs/decisions/0041)."""
        return f"{self.prefix}-muni-{prefecture_code}-channel"

    def cs_failure_queue(self, prefecture_code: str) -> str:
        """Where the S3 events a municipality CS failed to process end, with the reason: its
        inbox's last attempts (the CS, or the inbox's redrive) and its asynchronous invocations."""
        return f"{self.prefix}-{municipality_tier(prefecture_code)}-cs-failed-events"

    def cs_inbox_queue(self, code: str) -> str:
        """A municipality CS's inbox: its drop zone's S3 events, taken in batches (decision 0051)."""
        return f"{self.prefix}-cs-{code}-inbox"

    @staticmethod
    def queue_arn(env: Environment, name: str) -> str:
        return f"arn:{PARTITION}:sqs:{env.region}:{env.account}:{name}"

    @staticmethod
    def queue_url(env: Environment, name: str) -> str:
        return f"https://sqs.{env.region}.amazonaws.com/{env.account}/{name}"

    # --- KMS ------------------------------------------------------------------------
    def signing_alias(self, code: str) -> str:
        """``alias/jukinet/signing/<6-digit code>``: how a receiver finds a sender's public key."""
        return f"alias/{self.prefix}/signing/{code}"

    def signing_alias_arn_prefix(self, env: Environment) -> str:
        """SENDER_KEY_ALIAS_PREFIX: append a sender's code to get its signing-key alias ARN."""
        return f"arn:{PARTITION}:kms:{env.region}:{env.account}:alias/{self.prefix}/signing/"

    def channel_alias_prefix(self) -> str:
        """CHANNEL_KEY_ALIAS_PREFIX: append a prefecture number (two digits) to get the alias of
        that prefecture's municipality-tier channel key."""
        return f"alias/{self.prefix}/channel/"

    def channel_alias(self, prefecture_code: str) -> str:
        """``alias/jukinet/channel/<prefecture number>``: the key bodies addressed to the
        municipalities of that prefecture are sealed under (services/channel.py ``ChannelKeys``)."""
        return f"{self.channel_alias_prefix()}{prefecture_code[:2]}"

    def key_alias(self, tier: str, purpose: str) -> str:
        return f"alias/{self.prefix}/{tier}/{purpose}"

    def all_aliases_pattern(self) -> str:
        return f"alias/{self.prefix}/*"

    @staticmethod
    def keys_arn_pattern(env: Environment) -> str:
        return f"arn:{PARTITION}:kms:{env.region}:{env.account}:key/*"

    # --- IAM ------------------------------------------------------------------------
    def role_path(self, tier: str) -> str:
        """Every function role of a tier lives under this path; policies name the path."""
        return f"/{self.prefix}/{tier}/"

    def role_arn_pattern(self, env: Environment, tier: str) -> str:
        return f"arn:{PARTITION}:iam::{env.account}:role{self.role_path(tier)}*"

    def role_arn(self, env: Environment, tier: str, role_name: str) -> str:
        return f"arn:{PARTITION}:iam::{env.account}:role{self.role_path(tier)}{role_name}"

    def people_path(self, tier: str) -> str:
        """People's roles and their policies (docs/security.md): apart from the function roles'
        path, so no key policy or endpoint policy naming ``role_path`` admits a person."""
        return f"/{self.prefix}/{tier}-people/"

    def people_role(self, tier: str, kind: str) -> str:
        """``<prefix>-<tier>-<kind>``: kind ``operator``, ``break-glass``, ``contractor-<id>``, …"""
        return f"{self.prefix}-{tier}-{kind}"

    def people_role_arn(self, env: Environment, tier: str, kind: str) -> str:
        return f"arn:{PARTITION}:iam::{env.account}:role{self.people_path(tier)}{self.people_role(tier, kind)}"

    def drop_zone_writers_path(self, prefecture_code: str) -> str:
        """Roles of the municipalities' existing systems that put exports into drop zones."""
        return f"/{self.prefix}/{municipality_tier(prefecture_code)}-writers/"

    def drop_zone_writers_pattern(self, env: Environment, prefecture_code: str) -> str:
        return f"arn:{PARTITION}:iam::{env.account}:role{self.drop_zone_writers_path(prefecture_code)}*"

    def drop_zone_writer(self, code: str) -> str:
        """The one role through which municipality ``code``'s existing system puts its exports."""
        return f"{self.prefix}-dropzone-writer-{code}"

    def drop_zone_writer_arn(self, env: Environment, prefecture_code: str, code: str) -> str:
        return (f"arn:{PARTITION}:iam::{env.account}:role{self.drop_zone_writers_path(prefecture_code)}"
                f"{self.drop_zone_writer(code)}")

    # --- functions, tables, buckets -------------------------------------------------
    def cs_function(self, code: str) -> str:
        return f"{self.prefix}-cs-{code}"

    def cs_role(self, code: str) -> str:
        return f"{self.prefix}-cs-{code}"

    def processor_function(self, tier: str) -> str:
        return f"{self.prefix}-{tier}-processor"

    def processor_role(self, tier: str) -> str:
        return f"{self.prefix}-{tier}-processor"

    def channel_function(self, prefecture_code: str) -> str:
        """The municipality tier's channel function (function and role share the name)."""
        return f"{self.prefix}-muni-{prefecture_code}-channel"

    def ledger_watch_function(self, tier: str) -> str:
        """The tier's ledger watch (function, role and schedule rule share the name)."""
        return f"{self.prefix}-{tier}-ledger-watch"

    def reconciliation_function(self, tier: str) -> str:
        """The tier's nightly reconciliation (function, role and schedule rule share the name)."""
        return f"{self.prefix}-{tier}-reconciliation"

    def monitoring_report_function(self, tier: str) -> str:
        """The tier's monthly monitoring report (function, role and schedule rule share the name)."""
        return f"{self.prefix}-{tier}-monitoring-report"

    def security_reports_bucket(self, env: Environment, tier: str) -> str:
        """``<prefix>-sec-reports-<tier>-<account>-<region>``: a tier's reports for its security
        officers (reconciliation now, monitoring reports later; decision 0033)."""
        name = f"{self.prefix}-sec-reports-{tier}-{env.account}-{env.region}"
        if len(name) > 63:
            raise ValueError(f"bucket name {name!r} exceeds 63 characters; shorten the deployment prefix")
        return name

    def function_prefix(self) -> str:
        return f"{self.prefix}-"

    def identity_table(self, tier: str) -> str:
        return f"{self.prefix}-{tier}-identity"

    def cs_state_table(self, prefecture_code: str) -> str:
        return f"{self.prefix}-{municipality_tier(prefecture_code)}-cs-state"

    def local_record_table(self, prefecture_code: str) -> str:
        """The municipality tier's local records: each change with the fields that never leave the
        tier (lambdas/jukinet/adapters/local_records.py; decision 0044)."""
        return f"{self.prefix}-{municipality_tier(prefecture_code)}-local-records"

    @staticmethod
    def table_arn(env: Environment, name: str) -> str:
        return f"arn:{PARTITION}:dynamodb:{env.region}:{env.account}:table/{name}"

    def drop_zone_bucket(self, env: Environment, code: str) -> str:
        """Globally unique by account and region; fixed, so the S3 → CS trigger needs no custom resource."""
        name = f"{self.drop_zone_bucket_prefix(env)}{code}"
        if len(name) > 63:
            raise ValueError(f"bucket name {name!r} exceeds 63 characters; shorten the deployment prefix")
        return name

    def drop_zone_bucket_prefix(self, env: Environment) -> str:
        return f"{self.prefix}-dropzone-{env.account}-{env.region}-"

    @staticmethod
    def bucket_arn(name: str) -> str:
        return f"arn:{PARTITION}:s3:::{name}"

    # --- the counter API and resident cards (municipality tier; docs/card.md) -------------
    def card_table(self, prefecture_code: str) -> str:
        return f"{self.prefix}-{municipality_tier(prefecture_code)}-cards"

    def card_api(self, prefecture_code: str) -> str:
        """The private REST API's name; the function and its role have the same name."""
        return f"{self.prefix}-{municipality_tier(prefecture_code)}-counter"

    def counter_roles_path(self, prefecture_code: str) -> str:
        """The counter-staff roles (one per municipality): apart from function and people roles."""
        return f"/{self.prefix}/{municipality_tier(prefecture_code)}-counter/"

    def counter_role(self, code: str) -> str:
        return f"{self.prefix}-counter-{code}"

    def counter_role_arn(self, env: Environment, prefecture_code: str, code: str) -> str:
        return f"arn:{PARTITION}:iam::{env.account}:role{self.counter_roles_path(prefecture_code)}{self.counter_role(code)}"

    # --- the provision API (national tier; docs/provision.md) ---------------------------
    def provision_api(self) -> str:
        """The private REST API's name."""
        return f"{self.prefix}-provision"

    def provision_function(self, what: str) -> str:
        """``api``, ``batch`` or ``sealer``; the role has the same name, under the national role path."""
        return f"{self.prefix}-{NATIONAL}-provision-{what}"

    def provision_role(self, what: str) -> str:
        return self.provision_function(what)

    def provision_log_table(self) -> str:
        return f"{self.prefix}-{NATIONAL}-provision-log"

    def provision_state_table(self) -> str:
        return f"{self.prefix}-{NATIONAL}-provision-state"

    def provision_batch_queue(self) -> str:
        return f"{self.prefix}-{NATIONAL}-provision-batch"

    def provision_batch_bucket(self, env: Environment) -> str:
        name = f"{self.prefix}-provision-batch-{env.account}-{env.region}"
        if len(name) > 63:
            raise ValueError(f"bucket name {name!r} exceeds 63 characters; shorten the deployment prefix")
        return name

    def provision_seal_archive_bucket(self, env: Environment) -> str:
        """The off-table copies of the provision log's seals (S3 Object Lock, compliance mode)."""
        name = f"{self.prefix}-provision-seals-{env.account}-{env.region}"
        if len(name) > 63:
            raise ValueError(f"bucket name {name!r} exceeds 63 characters; shorten the deployment prefix")
        return name

    def provision_usage_plan(self, recipient_id: str) -> str:
        return f"{self.prefix}-provision-{recipient_id}"

    def provision_api_key(self, recipient_id: str) -> str:
        return f"{self.prefix}-provision-{recipient_id}"

    def provision_seal_rule(self) -> str:
        return f"{self.prefix}-{NATIONAL}-provision-seal"

    def provision_service(self) -> str:
        """POWERTOOLS_SERVICE_NAME of the provision functions (their metrics' ``service`` dimension)."""
        return f"{self.prefix}-provision"

    # --- audit and observability ----------------------------------------------------
    def trail(self) -> str:
        return f"{self.prefix}-audit"

    @staticmethod
    def trail_arn(env: Environment, name: str) -> str:
        return f"arn:{PARTITION}:cloudtrail:{env.region}:{env.account}:trail/{name}"

    def service_name(self, tier: str) -> str:
        """POWERTOOLS_SERVICE_NAME: with ``tier``, the dimensions of the tier's custom metrics."""
        return f"{self.prefix}-{tier}"

    def alarm(self, tier: str, what: str) -> str:
        return f"{self.prefix}-{tier}-{what}"



def cs_state_partition(code: str) -> str:
    """The CS state table's partition of one municipality (lambdas/jukinet/adapters/cs_state.py):
    each CS role may touch only items under its own partition (``dynamodb:LeadingKeys``)."""
    return f"MUNI#{code}"


def local_record_partition_prefix(code: str) -> str:
    """Every partition key of municipality ``code`` in the local-record table begins with this
    (lambdas/jukinet/adapters/local_records.py ``partition``): the CS role's ``dynamodb:LeadingKeys``."""
    return f"MUNI#{code}#"

