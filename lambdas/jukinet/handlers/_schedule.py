"""What scheduled handlers share: the instant their EventBridge event was scheduled for."""

from __future__ import annotations

import datetime as dt


def scheduled_at(event: dict) -> dt.datetime | None:
    """The scheduled event's ``time`` (the instant EventBridge, or the embedded AWS's scheduler,
    fired it: decision 0019), or None if it carries none."""
    stamp = (event or {}).get("time")
    if not isinstance(stamp, str):
        return None
    try:
        at = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else None
