"""``jukinet up`` / ``down`` / ``--local`` without a deployment: the client files, the guards around
process ids, and the loop handing scheduled events to the runner (fixed instants throughout).
The whole environment is exercised by tests/e2e/test_up.py."""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
import sys
import threading
from types import SimpleNamespace

import pytest
from rich.console import Console

from jukinet.clock import fixed
from jukinet_ops import cli
from embedded_aws.client_env import (
    ClientProfile,
    LocalEnvironmentFiles,
    NotRunning,
    add_variables,
    read_env_file,
    write_client_files,
)
from jukinet_ops.up import _Loop, run_down, run_up

NOW = dt.datetime(2003, 1, 31, 16, 0, 30, tzinfo=dt.UTC)


def _write(files: LocalEnvironmentFiles, **variables: str) -> None:
    profiles = [ClientProfile("default", "default", None, "local-mode", "local-mode"),
                ClientProfile("jukinet-recipient-nenkin", "recipient", "arn:aws:iam::111122223333:role/nenkin",
                              "AKIAEXAMPLE", "secret/with+chars", settings={"jukinet_api_key": "key 1"}),
                ClientProfile("jukinet-muni-200000-operator", "people",
                              "arn:aws:iam::123456789012:role/jukinet/muni-200000-people/jukinet-muni-200000-operator",
                              "ASIAEXAMPLE", "s", "token")]
    write_client_files(files, endpoint_url="http://127.0.0.1:4600", region="ap-northeast-1", profiles=profiles,
                       variables={"JUKINET_DEPLOYMENT": "nagano-demo", **variables})


def test_client_files_round_trip_and_only_their_owner_can_read_them(tmp_path):
    files = LocalEnvironmentFiles(tmp_path)
    _write(files, JUKINET_PROVISION_API="http://127.0.0.1:4601/api", JUKINET_NOTE="two words; $(not run)")
    variables = read_env_file(files)
    assert variables["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4600"
    assert variables["AWS_CONFIG_FILE"] == str(files.config.resolve())
    assert variables["JUKINET_NOTE"] == "two words; $(not run)"  # quoted: sourcing runs nothing
    for path in (files.env, files.config, files.credentials):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sourced = subprocess.run(["bash", "-c", f"source {files.env} && printf %s \"$JUKINET_NOTE\""],
                             capture_output=True, text=True, check=True)
    assert sourced.stdout == "two words; $(not run)"
    credentials = files.credentials.read_text()
    assert "[jukinet-muni-200000-operator]\naws_access_key_id = ASIAEXAMPLE" in credentials
    assert "aws_session_token = token" in credentials
    config = files.config.read_text()
    assert "[profile jukinet-recipient-nenkin]" in config and "jukinet_api_key = key 1" in config
    add_variables(files, {"JUKINET_SAMPLE_RESIDENTS": "1 2", "JUKINET_NOTE": "replaced"})
    variables = read_env_file(files)
    assert (variables["JUKINET_SAMPLE_RESIDENTS"], variables["JUKINET_NOTE"]) == ("1 2", "replaced")


def test_a_variable_name_that_would_run_as_shell_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a shell variable name"):
        _write(LocalEnvironmentFiles(tmp_path), **{"X=1; rm -rf ~; Y": "v"})


def test_local_without_a_running_environment_says_how_to_start_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JUKINET_STATE_DIR", str(tmp_path))
    assert cli.main(["reconcile", "--local", "--month", "2003-01"]) == 2
    assert "start one with `jukinet up`" in capsys.readouterr().err


def test_local_points_a_command_at_the_running_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("JUKINET_STATE_DIR", str(tmp_path))
    for name in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE",
                 "AWS_SHARED_CREDENTIALS_FILE", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "")  # recorded, so what _use_local sets is undone after the test
    monkeypatch.setenv("AWS_PROFILE", "production")  # nothing of the host's AWS setup may leak in
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREALACCOUNT")
    _write(LocalEnvironmentFiles(tmp_path))
    args = cli.build_parser().parse_args(["isolation-status", "--local"])
    cli._use_local(args)
    assert args.endpoint_url == "http://127.0.0.1:4600" and args.deployment == "nagano-demo"
    assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4600"
    assert os.environ["AWS_SHARED_CREDENTIALS_FILE"] == str(LocalEnvironmentFiles(tmp_path).credentials.resolve())
    assert "AWS_PROFILE" not in os.environ and "AWS_ACCESS_KEY_ID" not in os.environ


@pytest.mark.parametrize("command", cli.LOCAL_COMMANDS)
def test_every_command_that_acts_on_an_environment_takes_local(command):
    parser = cli.build_parser()
    action = next(a for a in parser._subparsers._group_actions[0].choices[command]._actions if "--local" in a.option_strings)
    assert action.default is False


@pytest.fixture
def sleeper():
    """A process with the given arguments (``jukinet up`` or not)."""
    started = []

    def start(*argv: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *argv])
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("argv", [(), ("compose", "up")])
def test_down_does_not_signal_a_recycled_pid_that_is_not_jukinet_up(tmp_path, sleeper, argv):
    other = sleeper(*argv)  # a stale env file whose pid now belongs to someone else
    files = LocalEnvironmentFiles(tmp_path)
    _write(files, JUKINET_PID=str(other.pid))
    assert run_down(state=tmp_path, out=open(os.devnull, "w")) == 0  # noqa: SIM115
    assert other.poll() is None  # still running
    assert not files.env.exists() and not files.credentials.exists()


def test_down_without_an_environment_exits_1(tmp_path, capsys):
    assert run_down(state=tmp_path) == 1
    assert "no local environment" in capsys.readouterr().out


def test_a_second_up_on_the_same_state_is_refused_before_deploying_anything(tmp_path, sleeper):
    running = sleeper("jukinet", "up")
    _write(LocalEnvironmentFiles(tmp_path), JUKINET_PID=str(running.pid))
    console = Console(file=open(os.devnull, "w"))  # noqa: SIM115
    assert run_up(clock=fixed(NOW), state=tmp_path, cdk_out="/nonexistent", console=console) == 2
    assert read_env_file(LocalEnvironmentFiles(tmp_path))["JUKINET_PID"] == str(running.pid)  # left alone


def test_an_api_port_in_use_is_refused_before_deploying_anything(tmp_path):
    import io
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]  # the counter API's port of a base two below it
        out = io.StringIO()
        code = run_up(clock=fixed(NOW), state=tmp_path, cdk_out="/nonexistent", port_base=port - 2,
                      console=Console(file=out, width=200))
    assert code == 2
    assert "on 127.0.0.1 is in use" in out.getvalue() and "choose another --port-base" in out.getvalue()
    assert not LocalEnvironmentFiles(tmp_path).env.exists()


def test_the_loop_hands_a_due_schedule_to_the_runner_as_an_asynchronous_invocation(tmp_path):
    invoked: list[tuple[str, dict]] = []
    target = SimpleNamespace(rule_name="jukinet-national-provision-seal", expression="cron(0 16 * * ? *)",
                             function_arn="arn:aws:lambda:ap-northeast-1:123456789012:function:jukinet-national-"
                                          "provision-sealer")
    event = {"source": "aws.events", "time": "2003-01-31T16:00:00Z"}
    runner = SimpleNamespace(poll_queues=lambda: 0, process_new_objects=lambda: 0, process_async_events=lambda: 1,
                             invoke_async=lambda fn, ev: invoked.append((fn, ev)))
    schedules = SimpleNamespace(due=lambda now: [(target, event)] if now == NOW else [])
    loop = _Loop(runner=runner, schedules=schedules, monitoring=None, clock=fixed(NOW),
                 console=Console(file=open(os.devnull, "w")), status_path=tmp_path / "s.json",  # noqa: SIM115
                 stop=threading.Event())
    assert loop._round() == 1
    assert invoked == [("jukinet-national-provision-sealer", event)]
    assert loop.fired == [{"rule": target.rule_name, "function": "jukinet-national-provision-sealer",
                           "time": "2003-01-31T16:00:00Z"}]


def test_reading_a_missing_env_file_raises_not_running(tmp_path):
    with pytest.raises(NotRunning):
        read_env_file(LocalEnvironmentFiles(tmp_path))


# -- jukinet status ------------------------------------------------------------------------------


def test_status_counts_dead_letters_and_lists_only_alarms_in_alarm(in_process_aws):
    from infra.config import load_deployment
    from jukinet_ops.status import collect_status

    deployment = load_deployment("nagano-demo")
    sqs = in_process_aws.client("sqs")
    inbound = sqs.create_queue(QueueName="jukinet-pref-200000-inbound")["QueueUrl"]
    dlq = sqs.create_queue(QueueName="jukinet-pref-200000-inbound-dlq")["QueueUrl"]
    sqs.create_queue(QueueName="jukinet-muni-200000-cs-failed-events")
    sqs.create_queue(QueueName="someone-elses-queue")
    for body in ("a", "b", "c"):
        sqs.send_message(QueueUrl=inbound, MessageBody=body)
    sqs.send_message(QueueUrl=dlq, MessageBody="poison")
    sqs.receive_message(QueueUrl=inbound, MaxNumberOfMessages=1, VisibilityTimeout=300)
    cloudwatch = in_process_aws.client("cloudwatch")
    for name in ("jukinet-pref-200000-signature-failures", "jukinet-pref-200000-sequence-gaps"):
        cloudwatch.put_metric_alarm(AlarmName=name, Namespace="Jukinet", MetricName="X", Statistic="Sum", Period=300,
                                    EvaluationPeriods=1, Threshold=0, ComparisonOperator="GreaterThanThreshold")
    cloudwatch.set_alarm_state(AlarmName="jukinet-pref-200000-signature-failures", StateValue="ALARM",
                               StateReason="1 forged message")
    cloudwatch.set_alarm_state(AlarmName="jukinet-pref-200000-sequence-gaps", StateValue="OK", StateReason="none")

    status = collect_status(deployment)

    queues = {q.name: q for q in status.queues}
    assert set(queues) == {"jukinet-pref-200000-inbound", "jukinet-pref-200000-inbound-dlq",
                           "jukinet-muni-200000-cs-failed-events"}  # the deployment's queues only
    assert (queues["jukinet-pref-200000-inbound"].depth, queues["jukinet-pref-200000-inbound"].in_flight) == (3, 1)
    assert not queues["jukinet-pref-200000-inbound"].dead_letter
    assert queues["jukinet-pref-200000-inbound-dlq"].dead_letter and queues["jukinet-pref-200000-inbound-dlq"].depth == 1
    assert queues["jukinet-muni-200000-cs-failed-events"].dead_letter
    assert [a["name"] for a in status.alarms_in_alarm] == ["jukinet-pref-200000-signature-failures"]
    assert status.isolations == [] and status.problems == []
    tiers = {t.tier: t.stacks for t in status.tiers}
    assert tiers["national"] == {"jukinet-national": "missing"}  # nothing deployed in this account
