"""End-to-end calls from a real headless Chromium (Debian package, offline).

The fake microphone plays a Piper recording of a question; the test
checks that the server transcribes it, answers with audible audio, and that
the page shows the conversation and hangs up cleanly.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.browser import (
    call_state,
    chromium,
    console_log,
    events,
    inbound_audio_stats,
    make_speech_wav,
    missing_tools,
    script_call,
    wait_for_event,
    wait_until,
)
from tests.speech import word_error_rate

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
QUESTION = "What is the capital of France?"

_missing = missing_tools()
# Locally a missing browser skips; in CI (tools/test installs it) it must fail instead.
needs_browser = pytest.mark.skipif(
    bool(_missing) and not os.environ.get("CI"),
    reason=f"browser test needs {', '.join(_missing)}",
)


def _click(driver: Any, element_id: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    button = WebDriverWait(driver, 10).until(ec.element_to_be_clickable((By.ID, element_id)))
    button.click()


def _text(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


def _diagnostics(driver: Any) -> str:
    try:
        state = call_state(driver)
    except Exception as exc:  # the page itself may be gone
        return f"(no page state: {exc})"
    lines = [
        f"state={state['state']} connection={state['connectionState']} "
        f"ice={state['iceConnectionState']} error={state['error']!r}",
        f"events={state['events']}",
        *console_log(driver)[-20:],
    ]
    return "\n".join(lines)


@needs_browser
@pytest.mark.browser
@pytest.mark.slow
def test_browser_call_round_trip(live_server: Any, tmp_path: Path) -> None:
    # Chromium's fake mic starts playing when getUserMedia opens it, before the
    # peer connects (~0.3 s on loopback), so the lead-in silence absorbs setup.
    wav = make_speech_wav(QUESTION, tmp_path / "question.wav", lead_s=1.5, tail_s=4.0)

    with chromium(wav) as driver:
        # processing=0: Chromium's echo canceller would otherwise mute the fake
        # mic while agent audio plays.
        driver.get(f"{live_server.url}/?processing=0")
        _click(driver, "call-button")

        try:
            wait_until(
                lambda: call_state(driver)["connectionState"] == "connected",
                timeout=20,
                what="the peer connection",
            )
            transcript = wait_for_event(driver, "user_transcript", timeout=30)
        except TimeoutError as exc:
            pytest.fail(f"{exc}\n{_diagnostics(driver)}")
        # The bar for a transcript (tiny.en sometimes hears "France" as "friends").
        assert word_error_rate(QUESTION, transcript["text"]) <= 0.3, transcript

        # The agent answers with audio that reaches the page.
        seen: dict[str, Any] = {}

        def heard_agent() -> bool:
            stats = inbound_audio_stats(driver)
            if not stats:
                return False
            seen.update(stats)
            seen["max_level"] = max(seen.get("max_level", 0.0), stats["audioLevel"])
            return bool(stats["packetsReceived"] > 0) and (
                stats["totalAudioEnergy"] > 0 or seen["max_level"] > 0
            )

        try:
            wait_until(heard_agent, timeout=60, interval=0.25, what="agent audio")
        except TimeoutError as exc:
            pytest.fail(f"{exc}; last stats {seen}\n{_diagnostics(driver)}")
        assert seen["packetsReceived"] > 0

        # The page renders the user's words in the transcript.
        wait_until(
            lambda: transcript["text"] in _text(driver, "transcript"),
            timeout=5,
            what="the transcript in the DOM",
        )

        # Let the turn finish when it does so in reasonable time, so the agent's
        # words are on the page too; a long reply is not a failure.
        turn = transcript["turn"]
        try:
            end = wait_for_event(driver, "turn_end", timeout=60, where=lambda e: e["turn"] == turn)
        except TimeoutError:
            end = None
        if end is not None and end.get("spoken_text"):
            first_words = end["spoken_text"].split()[:2]
            page = _text(driver, "transcript")
            assert all(w in page for w in first_words), (first_words, page)

        # Hang up: the peer closes and the mic is released.
        _click(driver, "call-button")
        state = wait_until(
            lambda: (s := call_state(driver))["pcState"] == "closed" and s,
            timeout=5,
            what="the peer connection to close",
        )
        assert state["connectionState"] == "closed"
        assert state["inCall"] is False
        assert driver.execute_script(
            "return window.avatarCall.pc.getSenders()"
            ".every(s => !s.track || s.track.readyState === 'ended')"
        )
        assert not any(e["type"] == "error" for e in events(driver)), events(driver)

    # The server stored the turn.
    turns = wait_until(
        lambda: [t for t in live_server.turns() if t.get("user_text") == transcript["text"]],
        timeout=15,
        what="the server to store the turn",
    )
    assert turns[0]["user_text"]


# --------------------------------------------- the page without models (cheap)


class _StaticOnly(SimpleHTTPRequestHandler):
    """Serves the page like the real server; everything else is a 404."""

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0]
        if path == "/":
            return str(STATIC_DIR / "index.html")
        if path.startswith("/static/") and "/.." not in path:
            return str(STATIC_DIR / path.removeprefix("/static/"))
        return str(STATIC_DIR / "__missing__")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _StaticAndOffer(_StaticOnly):
    """Also answers GET /api/ice and POST /offer, for a page whose peer connection is
    scripted."""

    def do_GET(self) -> None:
        if self.path != "/api/ice":
            super().do_GET()
            return
        body = json.dumps({"iceServers": [], "iceTransportPolicy": "all"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != "/offer":
            self.send_error(404)
            return
        body = json.dumps({"type": "answer", "sdp": "v=0\r\n", "session_id": "s-1"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def _serve(handler: type[SimpleHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def static_only_server() -> Iterator[str]:
    with _serve(_StaticOnly) as url:
        yield url


@needs_browser
@pytest.mark.browser
def test_browser_mic_denied_shows_message(static_only_server: str) -> None:
    with chromium(None, deny_microphone=True) as driver:
        driver.get(f"{static_only_server}/")
        _click(driver, "call-button")
        message = wait_until(lambda: _text(driver, "message"), timeout=10, what="an error message")
        assert "microphone" in message.lower() and "denied" in message.lower(), message
        state = call_state(driver)
        assert state["inCall"] is False and state["pcState"] is None
        # The button is ready for another try.
        deadline = time.monotonic() + 2
        while _text(driver, "call-button") != "Call" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _text(driver, "call-button") == "Call"


@needs_browser
@pytest.mark.browser
def test_browser_without_ice_servers_from_the_server_says_so(static_only_server: str) -> None:
    """GET /api/ice fails (404 here): the call stops with a message, the mic released."""
    with chromium(None) as driver:
        driver.get(f"{static_only_server}/")
        _click(driver, "call-button")
        message = wait_until(lambda: _text(driver, "message"), timeout=10, what="an error message")
        assert message == "The server sent no ICE servers for the call.", message
        state = call_state(driver)
        assert state["inCall"] is False and state["pcState"] is None


TIMINGS = {"endpoint_ms": 212.4, "stt_ms": 88.1, "stt_done_ms": 301.5,
           "llm_first_token_ms": 455.2, "first_chunk_ms": 512.9, "tts_first_audio_ms": 601.3,
           "first_audio_sent_ms": 640.7}
SCRIPT: list[dict[str, Any]] = [
    {"type": "hello", "session_id": "s-1"},
    {"type": "state", "state": "listening"},
    {"type": "vad", "speaking": True},
    {"type": "vad", "speaking": False},
    {"type": "state", "state": "thinking"},
    {"type": "user_transcript", "turn": 1, "text": "What is the capital of France?"},
    {"type": "state", "state": "speaking"},
    {"type": "agent_text", "turn": 1, "text": "Paris is the capital"},
    {"type": "agent_text", "turn": 1, "text": "."},
    {"type": "agent_text", "turn": 1, "text": "Of France."},
    {"type": "timings", "turn": 1, "timings": TIMINGS},
    {"type": "turn_end", "turn": 1, "interrupted": False,
     "spoken_text": "Paris is the capital. Of France.", "reply_text": "Paris is the capital."},
    {"type": "state", "state": "listening"},
    {"type": "user_transcript", "turn": 2, "text": "Tell me a story."},
    {"type": "agent_text", "turn": 2, "text": "Once upon a time,"},
    {"type": "turn_end", "turn": 2, "interrupted": True, "spoken_text": "Once upon a time,",
     "reply_text": "Once upon a time, there was a dragon."},
    {"type": "bye", "reason": "idle timeout"},
]


@needs_browser
@pytest.mark.browser
def test_browser_page_renders_data_channel_events() -> None:
    """Every event of the protocol reaches its view; every latency column has a label."""
    from selenium.webdriver.common.by import By

    with _serve(_StaticAndOffer) as url, chromium(None) as driver:
        script_call(driver, SCRIPT)
        driver.get(f"{url}/")
        _click(driver, "call-button")
        try:
            state = wait_until(lambda: (s := call_state(driver))["endReason"] and s, timeout=10,
                               what="the scripted call to end")
        except TimeoutError as exc:
            pytest.fail(f"{exc}\n{_diagnostics(driver)}")

        assert state["events"] == SCRIPT
        assert state["sessionId"] == "s-1" and _text(driver, "session-id") == "s-1"
        assert state["endReason"] == "idle timeout" and state["inCall"] is False
        assert state["state"] == "ended" and _text(driver, "agent-state-label") == "Call ended"
        assert _text(driver, "message") == "The server ended the call: idle timeout"
        assert _text(driver, "call-button") == "Call"

        turns = driver.find_elements(By.CSS_SELECTOR, "#transcript > li.turn")
        assert [t.get_attribute("data-turn") for t in turns] == ["1", "2"]
        first_agent = turns[0].find_element(By.CSS_SELECTOR, ".bubble.agent")
        assert "Paris is the capital. Of France." in first_agent.text
        assert "voice-to-voice 641 ms" in first_agent.text
        assert "What is the capital of France?" in turns[0].text
        second_agent = turns[1].find_element(By.CSS_SELECTOR, ".bubble.agent")
        badge = second_agent.find_element(By.CSS_SELECTOR, ".badge-interrupted")
        assert badge.text == "interrupted"
        assert "there was a dragon" not in second_agent.text

        head = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "#latency-head th")]
        assert head == ["Turn", "Voice-to-voice", "Endpoint", "STT", "STT done",
                        "LLM first token", "First chunk", "TTS first audio"]
        row = [c.text for c in driver.find_elements(By.CSS_SELECTOR, "#latency-body tr > *")]
        assert row == ["1", "641", "212", "88.1", "302", "455", "513", "601"]
        log = console_log(driver)
        assert not any("Uncaught" in e for e in log), log
