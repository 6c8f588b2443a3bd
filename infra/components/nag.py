"""cdk-nag acknowledgements: always on a specific resource, always with a specific reason.

Each acknowledgement is ``(rule id, reason)`` or ``(rule id, reason, [finding, ...])`` where
the findings narrow an IAM5-style rule to the exact wildcard it accepts (a finding written
``/.../`` is a regular expression, for logical ids CDK generates).
"""

from __future__ import annotations

from collections.abc import Sequence

from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import IConstruct

Acknowledgement = tuple[str, str] | tuple[str, str, Sequence[str]]


def acknowledge(construct: IConstruct, acknowledgements: Sequence[Acknowledgement], *,
                apply_to_children: bool = False) -> None:
    suppressions = []
    for ack in acknowledgements:
        rule, reason = ack[0], ack[1]
        if len(reason) < 20:
            raise ValueError(f"{rule}: an acknowledgement needs a specific reason, got {reason!r}")
        applies_to = None
        if len(ack) > 2:
            applies_to = [RegexAppliesTo(regex=f) if f.startswith("/") else f for f in ack[2]]  # type: ignore[misc]
        suppressions.append(NagPackSuppression(id=rule, reason=reason, applies_to=applies_to))
    NagSuppressions.add_resource_suppressions(construct, suppressions, apply_to_children)
