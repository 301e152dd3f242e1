"""Bad input to `avatar-rtc replay`: a clear message on stderr and a non-zero exit, fast
(before any model loads or any call is made)."""

from __future__ import annotations

import asyncio
import datetime
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from avatar_rtc.storage import CallRecord, Store, default_url
from tests.speech import write_wav

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent


def replay(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "avatar_rtc", "replay", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=90, env=env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def speech_file(tmp_path: Path) -> Path:
    t = np.arange(16000) / 16000
    return write_wav(tmp_path / "tone.wav", (np.sin(2 * np.pi * 300 * t) * 8000).astype(np.int16),
                     16000)


@pytest.fixture
def not_avatar() -> Iterator[str]:
    """Some other web server: /health answers 404 with HTML."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    done = replay("webrtc", "--url", "http://127.0.0.1:9", str(missing))
    assert done.returncode == 2
    assert f"replay: error: {missing}: no such file" in done.stderr


def test_a_file_that_is_not_audio_is_refused(tmp_path: Path, speech_file: Path) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("these are not samples\n" * 50)
    done = replay("webrtc", "--url", "http://127.0.0.1:9", str(speech_file), str(text))
    assert done.returncode == 2
    assert f"{text}: not an audio file that can be decoded" in done.stderr
    offline = replay("offline", str(text))
    assert offline.returncode == 2 and "not an audio file" in offline.stderr


def test_a_silent_file_and_a_folder_are_refused(tmp_path: Path) -> None:
    silent = write_wav(tmp_path / "silence.wav", np.zeros(16000, np.int16), 16000)
    done = replay("webrtc", "--url", "http://127.0.0.1:9", str(silent))
    assert done.returncode == 2 and "no audible sound" in done.stderr
    folder = replay("webrtc", "--url", "http://127.0.0.1:9", str(tmp_path))
    assert folder.returncode == 2 and "is a directory" in folder.stderr


def test_an_unreachable_url_fails_at_once(speech_file: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = replay("webrtc", "--url", url, str(speech_file))
    assert done.returncode == 3
    assert f"replay: error: cannot reach {url}" in done.stderr
    assert time.monotonic() - started < 30


def test_a_url_that_is_no_avatar_server_or_no_url(speech_file: Path, not_avatar: str) -> None:
    done = replay("webrtc", "--url", not_avatar, str(speech_file))
    assert done.returncode == 3
    assert f"{not_avatar} does not look like an avatar_rtc server" in done.stderr
    bad = replay("webrtc", "--url", "127.0.0.1:8080", str(speech_file))
    assert bad.returncode == 2 and "is not an http(s) URL" in bad.stderr


def make_database(data_dir: Path, *calls: CallRecord) -> None:
    async def create() -> None:
        store = await Store.open(default_url(data_dir))
        for call in calls:
            await store.create_call(call)
        await store.close()

    asyncio.run(create())


def test_an_unknown_call_id_is_refused_before_models_load(tmp_path: Path) -> None:
    make_database(tmp_path)
    unknown = str(uuid.uuid4())
    started = time.monotonic()
    done = replay("offline", "--call-id", unknown, "--data-dir", str(tmp_path))
    assert done.returncode == 2
    assert f"replay: error: unknown call ID '{unknown}'" in done.stderr
    assert time.monotonic() - started < 30


def test_a_call_without_a_recording_or_without_a_database(tmp_path: Path) -> None:
    call = CallRecord(id=str(uuid.uuid4()), started_at=datetime.datetime.now(datetime.UTC))
    make_database(tmp_path / "data", call)
    done = replay("offline", "--call-id", call.id, "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 2 and f"call {call.id} has no recording" in done.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = replay("offline", "--call-id", call.id, "--data-dir", str(empty))
    assert nothing.returncode == 2 and "no database at" in nothing.stderr
    assert not any(empty.iterdir())  # no empty database left behind


def test_usage_errors_and_help(speech_file: Path) -> None:
    no_url = replay("webrtc", str(speech_file))
    assert no_url.returncode == 2 and "--url" in no_url.stderr
    both = replay("offline", str(speech_file), "--call-id", "x")
    assert both.returncode == 2 and "not allowed with" in both.stderr
    turn = replay("webrtc", "--url", "http://127.0.0.1:9", str(speech_file),
                  "--barge-in", str(speech_file), "--barge-in-turn", "3")
    assert turn.returncode == 2 and "out of range for 1 file(s)" in turn.stderr
    helped = replay("--help")
    assert helped.returncode == 0 and "webrtc" in helped.stdout and "offline" in helped.stdout


class _LongReply:
    """A caller whose agent talks (audible every ~50 ms) for `talk_s`, then ends its
    turn; or, `silent`, never ends it and says nothing more."""

    def __init__(self, talk_s: float, *, silent: bool = False) -> None:
        self.ends = time.monotonic() + talk_s
        self.silent = silent
        self.frames: list[object] = []  # the last frames are quiet: a pause in the reply
        self.last_audible_at: float | None = time.monotonic() if silent else None

    async def wait_event(self, kind: str, *, turn: int, timeout_s: float) -> dict[str, object]:
        await asyncio.sleep(0.05)
        if self.silent:
            raise TimeoutError
        now = time.monotonic()
        if now < self.ends:
            self.last_audible_at = now - 0.02
            raise TimeoutError
        return {"type": kind, "turn": turn}


async def test_a_reply_longer_than_the_timeout_is_waited_for_while_it_talks() -> None:
    """The reply timeout counts agent silence, not reply length, whatever frames the
    last two seconds held (a long reply with a pause was once taken for silence)."""
    from avatar_rtc.replay.timeline import Timeline
    from avatar_rtc.replay.webrtc import WebrtcOptions, _Run

    def run(caller: _LongReply) -> _Run:
        return _Run(caller, WebrtcOptions(reply_timeout_s=0.3),  # type: ignore[arg-type]
                    Timeline(mode="webrtc", source="test", started_at=""), None)

    event = await asyncio.wait_for(run(_LongReply(1.0)).wait_while_talking("turn_end", 3), 5)
    assert event == {"type": "turn_end", "turn": 3}

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await run(_LongReply(0, silent=True)).wait_while_talking("turn_end", 3)
    assert 0.3 <= time.monotonic() - started < 2
