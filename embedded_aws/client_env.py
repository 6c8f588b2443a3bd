"""What a client needs to reach a running local environment (``jukinet up``), as files.

* ``<state>/env`` — a shell file of ``export NAME=value`` lines: the embedded AWS's endpoint
  and region, the AWS CLI/SDK config and credentials files below, the provision API's URL,
  every drop-zone bucket, the batch bucket, and the process ids of the environment. ``source``
  it and every AWS SDK, the AWS CLI and every ``jukinet`` command acts on the local
  environment; ``jukinet … --local`` reads it without touching the shell.
* ``<state>/aws-config`` and ``<state>/aws-credentials`` — an AWS config/credentials file pair
  with one profile per role a person or a system uses: each recipient of the provision API
  (``jukinet-recipient-<id>``: a key pair for SigV4, with its API key and the API URL as the
  profile's ``jukinet_api_key`` and ``jukinet_provision_api``), and every role deployed in the
  assembly that people or systems assume — its trust policy names an account, a role or a SAML
  provider, not only AWS services: the people's roles, the municipalities' writers… (profile =
  role name, credentials of an ``AssumeRole`` session of that role in the embedded AWS), plus
  ``default`` (the embedded AWS's local credentials). Which roles exist is read from the
  deployment, never listed here.

The credentials are local-only: the embedded AWS evaluates no IAM, and the provision API's
key pairs are known to the locally served API only (``embedded_aws/api/``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .model import DeployedEnvironment
from .server import DUMMY_ACCESS_KEY_ID, DUMMY_SECRET_ACCESS_KEY, local_client

__all__ = ["ClientProfile", "LocalEnvironmentFiles", "NotRunning", "add_variables", "default_profile",
           "deployed_role_profiles", "read_env_file", "write_client_files"]

ENV_FILE, CONFIG_FILE, CREDENTIALS_FILE = "env", "aws-config", "aws-credentials"
# The kind of a client role, by its path (infra/naming.py: people_path, drop_zone_writers_path);
# any other role that people or systems may assume is of kind "role".
_CLIENT_ROLE_PATHS = {"-people/": "people", "-writers/": "writer", "-counter/": "counter"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class NotRunning(RuntimeError):
    """No local environment is running (no env file, or its process is gone)."""


@dataclass(frozen=True)
class ClientProfile:
    """One AWS CLI/SDK profile: the credentials a role's user holds locally."""

    name: str
    kind: str  # recipient, people, writer, default
    role_arn: str | None
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    settings: Mapping[str, str] = field(default_factory=dict)  # extra config keys (jukinet_api_key…)


@dataclass(frozen=True)
class LocalEnvironmentFiles:
    """Where the files of a state directory are."""

    state_dir: Path

    @property
    def env(self) -> Path:
        return self.state_dir / ENV_FILE

    @property
    def config(self) -> Path:
        return self.state_dir / CONFIG_FILE

    @property
    def credentials(self) -> Path:
        return self.state_dir / CREDENTIALS_FILE

    def remove(self) -> None:
        for path in (self.env, self.config, self.credentials):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def deployed_role_profiles(env: DeployedEnvironment) -> list[ClientProfile]:
    """A profile per people or writer role of the deployed stacks (profile = role name), with
    the credentials of an ``AssumeRole`` session of the role in the embedded AWS (moto's STS:
    its calls are then attributed to the role and the role's account)."""
    profiles: list[ClientProfile] = []
    seen: set[str] = set()
    for stack in env.stacks.values():
        iam = local_client(env.endpoint_url, "iam", stack.region, stack.account)
        sts = local_client(env.endpoint_url, "sts", stack.region, stack.account)
        for resource in stack.resources_of_type("AWS::IAM::Role"):
            if not resource.physical_id or resource.physical_id in seen:
                continue
            role = iam.get_role(RoleName=resource.physical_id)["Role"]
            if not _assumed_by_people_or_systems(role.get("AssumeRolePolicyDocument")):
                continue
            kind = next((k for suffix, k in _CLIENT_ROLE_PATHS.items() if role["Path"].endswith(suffix)), "role")
            seen.add(resource.physical_id)
            creds = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="local",
                                    DurationSeconds=43200)["Credentials"]
            profiles.append(ClientProfile(name=role["RoleName"], kind=kind, role_arn=role["Arn"],
                                          access_key_id=creds["AccessKeyId"],
                                          secret_access_key=creds["SecretAccessKey"],
                                          session_token=creds["SessionToken"]))
    return sorted(profiles, key=lambda p: (p.kind, p.name))


def _assumed_by_people_or_systems(document: Any) -> bool:
    """Whether the trust policy lets an account, a role, a user or a federated identity (SAML)
    assume the role — someone a profile is for — rather than only AWS services (functions,
    API Gateway, flow logs…)."""
    if isinstance(document, str):
        document = json.loads(urllib.parse.unquote(document))
    statements = (document or {}).get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        principal = statement.get("Principal")
        if statement.get("Effect") == "Allow" and isinstance(principal, dict) and (
                principal.keys() & {"AWS", "Federated"}):
            return True
    return False


def default_profile() -> ClientProfile:
    return ClientProfile(name="default", kind="default", role_arn=None, access_key_id=DUMMY_ACCESS_KEY_ID,
                         secret_access_key=DUMMY_SECRET_ACCESS_KEY)


def write_client_files(files: LocalEnvironmentFiles, *, endpoint_url: str, region: str,
                       profiles: Iterable[ClientProfile], variables: Mapping[str, str]) -> None:
    """Write the config/credentials pair and the env file (the env file last, atomically: its
    presence says the environment is ready)."""
    files.state_dir.mkdir(parents=True, exist_ok=True)
    config: list[str] = ["# jukinet up: AWS CLI/SDK profiles of the local environment (local-only credentials)"]
    credentials: list[str] = ["# jukinet up: local-only credentials; removed by jukinet down"]
    for profile in profiles:
        header = "default" if profile.name == "default" else f"profile {profile.name}"
        config += ["", f"[{header}]"]
        if profile.role_arn:
            config.append(f"# {profile.kind}: {profile.role_arn}")
        config += [f"region = {region}", f"endpoint_url = {endpoint_url}", "s3 =", "    addressing_style = path"]
        config += [f"{key} = {value}" for key, value in profile.settings.items()]
        credentials += ["", f"[{profile.name}]", f"aws_access_key_id = {profile.access_key_id}",
                        f"aws_secret_access_key = {profile.secret_access_key}"]
        if profile.session_token:
            credentials.append(f"aws_session_token = {profile.session_token}")
    _write_private(files.config, "\n".join(config) + "\n")
    _write_private(files.credentials, "\n".join(credentials) + "\n")
    exported = {"AWS_ENDPOINT_URL": endpoint_url, "AWS_REGION": region, "AWS_DEFAULT_REGION": region,
                "AWS_CONFIG_FILE": str(files.config.resolve()),
                "AWS_SHARED_CREDENTIALS_FILE": str(files.credentials.resolve()), **variables}
    lines = ["# jukinet up: the running local environment. `source` this file, or run jukinet … --local.",
             "# Removed by jukinet down."]
    for name, value in exported.items():
        if not _NAME.match(name):
            raise ValueError(f"not a shell variable name: {name!r}")
        lines.append(f"export {name}={shlex.quote(str(value))}")
    _write_private(files.env, "\n".join(lines) + "\n")


def read_env_file(files: LocalEnvironmentFiles) -> dict[str, str]:
    """The variables of the env file; ``NotRunning`` if there is none."""
    try:
        text = files.env.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotRunning(f"no local environment: {files.env} does not exist (start one with `jukinet up`)") from None
    variables: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("export "):
            continue
        name, sep, value = line[len("export "):].partition("=")
        if sep and _NAME.match(name):
            parsed = shlex.split(value)
            variables[name] = parsed[0] if parsed else ""
    return variables


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def add_variables(files: LocalEnvironmentFiles, variables: Mapping[str, str]) -> None:
    """Add (or replace) variables of the env file."""
    lines = [line for line in files.env.read_text(encoding="utf-8").splitlines()
             if not any(line.startswith(f"export {name}=") for name in variables)]
    for name, value in variables.items():
        if not _NAME.match(name):
            raise ValueError(f"not a shell variable name: {name!r}")
        lines.append(f"export {name}={shlex.quote(str(value))}")
    _write_private(files.env, "\n".join(lines) + "\n")
