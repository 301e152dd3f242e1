"""The admin token the server makes for itself when none is set: random, kept in
<storage.data_dir>/admin-token (mode 0600) so it survives restarts."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from avatar_rtc.settings import SettingsError

log = logging.getLogger(__name__)

FILE_NAME = "admin-token"


class TokenFileError(SettingsError):
    """The token file cannot be read or written; the message names it (the CLI says
    so and exits, as for any setting it cannot use)."""


def load_or_create(data_dir: Path) -> str:
    """The token in data_dir/admin-token, made first if missing or empty. Blocking:
    run it in a thread. Logs the file's path, never the token."""
    path = (data_dir / FILE_NAME).resolve()
    try:
        token = path.read_text(encoding="ascii").strip() if path.exists() else ""
        if token:
            if path.stat().st_mode & 0o077:  # copied or restored with loose permissions
                os.chmod(path, 0o600)
                log.warning("admin API token file %s was readable by others: made 0600", path)
            log.info("admin API token: in %s", path)
            return token
        path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        # Made 0600 from the start: the token is never readable by others, not even briefly.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(token + "\n")
        os.chmod(path, 0o600)  # O_CREAT's mode does not apply to a file already there
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"admin token file {path}: {exc}; set admin.token "
                             "or admin.loopback_only instead") from None
    log.warning("admin API token: none set, so a new one was written to %s "
                "(set admin.token to choose your own)", path)
    return token
