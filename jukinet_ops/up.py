"""``jukinet up`` / ``jukinet down``: a local environment that stays up.

``jukinet up`` is the long-running form of the demo, built from the same pieces
(``local/``: ``MotoServer``, ``deploy_assembly``, ``LocalRunner``, ``LocalApi``,
``LocalMonitoring``, ``LocalSchedules``):

1. synthesize the CDK app (or use ``--cdk-out``) and deploy the assembly into a moto server
   on 127.0.0.1, port ``--port-base``;
2. serve the deployed provision API on 127.0.0.1, port ``--port-base + 1``, SigV4-checked
   against a key pair per recipient, and each municipality tier's counter API (住基カード) on
   ``--port-base + 2`` onwards (one port per prefecture, in the configuration's order), checked
   against the sessions of the counter-staff roles and the tier's operator role;
3. write what a client needs (``embedded_aws/client_env.py``: ``.jukinet/env``, an AWS
   config/credentials pair with a profile per recipient and per deployed people and writer
   role) and print it;
4. run until Ctrl-C or ``jukinet down`` (SIGTERM): the functions run from their deployed
   triggers (bucket notifications, SQS event source mappings, asynchronous invocations,
   scheduled rules such as the daily sealer), the alarms are evaluated every minute from the
   metrics the functions emitted, and ``.jukinet/up-status.json`` says what ran;
5. ``--seed-month`` drops a synthetic month of export files into the drop zones at start, which
   the running CS functions then process like any other drop.

This is a composition root: it passes ``system_clock`` (from ``cli.py``); everything below
takes time from it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console

from jukinet.adapters import aws
from jukinet.clock import Clock, today_jst
from jukinet.handlers.monitoring_report import LOCAL_ALARM_HISTORY

from .demo import WORK_DIR
from embedded_aws.client_env import (
    ClientProfile,
    LocalEnvironmentFiles,
    NotRunning,
    add_variables,
    default_profile,
    deployed_role_profiles,
    read_env_file,
    write_client_files,
)

DEFAULT_PORT_BASE = 4600  # moto; the provision API on +1 (LocalStack's 4566 stays free)
STATUS_FILE = "up-status.json"
ALARM_EVERY_S = 60.0  # alarm periods are 5 minutes; a minute keeps them current
IDLE_WAIT_S = 1.0  # between rounds that found no work (each round lists every drop zone)
STATUS_EVERY_S = 5.0
DOWN_TIMEOUT_S = 60.0


def state_dir() -> Path:
    """Where the running environment's files live: ``$JUKINET_STATE_DIR``, else ``.jukinet/`` of
    the checkout (beside the demo's files)."""
    return Path(os.environ.get("JUKINET_STATE_DIR") or WORK_DIR)


def run_up(*, clock: Clock, deployment_name: str | None = None, cdk_out: str | None = None,
           port_base: int = DEFAULT_PORT_BASE, seed_month: bool = False, seed_notices: int = 2_000,
           seed: int = 2003, state: Path | None = None, console: Console | None = None,
           stop: threading.Event | None = None) -> int:
    from infra.config import load_deployment
    from infra.naming import Names

    from embedded_aws import (
        FlowLogRecorder,
        LocalApi,
        LocalMonitoring,
        LocalRunner,
        LocalSchedules,
        MotoServer,
        NotificationLog,
        deploy_assembly,
        local_credentials,
    )

    from .agency_traffic import recipient_principals
    from .synth import synth

    console = console or Console(soft_wrap=True)  # lines stay whole in a log file too
    deployment = load_deployment(deployment_name)
    names = Names.of(deployment)
    files = LocalEnvironmentFiles(state or state_dir())
    files.state_dir.mkdir(parents=True, exist_ok=True)
    running = _running_pid(files)
    if running is not None:
        console.print(f"[red]jukinet up:[/] an environment is already running (pid {running}); "
                      f"`jukinet down` first, or set JUKINET_STATE_DIR for a second one")
        return 2
    from embedded_aws.server import port_free
    taken = [port for port in range(port_base, port_base + 2 + len(deployment.prefectures)) if not port_free(port)]
    if taken:
        console.print(f"[red]jukinet up:[/] port {taken[0]} on 127.0.0.1 is in use (moto, the provision API and one "
                      f"counter API per prefecture need {port_base}–{port_base + 1 + len(deployment.prefectures)}): "
                      f"choose another --port-base")
        return 2
    files.remove()
    stop = stop or threading.Event()
    _stop_on_signals(stop)
    started = time.perf_counter()

    with ExitStack() as stack:
        stack.callback(files.remove)
        stack.callback(lambda: (files.state_dir / STATUS_FILE).unlink(missing_ok=True))
        if cdk_out:
            out = Path(cdk_out)
        else:
            with console.status("Synthesizing the CDK app (cdk synth)…"):
                out = synth(deployment_name, files.state_dir / "cdk.out", today=today_jst(clock()))
        with console.status("Starting the embedded AWS and deploying the assembly…"):
            server = stack.enter_context(MotoServer(port=port_base, log_file=files.state_dir / "moto.log",
                                                    own_session=True))
            env = deploy_assembly(out, server.endpoint_url, default_region=deployment.region)
        resources = sum(len(s.resources) for s in env.stacks.values())
        console.print(f"embedded AWS at {server.endpoint_url}: {len(env.stacks)} stacks, {resources} resources "
                      f"deployed from {out}")
        if stop.is_set():
            return 130

        os.environ.update({"AWS_ENDPOINT_URL": server.endpoint_url, "AWS_DEFAULT_REGION": deployment.region,
                           "AWS_REGION": deployment.region, **local_credentials(server.endpoint_url, deployment.region)})
        aws.reset_clients()
        log_path = files.state_dir / "functions.log"
        log_stream = stack.enter_context(open(log_path, "a", encoding="utf-8"))
        # Each alarm transition that notifies a topic: one line in notifications.log (what would be sent).
        monitoring = stack.enter_context(LocalMonitoring(env, stream=log_stream, service_metrics=True,
                                                         notifications=NotificationLog(
                                                             files.state_dir / "notifications.log")))
        flow_logs = stack.enter_context(FlowLogRecorder(env.client, now=lambda: clock().timestamp()).installed())
        # The monthly monitoring report reads the alarm transitions from notifications.log (the
        # embedded AWS serves no alarm history: jukinet.handlers.monitoring_report).
        runner = stack.enter_context(LocalRunner(env, log_stream=monitoring.sink, share_modules=True,
                                                 flow_logs=flow_logs,  # network watch: embedded_aws/flow_logs.py
                                                 env_overrides={LOCAL_ALARM_HISTORY: str(
                                                     (files.state_dir / "notifications.log").resolve())}))
        schedules = LocalSchedules(env, clock())
        api = stack.enter_context(LocalApi(env, runner, credentials={}, api=names.provision_api(),
                                                  port=port_base + 1))
        recipients = {label: p for label, p in recipient_principals(deployment, runner, api,
                                                                    session_tokens=False).items()
                      if label != "stranger"}
        api.principals.update({p.access_key_id: p for p in recipients.values()})

        profiles = [default_profile()]
        profiles += [ClientProfile(name=f"{deployment.prefix}-recipient-{label.replace(':', '-')}", kind="recipient",
                                   role_arn=p.principal_arn, access_key_id=p.access_key_id,
                                   secret_access_key=p.secret_access_key,
                                   settings={k: v for k, v in (("jukinet_api_key", p.api_key),
                                                               ("jukinet_provision_api", api.url)) if v})
                     for label, p in sorted(recipients.items())]
        profiles += deployed_role_profiles(env)
        counter_apis = _serve_counter_apis(stack, deployment, names, env, runner, profiles, port_base + 2)
        variables = {
            "JUKINET_DEPLOYMENT": deployment.name,
            "JUKINET_PID": str(os.getpid()),
            "JUKINET_MOTO_PID": str(server.pid or ""),
            "JUKINET_PROVISION_API": api.url,
            "JUKINET_BATCH_BUCKET": names.provision_batch_bucket(deployment.national.env),
            "JUKINET_FUNCTIONS_LOG": str(log_path.resolve()),
            **{f"JUKINET_COUNTER_API_{code}": counter.url for code, counter in counter_apis.items()},
        }
        writers = [p for p in profiles if p.kind == "writer"]
        for prefecture in deployment.prefectures:
            for m in prefecture.municipality_tier.municipalities:
                variables[f"JUKINET_DROP_ZONE_{m.code}"] = names.drop_zone_bucket(prefecture.municipality_tier.env,
                                                                                   m.code)
                # The municipality's writer role, when the assembly has one per municipality.
                own = [p.name for p in writers if m.code in p.name]
                if len(own) == 1:
                    variables[f"JUKINET_WRITER_PROFILE_{m.code}"] = own[0]
        write_client_files(files, endpoint_url=server.endpoint_url, region=deployment.region, profiles=profiles,
                           variables=variables)
        _print_banner(console, deployment, server.endpoint_url, api.url, files, profiles, variables, schedules,
                      time.perf_counter() - started)

        seeding = _seed(console, deployment, names, seed_notices, seed) if seed_month else None
        loop = _Loop(runner=runner, schedules=schedules, monitoring=monitoring, clock=clock, console=console,
                     status_path=files.state_dir / STATUS_FILE, stop=stop)
        loop.run(on_idle=(lambda: _seed_done(console, deployment, files, seeding, runner)) if seeding else None)
        console.print("jukinet up: stopping…")
    console.print("jukinet up: stopped; nothing left running")
    return 0


def _serve_counter_apis(stack: ExitStack, deployment: Any, names: Any, env: Any, runner: Any,
                        profiles: list[ClientProfile], first_port: int) -> dict[str, Any]:
    """Each municipality tier's counter API on its own port (prefecture code -> ``LocalApi``).
    Its callers are the sessions ``deployed_role_profiles`` made: the tier's counter-staff roles
    (profile = role name, e.g. ``jukinet-counter-202011``) and its operator, each coming through
    the tier's execute-api endpoint as the deployed function knows it."""
    from infra.naming import municipality_tier

    from embedded_aws import LocalApi, LocalPrincipal

    served: dict[str, Any] = {}
    for offset, prefecture in enumerate(deployment.prefectures):
        function = runner.functions.get(names.card_api(prefecture.code))
        if function is None:
            continue
        endpoint = (function.environment.get("API_ENDPOINT_IDS") or "").split(",")[0] or None
        tier_env = prefecture.municipality_tier.env
        operator = names.people_role_arn(tier_env, municipality_tier(prefecture.code), "operator")
        callers = {p.access_key_id: LocalPrincipal(
            access_key_id=p.access_key_id, secret_access_key=p.secret_access_key, principal_arn=p.role_arn or "",
            session_arn=f"arn:aws:sts::{(p.role_arn or '').split(':')[4]}:assumed-role/{p.name}/local",
            vpce_id=endpoint, session_token=p.session_token)
            for p in profiles if p.role_arn and (p.role_arn == operator or (
                p.kind == "counter" and names.counter_roles_path(prefecture.code) in p.role_arn))}
        api = stack.enter_context(LocalApi(env, runner, credentials=callers, api=names.card_api(prefecture.code),
                                           port=first_port + offset))
        served[prefecture.code] = api
    return served


# -- the running loop ---------------------------------------------------------------------------


class _Loop:
    """Rounds of work until ``stop``: the runner's triggers and the schedules; the alarms every
    ``ALARM_EVERY_S``; the status file every ``STATUS_EVERY_S``."""

    def __init__(self, *, runner: Any, schedules: Any, monitoring: Any, clock: Clock, console: Console,
                 status_path: Path, stop: threading.Event) -> None:
        self.runner, self.schedules, self.monitoring = runner, schedules, monitoring
        self.clock, self.console, self.status_path, self.stop = clock, console, status_path, stop
        self.started = clock()
        self.rounds = 0
        self.fired: list[dict[str, str]] = []
        self.alarms: dict[str, str] = {}
        self.alarms_at: dt.datetime | None = None
        self.errors: list[str] = []

    def run(self, on_idle: Callable[[], bool] | None = None) -> None:
        last_alarms = last_status = float("-inf")
        while not self.stop.is_set():
            self.rounds += 1
            try:
                # Not under the invocation lock as a whole: each invocation takes it (runner.invoke),
                # so the API's requests are served between two invocations, not after a whole round
                # (a round may run hundreds of CS invocations for a seeded month).
                work = self._round()
                if time.monotonic() - last_alarms >= ALARM_EVERY_S:
                    last_alarms = time.monotonic()
                    self._evaluate_alarms()
            except Exception as exc:  # noqa: BLE001 - the environment stays up; the error is shown and kept
                work = 0
                message = f"{type(exc).__name__}: {exc}"
                self.errors = [*self.errors[-9:], message]
                self.console.print(f"[red]round {self.rounds} failed:[/] {message}")
            if time.monotonic() - last_status >= STATUS_EVERY_S:
                last_status = time.monotonic()
                self._write_status()
            if work == 0:
                if on_idle is not None and on_idle():
                    on_idle = None
                self.stop.wait(IDLE_WAIT_S)
        self._write_status()

    def _round(self) -> int:
        runner = self.runner
        work = runner.poll_queues() + runner.process_new_objects()
        for target, event in self.schedules.due(self.clock()):
            function = target.function_arn.rsplit(":", 1)[-1]
            runner.invoke_async(function, event)
            self.fired = [*self.fired[-19:], {"rule": target.rule_name, "function": function, "time": event.get(
                "time", "")}]
            self.console.print(f"schedule {target.rule_name} ({target.expression}) → {function}")
        return work + runner.process_async_events()

    def _evaluate_alarms(self) -> None:
        from embedded_aws.code_image import INVOCATION_LOCK

        now = self.clock()
        with INVOCATION_LOCK:
            verdicts = self.monitoring.evaluate(now, runner=self.runner)
        for v in verdicts:
            if v.evaluated and v.old_state != v.new_state and (v.new_state == "ALARM" or v.old_state == "ALARM"):
                self.console.print(f"alarm {v.name}: {v.old_state} → {v.new_state} ({v.reason[:120]})")
            self.alarms[v.name] = v.new_state
        self.alarms_at = now

    def _write_status(self) -> None:
        now = self.clock()
        stats = self.runner.stats
        status = {
            "pid": os.getpid(),
            "started": self.started.isoformat(),
            "updated": now.isoformat(),
            "rounds": self.rounds,
            "invocations": {n: s.invocations for n, s in sorted(stats.items()) if s.invocations},
            "errors": {n: s.errors for n, s in sorted(stats.items()) if s.errors},
            "held": list(self.runner.held()),
            "schedules": [{"rule": t.rule_name, "expression": t.expression,
                           "function": t.function_arn.rsplit(":", 1)[-1],
                           "next": (n.isoformat() if (n := self.schedules.next_fire(t, now)) else None)}
                          for t in self.schedules.targets],
            "fired": self.fired,
            "alarms_evaluated": self.alarms_at.isoformat() if self.alarms_at else None,
            "alarms_in_alarm": sorted(n for n, s in self.alarms.items() if s == "ALARM"),
            "loop_errors": self.errors,
        }
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status, indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.status_path)


# -- seeding -------------------------------------------------------------------------------------


def _seed(console: Console, deployment: Any, names: Any, notices: int, seed: int) -> dict[str, Any]:
    from .demo_data import generate_month

    s3 = aws.client("s3")
    seeded: dict[str, Any] = {"files": 0, "notices": 0}
    for prefecture in deployment.prefectures:
        tier = prefecture.municipality_tier
        month = generate_month({m.code: m.name for m in tier.municipalities}, notices=notices, seed=seed)
        for code, files in month.files.items():
            for name, data in files:
                s3.put_object(Bucket=names.drop_zone_bucket(tier.env, code), Key=f"incoming/{name}", Body=data)
        seeded["files"] += month.file_count
        seeded["notices"] += month.valid_rows
    console.print(f"seeding: {seeded['notices']:,} notices in {seeded['files']} export files dropped into the drop "
                  f"zones; the CS functions are processing them (jukinet status shows the queues)")
    return seeded


def _seed_done(console: Console, deployment: Any, files: LocalEnvironmentFiles, seeding: dict[str, Any],
               runner: Any) -> bool:
    """Once every queue is empty after seeding: add sample resident codes to the env file."""
    from .agency_traffic import active_codes
    from embedded_aws.code_image import INVOCATION_LOCK

    with INVOCATION_LOCK:
        if runner.pending_messages():
            return False
        codes = active_codes(deployment, 5)
    add_variables(files, {"JUKINET_SAMPLE_RESIDENTS": " ".join(codes)})
    console.print(f"seeded: {seeding['notices']:,} notices processed by every tier; sample resident codes "
                  f"(JUKINET_SAMPLE_RESIDENTS): {' '.join(codes)}")
    return True


# -- printing ------------------------------------------------------------------------------------


def _print_banner(console: Console, deployment: Any, endpoint: str, api_url: str, files: LocalEnvironmentFiles,
                  profiles: list[ClientProfile], variables: dict[str, str], schedules: Any, seconds: float) -> None:
    console.print(f"[bold green]jukinet up:[/] {deployment.name} running ({seconds:.0f} s to start); "
                  f"Ctrl-C or `jukinet down` stops it")
    console.print(f"  AWS endpoint      {endpoint}  (region {deployment.region})")
    console.print(f"  provision API     {api_url}  (SigV4, service execute-api, region {deployment.region})")
    console.print(f"  client settings   source {files.env}   (or: jukinet … --local)")
    console.print(f"  AWS profiles      {files.config} + {files.credentials}")
    by_kind: dict[str, list[ClientProfile]] = {}
    for p in profiles:
        by_kind.setdefault(p.kind, []).append(p)
    for p in by_kind.get("recipient", []):
        extra = f"  x-api-key {p.settings['jukinet_api_key']}" if p.settings.get("jukinet_api_key") else ""
        console.print(f"    recipient {p.name:<44} --user {p.access_key_id}:{p.secret_access_key}{extra}")
    for key, url in sorted((k, v) for k, v in variables.items() if k.startswith("JUKINET_COUNTER_API_")):
        console.print(f"  counter API       {url}  (${key}; SigV4 with a counter profile's session, "
                      f"docs/card.md)")
    for kind in ("writer", "counter", "people", "role"):
        for p in by_kind.get(kind, []):
            console.print(f"    {kind:<9} {p.name:<44} (session of {p.role_arn})")
    if "writer" not in by_kind:
        console.print("    (no writer role is deployed: drop files with the default profile; the embedded AWS "
                      "evaluates no IAM)")
    zones = sorted((k, v) for k, v in variables.items() if k.startswith("JUKINET_DROP_ZONE_"))
    for key, bucket in zones[:3]:
        writer = variables.get(key.replace("_DROP_ZONE_", "_WRITER_PROFILE_"))
        console.print(f"  drop zone         s3://{bucket}/incoming/  (${key}"
                      f"{f'; profile {writer}' if writer else ''})")
    if len(zones) > 3:
        console.print(f"    … {len(zones)} drop zones in all, each as $JUKINET_DROP_ZONE_<code> (and its writer's "
                      f"profile as $JUKINET_WRITER_PROFILE_<code>) in {files.env}")
    console.print(f"  batch bucket      s3://{variables['JUKINET_BATCH_BUCKET']}/in/<recipient>/")
    for t in schedules.targets:
        console.print(f"  schedule          {t.rule_name}: {t.expression} → {t.function_arn.rsplit(':', 1)[-1]}")
    console.print(f"  function logs     {variables['JUKINET_FUNCTIONS_LOG']}")


# -- signals, down -------------------------------------------------------------------------------


def _stop_on_signals(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie — exited, not yet reaped by its parent — does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def _is_jukinet_up(pid: int) -> bool:
    """The process looks like ``jukinet up`` (guards against a recycled pid); unknown off Linux."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True
    return b"up" in argv and any(b"jukinet" in arg for arg in argv)


def _running_pid(files: LocalEnvironmentFiles) -> int | None:
    try:
        pid = int(read_env_file(files).get("JUKINET_PID") or 0)
    except (NotRunning, ValueError):
        return None
    return pid if pid and _alive(pid) and _is_jukinet_up(pid) else None


def run_down(*, state: Path | None = None, timeout_s: float = DOWN_TIMEOUT_S, out: Any = None) -> int:
    """Stop the environment of the state directory: SIGTERM to ``jukinet up`` (which stops the API,
    the runner and the embedded AWS, and removes its files), then make sure the embedded AWS's
    process is gone too. Exit 1 if nothing was running."""
    out = out or sys.stdout
    files = LocalEnvironmentFiles(state or state_dir())
    try:
        variables = read_env_file(files)
    except NotRunning as exc:
        print(f"jukinet down: {exc}", file=out)
        return 1
    pid = int(variables.get("JUKINET_PID") or 0)
    moto_pid = int(variables.get("JUKINET_MOTO_PID") or 0)
    if pid and _alive(pid) and _is_jukinet_up(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            print(f"jukinet down: pid {pid} did not stop within {timeout_s:.0f} s; killed", file=out)
            os.kill(pid, signal.SIGKILL)
    if moto_pid and _alive(moto_pid):  # jukinet up was killed before it could stop its server
        os.kill(moto_pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(moto_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(moto_pid):
            os.kill(moto_pid, signal.SIGKILL)
    files.remove()
    (files.state_dir / STATUS_FILE).unlink(missing_ok=True)
    print(f"jukinet down: stopped (pid {pid}, embedded AWS pid {moto_pid or '-'})", file=out)
    return 0
