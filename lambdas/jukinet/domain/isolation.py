"""The emergency plan's names that the isolating command and what reads its work agree on. No AWS here.

``ISOLATION_TAG``: the tag ``jukinet isolate`` puts on a queue whose consumer it stops (a
prefecture's inbound queue, an isolated CS's inbox), valued with the isolation record's id
(``jukinet_ops/emergency.py``). The embedded AWS's runner reads it as the operator's disable of the
queue's event source mapping (``embedded_aws/runner.py``: moto holds every mapping Disabled, so the
mapping's State cannot carry it). One home here, beside the runtime's other shared names, so the
embedded AWS imports nothing from the operator commands (decision 0052)."""

from __future__ import annotations

ISOLATION_TAG = "jukinet:isolation"
