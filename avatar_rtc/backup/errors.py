"""The one error of backup and restore."""

from __future__ import annotations

from avatar_rtc.errors import AvatarError


class BackupError(AvatarError):
    """A backup or restore that cannot go on; the message says why and what to do."""
