"""``jukinet up`` as a user meets it: a subprocess that stays up, reached only through the files
it writes, the real AWS CLI and ``curl --aws-sigv4`` — then ``jukinet down`` leaves nothing
running.

The environment runs on the system clock (``jukinet up`` is a composition root); nothing here
depends on the date: the look-up and its provision log entry are made and read while it runs.
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from infra.config import load_deployment
from infra.naming import NATIONAL, Names
from jukinet.domain.card import VirtualCard
from embedded_aws.client_env import LocalEnvironmentFiles, read_env_file

from .embedded import E2E_DEPLOYMENT, nagano_assembly

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "export-cp932.csv"
RESIDENT = "24738519066"  # the example's first row: 転入 to 202011 (長野市)
AFFAIR = "DEMO-T1-ENGO-PENSION"  # mhlw-engo's look-up agreement (data/agencies.demo.toml)
NATIONAL_TABLE = Names.of(load_deployment(E2E_DEPLOYMENT)).identity_table(NATIONAL)


def _free_ports(count: int) -> int:
    """``count`` consecutive free ports *below* Linux's ephemeral range (32768–60999): `jukinet up`
    binds the APIs' ports only after minutes of deploying, and a port the kernel hands out for
    outgoing connections (every boto3 call, the other worker's moto) could be taken by then —
    it was once, in CI ("Address already in use")."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        try:
            with contextlib.ExitStack() as held:
                for offset in range(count):
                    held.enter_context(socket.socket()).bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no {count} consecutive free ports")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _wait(what: str, check, timeout_s: float, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        if proc.poll() is not None:
            pytest.fail(f"jukinet up exited ({proc.returncode}) while waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_up_serves_a_dropped_file_to_an_agency_and_down_leaves_nothing_running(tmp_path_factory, tmp_path):
    assembly = nagano_assembly(tmp_path_factory)
    state = tmp_path / "state"
    port = _free_ports(3)  # moto, the provision API, Nagano's counter API
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env = {**clean, "JUKINET_STATE_DIR": str(state), "PATH": f"{BIN}{os.pathsep}{clean.get('PATH', '')}"}
    log = tmp_path / "up.log"
    files = LocalEnvironmentFiles(state)
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BIN / "jukinet"), "up", "--deployment", E2E_DEPLOYMENT, "--cdk-out", str(assembly), "--port-base", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    moto_pid = 0
    try:
        # Hang guards, not speed targets (a loaded 2-core machine took 232 s to start; the
        # README states the time with margin).
        _wait("the env file", files.env.exists, 600, proc, log)
        up_seconds = time.monotonic() - started
        variables = read_env_file(files)
        moto_pid = int(variables["JUKINET_MOTO_PID"])
        assert variables["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{port}"
        assert variables["JUKINET_PROVISION_API"].startswith(f"http://127.0.0.1:{port + 1}/")
        assert variables["JUKINET_COUNTER_API_200000"].startswith(f"http://127.0.0.1:{port + 2}/")
        client_env = {**clean, **{k: v for k, v in variables.items() if k.startswith("AWS_")}}

        # Municipal IT: drop a CP932 export with the real AWS CLI, under the municipality's writer
        # profile when the assembly has one.
        config = configparser.ConfigParser()
        config.read(variables["AWS_CONFIG_FILE"])
        profile = variables.get("JUKINET_WRITER_PROFILE_202011", "default")
        bucket = variables["JUKINET_DROP_ZONE_202011"]
        subprocess.run([str(BIN / "aws"), "--profile", profile, "s3", "cp", str(EXAMPLE),
                        f"s3://{bucket}/incoming/export-cp932.csv"], env=client_env, check=True, capture_output=True,
                       timeout=60)

        # Every people role deployed has its profile: a session of that role.
        who = subprocess.run([str(BIN / "aws"), "--profile", "jukinet-national-operator", "sts", "get-caller-identity"],
                             env=client_env, check=True, capture_output=True, text=True, timeout=60)
        assert json.loads(who.stdout)["Arn"].endswith(":assumed-role/jukinet-national-operator/local")

        # The running functions carry it to the national tier: the resident's current state appears.
        ddb = boto3.client("dynamodb", endpoint_url=variables["AWS_ENDPOINT_URL"], region_name=variables["AWS_REGION"],
                           aws_access_key_id="test", aws_secret_access_key="test")
        key = {"pk": {"S": f"R#{RESIDENT}"}, "sk": {"S": "CURRENT"}}
        dropped = time.monotonic()
        _wait("the notice at the national tier",
              lambda: ddb.get_item(TableName=NATIONAL_TABLE, Key=key).get("Item"), 180, proc, log)
        to_national = time.monotonic() - dropped
        s3 = boto3.client("s3", endpoint_url=variables["AWS_ENDPOINT_URL"], region_name=variables["AWS_REGION"],
                          aws_access_key_id="test", aws_secret_access_key="test")
        summary = json.loads(s3.get_object(Bucket=bucket, Key="reports/export-cp932.csv.summary.json")["Body"].read())
        assert (summary["encoding"], summary["accepted"], summary["rejected"]) == ("cp932", 9, 0)

        # The agency developer: a look-up with curl --aws-sigv4, the recipient's key pair and API key.
        recipient = "profile jukinet-recipient-mhlw-engo"
        credentials = configparser.ConfigParser()
        credentials.read(variables["AWS_SHARED_CREDENTIALS_FILE"])
        access = credentials["jukinet-recipient-mhlw-engo"]["aws_access_key_id"]
        secret = credentials["jukinet-recipient-mhlw-engo"]["aws_secret_access_key"]
        api_key = config[recipient]["jukinet_api_key"]
        url = f"{variables['JUKINET_PROVISION_API']}/v1/lookups"
        body = json.dumps({"affair_code": AFFAIR, "resident_codes": [RESIDENT]})

        def curl(user: str) -> tuple[int, dict]:
            done = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", "--aws-sigv4",
                                   f"aws:amz:{variables['AWS_REGION']}:execute-api", "--user", user,
                                   "-H", f"x-api-key: {api_key}", "-H", "content-type: application/json",
                                   "-d", body, url], capture_output=True, text=True, check=True, timeout=60)
            text, _, status = done.stdout.rpartition("\n")
            return int(status), json.loads(text)

        status, answer = curl(f"{access}:{secret}")
        assert status == 200, answer
        (result,) = answer["results"]
        assert result["outcome"] == "provided"
        assert result["facts"]["name"]["kanji"] == "丸山　健一"
        forged_status, _ = curl(f"{access}:{secret[:-4]}AAAA")
        assert forged_status == 403  # a signature made without the recipient's secret is refused

        # The counter clerk of 長野市: a resident card for the resident just moved in, through the tier's
        # counter API with the counter role's profile (a session: its token goes along).
        chip = VirtualCard("1234")

        def counter(profile: str) -> tuple[int, dict]:
            user = f"{credentials[profile]['aws_access_key_id']}:{credentials[profile]['aws_secret_access_key']}"
            done = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", "--aws-sigv4",
                                   f"aws:amz:{variables['AWS_REGION']}:execute-api", "--user", user,
                                   "-H", f"x-amz-security-token: {credentials[profile]['aws_session_token']}",
                                   "-H", "content-type: application/json",
                                   "-d", json.dumps({"resident_code": RESIDENT, "card_type": "B",
                                                     "public_key": chip.public_key}),
                                   f"{variables['JUKINET_COUNTER_API_200000']}/v1/cards"],
                                  capture_output=True, text=True, check=True, timeout=60)
            text, _, status = done.stdout.rpartition("\n")
            return int(status), json.loads(text)

        _, refused = counter("jukinet-counter-202029")  # 松本市's clerk cannot issue for 長野市's resident
        assert refused["error"]["code"] == "RESIDENT_NOT_ACTIVE"
        stranger, _ = counter("jukinet-national-operator")  # no counter role: the API's policy refuses
        assert stranger == 403
        issued_status, card = counter("jukinet-counter-202011")
        assert issued_status == 201, card
        assert card["serial"].startswith("202011-")

        # The operator: the provision is in the resident's log, its chain verified (jukinet … --local).
        disclosed = subprocess.run([str(BIN / "jukinet"), "disclose", RESIDENT, "--local", "--format", "json"],
                                   env=env, capture_output=True, text=True, timeout=60, check=False)
        assert disclosed.returncode == 0, disclosed.stderr
        disclosure = json.loads(disclosed.stdout)
        assert [p["provision_id"] for p in disclosure["provisions"]] == [answer["provision_id"]]
        assert disclosure["provisions"][0]["recipient_id"] == "mhlw-engo"
        assert disclosure["chain"]["verified"] is True
        # jukinet status --local: every queue drained, the dead-letter queues listed, nothing held.
        shown = subprocess.run([str(BIN / "jukinet"), "status", "--local", "--json"], env=env, capture_output=True,
                               text=True, timeout=60, check=False)
        assert shown.returncode == 0, shown.stderr
        status = json.loads(shown.stdout)
        assert {t["tier"] for t in status["tiers"]} == {"national", "pref-200000", "muni-200000"}
        assert all(s == "CREATE_COMPLETE" for t in status["tiers"] for s in t["stacks"].values())
        queues = {q["name"]: q for q in status["queues"]}
        assert queues["jukinet-national-inbound"]["depth"] == 0
        assert queues["jukinet-national-inbound-dlq"]["dead_letter"] is True
        assert status["isolations"] == []
        assert status["local"]["pid"] == proc.pid  # what jukinet up last reported
        print(f"jukinet up ready after {up_seconds:.1f} s; dropped file stored nationally {to_national:.1f} s after "
              f"`aws s3 cp` returned; the checks took {time.monotonic() - started - up_seconds:.1f} s")

        # jukinet down: the environment stops and nothing is left running.
        down = subprocess.run([str(BIN / "jukinet"), "down"], env=env, capture_output=True, text=True, timeout=90,
                              check=False)
        assert down.returncode == 0, down.stdout + down.stderr
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
        assert not _alive(moto_pid)
        assert not files.env.exists() and not files.credentials.exists()
    except subprocess.CalledProcessError as failed:  # show what the environment said meanwhile
        pytest.fail(f"{failed}\nstdout: {failed.stdout}\nstderr: {failed.stderr}\n"
                    f"jukinet up's output (end):\n{log.read_text(errors='replace')[-4000:]}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        if moto_pid and _alive(moto_pid):
            os.kill(moto_pid, signal.SIGKILL)
