"""The prefecture forwards what it stored to the national tier, signed by the prefecture.

It forwards each municipality's signed payload verbatim (``domain.message.Origin``), with the
indices of the notices it dead-lettered, so the national tier can check every notice against
the signature of the municipality that sent it (lineage), not only against the prefecture's.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..adapters import queues
from ..adapters.kms import Signer
from ..clock import Clock
from ..domain.message import Origin, pack_origins


class Forwarder:
    def __init__(self, signer: Signer, queue_url: str, *, clock: Clock) -> None:
        self.signer = signer
        self.queue_url = queue_url
        self.clock = clock

    def forward(self, origins: Sequence[Origin]) -> int:
        """Sign and send; returns the number of SQS messages. Safe to repeat: the national
        tier stores each notice once whatever how often it arrives."""
        if not origins:
            return 0
        payloads = pack_origins(origins, sender=self.signer.sender, created=self.clock())
        return queues.send_signed(self.queue_url, [self.signer.sign(p) for p in payloads])
