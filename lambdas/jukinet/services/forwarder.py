"""The prefecture forwards what it stored to the national tier, signed by the prefecture."""

from __future__ import annotations

from collections.abc import Sequence

from ..adapters import queues
from ..adapters.kms import Signer
from ..clock import Clock
from ..domain.message import pack
from ..domain.notice import UpdateNotice


class Forwarder:
    def __init__(self, signer: Signer, queue_url: str, *, clock: Clock) -> None:
        self.signer = signer
        self.queue_url = queue_url
        self.clock = clock

    def forward(self, notices: Sequence[UpdateNotice]) -> int:
        """Sign and send; returns the number of SQS messages. Safe to repeat: the national
        tier stores each notice once whatever how often it arrives."""
        if not notices:
            return 0
        signed = [self.signer.sign(p) for p in pack(notices, sender=self.signer.sender, created=self.clock())]
        return queues.send_signed(self.queue_url, signed)
