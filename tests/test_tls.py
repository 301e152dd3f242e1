"""HTTPS: server.tls_cert and server.tls_key, checked at startup, served by the CLI, and
a real headless Chromium calling over it from a name that is not loopback (so only
HTTPS makes the page a secure context, where the microphone is allowed). Also: no
secret in the logs (DEBUG) nor in /health."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import os
import re
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from avatar_rtc import cli
from avatar_rtc.app import create_app
from avatar_rtc.backends.registry import Backends
from avatar_rtc.settings import SettingsError, load
from avatar_rtc.state import STATE
from avatar_rtc.tls import ssl_context
from tests.browser import (
    call_state,
    chromium,
    console_log,
    make_speech_wav,
    missing_tools,
    wait_for_event,
    wait_until,
)
from tests.conftest import LoopThread, free_port, make_settings

HOSTNAME = "avatar.test"  # mapped to 127.0.0.1 inside Chromium only
SECRETS = {
    "AVATAR_ADMIN_TOKEN": "adm-9f3e-SECRET-token",
    "AVATAR_SERVER_METRICS_TOKEN": "met-51ab-SECRET-token",
    "AVATAR_LLM_API_KEY": "sk-77c0-SECRET-key",
    "AVATAR_ICE_TURN_CREDENTIAL": "turn-0d2e-SECRET-pass",
}


@dataclass
class Cert:
    cert: Path
    key: Path


def _key_pem(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password
        else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption)


def self_signed(folder: Path) -> Cert:
    """A certificate for avatar.test, localhost and 127.0.0.1, made now."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTNAME)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName(HOSTNAME), x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    paths = Cert(folder / "cert.pem", folder / "key.pem")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(_key_pem(key))
    paths.key.chmod(0o600)
    return paths


def trusting(cert: Cert) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert.cert))


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    return self_signed(tmp_path_factory.mktemp("tls"))


def test_tls_settings_are_checked_at_startup(cert: Cert, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    for env in ({"AVATAR_SERVER_TLS_CERT": str(cert.cert)},
                {"AVATAR_SERVER_TLS_KEY": str(cert.key)}):
        with pytest.raises(SettingsError, match=re.escape(
                "server.tls_cert and server.tls_key must be set together")):
            load(env=env)
    settings = make_settings(tmp_path)
    assert ssl_context(settings.server) is None
    settings.server.tls_cert, settings.server.tls_key = str(cert.cert), str(cert.key)
    assert isinstance(ssl_context(settings.server), ssl.SSLContext)

    missing = tmp_path / "missing.pem"
    settings.server.tls_key = str(missing)
    with pytest.raises(SettingsError, match=re.escape(f"server.tls_key: cannot read {missing}")):
        ssl_context(settings.server)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    settings.server.tls_cert, settings.server.tls_key = str(garbage), str(cert.key)
    with pytest.raises(SettingsError, match="not a PEM certificate and its private key"):
        ssl_context(settings.server)
    other_key = tmp_path / "other-key.pem"
    other_key.write_bytes(_key_pem(ec.generate_private_key(ec.SECP256R1())))
    settings.server.tls_cert, settings.server.tls_key = str(cert.cert), str(other_key)
    with pytest.raises(SettingsError, match="not a PEM certificate and its private key"):
        ssl_context(settings.server)
    locked = tmp_path / "locked-key.pem"
    locked.write_bytes(_key_pem(ec.generate_private_key(ec.SECP256R1()), b"pass phrase"))
    settings.server.tls_key = str(locked)
    with pytest.raises(SettingsError, match=re.escape("server.tls_key is encrypted")):
        ssl_context(settings.server)

    # The CLI says so and exits 2, before it serves anything.
    code = cli.main(["serve", "--server-tls-cert", str(cert.cert), "--server-tls-key",
                     str(missing), "--storage-data-dir", str(tmp_path / "data")])
    assert code == 2
    assert f"settings error: server.tls_key: cannot read {missing}" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


async def _get(session: aiohttp.ClientSession, url: str, tls: ssl.SSLContext | bool,
               **headers: str) -> tuple[int, str]:
    async with session.get(url, ssl=tls, headers=headers) as response:
        return response.status, await response.text()


@pytest.mark.timeout(90)
async def test_the_cli_serves_https_and_logs_no_secret(cert: Cert, tmp_path: Path) -> None:
    port = free_port()
    # Whisper is pointed at no model, so loading stops at once and the server idles:
    # what is checked here needs no model.
    env = dict(os.environ, **SECRETS, AVATAR_STT_MODEL=str(tmp_path / "no-whisper"),
               AVATAR_LOG_LEVEL="DEBUG", HF_HUB_OFFLINE="1")
    log_path = tmp_path / "serve.log"
    log_file = log_path.open("w")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "avatar_rtc", "serve", "--port", str(port),
        "--server-tls-cert", str(cert.cert), "--server-tls-key", str(cert.key),
        "--storage-data-dir", str(tmp_path / "data"),
        env=env, stdout=log_file, stderr=subprocess.STDOUT)
    base = f"https://127.0.0.1:{port}"
    tls = trusting(cert)
    bodies: list[str] = []
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    status, body = await _get(session, f"{base}/health", tls)
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("the server did not answer over HTTPS")
            assert status in (200, 503) and '"ready"' in body
            # Plain HTTP on that port is no way in.
            with pytest.raises(aiohttp.ClientError):
                await _get(session, f"http://127.0.0.1:{port}/health", tls)
            # A client that does not trust the certificate is refused.
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await _get(session, f"{base}/health", ssl.create_default_context())
            admin, metrics = SECRETS["AVATAR_ADMIN_TOKEN"], SECRETS["AVATAR_SERVER_METRICS_TOKEN"]
            for url, token, expected in (
                    ("/admin/api/stats", "", 401), ("/admin/api/stats", admin + "x", 403),
                    ("/admin/api/stats", admin, 200), ("/metrics", "", 401),
                    ("/metrics", metrics[:-1], 403), ("/metrics", metrics, 200),
                    ("/admin/api/stats", metrics, 403), ("/metrics", admin, 403)):
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                status, body = await _get(session, base + url, tls, **headers)
                assert status == expected, (url, token)
                bodies.append(body)
            for _ in range(100):  # until loading has failed, to read /health's error too
                status, body = await _get(session, f"{base}/health", tls)
                if '"error"' in body:
                    break
                await asyncio.sleep(0.1)
            bodies.append(body)
            assert "no-whisper" in body
    finally:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()
        log_file.close()
    output = log_path.read_text()
    assert f"avatar_rtc: https://127.0.0.1:{port}/" in output
    assert " DEBUG " in output and "GET /metrics" in output  # the log was captured
    for name, secret in SECRETS.items():
        assert secret not in output, name
        assert not any(secret in body for body in bodies), name
        # Nor any telling piece of it.
        assert secret[:12] not in output, name


_missing = missing_tools()
needs_browser = pytest.mark.skipif(bool(_missing) and not os.environ.get("CI"),
                                   reason=f"browser test needs {', '.join(_missing)}")


@pytest.fixture
def https_server(server_loop: LoopThread, real_backends: Backends, cert: Cert,
                 tmp_path: Path) -> Iterator[tuple[int, int]]:
    """The real models behind HTTPS (the CLI's SSL context) on 127.0.0.1, and the same
    app over plain HTTP on a second port."""
    settings = make_settings(tmp_path / "data", server__tls_cert=str(cert.cert),
                             server__tls_key=str(cert.key), admin__loopback_only=False)
    for name, secret in SECRETS.items():
        section, _, key = name.removeprefix("AVATAR_").lower().partition("_")
        setattr(getattr(settings, section), key, secret)
    port, plain_port = free_port(), free_port()
    context = ssl_context(settings.server)

    async def boot() -> tuple[web.Application, web.AppRunner]:
        app = create_app(settings, backends=real_backends)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
        await web.TCPSite(runner, "127.0.0.1", plain_port).start()
        await asyncio.wait_for(app[STATE].ready.wait(), 60)
        return app, runner

    app, runner = server_loop.run(boot())
    try:
        yield port, plain_port
    finally:
        app[STATE].backends = None  # shared across tests
        server_loop.run(runner.cleanup())


@needs_browser
@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_browser_calls_over_https(https_server: tuple[int, int], cert: Cert,
                                    server_loop: LoopThread, tmp_path: Path,
                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    port, plain_port = https_server
    wav = make_speech_wav("What is the capital of France?", tmp_path / "question.wav",
                          lead_s=1.5, tail_s=3.0)
    extra = (f"--host-resolver-rules=MAP {HOSTNAME} 127.0.0.1", "--ignore-certificate-errors")
    with chromium(wav, extra_args=extra) as driver:
        driver.get(f"https://{HOSTNAME}:{port}/?processing=0")
        page: dict[str, Any] = driver.execute_script(
            "return {secure: window.isSecureContext, protocol: location.protocol,"
            " media: !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)}")
        assert page == {"secure": True, "protocol": "https:", "media": True}
        wait_until(lambda: driver.find_element("id", "server-text").text == "Server ready",
                   timeout=20, what="the page to see the server ready")
        driver.find_element("id", "call-button").click()
        try:
            wait_until(lambda: call_state(driver)["connectionState"] == "connected",
                       timeout=20, what="the peer connection")
            heard = wait_for_event(driver, "user_transcript", timeout=40)
        except TimeoutError as exc:
            pytest.fail(f"{exc}\n{call_state(driver)}\n" + "\n".join(console_log(driver)))
        assert "capital" in heard["text"].lower(), heard
        driver.find_element("id", "call-button").click()  # hang up
        wait_until(lambda: call_state(driver)["pcState"] == "closed", timeout=10,
                   what="the call to end")
        # The page ran under the server's Content-Security-Policy without a violation.
        violations = [m for m in console_log(driver) if "Content Security Policy" in m]
        assert violations == []
        # The same page from a name that is not loopback, over plain HTTP, would get no
        # microphone: what makes this one a secure context is HTTPS.
        driver.get(f"http://{HOSTNAME}:{plain_port}/")
        page = driver.execute_script(
            "return {secure: window.isSecureContext, protocol: location.protocol,"
            " media: !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)}")
        assert page == {"secure": False, "protocol": "http:", "media": False}

    async def health() -> str:
        async with aiohttp.ClientSession() as session:
            status, body = await _get(session, f"https://127.0.0.1:{port}/health",
                                      trusting(cert))
            assert status == 200
            return body

    body = server_loop.run(health())
    assert '"ready": true' in body
    logged = caplog.text
    assert "POST /offer" in logged
    for name, secret in SECRETS.items():
        assert secret not in logged, name
        assert secret not in body, name
