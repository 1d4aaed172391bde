"""The one error of the schemas layer.

`InvalidEvent` never leaves `schemas`: the decoder catches it and turns it into a
`Rejected` (dead letter + `outcome="invalid"`), so it is a control-flow signal of
validation, not an error a user sees. That is why it does not derive from
`expmon.errors.ExpmonError` (the root of what reaches the command line): `schemas` is the
contract's leaf and imports nothing from `expmon`.
"""

from __future__ import annotations


class InvalidEvent(Exception):  # noqa: N818 - reads as the outcome it counts
    """A record or event failed validation; `reason` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)
