"""The embedded AWS: a moto server on 127.0.0.1 and the boto3 sessions that talk to it.

By default the server is a child process (``python -m embedded_aws.moto_server``: moto's
server with the corrections of ``moto_patches``), not a thread of this
one: moto keeps its state in module globals, so a thread would share that state (and the
``werkzeug`` request log, and moto's Docker settings) with anything else in the process,
``mock_aws`` tests included. A child process costs ~0.3 s to start and the same few ms per
request as a thread. ``mode="thread"`` exists for callers that cannot spawn processes.

Nothing here touches ``os.environ``: sessions carry the endpoint, region and dummy
credentials explicitly. (The runner sets ``AWS_ENDPOINT_URL`` only for the duration of
each invocation, see ``runner.py``.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any, Literal

import boto3
from botocore.config import Config

HOST = "127.0.0.1"  # never 0.0.0.0: the embedded AWS accepts any credentials
DEFAULT_ACCOUNT_ID = "123456789012"  # moto's account for credentials it does not know
DUMMY_ACCESS_KEY_ID = "local-mode"
DUMMY_SECRET_ACCESS_KEY = "local-mode"

# Path-style S3 addressing: virtual-hosted names (bucket.127.0.0.1) do not resolve.
_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, s3={"addressing_style": "path"})
# For calls that must not be repeated (a retried CreateStack after a moto error would only
# report "already exists" and hide the real error).
_NO_RETRY_CONFIG = _CLIENT_CONFIG.merge(Config(retries={"mode": "standard", "max_attempts": 1}))


class MotoServerError(RuntimeError):
    """The embedded AWS did not start, or died."""


class MotoServer:
    """A moto server bound to 127.0.0.1 on a free port. Use as a context manager::

        with MotoServer() as aws:
            env = deploy_assembly("cdk.out", aws.endpoint_url)
    """

    def __init__(self, *, mode: Literal["process", "thread"] = "process",
                 log_file: Path | None = None, start_timeout_s: float = 30.0, port: int | None = None,
                 own_session: bool = False) -> None:
        """``port``: bind this port (``jukinet up``'s fixed endpoint) instead of a free one;
        ``MotoServerError`` if it is taken. ``own_session``: the child gets its own session, so a
        terminal's Ctrl-C reaches only the parent, which stops the server in order (interrupted
        with requests in flight, moto's server hangs on its open connections)."""
        self.mode = mode
        self._fixed_port = port
        self._own_session = own_session
        self.log_file = log_file
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._thread_server: Any = None
        self._log: IO[bytes] | None = None
        self._werkzeug_level: int | None = None
        self.port: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The server's process id (``mode="process"``)."""
        return self._process.pid if self._process is not None else None

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise MotoServerError("the embedded AWS is not running")
        return f"http://{HOST}:{self.port}"

    def start(self) -> MotoServer:
        if self.port is not None:
            return self
        if self.mode == "thread":
            self._start_thread()
        else:
            self._start_process()
        return self

    def stop(self) -> None:
        if self.port is not None:
            _forget_endpoint(self.endpoint_url)
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._thread_server is not None:
            # The backends are process-global in thread mode: leave them empty for whoever
            # uses moto next in this process.
            with contextlib.suppress(Exception):
                self.reset()
            self._thread_server.stop()
            inner = getattr(self._thread_server, "_server", None)
            if inner is not None:
                inner.server_close()
            self._thread_server = None
            if self._werkzeug_level is not None:
                logging.getLogger("werkzeug").setLevel(self._werkzeug_level)
                self._werkzeug_level = None
        if self._log is not None:
            self._log.close()
            self._log = None
        self.port = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_process(self) -> None:
        # Pick a free port, then let the child bind it; retry if someone else took it meanwhile.
        self._log = open(self.log_file, "ab") if self.log_file else None  # noqa: SIM115
        sink: IO[bytes] | int = self._log if self._log is not None else subprocess.DEVNULL
        last_error = ""
        if self._fixed_port and not port_free(self._fixed_port):
            raise MotoServerError(f"port {self._fixed_port} on {HOST} is in use: choose another one")
        for _ in range(1 if self._fixed_port else 3):
            port = self._fixed_port or _free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
            process = subprocess.Popen(
                [sys.executable, "-m", "embedded_aws.moto_server", "-H", HOST, "-p", str(port)],
                stdout=sink, stderr=sink, stdin=subprocess.DEVNULL, env=env, start_new_session=self._own_session,
            )
            if _wait_until_ready(port, process, self.start_timeout_s):
                self._process, self.port = process, port
                return
            process.kill()
            process.wait()
            last_error = f"moto server exited with {process.returncode} on port {port}"
            if self._fixed_port:
                last_error += " (is the port in use? choose another one)"
        raise MotoServerError(last_error or "moto server did not start")

    def _start_thread(self) -> None:
        from moto.server import ThreadedMotoServer

        from . import moto_code_hash, moto_patches

        moto_patches.apply_server()
        moto_code_hash.apply()

        # werkzeug logs every request at INFO; quiet it while this server runs.
        werkzeug = logging.getLogger("werkzeug")
        self._werkzeug_level = werkzeug.level
        werkzeug.setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address=HOST, port=self._fixed_port or 0, verbose=False)
        server.start()
        self._thread_server = server
        self.port = server.get_host_and_port()[1]

    # -- clients -----------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every resource (moto's ``/moto-api/reset``)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST", data=b"")
        urllib.request.urlopen(request, timeout=10).close()

    def session(self, region: str, account_id: str | None = None) -> boto3.session.Session:
        return local_session(self.endpoint_url, region, account_id)

    def client(self, service: str, region: str, account_id: str | None = None) -> Any:
        return local_client(self.endpoint_url, service, region, account_id)


_SESSIONS: dict[tuple[str, str, str | None], boto3.session.Session] = {}


def local_session(endpoint_url: str, region: str, account_id: str | None = None) -> boto3.session.Session:
    """A boto3 session for the embedded AWS. Moto maps unknown credentials to its default
    account; for another account, credentials from an assumed role in that account.
    Sessions are reused: each new one re-reads botocore's service models (~50 ms a client)."""
    key = (endpoint_url, region, account_id if account_id != DEFAULT_ACCOUNT_ID else None)
    session = _SESSIONS.get(key)
    if session is None:
        if key[2] is None:
            session = boto3.session.Session(aws_access_key_id=DUMMY_ACCESS_KEY_ID,
                                            aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY, region_name=region)
        else:
            creds = _account_credentials(endpoint_url, region, key[2])
            session = boto3.session.Session(aws_access_key_id=creds[0], aws_secret_access_key=creds[1],
                                            aws_session_token=creds[2], region_name=region)
        _SESSIONS[key] = session
    return session


def local_client(endpoint_url: str, service: str, region: str, account_id: str | None = None, *,
                 retry: bool = True) -> Any:
    return local_session(endpoint_url, region, account_id).client(
        service, endpoint_url=endpoint_url, config=_CLIENT_CONFIG if retry else _NO_RETRY_CONFIG)


def local_credentials(endpoint_url: str, region: str, account_id: str | None = None) -> dict[str, str]:
    """The AWS_* credential variables a function running against the embedded AWS gets."""
    if account_id is None or account_id == DEFAULT_ACCOUNT_ID:
        return {"AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_ACCESS_KEY}
    key, secret, token = _account_credentials(endpoint_url, region, account_id)
    return {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": token}


_ACCOUNT_CREDENTIALS: dict[tuple[str, str], tuple[str, str, str]] = {}


def _account_credentials(endpoint_url: str, region: str, account_id: str) -> tuple[str, str, str]:
    # moto attributes requests signed with an assumed role's key to the role's account.
    cached = _ACCOUNT_CREDENTIALS.get((endpoint_url, account_id))
    if cached is not None:
        return cached
    sts = boto3.session.Session(aws_access_key_id=DUMMY_ACCESS_KEY_ID, aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY,
                                region_name=region).client("sts", endpoint_url=endpoint_url, config=_CLIENT_CONFIG)
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account_id}:role/local-mode",
                            RoleSessionName="local-mode", DurationSeconds=43200)["Credentials"]
    result = (creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    _ACCOUNT_CREDENTIALS[(endpoint_url, account_id)] = result
    return result


def _forget_endpoint(endpoint_url: str) -> None:
    # A later server may reuse the port; credentials of assumed roles die with this one.
    for key in [k for k in _SESSIONS if k[0] == endpoint_url]:
        del _SESSIONS[key]
    for key in [k for k in _ACCOUNT_CREDENTIALS if k[0] == endpoint_url]:
        del _ACCOUNT_CREDENTIALS[key]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def _wait_until_ready(port: int, process: subprocess.Popen[bytes], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    url = f"http://{HOST}:{port}/moto-api/data.json"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.03)
    return False
