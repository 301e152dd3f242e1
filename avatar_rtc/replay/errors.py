"""The replay tool's one error type: a message for the user and an exit status."""

from __future__ import annotations

from avatar_rtc.errors import AvatarError

# Exit statuses: bad input (files, call IDs, options) vs. a server or call that failed.
BAD_INPUT = 2
CALL_FAILED = 3


class ReplayError(AvatarError):
    def __init__(self, message: str, exit_code: int = BAD_INPUT) -> None:
        super().__init__(message)
        self.exit_code = exit_code
