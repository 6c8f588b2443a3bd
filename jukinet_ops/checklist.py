"""The security checklist (セキュリティチェックリスト): inspect a deployed environment, report per municipality.

``jukinet checklist`` answers, for every municipality, the checklist the seed's security
management asks each municipality to answer (docs/domain.md §5) — from what is
**deployed**, read through the AWS APIs (boto3): the embedded AWS with ``--endpoint-url``
(or ``AWS_ENDPOINT_URL``), a real account otherwise. It never reads the templates: a
setting changed after deployment is what it sees.

A municipality's report holds its own checks (drop-zone bucket, CS function, signing key,
the alarms covering its CS) and the checks of everything it depends on: its prefecture's
municipality tier, the prefecture tier, the national tier and the audit trail of each
account they live in. Each check has an id, a title in English and Japanese, the evidence
found and a result:

* ``PASS`` — the evidence shows the setting as required;
* ``FAIL`` — it does not, or the resource is missing, or it could not be inspected (an
  audit that cannot see is a miss);
* ``NOT-VERIFIABLE-LOCALLY`` — only against the embedded AWS, where moto or local mode
  cannot hold the setting truthfully (the reason is in the evidence; docs/checklist.md lists
  every case). Never used against a real account.

The checks are small functions ``(Inspection, ...) -> list[Finding]`` over a client factory
``(service, Environment) -> boto3 client``, so each can be tested with a fake client.
What each check means and why: docs/checklist.md.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import io
import json
import os
import re
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from infra.config import Deployment, Environment, Municipality, Prefecture
from infra.naming import NATIONAL, PARTITION, Names, municipality_tier, prefecture_tier
from jukinet.adapters.aws import error_code
from jukinet.clock import today_jst
from jukinet.domain.notice import JST
from embedded_aws.iam_policy import as_list
from embedded_aws.iam_policy import document as _json

EXPIRY_WARNING_DAYS = 30
ECC_SPEC = "ECC_NIST_P256"

# --- results ------------------------------------------------------------------------------


class Status(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    NOT_VERIFIABLE = "NOT-VERIFIABLE-LOCALLY"


@dataclass(frozen=True)
class Check:
    """One item of the checklist. ``standard``: the topic of the 2002 technical standard
    (総務省告示, as summarised in docs/domain.md §5) the item answers."""

    id: str
    title: str
    title_ja: str
    standard: str


def _checks(*items: tuple[str, str, str, str]) -> dict[str, Check]:
    return {i: Check(i, t, tj, s) for i, t, tj, s in items}


ENCRYPTION = "暗号化 (encryption)"
FIREWALL = "ファイアウォール・専用回線 (firewalls, dedicated lines)"
CONNECTIONS = "既設ネットワークとの接続管理 (managed connections to existing networks)"
ACCESS = "アクセス権限の管理 (operators' access rights)"
MONITORING = "24時間監視・緊急時対応 (24-hour monitoring, emergency plan)"
AUDIT = "監査・アクセス記録 (audit, access records)"
CONTINUITY = "継続性・データの保全 (continuity, records kept)"
AGREEMENTS = "提供先との取決め (recipients' agreements)"

CHECKS: dict[str, Check] = _checks(
    ("S3-1", "Bucket (drop zone, batch files, security reports) encrypted with SSE-KMS under its tier's customer-managed key",
     "バケット(ドロップゾーン等)が階層のCMKでSSE-KMS暗号化されている", ENCRYPTION),
    ("S3-2", "Bucket public access block fully on", "バケットのパブリックアクセスブロックがすべて有効", CONNECTIONS),
    ("S3-3", "Bucket policy refuses requests without TLS", "バケットポリシーがTLS以外の要求を拒否する", ENCRYPTION),
    ("S3-4", "Bucket versioning enabled", "バケットのバージョニングが有効", CONTINUITY),
    ("EDGE-1", "The municipality's one drop-zone writer role exists, trusted by its tier's account only, and may "
     "only put exports into its own incoming/", "ドロップゾーンへの書込みロールが市町村ごとに一つあり、自団体のincoming/への書込みだけを許す",
     CONNECTIONS),
    ("EDGE-2", "The drop zone refuses exports into incoming/ from anyone but that writer, and not through the tier's "
     "S3 endpoints", "ドロップゾーンが書込みロール以外・階層のS3エンドポイント以外からのincoming/への書込みを拒否する",
     CONNECTIONS),
    ("FN-1", "Function runs in the tier's VPC, in its isolated subnets", "関数が階層のVPCの閉域サブネット内で動作する",
     FIREWALL),
    ("FN-2", "No function URL, no public invoke permission", "関数URLも公開の実行許可もない", CONNECTIONS),
    ("FN-3", "Function environment holds no secrets", "関数の環境変数に秘密情報がない", ACCESS),
    ("FN-4", "Function has reserved concurrency", "関数に予約同時実行数が設定されている", CONTINUITY),
    ("KEY-1", "Symmetric customer-managed keys rotate automatically", "対称CMKの自動ローテーションが有効", ENCRYPTION),
    ("KEY-2", "The tier's keys are enabled (none disabled or pending deletion)",
     "階層の鍵が有効(無効化・削除予定なし)", ENCRYPTION),
    ("KEY-3", "Signing key exists, enabled, ECC_NIST_P256 for SIGN_VERIFY",
     "署名鍵が存在し、有効で、ECC_NIST_P256・SIGN_VERIFYである", ENCRYPTION),
    ("NET-1", "No internet gateway attached to the tier's VPC", "階層のVPCにインターネットゲートウェイがない", FIREWALL),
    ("NET-2", "No NAT gateway in the tier's VPC", "階層のVPCにNATゲートウェイがない", FIREWALL),
    ("NET-3", "No route to 0.0.0.0/0 (or ::/0) except through VPC endpoints",
     "VPCエンドポイント以外への0.0.0.0/0の経路がない", FIREWALL),
    ("NET-4", "VPC endpoints present for the services the tier uses (SQS, KMS...)",
     "階層が使うサービスのVPCエンドポイント(SQS・KMS等)がある", CONNECTIONS),
    ("NET-5", "Default security group closed (no rules)", "デフォルトのセキュリティグループにルールがない", FIREWALL),
    ("Q-1", "Queue encrypted with SSE-KMS under a customer-managed key", "キューがCMKでSSE-KMS暗号化されている",
     ENCRYPTION),
    ("Q-2", "Queue has a dead-letter queue (redrive policy)", "キューにデッドレターキュー(再処理ポリシー)がある",
     CONTINUITY),
    ("Q-3", "Inbound queue policy refuses messages not sent through the sending tier's endpoint (aws:SourceVpce)",
     "受信キューのポリシーが送信側エンドポイント以外からの送信を拒否する(aws:SourceVpce)", CONNECTIONS),
    ("DB-1", "Table encrypted at rest with a customer-managed key", "テーブルがCMKで暗号化されている", ENCRYPTION),
    ("DB-2", "Table point-in-time recovery on", "テーブルのポイントインタイムリカバリが有効", CONTINUITY),
    ("DB-3", "Table deletion protection on", "テーブルの削除保護が有効", CONTINUITY),
    ("ALM-1", "The tier's alarms exist", "階層のアラームが存在する", MONITORING),
    ("ALM-2", "Every alarm of the tier has actions enabled, to the tier's alarm topic",
     "階層のすべてのアラームのアクションが有効で、階層の通知トピックに送られる", MONITORING),
    ("ALM-3", "The CS function is covered by an errors and a throttles alarm, armed",
     "CS関数がエラー・スロットリングのアラームで監視されている", MONITORING),
    ("TRAIL-1", "The account's audit trail exists", "アカウントの監査証跡(CloudTrail)が存在する", AUDIT),
    ("TRAIL-2", "The trail is multi-region and logging", "証跡が全リージョン対象で記録中", AUDIT),
    ("TRAIL-3", "The trail validates its log files", "証跡のログファイル検証が有効", AUDIT),
    ("TRAIL-4", "The trail's logs are encrypted with a customer-managed key", "証跡のログがCMKで暗号化されている", AUDIT),
    ("AGR-1", "No deployed agreement has expired", "提供先との取決めに期限切れがない", AGREEMENTS),
    ("AGR-2", f"No deployed agreement expires within {EXPIRY_WARNING_DAYS} days",
     f"{EXPIRY_WARNING_DAYS}日以内に期限を迎える取決めがない", AGREEMENTS),
    ("API-1", "Each private API (provision; each municipality tier's counter) has endpoint type PRIVATE",
     "提供API・窓口APIのエンドポイント種別がPRIVATE", CONNECTIONS),
    ("API-2", "Each private API's resource policy denies calls outside the configured VPC endpoints",
     "提供API・窓口APIのリソースポリシーが設定外のVPCエンドポイントからの呼出しを拒否する", CONNECTIONS),
)

Scope = tuple[str, str]  # ("municipality", code) | ("tier", tier name) | ("account", "<account>/<region>")


@dataclass(frozen=True)
class Finding:
    """The result of one check on one resource."""

    check_id: str
    scope: Scope
    resource: str
    status: Status
    evidence: str

    @property
    def check(self) -> Check:
        return CHECKS[self.check_id]


# --- inspecting ---------------------------------------------------------------------------

ClientFactory = Callable[[str, Environment], Any]


def _bucket_policy(s3: Any, bucket: str) -> dict | None:
    """The bucket's policy document, or None when it has none."""
    try:
        return _json(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except ClientError as exc:
        if error_code(exc) != "NoSuchBucketPolicy":
            raise
        return None


class Unreadable(Exception):
    """Something the check needs could not be read; the message says what and why."""


@dataclass
class Inspection:
    """What every check needs: the deployment (expected names), a client factory, whether the
    target is the embedded AWS (``local``), the day against which dates are judged (JST) and
    the instant of the inspection."""

    deployment: Deployment
    clients: ClientFactory
    today: dt.date
    local: bool = False
    at: dt.datetime | None = None
    _memo: dict[Any, Any] = field(default_factory=dict)

    @property
    def names(self) -> Names:
        return Names.of(self.deployment)

    def client(self, service: str, env: Environment) -> Any:
        return self.clients(service, env)

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]


def _guard(check_ids: Sequence[str], scope: Scope, resource: str,
           run: Callable[[], list[Finding]]) -> list[Finding]:
    """Run a check; an error reading AWS makes each of ``check_ids`` a FAIL that says why."""
    try:
        return run()
    except (ClientError, BotoCoreError, Unreadable, ValueError, KeyError) as exc:  # the last two: malformed answers
        return [Finding(c, scope, resource, Status.FAIL, f"could not inspect: {type(exc).__name__}: {exc}")
                for c in check_ids]


def _statements(policy: Any) -> list[dict[str, Any]]:
    return [s for s in as_list((policy or {}).get("Statement")) if isinstance(s, dict)]


def _anyone(principal: Any) -> bool:
    if principal == "*":
        return True
    return isinstance(principal, dict) and "*" in as_list(principal.get("AWS"))


def _condition_values(statement: Mapping[str, Any], operators: Iterable[str], key: str) -> list[str] | None:
    """Values of condition ``key`` under any of ``operators`` (IAM compares both case-insensitively)."""
    wanted = {o.lower() for o in operators}
    for op, block in (statement.get("Condition") or {}).items():
        if op.lower() in wanted and isinstance(block, dict):
            for k, v in block.items():
                if k.lower() == key.lower():
                    return [str(x) for x in as_list(v)]
    return None


def _covers(actions: Any, action: str) -> bool:
    service = action.split(":")[0]
    return any(a in ("*", f"{service}:*", action) or a.lower() == action.lower() for a in as_list(actions))


# --- KMS keys -----------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    arn: str
    spec: str
    usage: str
    state: str
    manager: str
    aliases: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.aliases[0]} ({self.key_id})" if self.aliases else self.key_id


def _aliases(ins: Inspection, env: Environment) -> dict[str, str]:
    """alias name -> target key id, for the account and region."""
    def load() -> dict[str, str]:
        found: dict[str, str] = {}
        for page in ins.client("kms", env).get_paginator("list_aliases").paginate():
            for a in page.get("Aliases", []):
                if a.get("TargetKeyId"):
                    found[a["AliasName"]] = a["TargetKeyId"]
        return found
    return ins.memo(("aliases", env), load)


def key_info(ins: Inspection, env: Environment, key: str) -> KeyInfo | None:
    """The key a key id, ARN or alias names; None if KMS does not know it."""
    def load() -> KeyInfo | None:
        try:
            meta = ins.client("kms", env).describe_key(KeyId=key)["KeyMetadata"]
        except ClientError as exc:
            if error_code(exc) in ("NotFoundException", "NotFound"):
                return None
            raise
        key_id = meta["KeyId"]
        aliases = tuple(sorted(a for a, k in _aliases(ins, env).items() if k == key_id))
        return KeyInfo(key_id=key_id, arn=meta.get("Arn", ""), spec=meta.get("KeySpec") or meta.get(
            "CustomerMasterKeySpec", ""), usage=meta.get("KeyUsage", ""), state=meta.get("KeyState", ""),
            manager=meta.get("KeyManager", ""), aliases=aliases)
    return ins.memo(("key", env, key), load)


def _cmk_problem(info: KeyInfo | None, key: str) -> str | None:
    """Why ``info`` is not a usable customer-managed key, or None."""
    if info is None:
        return f"key {key} does not exist"
    if info.manager != "CUSTOMER":
        return f"key {info.label} is {info.manager or 'not'} managed, not a customer-managed key"
    if info.state != "Enabled":
        return f"key {info.label} is {info.state}"
    return None


# --- S3 buckets ---------------------------------------------------------------------------


def check_bucket(ins: Inspection, env: Environment, bucket: str, expected_key_alias: str,
                 scope: Scope) -> list[Finding]:
    """S3-1..S3-4 for one bucket (a drop zone, the provision batch bucket, a tier's security reports)."""
    out: list[Finding] = []

    def encryption() -> list[Finding]:
        s3 = ins.client("s3", env)
        try:
            rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        except ClientError as exc:
            if error_code(exc) == "ServerSideEncryptionConfigurationNotFoundError":
                return [Finding("S3-1", scope, bucket, Status.FAIL, "no default encryption configured")]
            raise
        default = (rules[0] if rules else {}).get("ApplyServerSideEncryptionByDefault", {})
        algorithm, key = default.get("SSEAlgorithm", ""), default.get("KMSMasterKeyID", "")
        if algorithm not in ("aws:kms", "aws:kms:dsse"):
            return [Finding("S3-1", scope, bucket, Status.FAIL, f"default encryption is {algorithm or 'none'}, not "
                            "SSE-KMS")]
        if not key:
            return [Finding("S3-1", scope, bucket, Status.FAIL, f"{algorithm} with the AWS managed key aws/s3, not "
                            f"the tier's key {expected_key_alias}")]
        info = key_info(ins, env, key)
        expected = key_info(ins, env, expected_key_alias)
        problem = _cmk_problem(info, key)
        if problem:
            return [Finding("S3-1", scope, bucket, Status.FAIL, f"{algorithm}: {problem}")]
        assert info is not None
        if expected is None or expected.key_id != info.key_id:
            return [Finding("S3-1", scope, bucket, Status.FAIL, f"{algorithm} with {info.label}, not the tier's key "
                            f"{expected_key_alias}")]
        return [Finding("S3-1", scope, bucket, Status.PASS, f"{algorithm} with {info.label}")]

    def public_access() -> list[Finding]:
        s3 = ins.client("s3", env)
        try:
            config = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        except ClientError as exc:
            if error_code(exc) == "NoSuchPublicAccessBlockConfiguration":
                return [Finding("S3-2", scope, bucket, Status.FAIL, "no public access block configured")]
            raise
        flags = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
        off = [f for f in flags if not config.get(f)]
        if off:
            return [Finding("S3-2", scope, bucket, Status.FAIL, f"off: {', '.join(off)}")]
        return [Finding("S3-2", scope, bucket, Status.PASS, "all four settings on")]

    def tls_only() -> list[Finding]:
        policy = _bucket_policy(ins.client("s3", env), bucket)
        for s in _statements(policy):
            values = _condition_values(s, ["Bool"], "aws:SecureTransport")
            if s.get("Effect") == "Deny" and _anyone(s.get("Principal")) and values == ["false"] \
                    and _covers(s.get("Action"), "s3:GetObject") and _covers(s.get("Action"), "s3:PutObject"):
                return [Finding("S3-3", scope, bucket, Status.PASS,
                                f"Deny {', '.join(as_list(s.get('Action')))} when aws:SecureTransport is false")]
        seen = "no bucket policy" if policy is None else f"policy with {len(_statements(policy))} statement(s), " \
                                                          "none denying requests without TLS"
        if ins.local:
            return [Finding("S3-3", scope, bucket, Status.NOT_VERIFIABLE,
                            f"{seen}: local mode leaves every conditional statement (aws:SecureTransport among them) "
                            "out of the bucket policies it gives moto, which would apply them to every request "
                            "(docs/local-mode.md, 'Bucket policy conditions')")]
        return [Finding("S3-3", scope, bucket, Status.FAIL, seen)]

    def versioning() -> list[Finding]:
        s3 = ins.client("s3", env)
        status = s3.get_bucket_versioning(Bucket=bucket).get("Status")
        if status == "Enabled":
            return [Finding("S3-4", scope, bucket, Status.PASS, "versioning Enabled")]
        return [Finding("S3-4", scope, bucket, Status.FAIL, f"versioning {status or 'never enabled'}")]

    for cid, run in (("S3-1", encryption), ("S3-2", public_access), ("S3-3", tls_only), ("S3-4", versioning)):
        out += _guard([cid], scope, bucket, run)
    return out


# --- the existing-system edge: drop-zone writers -----------------------------------------


def check_drop_zone_writer(ins: Inspection, env: Environment, prefecture_code: str, code: str,
                           scope: Scope) -> list[Finding]:
    """EDGE-1 (the writer role) and EDGE-2 (the bucket policy) for one municipality."""
    n = ins.names
    bucket, role_name = n.drop_zone_bucket(env, code), n.drop_zone_writer(code)
    writer_arn = n.drop_zone_writer_arn(env, prefecture_code, code)
    incoming = f"arn:aws:s3:::{bucket}/incoming/"

    def writer() -> list[Finding]:
        iam = ins.client("iam", env)
        try:
            role = iam.get_role(RoleName=role_name)["Role"]
        except ClientError as exc:
            if error_code(exc) == "NoSuchEntity":
                return [Finding("EDGE-1", scope, role_name, Status.FAIL, "no writer role: the existing system has "
                                "no way in, or uses another")]
            raise
        problems = []
        if role.get("Path") != n.drop_zone_writers_path(prefecture_code):
            problems.append(f"path {role.get('Path')}, not {n.drop_zone_writers_path(prefecture_code)}")
        trusted = {str(p) for st in _statements(_json(role.get("AssumeRolePolicyDocument")))
                   if st.get("Effect") == "Allow" for p in as_list((st.get("Principal") or {}).get("AWS"))}
        if not trusted <= {f"arn:aws:iam::{env.account}:root", env.account}:
            problems.append(f"trusted by {', '.join(sorted(trusted))}, not the tier's account only")
        documents = [(name, _json(iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]))
                     for name in iam.list_role_policies(RoleName=role_name).get("PolicyNames", [])]
        for attached in iam.list_attached_role_policies(RoleName=role_name).get("AttachedPolicies", []):
            policy = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
            version = iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=policy["DefaultVersionId"])
            documents.append((attached["PolicyName"], _json(version["PolicyVersion"]["Document"])))
        for name, document in documents:
            for st in _statements(document):
                if st.get("Effect") != "Allow":
                    continue
                extra = [a for a in as_list(st.get("Action")) if a != "s3:PutObject"]
                outside = [r for r in as_list(st.get("Resource")) if not str(r).startswith(incoming)]
                if extra or outside:
                    problems.append(f"{name} allows {', '.join(map(str, extra + outside))}")
        if problems:
            return [Finding("EDGE-1", scope, role_name, Status.FAIL, "; ".join(problems))]
        return [Finding("EDGE-1", scope, role_name, Status.PASS, f"{role_name}: PutObject into {incoming}* only, "
                        f"trusted by account {env.account}")]

    def bucket_policy() -> list[Finding]:
        policy = _bucket_policy(ins.client("s3", env), bucket)
        denies = [st for st in _statements(policy) if st.get("Effect") == "Deny" and _anyone(st.get("Principal"))
                  and _covers(st.get("Action"), "s3:PutObject")
                  and any(str(r).startswith(incoming) for r in as_list(st.get("Resource")))]
        by_writer = any(_condition_values(st, ["ArnNotEquals", "ArnNotLike", "StringNotEquals"],
                                          "aws:PrincipalArn") == [writer_arn] for st in denies)
        by_endpoint = any(_condition_values(st, ["StringNotEquals"], "aws:SourceVpce") for st in denies)
        if by_writer and by_endpoint:
            return [Finding("EDGE-2", scope, bucket, Status.PASS, f"Deny PutObject into incoming/ unless "
                            f"aws:PrincipalArn is {writer_arn} and aws:SourceVpce is the tier's S3 endpoint")]
        missing = [w for w, ok in (("the writer-only Deny", by_writer), ("the endpoint-only Deny", by_endpoint))
                   if not ok]
        if ins.local:
            return [Finding("EDGE-2", scope, bucket, Status.NOT_VERIFIABLE,
                            f"{' and '.join(missing)} not seen: local mode leaves every conditional statement out "
                            "of the bucket policies it gives moto (docs/local-mode.md, 'Bucket policy conditions')")]
        return [Finding("EDGE-2", scope, bucket, Status.FAIL, f"{' and '.join(missing)} missing from the policy")]

    return [*_guard(["EDGE-1"], scope, role_name, writer), *_guard(["EDGE-2"], scope, bucket, bucket_policy)]


# --- Lambda functions ---------------------------------------------------------------------

_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|PRIVATE_?KEY|API_?KEY|CREDENTIAL|ACCESS_?KEY",
                          re.IGNORECASE)
_SECRET_VALUE = (
    ("an AWS access key id", re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("credentials in a URL", re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)),
    ("a JSON web token", re.compile(r"\beyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]+")),
)
# A variable named like a secret may still hold only a reference to one.
_REFERENCE = re.compile(r"^(arn:aws[a-z-]*:(secretsmanager|ssm|kms):|alias/|/)")


def secret_variables(variables: Mapping[str, str]) -> list[str]:
    """Names of the variables that look like they hold a secret, with why (never the value)."""
    found = []
    for name, value in sorted(variables.items()):
        value = str(value)
        for what, pattern in _SECRET_VALUE:
            if pattern.search(value):
                found.append(f"{name} (holds {what})")
                break
        else:
            if _SECRET_NAME.search(name) and value and not _REFERENCE.match(value):
                found.append(f"{name} (named like a secret, holds a literal value)")
    return found


def _get_function(ins: Inspection, env: Environment, name: str) -> dict[str, Any] | None:
    def load() -> dict[str, Any] | None:
        try:
            return ins.client("lambda", env).get_function(FunctionName=name)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise
    return ins.memo(("function", env, name), load)


def _subnets(ins: Inspection, env: Environment, ids: tuple[str, ...]) -> list[dict[str, Any]]:
    return ins.memo(("subnets", env, ids),
                    lambda: ins.client("ec2", env).describe_subnets(SubnetIds=list(ids))["Subnets"])


def check_function(ins: Inspection, env: Environment, name: str, tier: str, scope: Scope) -> list[Finding]:
    """FN-1..FN-4 for one function."""
    ids = ["FN-1", "FN-2", "FN-3", "FN-4"]

    def run() -> list[Finding]:
        got = _get_function(ins, env, name)
        if got is None:
            return [Finding(c, scope, name, Status.FAIL, "function not found") for c in ids]
        config = got["Configuration"]
        out = _guard(["FN-1"], scope, name, lambda: [_function_in_vpc(ins, env, name, config, tier, scope)])
        out += _guard(["FN-2"], scope, name, lambda: [_function_not_public(ins, env, name, scope)])
        secrets = secret_variables((config.get("Environment") or {}).get("Variables") or {})
        count = len((config.get("Environment") or {}).get("Variables") or {})
        out.append(Finding("FN-3", scope, name, Status.FAIL, f"{'; '.join(secrets)} (values not shown)")
                   if secrets else Finding("FN-3", scope, name, Status.PASS,
                                           f"{count} variables, none named like or holding a secret"))
        reserved = (got.get("Concurrency") or {}).get("ReservedConcurrentExecutions")
        out.append(Finding("FN-4", scope, name, Status.PASS, f"reserved concurrency {reserved}") if reserved
                   else Finding("FN-4", scope, name, Status.FAIL, "no reserved concurrency" if reserved is None
                                else "reserved concurrency 0 (throttled)"))
        return out
    return _guard(ids, scope, name, run)


def _function_in_vpc(ins: Inspection, env: Environment, name: str, config: Mapping[str, Any], tier: str,
                     scope: Scope) -> Finding:
    vpc_config = config.get("VpcConfig") or {}
    subnet_ids = tuple(sorted(vpc_config.get("SubnetIds") or []))
    groups = vpc_config.get("SecurityGroupIds") or []
    if not subnet_ids:
        return Finding("FN-1", scope, name, Status.FAIL,
                       "not attached to a VPC (no subnets): runs with internet access")
    if not groups:
        return Finding("FN-1", scope, name, Status.FAIL, f"subnets {', '.join(subnet_ids)} but no security group")
    tier_vpcs = {v["VpcId"] for v in tier_vpcs_of(ins, env, tier)}
    # The VPC is read from the subnets: moto answers VpcConfig.VpcId with a fixed placeholder.
    subnets = _subnets(ins, env, subnet_ids)
    outside = [f"{s['SubnetId']} ({s['VpcId']})" for s in subnets if s["VpcId"] not in tier_vpcs]
    public = [s["SubnetId"] for s in subnets if s.get("MapPublicIpOnLaunch")]
    if not tier_vpcs:
        return Finding("FN-1", scope, name, Status.FAIL, f"no VPC tagged as tier {tier} exists")
    if outside or len(subnets) != len(subnet_ids):
        return Finding("FN-1", scope, name, Status.FAIL, f"subnets outside the tier's VPC: {', '.join(outside) or '?'}")
    if public:
        return Finding("FN-1", scope, name, Status.FAIL, f"subnets that assign public addresses: {', '.join(public)}")
    return Finding("FN-1", scope, name, Status.PASS,
                   f"subnets {', '.join(subnet_ids)} of {subnets[0]['VpcId']} (tier {tier}), security group(s) "
                   f"{', '.join(groups)}")


def _function_not_public(ins: Inspection, env: Environment, name: str, scope: Scope) -> Finding:
    lam = ins.client("lambda", env)
    try:
        url = lam.get_function_url_config(FunctionName=name)
        return Finding("FN-2", scope, name, Status.FAIL,
                       f"function URL {url.get('FunctionUrl')} (auth {url.get('AuthType')})")
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
    try:
        policy = _json(lam.get_policy(FunctionName=name)["Policy"])
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        policy = None
    public = [s.get("Sid", "?") for s in _statements(policy)
              if s.get("Effect") == "Allow" and _anyone(s.get("Principal")) and not s.get("Condition")]
    if public:
        return Finding("FN-2", scope, name, Status.FAIL, f"resource policy lets anyone invoke it: {', '.join(public)}")
    callers = sorted({json.dumps(s.get("Principal"), sort_keys=True) for s in _statements(policy)})
    return Finding("FN-2", scope, name, Status.PASS,
                   "no function URL; invoke permissions: " + (", ".join(callers) if callers else "none"))


# --- KMS ----------------------------------------------------------------------------------


def check_signing_key(ins: Inspection, env: Environment, alias: str, scope: Scope) -> list[Finding]:
    """KEY-3 for one signing key."""
    def run() -> list[Finding]:
        info = key_info(ins, env, alias)
        if info is None:
            return [Finding("KEY-3", scope, alias, Status.FAIL, "no key under this alias")]
        problems = []
        if info.state != "Enabled":
            problems.append(f"state {info.state}")
        if info.spec != ECC_SPEC:
            problems.append(f"key spec {info.spec}, not {ECC_SPEC}")
        if info.usage != "SIGN_VERIFY":
            problems.append(f"usage {info.usage}, not SIGN_VERIFY")
        if info.manager != "CUSTOMER":
            problems.append(f"{info.manager} managed")
        text = f"{info.label}: {info.spec}, {info.usage}, {info.state}"
        return [Finding("KEY-3", scope, alias, Status.FAIL if problems else Status.PASS,
                        f"{'; '.join(problems)} ({text})" if problems else text)]
    return _guard(["KEY-3"], scope, alias, run)


def check_tier_keys(ins: Inspection, env: Environment, tier: str, expected_purposes: Sequence[str],
                    scope: Scope) -> list[Finding]:
    """KEY-1 per symmetric key of the tier (``alias/<prefix>/<tier>/*``), KEY-2 for them all."""
    prefix = ins.names.key_alias(tier, "")

    def run() -> list[Finding]:
        aliases = {a: k for a, k in _aliases(ins, env).items() if a.startswith(prefix)}
        out: list[Finding] = []
        wanted = [ins.names.key_alias(tier, p) for p in expected_purposes]
        missing = [a for a in wanted if a not in aliases]
        states = []
        kms = ins.client("kms", env)
        for alias in sorted(aliases):
            info = key_info(ins, env, alias)
            if info is None:
                continue
            states.append((alias, info.state))
            if info.spec != "SYMMETRIC_DEFAULT" or info.usage != "ENCRYPT_DECRYPT":
                continue  # KMS rotates only symmetric encryption keys; signing keys are KEY-3
            try:
                status = kms.get_key_rotation_status(KeyId=info.key_id)
            except ClientError as exc:  # e.g. a key pending deletion
                out.append(Finding("KEY-1", scope, alias, Status.FAIL, f"{info.key_id}: rotation status unreadable "
                                   f"({error_code(exc) or exc}), key {info.state}"))
                continue
            period = status.get("RotationPeriodInDays")
            if status.get("KeyRotationEnabled"):
                out.append(Finding("KEY-1", scope, alias, Status.PASS, f"{info.key_id}: automatic rotation enabled"
                                   + (f", every {period} days" if period else "")))
            else:
                out.append(Finding("KEY-1", scope, alias, Status.FAIL, f"{info.key_id}: automatic rotation disabled"))
        for alias in missing:
            out.append(Finding("KEY-1", scope, alias, Status.FAIL, "no key under this alias"))
        bad = [f"{a} {s}" for a, s in states if s != "Enabled"]
        resource = f"{prefix}*"
        if bad or missing:
            out.append(Finding("KEY-2", scope, ", ".join([a for a, s in states if s != "Enabled"] + missing),
                               Status.FAIL, "; ".join(bad + [f"{a} missing" for a in missing])))
        else:
            out.append(Finding("KEY-2", scope, resource, Status.PASS,
                               f"{len(states)} keys enabled: {', '.join(a.removeprefix(prefix) for a, _ in states)}"))
        return out
    return _guard(["KEY-1", "KEY-2"], scope, f"{prefix}*", run)


# --- network ------------------------------------------------------------------------------


def tier_vpcs_of(ins: Inspection, env: Environment, tier: str) -> list[dict[str, Any]]:
    """The VPC(s) tagged ``<prefix>:tier = <tier>`` and ``<prefix>:deployment = <name>``."""
    p = ins.names.prefix
    filters = [{"Name": f"tag:{p}:tier", "Values": [tier]},
               {"Name": f"tag:{p}:deployment", "Values": [ins.deployment.name]}]
    return ins.memo(("vpcs", env, tier), lambda: ins.client("ec2", env).describe_vpcs(Filters=filters)["Vpcs"])


@dataclass(frozen=True)
class ExpectedEndpoints:
    interface: tuple[str, ...]  # service suffixes: sqs, kms, execute-api
    gateway: tuple[str, ...]  # s3, dynamodb


def expected_endpoints(deployment: Deployment, tier: str) -> ExpectedEndpoints:
    """The VPC endpoints each tier's stack creates (infra/stacks: tier.py and its callers)."""
    if tier == NATIONAL:
        return ExpectedEndpoints(("sqs", "kms"), ("dynamodb", *(("s3",) if deployment.agencies else ())))
    if tier.startswith("muni-"):
        return ExpectedEndpoints(("sqs", "kms"), ("s3", "dynamodb"))
    code = tier.removeprefix("pref-")
    own_use = bool(deployment.own_use_recipients(code))
    return ExpectedEndpoints(("sqs", "kms", *(("execute-api",) if own_use else ())), ("dynamodb",))


_DEFAULT_ROUTES = ("0.0.0.0/0", "::/0")
_LIVE_NAT = {"pending", "available"}


def check_network(ins: Inspection, env: Environment, tier: str, scope: Scope) -> list[Finding]:
    """NET-1..NET-5 for the tier's VPC."""
    ids = ["NET-1", "NET-2", "NET-3", "NET-4", "NET-5"]

    def run() -> list[Finding]:
        vpcs = tier_vpcs_of(ins, env, tier)
        if not vpcs:
            return [Finding(c, scope, f"tier {tier}", Status.FAIL, f"no VPC tagged {ins.names.prefix}:tier={tier}")
                    for c in ids]
        out: list[Finding] = []
        for vpc in vpcs:
            vpc_id = vpc["VpcId"]
            resource = f"{vpc_id} ({tier})"
            for cid, fn in (("NET-1", _no_internet_gateway), ("NET-2", _no_nat_gateway), ("NET-3", _no_default_route),
                            ("NET-4", _endpoints_present), ("NET-5", _default_group_closed)):
                out += _guard([cid], scope, resource,
                              lambda fn=fn, vpc_id=vpc_id, resource=resource: [fn(ins, env, tier, vpc_id, scope,
                                                                                  resource)])
        return out
    return _guard(ids, scope, f"tier {tier}", run)


def _vpc_filter(vpc_id: str, name: str = "vpc-id") -> list[dict[str, Any]]:
    return [{"Name": name, "Values": [vpc_id]}]


def _no_internet_gateway(ins: Inspection, env: Environment, tier: str, vpc_id: str, scope: Scope,
                         resource: str) -> Finding:
    ec2 = ins.client("ec2", env)
    igws = [g["InternetGatewayId"] for g in ec2.describe_internet_gateways(
        Filters=_vpc_filter(vpc_id, "attachment.vpc-id"))["InternetGateways"]]
    try:
        eigws = [g["EgressOnlyInternetGatewayId"] for g in ec2.describe_egress_only_internet_gateways()[
            "EgressOnlyInternetGateways"] if any(a.get("VpcId") == vpc_id for a in g.get("Attachments", []))]
    except ClientError:
        eigws = []  # not every endpoint implements it; internet gateways are the question here
    if igws or eigws:
        return Finding("NET-1", scope, resource, Status.FAIL, f"attached: {', '.join(igws + eigws)}")
    return Finding("NET-1", scope, resource, Status.PASS,
                   "no internet gateway or egress-only internet gateway attached")


def _no_nat_gateway(ins: Inspection, env: Environment, tier: str, vpc_id: str, scope: Scope, resource: str) -> Finding:
    nats = ins.client("ec2", env).describe_nat_gateways(Filters=_vpc_filter(vpc_id))["NatGateways"]
    live = [f"{n['NatGatewayId']} ({n.get('State')})" for n in nats if n.get("State") in _LIVE_NAT]
    if live:
        return Finding("NET-2", scope, resource, Status.FAIL, f"NAT gateway(s): {', '.join(live)}")
    return Finding("NET-2", scope, resource, Status.PASS, "no NAT gateway" + (
        f" ({len(nats)} deleted or failed)" if nats else ""))


def _route_target(route: Mapping[str, Any]) -> str:
    for key in ("GatewayId", "NatGatewayId", "EgressOnlyInternetGatewayId", "TransitGatewayId",
                "VpcPeeringConnectionId", "NetworkInterfaceId", "InstanceId", "CarrierGatewayId", "LocalGatewayId",
                "CoreNetworkArn"):
        if route.get(key):
            return str(route[key])
    return "?"


def _no_default_route(ins: Inspection, env: Environment, tier: str, vpc_id: str, scope: Scope,
                      resource: str) -> Finding:
    tables = ins.client("ec2", env).describe_route_tables(Filters=_vpc_filter(vpc_id))["RouteTables"]
    bad = []
    for t in tables:
        for r in t.get("Routes", []):
            target = _route_target(r)
            destination = r.get("DestinationCidrBlock") or r.get("DestinationIpv6CidrBlock") or r.get(
                "DestinationPrefixListId", "?")
            to_internet = target.startswith(("igw-", "nat-", "eigw-"))
            if to_internet or (destination in _DEFAULT_ROUTES and not target.startswith("vpce-")):
                bad.append(f"{t['RouteTableId']}: {destination} -> {target}")
    if bad:
        return Finding("NET-3", scope, resource, Status.FAIL, "; ".join(bad))
    return Finding("NET-3", scope, resource, Status.PASS,
                   f"{len(tables)} route tables: only the VPC's own range and endpoint prefix lists")


def _vpc_endpoints(ins: Inspection, env: Environment, vpc_id: str) -> list[dict[str, Any]]:
    return ins.memo(("endpoints", env, vpc_id), lambda: ins.client("ec2", env).describe_vpc_endpoints(
        Filters=_vpc_filter(vpc_id))["VpcEndpoints"])


def all_tiers(deployment: Deployment) -> list[tuple[str, Environment]]:
    """Every tier of the deployment with where it lives."""
    found = []
    for p in deployment.prefectures:
        found += [(municipality_tier(p.code), p.municipality_tier.env), (prefecture_tier(p.code), p.env)]
    return [*found, (NATIONAL, deployment.national.env)]


def endpoint_owners(ins: Inspection) -> dict[str, tuple[str, str]]:
    """VPC endpoint id -> (tier, service) for the endpoints of every tier VPC that can be read."""
    def load() -> dict[str, tuple[str, str]]:
        owners: dict[str, tuple[str, str]] = {}
        for tier, env in all_tiers(ins.deployment):
            try:
                for vpc in tier_vpcs_of(ins, env, tier):
                    for e in _vpc_endpoints(ins, env, vpc["VpcId"]):
                        service = e.get("ServiceName", "").removeprefix(f"com.amazonaws.{env.region}.")
                        owners[e["VpcEndpointId"]] = (tier, service)
            except (ClientError, BotoCoreError):
                continue  # another account out of reach: its endpoints stay unnamed
        return owners
    return ins.memo(("endpoint-owners",), load)


def describe_endpoint(ins: Inspection, endpoint_id: str) -> str:
    owner = endpoint_owners(ins).get(endpoint_id)
    return f"{endpoint_id} ({owner[1]} endpoint of {owner[0]})" if owner else f"{endpoint_id} (outside this " \
        "deployment's VPCs)"


def _endpoints_present(ins: Inspection, env: Environment, tier: str, vpc_id: str, scope: Scope,
                       resource: str) -> Finding:
    found = _vpc_endpoints(ins, env, vpc_id)
    expected = expected_endpoints(ins.deployment, tier)
    base = f"com.amazonaws.{env.region}."
    have: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in found:
        if e.get("State", "available").lower() in ("available", "pendingacceptance", "pending"):
            have.setdefault((e.get("VpcEndpointType", ""), e.get("ServiceName", "").removeprefix(base)), []).append(e)
    missing = [f"{s} (Interface)" for s in expected.interface if ("Interface", s) not in have]
    missing += [f"{s} (Gateway)" for s in expected.gateway if ("Gateway", s) not in have]
    no_dns = [e["VpcEndpointId"] for s in expected.interface for e in have.get(("Interface", s), [])
              if not e.get("PrivateDnsEnabled")]
    listed = ", ".join(f"{s} {e['VpcEndpointId']}" for (_, s), es in sorted(have.items()) for e in es)
    if missing or no_dns:
        why = ([f"missing: {', '.join(missing)}"] if missing else []) + (
            [f"private DNS off: {', '.join(no_dns)}"] if no_dns else [])
        return Finding("NET-4", scope, resource, Status.FAIL, f"{'; '.join(why)} (present: {listed or 'none'})")
    return Finding("NET-4", scope, resource, Status.PASS, listed)


# moto creates a VPC's default security group with this one egress rule and no ingress rule.
_MOTO_DEFAULT_EGRESS = [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]


def _rules(permissions: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{"IpProtocol": p.get("IpProtocol"),
             **({"IpRanges": [{"CidrIp": r["CidrIp"]} for r in p["IpRanges"]]} if p.get("IpRanges") else {}),
             **({k: p[k] for k in ("Ipv6Ranges", "UserIdGroupPairs", "PrefixListIds", "FromPort", "ToPort")
                 if p.get(k)})} for p in permissions]


def _describe_rules(permissions: Iterable[Mapping[str, Any]]) -> str:
    parts = []
    for p in permissions:
        where = [r.get("CidrIp") for r in p.get("IpRanges", [])] + [r.get("CidrIpv6") for r in p.get("Ipv6Ranges", [])]
        where += [g.get("GroupId") for g in p.get("UserIdGroupPairs", [])]
        proto = "all" if p.get("IpProtocol") == "-1" else f"{p.get('IpProtocol')} {p.get('FromPort')}-{p.get('ToPort')}"
        parts.append(f"{proto} {'/'.join(str(w) for w in where)}")
    return ", ".join(parts)


def _default_group_closed(ins: Inspection, env: Environment, tier: str, vpc_id: str, scope: Scope,
                          resource: str) -> Finding:
    groups = ins.client("ec2", env).describe_security_groups(
        Filters=[*_vpc_filter(vpc_id), {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"]
    if not groups:
        return Finding("NET-5", scope, resource, Status.FAIL, "default security group not found")
    g = groups[0]
    ingress, egress = g.get("IpPermissions", []), g.get("IpPermissionsEgress", [])
    text = f"{g['GroupId']}: ingress [{_describe_rules(ingress)}], egress [{_describe_rules(egress)}]"
    if not ingress and not egress:
        return Finding("NET-5", scope, resource, Status.PASS, f"{g['GroupId']}: no ingress or egress rules")
    if ins.local and not ingress and _rules(egress) == _MOTO_DEFAULT_EGRESS:
        return Finding("NET-5", scope, resource, Status.NOT_VERIFIABLE,
                       f"{text}: only the egress rule moto creates every default group with; the SSM association "
                       "that empties the group (AWSConfigRemediation-RemoveVPCDefaultSecurityGroupRules) does not "
                       "run locally")
    return Finding("NET-5", scope, resource, Status.FAIL, text)


# --- SQS ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueSpec:
    name: str
    redrive: bool = False  # must have a dead-letter queue
    senders: tuple[str, ...] = ()  # an inbound queue between tiers: the sending tiers


def check_queue(ins: Inspection, env: Environment, spec: QueueSpec, scope: Scope) -> list[Finding]:
    """Q-1 for every queue; Q-2 and Q-3 where ``spec`` asks for them."""
    ids = ["Q-1", *(["Q-2"] if spec.redrive else []), *(["Q-3"] if spec.senders else [])]
    name = spec.name

    def run() -> list[Finding]:
        sqs = ins.client("sqs", env)
        try:
            url = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=env.account)["QueueUrl"]
        except ClientError as exc:
            if error_code(exc) in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
                return [Finding(c, scope, name, Status.FAIL, "queue not found") for c in ids]
            raise
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]).get("Attributes", {})
        out = [_queue_encryption(ins, env, name, attrs, scope)]
        if spec.redrive:
            out.append(_queue_redrive(ins, env, name, attrs, scope))
        if spec.senders:
            out.append(_queue_source_vpce(ins, name, attrs, spec.senders, scope))
        return out
    return _guard(ids, scope, name, run)


def _queue_encryption(ins: Inspection, env: Environment, name: str, attrs: Mapping[str, str], scope: Scope) -> Finding:
    key = attrs.get("KmsMasterKeyId")
    if not key:
        managed = "SSE-SQS (SQS-owned key)" if attrs.get("SqsManagedSseEnabled") == "true" else "no encryption"
        return Finding("Q-1", scope, name, Status.FAIL, f"{managed}, not SSE-KMS with a customer-managed key")
    info = key_info(ins, env, key)
    problem = _cmk_problem(info, key)
    if problem:
        return Finding("Q-1", scope, name, Status.FAIL, f"SSE-KMS: {problem}")
    assert info is not None
    return Finding("Q-1", scope, name, Status.PASS, f"SSE-KMS with {info.label}")


def _queue_redrive(ins: Inspection, env: Environment, name: str, attrs: Mapping[str, str], scope: Scope) -> Finding:
    raw = attrs.get("RedrivePolicy")
    if not raw:
        return Finding("Q-2", scope, name, Status.FAIL, "no redrive policy: a message that always fails is retried "
                       "until it expires")
    policy = json.loads(raw)
    target = str(policy.get("deadLetterTargetArn", ""))
    dlq = target.rsplit(":", 1)[-1]
    try:
        ins.client("sqs", env).get_queue_url(QueueName=dlq, QueueOwnerAWSAccountId=target.split(":")[4])
    except (ClientError, IndexError):
        return Finding("Q-2", scope, name, Status.FAIL, f"redrive to {target or '?'}, which does not exist")
    return Finding("Q-2", scope, name, Status.PASS, f"to {dlq} after {policy.get('maxReceiveCount')} receives")


def _queue_source_vpce(ins: Inspection, name: str, attrs: Mapping[str, str], senders: Sequence[str],
                       scope: Scope) -> Finding:
    policy = _json(attrs.get("Policy")) if attrs.get("Policy") else None
    for s in _statements(policy):
        endpoints = _condition_values(s, ["StringNotEquals", "StringNotEqualsIfExists"], "aws:SourceVpce")
        if s.get("Effect") == "Deny" and _anyone(s.get("Principal")) and endpoints \
                and _covers(s.get("Action"), "sqs:SendMessage"):
            owners = endpoint_owners(ins)
            expected = {e for e, (tier, service) in owners.items() if tier in senders and service == "sqs"}
            admitted = ", ".join(describe_endpoint(ins, e) for e in endpoints)
            text = f"{s.get('Sid') or 'Deny'}: SendMessage refused unless through {admitted}"
            foreign = [e for e in endpoints if e not in expected]
            if expected and foreign:
                return Finding("Q-3", scope, name, Status.FAIL, f"{text}: {', '.join(foreign)} is not an SQS endpoint "
                               f"of the sending tier(s) {', '.join(senders)}")
            if not expected:
                text += f" (the SQS endpoint of {', '.join(senders)} could not be read to compare)"
            elif missing := sorted(expected - set(endpoints)):
                text += f"; not admitted, so its messages are refused: {', '.join(missing)}"
            return Finding("Q-3", scope, name, Status.PASS, text)
    seen = "no queue policy" if policy is None else f"{len(_statements(policy))} statement(s), none denying "\
                                                    "SendMessage outside the sending tier's endpoint"
    return Finding("Q-3", scope, name, Status.FAIL, seen)


# --- DynamoDB -----------------------------------------------------------------------------


def check_table(ins: Inspection, env: Environment, name: str, scope: Scope) -> list[Finding]:
    """DB-1..DB-3 for one table."""
    ids = ["DB-1", "DB-2", "DB-3"]

    def run() -> list[Finding]:
        ddb = ins.client("dynamodb", env)
        try:
            table = ddb.describe_table(TableName=name)["Table"]
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return [Finding(c, scope, name, Status.FAIL, "table not found") for c in ids]
            raise
        out = _guard(["DB-1"], scope, name, lambda: [_table_encryption(ins, env, name, table, scope)])
        pitr = ddb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"].get(
            "PointInTimeRecoveryDescription", {})
        if pitr.get("PointInTimeRecoveryStatus") == "ENABLED":
            days = pitr.get("RecoveryPeriodInDays")
            out.append(Finding("DB-2", scope, name, Status.PASS, "point-in-time recovery ENABLED"
                               + (f", {days} days" if days else "")))
        else:
            out.append(Finding("DB-2", scope, name, Status.FAIL,
                               f"point-in-time recovery {pitr.get('PointInTimeRecoveryStatus', 'not configured')}"))
        protected = table.get("DeletionProtectionEnabled")
        out.append(Finding("DB-3", scope, name, Status.PASS if protected else Status.FAIL,
                           f"deletion protection {'on' if protected else 'off'}"))
        return out
    return _guard(ids, scope, name, run)


def _table_encryption(ins: Inspection, env: Environment, name: str, table: Mapping[str, Any], scope: Scope) -> Finding:
    sse = table.get("SSEDescription") or {}
    if not sse:
        if ins.local:
            return Finding("DB-1", scope, name, Status.NOT_VERIFIABLE,
                           "DescribeTable shows no SSEDescription: moto's CloudFormation stores the table's "
                           "SSESpecification under CloudFormation's key SSEEnabled, but DescribeTable reports it "
                           "only for the API's key Enabled, so the table's key cannot be read back locally")
        return Finding("DB-1", scope, name, Status.FAIL, "encrypted with an AWS owned key (no SSEDescription), "
                       "not a customer-managed key")
    if sse.get("Status") not in ("ENABLED", "UPDATING") or sse.get("SSEType") != "KMS":
        return Finding("DB-1", scope, name, Status.FAIL, f"SSE {sse.get('Status')} type {sse.get('SSEType')}")
    key = sse.get("KMSMasterKeyArn", "")
    info = key_info(ins, env, key)
    problem = _cmk_problem(info, key)
    if problem:
        return Finding("DB-1", scope, name, Status.FAIL, f"SSE-KMS: {problem}")
    assert info is not None
    return Finding("DB-1", scope, name, Status.PASS, f"SSE-KMS with {info.label}")


# --- CloudWatch alarms --------------------------------------------------------------------


def _alarms(ins: Inspection, env: Environment) -> list[dict[str, Any]]:
    def load() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for page in ins.client("cloudwatch", env).get_paginator("describe_alarms").paginate(AlarmTypes=["MetricAlarm"]):
            found += page.get("MetricAlarms", [])
        return found
    return ins.memo(("alarms", env), load)


def alarm_topic_arn(ins: Inspection, env: Environment, tier: str) -> str:
    """The tier's alarm topic (infra/stacks/tier.py: ``<prefix>-<tier>-alarms``)."""
    return f"arn:{PARTITION}:sns:{env.region}:{env.account}:{ins.names.prefix}-{tier}-alarms"


NETWORK_WATCH_KINDS = ("flow-log-rejects", "flow-log-leaving-vpc", "dns-outside-endpoint-zones")


def expected_alarms(ins: Inspection, tier: str) -> list[str]:
    """Alarm names every tier of this kind has (infra/stacks, names from infra/naming.py); the
    municipality tier's CS alarms are checked per municipality (ALM-3)."""
    n = ins.names
    network = [n.alarm(tier, s) for s in NETWORK_WATCH_KINDS]  # every tier (infra/components/network_watch.py)
    if tier.startswith("muni-"):
        channel = [n.alarm(tier, s) for s in ("channel-dlq-not-empty", "channel-dead-letters", "channel-errors")] \
            if ins.deployment.channel else []  # infra/components/channel.py
        return [n.alarm(tier, "cs-failed-events-dlq-not-empty"), *channel, *network]
    names = network + [n.alarm(tier, s) for s in ("inbound-dlq-not-empty", "inbound-oldest-message-age",
                                                  "processor-errors", "processor-throttles", "sequence-gaps",
                                                  "notices-overdue", "reconciliation-mismatches",
                                                  "signature-failures")]
    if tier == NATIONAL and ins.deployment.agencies:
        names += [n.alarm(NATIONAL, s) for s in (
            "provision-unauthorised-attempts", "provision-gateway-refusals", "provision-api-errors",
            "provision-batch-dlq-not-empty", "provision-sealer-errors")]
    return names


def _alarm_problem(alarm: Mapping[str, Any], topic: str) -> str | None:
    if not alarm.get("ActionsEnabled"):
        return "actions disabled"
    if topic not in alarm.get("AlarmActions", []):
        return f"alarm actions {alarm.get('AlarmActions') or 'none'}, not the tier's topic"
    return None


def check_alarms(ins: Inspection, env: Environment, tier: str, scope: Scope) -> list[Finding]:
    """ALM-1 (expected names exist) and ALM-2 (every alarm named for the tier is armed, to its topic)."""
    topic = alarm_topic_arn(ins, env, tier)
    prefix = ins.names.alarm(tier, "")
    resource = f"{prefix}*"

    def run() -> list[Finding]:
        alarms = {a["AlarmName"]: a for a in _alarms(ins, env) if a["AlarmName"].startswith(prefix)}
        missing = [n for n in expected_alarms(ins, tier) if n not in alarms]
        out = [Finding("ALM-1", scope, ", ".join(missing), Status.FAIL, f"missing: {', '.join(missing)}") if missing
               else Finding("ALM-1", scope, resource, Status.PASS,
                            f"{len(expected_alarms(ins, tier))} expected alarms present ({len(alarms)} in all)")]
        bad = {n: p for n, a in sorted(alarms.items()) if (p := _alarm_problem(a, topic))}
        if bad:
            out.append(Finding("ALM-2", scope, ", ".join(bad), Status.FAIL,
                               "; ".join(f"{n}: {p}" for n, p in bad.items())))
        elif not alarms:
            out.append(Finding("ALM-2", scope, resource, Status.FAIL, "no alarm of this tier"))
        else:
            out.append(Finding("ALM-2", scope, resource, Status.PASS,
                               f"{len(alarms)} alarms, actions enabled, to {topic.rsplit(':', 1)[-1]}"))
        return out
    return _guard(["ALM-1", "ALM-2"], scope, resource, run)


def _alarm_functions(alarm: Mapping[str, Any]) -> set[str]:
    dims = list(alarm.get("Dimensions", []))
    for m in alarm.get("Metrics", []):
        dims += (m.get("MetricStat") or {}).get("Metric", {}).get("Dimensions", [])
    return {d["Value"] for d in dims if d.get("Name") == "FunctionName"}


def check_cs_alarms(ins: Inspection, env: Environment, tier: str, function: str, scope: Scope) -> list[Finding]:
    """ALM-3: the CS function is in an errors alarm and a throttles alarm of its tier, both armed."""
    topic = alarm_topic_arn(ins, env, tier)

    def run() -> list[Finding]:
        problems, used = [], []
        for kind in ("errors", "throttles"):
            prefix = ins.names.alarm(tier, f"cs-{kind}-")
            covering = [a for a in _alarms(ins, env) if a["AlarmName"].startswith(prefix)
                        and function in _alarm_functions(a)]
            if not covering:
                problems.append(f"no {prefix}* alarm includes {function}")
            for a in covering:
                used.append(a["AlarmName"])
                if p := _alarm_problem(a, topic):
                    problems.append(f"{a['AlarmName']}: {p}")
        if problems:
            return [Finding("ALM-3", scope, function, Status.FAIL, "; ".join(problems))]
        return [Finding("ALM-3", scope, function, Status.PASS, f"in {', '.join(used)}, armed")]
    return _guard(["ALM-3"], scope, function, run)


# --- CloudTrail ---------------------------------------------------------------------------


def check_trail(ins: Inspection, env: Environment, scope: Scope) -> list[Finding]:
    """TRAIL-1..TRAIL-4 for the account's trail (one per account, infra/composition.py)."""
    ids = ["TRAIL-1", "TRAIL-2", "TRAIL-3", "TRAIL-4"]
    name = ins.names.trail()

    def run() -> list[Finding]:
        ct = ins.client("cloudtrail", env)
        trails = ct.describe_trails(includeShadowTrails=True)["trailList"]
        ours = [t for t in trails if t.get("Name") == name and f":{env.account}:" in t.get("TrailARN", "")]
        if not ours:
            others = ", ".join(t.get("Name", "?") for t in trails) or "none"
            return [Finding(c, scope, name, Status.FAIL, f"no trail {name} in account {env.account} (trails: {others})")
                    for c in ids]
        t = ours[0]
        arn = t["TrailARN"]
        out = [Finding("TRAIL-1", scope, name, Status.PASS, f"{arn}, home region {t.get('HomeRegion')}, bucket "
                       f"{t.get('S3BucketName')}")]
        status = ct.get_trail_status(Name=arn)
        problems = ([] if t.get("IsMultiRegionTrail") else ["single-region"]) + (
            [] if status.get("IsLogging") else [f"not logging (stopped {status.get('StopLoggingTime') or '?'})"])
        out.append(Finding("TRAIL-2", scope, name, Status.FAIL if problems else Status.PASS,
                           "; ".join(problems) if problems else "multi-region, logging"
                           + (", global service events included" if t.get("IncludeGlobalServiceEvents") else "")))
        out.append(Finding("TRAIL-3", scope, name, Status.PASS if t.get("LogFileValidationEnabled") else Status.FAIL,
                           f"log file validation {'on' if t.get('LogFileValidationEnabled') else 'off'}"))
        key = t.get("KmsKeyId")
        if not key:
            out.append(Finding("TRAIL-4", scope, name, Status.FAIL, "logs encrypted with SSE-S3 only (no KMS key)"))
        else:
            info = key_info(ins, env, key)
            problem = _cmk_problem(info, key)
            if problem or info is None:
                out.append(Finding("TRAIL-4", scope, name, Status.FAIL, problem or f"key {key} unreadable"))
            else:
                out.append(Finding("TRAIL-4", scope, name, Status.PASS, f"SSE-KMS with {info.label}"))
        return out
    return _guard(ids, scope, name, run)


# --- agreements and the provision API -----------------------------------------------------


def _deployed_code(ins: Inspection, env: Environment, got: Mapping[str, Any]) -> bytes:
    """The function's deployed zip, checked against its CodeSha256."""
    config, location = got["Configuration"], (got.get("Code") or {}).get("Location")
    sha = config.get("CodeSha256", "")

    def matches(data: bytes) -> bool:
        return base64.b64encode(hashlib.sha256(data).digest()).decode() == sha

    if not location:
        raise Unreadable(f"{config['FunctionName']}: no code location")
    if ins.local:
        # moto's Code.Location is not served; its path is the S3 key the deployer published to
        # the bootstrap assets bucket (as embedded_aws/runner.py reads it).
        key = urllib.parse.unquote(urllib.parse.urlparse(location).path.lstrip("/"))
        s3 = ins.client("s3", env)
        for bucket in [b["Name"] for b in s3.list_buckets().get("Buckets", []) if "-assets-" in b["Name"]]:
            try:
                data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except ClientError:
                continue
            if matches(data):
                return bytes(data)
        raise Unreadable(f"{config['FunctionName']}: code {key} not found in the assets bucket(s)")
    if not location.startswith("https://"):
        raise Unreadable(f"{config['FunctionName']}: code location is not an https URL")
    with urllib.request.urlopen(location, timeout=120) as response:  # https, presigned by Lambda
        data = response.read()
    if not matches(data):
        raise Unreadable(f"{config['FunctionName']}: downloaded code does not match its CodeSha256")
    return bytes(data)


# The last deployed code package read, by CodeSha256 (content-addressed: verified on download).
_CODE: dict[str, bytes] = {}


@dataclass(frozen=True)
class AgreementsSource:
    """An agreements document and where it came from."""

    document: dict[str, Any]
    source: str  # shown as the findings' resource


def deployed_agreements(ins: Inspection, env: Environment) -> tuple[list[AgreementsSource], list[str]]:
    """The agreements files deployed with the provision functions (one per distinct code
    package), and notes on anything unreadable. Falls back to the deployment configuration
    only when no deployed copy can be read."""
    by_code: dict[str, list[str]] = {}
    files: dict[str, tuple[str, dict[str, Any]]] = {}
    notes: list[str] = []
    for what in ("api", "batch", "sealer"):
        name = ins.names.provision_function(what)
        got = _get_function(ins, env, name)
        if got is None:
            notes.append(f"{name} not found")
            continue
        variables = (got["Configuration"].get("Environment") or {}).get("Variables") or {}
        file = variables.get("AGREEMENTS_FILE")
        if not file:
            continue  # this function does not read agreements
        sha = got["Configuration"].get("CodeSha256", "")
        by_code.setdefault(sha, []).append(name)
        if sha in files:
            continue
        try:
            data = _CODE.get(sha) or _deployed_code(ins, env, got)
            _CODE.clear()  # keep one package: the provision functions share theirs
            _CODE[sha] = data
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                files[sha] = (file, json.loads(z.read(file)))
        except (Unreadable, ClientError, BotoCoreError, OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            notes.append(f"{name}: {exc}")
    sources = [AgreementsSource(doc, f"{file} deployed with {', '.join(by_code[sha])}")
               for sha, (file, doc) in files.items()]
    if not sources:
        from jukinet.domain.agreements import agreements_data

        sources = [AgreementsSource(agreements_data(ins.deployment.agencies), "agreements of the deployment configuration "
                                    f"(no deployed copy readable: {'; '.join(notes) or 'no function reads one'})")]
    return sources, notes


def check_agreements(ins: Inspection, env: Environment, scope: Scope) -> list[Finding]:
    """AGR-1 (none expired) and AGR-2 (none expiring within 30 days), on the deployed file(s)."""
    from jukinet.domain.agreements import Directory

    def run() -> list[Finding]:
        sources, _ = deployed_agreements(ins, env)
        out: list[Finding] = []
        horizon = ins.today + dt.timedelta(days=EXPIRY_WARNING_DAYS)
        for src in sources:
            directory = Directory.from_document(src.document)  # the runtime's own reading of the file
            terms = [(r.recipient_id, a) for r in directory.recipients for a in r.agreements]
            expired = [f"{rid}/{a.affair_code} (valid until {a.valid_until})" for rid, a in terms
                       if a.valid_until < ins.today]
            soon = [f"{rid}/{a.affair_code} (valid until {a.valid_until})" for rid, a in terms
                    if ins.today <= a.valid_until <= horizon]
            future = [f"{rid}/{a.affair_code} (from {a.valid_from})" for rid, a in terms if a.valid_from > ins.today]
            first_end = min((a.valid_until for _, a in terms if a.valid_until >= ins.today), default=None)
            summary = f"{len(terms)} agreements of {len(directory.recipients)} recipients, judged on {ins.today}"
            out.append(Finding("AGR-1", scope, src.source, Status.FAIL, f"expired: {', '.join(expired)}")
                       if expired else Finding("AGR-1", scope, src.source, Status.PASS,
                                               f"{summary}: none expired"
                                               + (f"; not yet in force: {', '.join(future)}" if future else "")))
            out.append(Finding("AGR-2", scope, src.source, Status.FAIL,
                               f"expiring by {horizon}: {', '.join(soon)}") if soon
                       else Finding("AGR-2", scope, src.source, Status.PASS,
                                    f"none expires by {horizon}" + (f"; first end {first_end}" if first_end else "")))
        return out
    return _guard(["AGR-1", "AGR-2"], scope, "agreements", run)


def check_private_api(ins: Inspection, env: Environment, scope: Scope, name: str) -> list[Finding]:
    """API-1 and API-2 for a private REST API: the provision API (national tier) or a
    municipality tier's counter API."""

    def run() -> list[Finding]:
        apis = []
        for page in ins.client("apigateway", env).get_paginator("get_rest_apis").paginate():
            apis += [a for a in page.get("items", []) if a.get("name") == name]
        if not apis:
            return [Finding(c, scope, name, Status.FAIL, "REST API not found") for c in ("API-1", "API-2")]
        out = []
        for api in apis:
            resource = f"{name} ({api['id']})"
            types = (api.get("endpointConfiguration") or {}).get("types", [])
            out.append(Finding("API-1", scope, resource, Status.PASS if types == ["PRIVATE"] else Status.FAIL,
                               f"endpoint types {types or 'none'}"))
            policy = _json(api.get("policy")) if api.get("policy") else None
            deny = None
            for s in _statements(policy):
                endpoints = _condition_values(s, ["StringNotEquals", "StringNotEqualsIfExists"], "aws:SourceVpce")
                whole = any(str(r).endswith(("execute-api:/*", "/*")) or r == "*" for r in as_list(s.get("Resource")))
                if s.get("Effect") == "Deny" and _anyone(s.get("Principal")) and endpoints and whole \
                        and _covers(s.get("Action"), "execute-api:Invoke"):
                    deny = (s.get("Sid") or "Deny", endpoints)
                    break
            if deny:
                admitted = ", ".join(describe_endpoint(ins, e) for e in deny[1])
                out.append(Finding("API-2", scope, resource, Status.PASS,
                                   f"{deny[0]}: every call refused unless through {admitted}"))
            else:
                out.append(Finding("API-2", scope, resource, Status.FAIL,
                                   "no resource policy" if policy is None else
                                   "no Deny of calls outside the configured VPC endpoints (aws:SourceVpce)"))
        return out
    return _guard(["API-1", "API-2"], scope, name, run)


# --- the audit ----------------------------------------------------------------------------


def tier_scope(tier: str) -> Scope:
    return ("tier", tier)


def account_scope(env: Environment) -> Scope:
    return ("account", f"{env.account}/{env.region}")


def municipality_findings(ins: Inspection, prefecture: Prefecture, municipality: Municipality) -> list[Finding]:
    n, code = ins.names, municipality.code
    env = prefecture.municipality_tier.env
    tier = municipality_tier(prefecture.code)
    scope: Scope = ("municipality", code)
    return [
        *check_bucket(ins, env, n.drop_zone_bucket(env, code), n.key_alias(tier, "at-rest"), scope),
        *check_drop_zone_writer(ins, env, prefecture.code, code, scope),
        # the CS's inbox (decision 0051): a customer-managed key, a redrive policy
        *check_queue(ins, env, QueueSpec(n.cs_inbox_queue(code), redrive=True), scope),
        *check_function(ins, env, n.cs_function(code), tier, scope),
        *check_signing_key(ins, env, n.signing_alias(code), scope),
        *check_cs_alarms(ins, env, tier, n.cs_function(code), scope),
    ]


def municipality_tier_findings(ins: Inspection, prefecture: Prefecture) -> list[Finding]:
    n, env = ins.names, prefecture.municipality_tier.env
    tier = municipality_tier(prefecture.code)
    scope = tier_scope(tier)
    return [
        *check_network(ins, env, tier, scope),
        *check_tier_keys(ins, env, tier, ("at-rest", "audit"), scope),
        *check_table(ins, env, n.cs_state_table(prefecture.code), scope),
        *check_queue(ins, env, QueueSpec(n.cs_failure_queue(prefecture.code)), scope),
        *check_alarms(ins, env, tier, scope),
        # the counter API (住基カード): its function, its card table, the API itself
        *check_function(ins, env, n.card_api(prefecture.code), tier, scope),
        *check_table(ins, env, n.card_table(prefecture.code), scope),
        *check_private_api(ins, env, scope, n.card_api(prefecture.code)),
        *(_channel_findings(ins, prefecture, scope) if ins.deployment.channel else []),
        # where the resident record lives: the fields never sent upward (decision 0044)
        *check_table(ins, env, n.local_record_table(prefecture.code), scope),
    ]


def _channel_findings(ins: Inspection, prefecture: Prefecture, scope: Scope) -> list[Finding]:
    """The channel between municipalities (infra/components/channel.py): its queue with a
    redrive policy, the dead-letter queue, both under a customer-managed key, and the function."""
    n, env = ins.names, prefecture.municipality_tier.env
    queue = n.channel_queue(prefecture.code)
    return [
        *check_queue(ins, env, QueueSpec(queue, redrive=True), scope),
        *check_queue(ins, env, QueueSpec(n.dead_letter_queue(queue)), scope),
        *check_function(ins, env, n.channel_function(prefecture.code), municipality_tier(prefecture.code), scope),
    ]


def _processing_queues(n: Names, tier: str, senders: Sequence[str]) -> list[QueueSpec]:
    inbound = n.inbound_queue(tier)
    return [QueueSpec(inbound, redrive=True, senders=tuple(senders)), QueueSpec(n.dead_letter_queue(inbound))]


def prefecture_tier_findings(ins: Inspection, prefecture: Prefecture) -> list[Finding]:
    n, env = ins.names, prefecture.env
    tier = prefecture_tier(prefecture.code)
    scope = tier_scope(tier)
    out = [
        *check_network(ins, env, tier, scope),
        *check_tier_keys(ins, env, tier, ("at-rest", "transport", "envelope", "audit", "security-reports"), scope),
        *check_signing_key(ins, env, n.signing_alias(prefecture.code), scope),
        *check_table(ins, env, n.identity_table(tier), scope),
        *check_function(ins, env, n.processor_function(tier), tier, scope),
        *check_bucket(ins, env, n.security_reports_bucket(env, tier), n.key_alias(tier, "security-reports"), scope),
        *check_alarms(ins, env, tier, scope),
    ]
    for q in _processing_queues(n, tier, [municipality_tier(prefecture.code)]):
        out += check_queue(ins, env, q, scope)
    return out


def national_findings(ins: Inspection) -> list[Finding]:
    n, env = ins.names, ins.deployment.national.env
    scope = tier_scope(NATIONAL)
    provides = bool(ins.deployment.agencies)
    purposes = ("at-rest", "transport", "envelope", "audit", "security-reports",
                *(("provision-log", "provision-batch") if provides else ()))
    out = [
        *check_network(ins, env, NATIONAL, scope),
        *check_tier_keys(ins, env, NATIONAL, purposes, scope),
        *check_table(ins, env, n.identity_table(NATIONAL), scope),
        *check_function(ins, env, n.processor_function(NATIONAL), NATIONAL, scope),
        *check_bucket(ins, env, n.security_reports_bucket(env, NATIONAL), n.key_alias(NATIONAL, "security-reports"),
                      scope),
        *check_alarms(ins, env, NATIONAL, scope),
    ]
    for q in _processing_queues(n, NATIONAL, [prefecture_tier(p.code) for p in ins.deployment.prefectures]):
        out += check_queue(ins, env, q, scope)
    if provides:
        batch = n.provision_batch_queue()
        out += [
            *check_signing_key(ins, env, n.key_alias(NATIONAL, "provision-seal"), scope),
            *check_table(ins, env, n.provision_log_table(), scope),
            *check_table(ins, env, n.provision_state_table(), scope),
            *check_queue(ins, env, QueueSpec(batch, redrive=True), scope),
            *check_queue(ins, env, QueueSpec(n.dead_letter_queue(batch)), scope),
            *check_bucket(ins, env, n.provision_batch_bucket(env), n.key_alias(NATIONAL, "provision-batch"), scope),
            *[f for what in ("api", "batch", "sealer")
              for f in check_function(ins, env, n.provision_function(what), NATIONAL, scope)],
            *check_agreements(ins, env, scope),
            *check_private_api(ins, env, scope, n.provision_api()),
        ]
    return out


@dataclass(frozen=True)
class Target:
    """One municipality's report: the municipality and the scopes it depends on."""

    prefecture: Prefecture
    municipality: Municipality

    def scopes(self, deployment: Deployment) -> list[tuple[Scope, str]]:
        p = self.prefecture
        envs = dict.fromkeys([p.municipality_tier.env, p.env, deployment.national.env])
        return [
            (("municipality", self.municipality.code),
             f"Municipality {self.municipality.code} {self.municipality.name}"),
            (tier_scope(municipality_tier(p.code)),
             f"Municipality tier {municipality_tier(p.code)} (shared by the CSs of {p.name})"),
            (tier_scope(prefecture_tier(p.code)), f"Prefecture tier {prefecture_tier(p.code)} ({p.name})"),
            (tier_scope(NATIONAL), "National tier (指定情報処理機関)"),
            *((account_scope(e), f"Account {e.account} ({e.region}): audit trail") for e in envs),
        ]


@dataclass
class Audit:
    deployment: Deployment
    targets: list[Target]
    findings: list[Finding]
    target_description: str  # what was inspected (endpoint or account)
    local: bool
    today: dt.date
    generated_at: dt.datetime

    def of_scope(self, scope: Scope) -> list[Finding]:
        return [f for f in self.findings if f.scope == scope]

    def for_target(self, target: Target) -> list[tuple[str, list[Finding]]]:
        return [(title, self.of_scope(scope)) for scope, title in target.scopes(self.deployment)]

    @property
    def failed(self) -> list[Finding]:
        return [f for f in self.findings if f.status is Status.FAIL]

    @property
    def exit_code(self) -> int:
        return exit_code(self.findings)


def exit_code(findings: Iterable[Finding]) -> int:
    """1 if any check failed, else 0 (NOT-VERIFIABLE-LOCALLY is not a miss)."""
    return 1 if any(f.status is Status.FAIL for f in findings) else 0


def select_targets(deployment: Deployment, codes: Sequence[str] | None) -> list[Target]:
    """Every municipality, or those named; an unknown code raises ValueError."""
    targets = [Target(p, m) for p in deployment.prefectures for m in p.municipality_tier.municipalities]
    if not codes:
        return targets
    known = {t.municipality.code: t for t in targets}
    unknown = [c for c in codes if c not in known]
    if unknown:
        raise ValueError(f"not a municipality of deployment {deployment.name}: {', '.join(unknown)}")
    return [known[c] for c in dict.fromkeys(codes)]


def run_audit(ins: Inspection, targets: Sequence[Target], target_description: str) -> Audit:
    findings: list[Finding] = []
    prefectures = list(dict.fromkeys(t.prefecture.code for t in targets))
    d = ins.deployment
    for code in prefectures:
        p = d.prefecture(code)
        findings += municipality_tier_findings(ins, p)
        findings += prefecture_tier_findings(ins, p)
    findings += national_findings(ins)
    envs = dict.fromkeys(e for t in targets for e in (t.prefecture.municipality_tier.env, t.prefecture.env))
    envs[d.national.env] = None
    for env in envs:
        findings += check_trail(ins, env, account_scope(env))
    for t in targets:
        findings += municipality_findings(ins, t.prefecture, t.municipality)
    return Audit(deployment=d, targets=list(targets), findings=findings, target_description=target_description,
                 local=ins.local, today=ins.today,
                 generated_at=(ins.at or dt.datetime.combine(ins.today, dt.time(), JST)).astimezone(JST)
                 .replace(microsecond=0))


# --- rendering ----------------------------------------------------------------------------

_NV_NOTE = ("NOT-VERIFIABLE-LOCALLY: the embedded AWS (moto, local mode) cannot hold this setting truthfully; the "
            "evidence says why. It is not a miss here and never appears against a real account.")


def counts(findings: Iterable[Finding]) -> dict[Status, int]:
    result = dict.fromkeys(Status, 0)
    for f in findings:
        result[f.status] += 1
    return result


def _verdict(findings: Iterable[Finding]) -> str:
    return "FAIL" if exit_code(findings) else "PASS"


def _md(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("*", "\\*") \
        .replace("_", "\\_").replace("<", "&lt;").replace(">", "&gt;")


def render_markdown(audit: Audit, target: Target) -> str:
    m, p = target.municipality, target.prefecture
    sections = audit.for_target(target)
    every = [f for _, fs in sections for f in fs]
    c = counts(every)
    lines = [
        f"# Security checklist — {m.code} {m.name} ({p.name})",
        "",
        f"セキュリティチェックリスト: {m.name}",
        "",
        (f"- Result: **{_verdict(every)}** — {c[Status.PASS]} PASS, {c[Status.FAIL]} FAIL, "
        f"{c[Status.NOT_VERIFIABLE]} NOT-VERIFIABLE-LOCALLY"),
        f"- Deployment: `{audit.deployment.name}`; inspected: {_md(audit.target_description)}",
        f"- Inspected at {audit.generated_at.isoformat()}; dates judged on {audit.today.isoformat()} (JST)",
        "- What each check means: docs/checklist.md",
        "",
    ]
    if audit.local:
        lines += [f"> {_NV_NOTE}", ""]
    lines += ["| section | PASS | FAIL | NOT-VERIFIABLE-LOCALLY |", "| --- | ---: | ---: | ---: |"]
    for title, fs in sections:
        sc = counts(fs)
        lines.append(f"| {_md(title)} | {sc[Status.PASS]} | {sc[Status.FAIL]} | {sc[Status.NOT_VERIFIABLE]} |")
    for title, fs in sections:
        lines += ["", f"## {_md(title)}", ""]
        if not fs:
            lines.append("(no checks)")
            continue
        lines += ["| id | check | resource | result | evidence |", "| --- | --- | --- | --- | --- |"]
        for f in fs:
            resource = f.resource.replace("`", "").replace("|", "\\|")
            lines.append(f"| {f.check_id} | {_md(f.check.title)}<br>{_md(f.check.title_ja)} | `{resource}` "
                         f"| **{f.status.value}** | {_md(f.evidence)} |")
    used = sorted({f.check_id for f in every}, key=_check_order)
    lines += ["", "## Checks (2002 technical standard topics)", "", "| id | check | 技術的基準の項目 |", "| --- | --- | --- |"]
    lines += [f"| {i} | {_md(CHECKS[i].title)} / {_md(CHECKS[i].title_ja)} | {_md(CHECKS[i].standard)} |" for i in used]
    return "\n".join(lines) + "\n"


def _check_order(check_id: str) -> int:
    return list(CHECKS).index(check_id)


_CSS = """
body{font-family:system-ui,-apple-system,"Hiragino Sans","Noto Sans JP",sans-serif;margin:2em;color:#222;
max-width:1400px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .5em;
vertical-align:top;text-align:left}th{background:#f3f3f3}code{font-size:.95em;word-break:break-all}
.PASS{background:#e6f4ea;color:#137333;font-weight:bold}.FAIL{background:#fce8e6;color:#a50e0e;font-weight:bold}
.NOT-VERIFIABLE-LOCALLY{background:#fef7e0;color:#7a5b00;font-weight:bold}.ja{color:#555}
.note{background:#fef7e0;padding:.5em 1em;border-left:4px solid #f9ab00}td.n{text-align:right}
""".strip()


def _h(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_page(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{_h(title)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def render_html(audit: Audit, target: Target) -> str:
    m, p = target.municipality, target.prefecture
    sections = audit.for_target(target)
    every = [f for _, fs in sections for f in fs]
    c = counts(every)
    verdict = _verdict(every)
    title = f"Security checklist — {m.code} {m.name} ({p.name})"
    body = [
        f"<h1>{_h(title)}</h1>", f"<p class=\"ja\">セキュリティチェックリスト: {_h(m.name)}</p>",
        "<ul>",
        (f"<li>Result: <span class=\"{verdict}\">{verdict}</span> — {c[Status.PASS]} PASS, {c[Status.FAIL]} FAIL, "
        f"{c[Status.NOT_VERIFIABLE]} NOT-VERIFIABLE-LOCALLY</li>"),
        f"<li>Deployment: <code>{_h(audit.deployment.name)}</code>; inspected: {_h(audit.target_description)}</li>",
        (f"<li>Inspected at {_h(audit.generated_at.isoformat())}; dates judged on {_h(audit.today.isoformat())} "
        "(JST)</li>"),
        "<li>What each check means: docs/checklist.md</li>", "</ul>",
    ]
    if audit.local:
        body.append(f"<p class=\"note\">{_h(_NV_NOTE)}</p>")
    body += ["<table>", "<tr><th>section</th><th>PASS</th><th>FAIL</th><th>NOT-VERIFIABLE-LOCALLY</th></tr>"]
    for title_, fs in sections:
        sc = counts(fs)
        body.append(f"<tr><td>{_h(title_)}</td><td class=\"n\">{sc[Status.PASS]}</td><td class=\"n\">"
                    f"{sc[Status.FAIL]}</td><td class=\"n\">{sc[Status.NOT_VERIFIABLE]}</td></tr>")
    body.append("</table>")
    for title_, fs in sections:
        body.append(f"<h2>{_h(title_)}</h2>")
        if not fs:
            body.append("<p>(no checks)</p>")
            continue
        body += ["<table>", "<tr><th>id</th><th>check</th><th>resource</th><th>result</th><th>evidence</th></tr>"]
        for f in fs:
            body.append(f"<tr id=\"{_h(f.check_id)}\"><td>{_h(f.check_id)}</td><td>{_h(f.check.title)}<br>"
                        f"<span class=\"ja\">{_h(f.check.title_ja)}</span></td><td><code>{_h(f.resource)}</code></td>"
                        f"<td class=\"{_h(f.status.value)}\">{_h(f.status.value)}</td><td>{_h(f.evidence)}</td></tr>")
        body.append("</table>")
    used = sorted({f.check_id for f in every}, key=_check_order)
    body += ["<h2>Checks (2002 technical standard topics)</h2>", "<table>",
             "<tr><th>id</th><th>check</th><th>技術的基準の項目</th></tr>"]
    body += [f"<tr><td>{_h(i)}</td><td>{_h(CHECKS[i].title)}<br><span class=\"ja\">{_h(CHECKS[i].title_ja)}</span>"
             f"</td><td>{_h(CHECKS[i].standard)}</td></tr>" for i in used]
    body.append("</table>")
    return _html_page(title, body)


def _target_rows(audit: Audit) -> list[tuple[Target, dict[Status, int], str]]:
    rows = []
    for t in audit.targets:
        fs = [f for _, section in audit.for_target(t) for f in section]
        rows.append((t, counts(fs), _verdict(fs)))
    return rows


def render_index_markdown(audit: Audit) -> str:
    lines = [f"# Security checklist — deployment {audit.deployment.name}", "",
             (f"Inspected: {_md(audit.target_description)} at {audit.generated_at.isoformat()}; dates judged on "
             f"{audit.today.isoformat()} (JST). Result: **{_verdict(audit.findings)}**."), "",
             "| municipality | name | result | PASS | FAIL | NOT-VERIFIABLE-LOCALLY | reports |",
             "| --- | --- | --- | ---: | ---: | ---: | --- |"]
    for t, c, verdict in _target_rows(audit):
        code = t.municipality.code
        lines.append(f"| {code} | {_md(t.municipality.name)} | **{verdict}** | {c[Status.PASS]} | {c[Status.FAIL]} | "
                     f"{c[Status.NOT_VERIFIABLE]} | [md]({code}.md) [html]({code}.html) |")
    return "\n".join(lines) + "\n"


def render_index_html(audit: Audit) -> str:
    title = f"Security checklist — deployment {audit.deployment.name}"
    verdict = _verdict(audit.findings)
    body = [f"<h1>{_h(title)}</h1>",
            (f"<p>Inspected: {_h(audit.target_description)} at {_h(audit.generated_at.isoformat())}; dates judged on "
            f"{_h(audit.today.isoformat())} (JST). Result: <span class=\"{verdict}\">{verdict}</span>.</p>"),
            "<table>", ("<tr><th>municipality</th><th>name</th><th>result</th><th>PASS</th><th>FAIL</th>"
            "<th>NOT-VERIFIABLE-LOCALLY</th><th>report</th></tr>")]
    for t, c, v in _target_rows(audit):
        code = _h(t.municipality.code)
        body.append(f"<tr><td>{code}</td><td>{_h(t.municipality.name)}</td><td class=\"{v}\">{v}</td>"
                    f"<td class=\"n\">{c[Status.PASS]}</td><td class=\"n\">{c[Status.FAIL]}</td>"
                    f"<td class=\"n\">{c[Status.NOT_VERIFIABLE]}</td>"
                    f"<td><a href=\"{code}.html\">{code}.html</a></td></tr>")
    body.append("</table>")
    return _html_page(title, body)


def write_reports(audit: Audit, out_dir: str | os.PathLike[str]) -> list[Path]:
    """``<code>.md`` and ``<code>.html`` per municipality, and ``index.md``/``index.html``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for t in audit.targets:
        for suffix, text in (("md", render_markdown(audit, t)), ("html", render_html(audit, t))):
            path = out / f"{t.municipality.code}.{suffix}"
            path.write_text(text, encoding="utf-8")
            written.append(path)
    for suffix, text in (("md", render_index_markdown(audit)), ("html", render_index_html(audit))):
        path = out / f"index.{suffix}"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def summary_text(audit: Audit, out_dir: str | os.PathLike[str] | None = None) -> str:
    c = counts(audit.findings)
    lines = [f"jukinet checklist — deployment {audit.deployment.name}, {audit.target_description}",
             (f"dates judged on {audit.today.isoformat()} (JST); {len(audit.targets)} municipalities; "
             f"{len(audit.findings)} checks: {c[Status.PASS]} PASS, {c[Status.FAIL]} FAIL, "
             f"{c[Status.NOT_VERIFIABLE]} NOT-VERIFIABLE-LOCALLY"), ""]
    rows = _target_rows(audit)
    bad = [r for r in rows if r[2] == "FAIL"]
    lines.append(f"municipalities: {len(rows) - len(bad)} PASS, {len(bad)} FAIL")
    for t, rc, verdict in rows:
        if verdict == "FAIL" or len(rows) <= 10:
            lines.append(f"  {t.municipality.code} {t.municipality.name}: {verdict} ({rc[Status.PASS]} pass, "
                         f"{rc[Status.FAIL]} fail, {rc[Status.NOT_VERIFIABLE]} not verifiable locally)")
    if audit.failed:
        lines += ["", "FAIL:"]
        for f in audit.failed:
            lines.append(f"  {f.check_id} [{f.scope[0]} {f.scope[1]}] {f.resource}: {f.evidence}")
    nv: dict[str, list[Finding]] = {}
    for f in audit.findings:
        if f.status is Status.NOT_VERIFIABLE:
            nv.setdefault(f.check_id, []).append(f)
    if nv:
        lines += ["", "NOT-VERIFIABLE-LOCALLY:"]
        for cid, fs in sorted(nv.items(), key=lambda kv: _check_order(kv[0])):
            lines.append(f"  {cid} {CHECKS[cid].title}: {len(fs)} resource(s), e.g. {fs[0].resource}")
    if out_dir is not None:
        lines += ["", f"reports: {Path(out_dir) / 'index.html'} (and <code>.md/.html per municipality)"]
    lines += ["", f"result: {_verdict(audit.findings)}"]
    return "\n".join(lines)


# --- clients and the command --------------------------------------------------------------


# Clients of the embedded AWS, per session (local_session keeps one per endpoint, region and
# account, and forgets them when the server stops): creating a client costs ~50-100 ms.
_LOCAL_CLIENTS: dict[tuple[Any, str, str], Any] = {}


def local_clients(endpoint_url: str) -> ClientFactory:
    """Clients of the embedded AWS (any account: moto attributes assumed-role credentials)."""
    from embedded_aws.server import local_client, local_session

    def factory(service: str, env: Environment) -> Any:
        key = (local_session(endpoint_url, env.region, env.account), service, endpoint_url)
        if key not in _LOCAL_CLIENTS:
            _LOCAL_CLIENTS[key] = local_client(endpoint_url, service, env.region, env.account)
        return _LOCAL_CLIENTS[key]
    return factory


def aws_clients(role_name: str | None = None, endpoint_url: str | None = None) -> ClientFactory:
    """Clients from the standard credential chain; for an account other than the caller's,
    credentials of ``role_name`` assumed there (when given)."""
    import boto3

    from jukinet.adapters.aws import new_session

    from .clients import operator_client

    session = new_session()
    sessions: dict[str, Any] = {}
    cache: dict[tuple[str, Environment], Any] = {}
    caller: list[str] = []

    def session_for(account: str, region: str) -> Any:
        if role_name is None:
            return session
        if not caller:
            sts = session.client("sts", region_name=region, endpoint_url=endpoint_url)
            caller.append(sts.get_caller_identity()["Account"])
        if account == caller[0]:
            return session
        if account not in sessions:
            creds = session.client("sts", region_name=region, endpoint_url=endpoint_url).assume_role(
                RoleArn=f"arn:{PARTITION}:iam::{account}:role/{role_name}", RoleSessionName="jukinet-checklist",
            )["Credentials"]
            sessions[account] = boto3.session.Session(
                aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"])
        return sessions[account]

    def factory(service: str, env: Environment) -> Any:
        if (service, env) not in cache:
            cache[(service, env)] = operator_client(service, env.region, session=session_for(env.account, env.region),
                                                    endpoint_url=endpoint_url)
        return cache[(service, env)]
    return factory


def run_checklist(deployment: Deployment, *, endpoint_url: str | None, codes: Sequence[str] | None,
                  out_dir: str | os.PathLike[str] | None, now: dt.datetime, today: dt.date | None = None,
                  role_name: str | None = None, clients: ClientFactory | None = None) -> Audit:
    """Inspect at ``now``, judging dates on ``today`` (default: ``now``'s day in Japan); write
    the reports (when ``out_dir``), return the audit."""
    targets = select_targets(deployment, codes)
    local = endpoint_url is not None
    if clients is None:
        clients = local_clients(endpoint_url) if local else aws_clients(role_name)  # type: ignore[arg-type]
    ins = Inspection(deployment, clients, today=today or today_jst(now), local=local, at=now)
    description = (f"embedded AWS at {endpoint_url} (local mode)" if local
                   else f"AWS accounts {', '.join(deployment.accounts())} through the standard credential chain")
    audit = run_audit(ins, targets, description)
    if out_dir is not None:
        write_reports(audit, out_dir)
    return audit


def cmd_checklist(args: Any) -> int:
    """``jukinet checklist``: exit 0 all PASS (or NOT-VERIFIABLE-LOCALLY), 1 any FAIL, 2 bad arguments."""
    import sys

    from infra.config import ConfigError, load_deployment

    try:
        deployment = load_deployment(args.deployment)
        select_targets(deployment, args.municipality)
    except (ConfigError, ValueError) as exc:
        print(f"jukinet checklist: {exc}", file=sys.stderr)
        return 2
    endpoint = args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
    audit = run_checklist(deployment, endpoint_url=endpoint, codes=args.municipality, out_dir=args.out,
                          now=args.now, today=args.as_of, role_name=args.role_name)
    print(summary_text(audit, args.out))
    return audit.exit_code


def add_arguments(p: Any) -> None:
    def day(text: str) -> dt.date:
        import argparse

        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"date must be YYYY-MM-DD, got {text!r}") from None

    p.add_argument("--deployment", default=None, help="deployment configuration name (default: nagano-demo)")
    p.add_argument("--endpoint-url", default=None,
                   help="AWS endpoint: the embedded AWS (local mode; default $AWS_ENDPOINT_URL)")
    p.add_argument("--out", default="checklist", help="report directory (default: ./checklist)")
    p.add_argument("--municipality", nargs="+", action="extend", metavar="CODE",
                   help="only these municipalities (6-digit codes; default: all)")
    p.add_argument("--as-of", type=day, default=None, metavar="YYYY-MM-DD",
                   help="judge agreement dates on this day (default: today, JST)")
    p.add_argument("--role-name", default=None,
                   help="assume this role in tier accounts other than the caller's (multi-account deployments)")
