"""The embedded AWS: loopback only, stopped with its context, isolated per account."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from jukinet_ops.local.server import MotoServer


def _listening_addresses(port: int) -> set[str]:
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if int(hex_port, 16) == port and state == "0A":  # LISTEN
            addresses.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return addresses


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_server_listens_on_loopback_only_and_stops_with_its_context(mode: str):
    with MotoServer(mode=mode) as aws:  # type: ignore[arg-type]
        url = urlparse(aws.endpoint_url)
        assert url.hostname == "127.0.0.1"
        aws.client("sqs", "ap-northeast-1").create_queue(QueueName="q")
        if sys.platform.startswith("linux"):
            assert _listening_addresses(url.port) == {"127.0.0.1"}
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", url.port), timeout=1).close()


def test_clients_for_another_account_see_only_that_account():
    with MotoServer() as aws:
        other = aws.client("sqs", "ap-northeast-1", account_id="111111111111")
        other.create_queue(QueueName="only-there")
        assert aws.client("sts", "ap-northeast-1", account_id="111111111111").get_caller_identity()["Account"] \
            == "111111111111"
        assert "QueueUrls" not in aws.client("sqs", "ap-northeast-1").list_queues()
