"""The one root of avatar_rtc's own exceptions.

Every error the package raises on purpose derives from `AvatarError`, so a caller
can tell "avatar_rtc refused or failed, with a message for a person" from a bug.
`signaling` and `media` never import avatar_rtc: their few errors stay their own.
"""

from __future__ import annotations


class AvatarError(Exception):
    """Base class of every error avatar_rtc raises on purpose."""
