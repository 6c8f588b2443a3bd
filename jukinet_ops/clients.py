"""The operator commands' AWS clients, made one way: botocore's models read once per process
(``jukinet.adapters.aws.new_session``), the standard credential chain unless a session is given,
and standard retries with five attempts (an operator's command should ride out throttling, not
fail on the first ``ThrottlingException``).

``ClientCache`` gives a command one client per service: from the factory it was given (the tests'
and the embedded AWS's clients) or else ``operator_client`` in the command's region. The
functions themselves use ``jukinet.adapters.aws.client`` (the runtime's); the embedded AWS makes
its own (``embedded_aws.server.local_client``: local credentials per account)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.config import Config

from jukinet.adapters import aws

OPERATOR_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})


def operator_client(service: str, region: str, *, session: Any = None, endpoint_url: str | None = None) -> Any:
    """A client for an operator command: ``session`` (default: the standard credential chain)."""
    return (session or aws.new_session()).client(service, region_name=region, endpoint_url=endpoint_url,
                                                 config=OPERATOR_CONFIG)


class ClientCache:
    """One client per service, made on first use by ``factory(service)`` when given, else by
    ``operator_client`` in ``region``."""

    def __init__(self, region: str, factory: Callable[[str], Any] | None = None) -> None:
        self.region = region
        self.factory = factory
        self._made: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        if service not in self._made:
            self._made[service] = (self.factory(service) if self.factory is not None
                                   else operator_client(service, self.region))
        return self._made[service]
