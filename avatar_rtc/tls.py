"""HTTPS: the server's SSL context from server.tls_cert and server.tls_key."""

from __future__ import annotations

import ssl

from avatar_rtc.settings import ServerSettings, SettingsError


def _encrypted() -> bytes:
    # Called only for an encrypted key; OpenSSL would otherwise ask on the terminal.
    raise SettingsError("server.tls_key is encrypted: the server needs it unencrypted "
                        "(readable by the server's user only)")


def ssl_context(server: ServerSettings) -> ssl.SSLContext | None:
    """None when neither is set (plain HTTP); a SettingsError naming the file when one
    cannot be read or the two do not make a certificate and its key."""
    if not server.tls_cert and not server.tls_key:
        return None
    if not server.tls_cert or not server.tls_key:
        raise SettingsError("server.tls_cert and server.tls_key must be set together")
    for name, path in (("server.tls_cert", server.tls_cert), ("server.tls_key", server.tls_key)):
        try:
            with open(path, "rb") as pem:
                pem.read(1)
        except OSError as exc:
            raise SettingsError(f"{name}: cannot read {path}: {exc.strerror or exc}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(server.tls_cert, server.tls_key, password=_encrypted)
    except (ssl.SSLError, ValueError) as exc:
        raise SettingsError(f"server.tls_cert/server.tls_key: not a PEM certificate and its "
                            f"private key ({server.tls_cert}, {server.tls_key}): {exc}") from None
    return context
