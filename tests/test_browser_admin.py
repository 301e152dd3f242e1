"""The admin pages and the call page's voice picker in a real headless Chromium.

A real server (real models, real SQLite, the real admin API) on 127.0.0.1; the
profile clip is Piper speech written to a WAV and picked through the page's file
input. Calls and turns for the conversation browser go straight into the store,
so those tests stay fast.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import ClientSession, FormData

from avatar_rtc.storage import CallRecord, TurnRecord, new_id
from tests.browser import chromium, console_log, missing_tools, wait_until, write_wav
from tests.conftest import LiveServer
from tests.speech import speak, with_silence

_missing = missing_tools()
# Locally a missing browser skips; in CI (tools/test installs it) it must fail instead.
needs_browser = pytest.mark.skipif(
    bool(_missing) and not os.environ.get("CI"),
    reason=f"browser test needs {', '.join(_missing)}",
)
pytestmark = [needs_browser, pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]

CLIP_TEXT = (
    "The quick brown fox jumps over the lazy dog, "
    "and then it runs far away into the quiet green forest."
)
StartServer = Callable[..., LiveServer]


# -------------------------------------------------------------- helpers


def speech_wav(path: Path, text: str = CLIP_TEXT, rate: int = 22_050) -> tuple[Path, float]:
    """Piper speech with a little silence around it; returns (path, seconds)."""
    pcm = with_silence(speak(text, rate), rate, 0.3, 0.3)
    return write_wav(path, pcm.astype(np.float32) / 32768.0, rate), len(pcm) / rate


def api(server: LiveServer, method: str, path: str, *, json_body: Any = None,
        form: FormData | None = None, token: str = "") -> tuple[int, Any]:
    """One request to the server from its own loop; returns (status, JSON body or bytes)."""

    async def go() -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with ClientSession() as session, session.request(
            method, server.url + path, json=json_body, data=form, headers=headers
        ) as resp:
            raw = await resp.read()
            if resp.content_type == "application/json":
                return resp.status, json.loads(raw)
            return resp.status, raw

    result: tuple[int, Any] = server.loop.run(go())
    return result


def upload_profile(server: LiveServer, wav: Path, name: str) -> dict[str, Any]:
    form = FormData()
    form.add_field("name", name)
    form.add_field("audio", wav.read_bytes(), filename=wav.name, content_type="audio/wav")
    status, body = api(server, "POST", "/admin/api/profiles", form=form)
    assert status == 201, body
    assert isinstance(body, dict)
    return body


def css(driver: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def css_all(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def visible(driver: Any, selector: str) -> Any:
    """The first displayed element matching ``selector``, or None (also while the
    page re-renders it, so a poll simply looks again)."""
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        for element in css_all(driver, selector):
            if element.is_displayed():
                return element
    except StaleElementReferenceException:
        pass
    return None


def text_of(driver: Any, selector: str) -> str | None:
    """The rendered text of the first match, read in one script (safe mid re-render)."""
    text: str | None = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
        selector,
    )
    return text


def wait_visible(driver: Any, selector: str, timeout: float = 10) -> Any:
    try:
        return wait_until(lambda: visible(driver, selector), timeout, what=selector)
    except TimeoutError as exc:
        log = "\n".join(console_log(driver)[-20:])
        raise AssertionError(f"{exc}\nbrowser console:\n{log}") from exc


def wait_gone(driver: Any, selector: str, timeout: float = 10) -> None:
    wait_until(lambda: not css_all(driver, selector), timeout, what=f"{selector} to go")


def click(driver: Any, selector: str, timeout: float = 10) -> None:
    wait_visible(driver, selector, timeout)
    css(driver, selector).click()


def set_value(driver: Any, selector: str, value: str) -> None:
    """Sets an input's value the way a picker would (date inputs ignore typed text
    in some locales) and fires the events a person's edit fires."""
    driver.execute_script(
        "const e = document.querySelector(arguments[0]); e.value = arguments[1];"
        "e.dispatchEvent(new Event('input', {bubbles: true}));"
        "e.dispatchEvent(new Event('change', {bubbles: true}));",
        selector,
        value,
    )


_AUDIO_READY_JS = """
const a = document.querySelector(arguments[0]);
if (!a || a.hidden || a.error) return a && a.error ? {error: a.error.code} : null;
return (a.readyState >= 2 || a.duration > 0)
  ? {readyState: a.readyState, duration: a.duration, src: a.currentSrc} : null;
"""


def wait_audio(driver: Any, selector: str, timeout: float = 30) -> dict[str, Any]:
    """Waits until the <audio> has loaded its media; returns readyState and duration."""
    state: dict[str, Any] = wait_until(
        lambda: driver.execute_script(_AUDIO_READY_JS, selector), timeout,
        what=f"audio {selector} to load",
    )
    assert "error" not in state, f"{selector}: media error {state}"
    return state


def message_text(driver: Any, element_id: str, timeout: float = 30) -> str:
    text: str = wait_until(
        lambda: (e := visible(driver, f"#{element_id}")) and e.text, timeout,
        what=f"a message in #{element_id}",
    )
    return text


# ----------------------------------------------------------- profile manager


def test_profile_manager_upload_play_synthesize_edit_delete(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server()
    wav, seconds = speech_wav(tmp_path / "reference.wav")
    assert 3.0 <= seconds <= 30.0
    name = "Fox reader <b>&</b>"  # markup in a name must come out as text

    with chromium(None) as driver:
        driver.get(f"{server.url}/admin/")
        # The voice select is filled from /admin/api/backends.
        status, backends = api(server, "GET", "/admin/api/backends")
        assert status == 200, backends
        wait_until(
            lambda: len(css_all(driver, "#up-voice option")) == 1 + len(backends["voices"]),
            10, what="the Piper voices in the upload form",
        )
        wait_until(lambda: css(driver, "#profile-list").get_attribute("aria-busy") == "false",
                   10, what="the profile list")
        assert visible(driver, "#profiles-empty")

        # Record every value the progress bar takes (the upload is fast on loopback).
        driver.execute_script(
            """
            window.__progress = [];
            const bar = document.getElementById('upload-progress');
            new MutationObserver(() => window.__progress.push(bar.value))
              .observe(bar, {attributes: true, attributeFilter: ['value']});
            """
        )
        css(driver, "#up-name").send_keys(name)
        css(driver, "#up-description").send_keys("Piper reading a pangram")
        css(driver, "#up-audio").send_keys(str(wav))
        click(driver, "#upload-button")

        card = wait_visible(driver, ".profile-card", timeout=60)
        assert "created" in message_text(driver, "upload-message")
        assert card.find_element("css selector", ".profile-name").text == name
        assert not css_all(driver, ".profile-name b"), "a name was inserted as HTML"
        progress = driver.execute_script("return window.__progress")
        assert progress and max(progress) == 100, progress

        # The API has it, with the clip's transcript and the backends that speak it.
        status, page = api(server, "GET", "/admin/api/profiles")
        assert status == 200 and page["total"] == 1, page
        profile = page["items"][0]
        assert profile["name"] == name
        assert card.get_attribute("data-id") == profile["id"]
        assert profile["reference_text"].strip(), "the server transcribes an empty reference"
        assert "piper" in profile["drivable_by"]
        active = css_all(driver, ".profile-card .badge-backend.active")
        assert [b.text for b in active] == [backends["tts"]]

        # Play the reference: the <audio> gets the clip (fetched with the auth header).
        click(driver, ".profile-card .play-ref")
        ref = wait_audio(driver, ".profile-card .ref-audio")
        assert ref["src"].startswith("blob:")
        assert abs(ref["duration"] - profile["duration_s"]) < 0.3, (ref, profile["duration_s"])
        assert abs(profile["duration_s"] - seconds) < 0.5, (profile["duration_s"], seconds)

        # Test synthesis of the text box.
        synth_box = css(driver, ".profile-card .synth-text")
        synth_box.clear()
        synth_box.send_keys("Testing one two three.")
        click(driver, ".profile-card .synth-form button[type=submit]")
        synth = wait_audio(driver, ".profile-card .synth-audio", timeout=60)
        assert synth["duration"] > 0.5, synth

        # Edit: rename inline.
        click(driver, ".profile-card .profile-actions button[aria-expanded]")
        rename = wait_visible(driver, ".profile-card .edit-form input[type=text]")
        rename.clear()
        rename.send_keys("Fox reader, renamed")
        click(driver, ".profile-card .edit-form button[type=submit]")
        wait_until(
            lambda: text_of(driver, ".profile-card .profile-name") == "Fox reader, renamed",
            10, what="the new name in the list",
        )
        status, got = api(server, "GET", f"/admin/api/profiles/{profile['id']}")
        assert status == 200 and got["name"] == "Fox reader, renamed", got

        # Delete, through the confirm dialog.
        click(driver, ".profile-card .danger-button")
        wait_visible(driver, "#confirm-dialog")
        click(driver, "#confirm-ok")
        wait_gone(driver, ".profile-card")
        wait_visible(driver, "#profiles-empty")

    status, body = api(server, "GET", f"/admin/api/profiles/{profile['id']}")
    assert status == 404, body
    assert api(server, "GET", "/admin/api/profiles")[1]["total"] == 0
    profile_dir = Path(server.state.settings.storage.data_dir) / "profiles" / profile["id"]
    assert not profile_dir.exists()


def test_profile_upload_shows_the_servers_error(start_server: StartServer,
                                               tmp_path: Path) -> None:
    server = start_server()
    short, seconds = speech_wav(tmp_path / "short.wav", "Hello there.")
    assert seconds < 3.0
    # What the API itself says about this clip.
    form = FormData()
    form.add_field("name", "too short")
    form.add_field("audio", short.read_bytes(), filename=short.name, content_type="audio/wav")
    status, body = api(server, "POST", "/admin/api/profiles", form=form)
    assert status == 422, body

    with chromium(None) as driver:
        driver.get(f"{server.url}/admin/")
        wait_until(lambda: css(driver, "#profile-list").get_attribute("aria-busy") == "false",
                   10, what="the profile list")
        # Without a file the page says so and sends nothing.
        css(driver, "#up-name").send_keys("too short")
        click(driver, "#upload-button")
        assert "clip" in message_text(driver, "upload-message").lower()

        css(driver, "#up-audio").send_keys(str(short))
        click(driver, "#upload-button")
        text = wait_until(
            lambda: body["error"] in message_text(driver, "upload-message") and
            message_text(driver, "upload-message"),
            30, what="the server's error on the page",
        )
        assert "422" in text
        assert css(driver, "#upload-message").get_attribute("data-kind") == "error"
        assert not css_all(driver, ".profile-card")
    assert api(server, "GET", "/admin/api/profiles")[1]["total"] == 0


def test_admin_token_box(start_server: StartServer) -> None:
    server = start_server(admin__token="s3cret-admin-token")
    with chromium(None) as driver:
        driver.get(f"{server.url}/admin/")
        # 401 without a token: the token box opens and says why.
        wait_visible(driver, "#token-panel")
        assert "needs a token" in message_text(driver, "token-note")
        css(driver, "#token-input").send_keys("wrong-token")
        click(driver, "#token-form button[type=submit]")
        wait_until(lambda: "refused" in message_text(driver, "token-note"), 10,
                   what="the refused token message")
        assert visible(driver, "#token-panel")

        css(driver, "#token-input").send_keys("s3cret-admin-token")
        click(driver, "#token-form button[type=submit]")
        wait_visible(driver, "#profiles-empty")
        assert not visible(driver, "#token-panel")
        assert driver.execute_script(
            "return sessionStorage.getItem('avatarAdminToken')") == "s3cret-admin-token"
        assert len(css_all(driver, "#up-voice option")) > 1

        # The token lasts for the tab: the conversation browser works at once.
        driver.get(f"{server.url}/admin/calls")
        wait_visible(driver, "#calls-empty")
        assert not visible(driver, "#token-panel")


# ------------------------------------------------------ conversation browser


def write_opus(path: Path, seconds: float, freq: float) -> None:
    """A mono Ogg/Opus file like the recorder's: a tone, so there is something to hear."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    rate = 48_000
    t = np.arange(round(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)
    with av.open(str(path), "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=rate, layout="mono")
        for start in range(0, len(pcm), 960):
            chunk = pcm[start:start + 960]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def seed_calls(server: LiveServer) -> tuple[CallRecord, list[TurnRecord], CallRecord]:
    """A recorded call with two turns (one interrupted) and an older call without turns."""
    store = server.state.store
    assert store is not None
    now = datetime.now(UTC).replace(microsecond=0)
    call = CallRecord(id=new_id(), started_at=now - timedelta(minutes=2),
                      ended_at=now - timedelta(minutes=1), end_reason="hangup")
    old = CallRecord(id=new_id(), started_at=datetime(2020, 1, 2, 12, tzinfo=UTC),
                     ended_at=datetime(2020, 1, 2, 12, 5, tzinfo=UTC), end_reason="timeout")
    turns = [
        TurnRecord(
            id=new_id(), call_id=call.id, index=0, started_at=call.started_at,
            ended_at=call.started_at + timedelta(seconds=4),
            user_text="What is the capital of France?",
            reply_text="The capital of France is Paris.",
            spoken_text="The capital of France is Paris.",
            timings={"endpoint_ms": 320.0, "stt_ms": 180.5, "llm_first_token_ms": 410.0,
                     "tts_first_audio_ms": 520.0, "first_audio_sent_ms": 540.0},
            user_audio_start_ms=200, user_audio_end_ms=1800,
            agent_audio_start_ms=2300, agent_audio_end_ms=4000,
        ),
        TurnRecord(
            id=new_id(), call_id=call.id, index=1,
            started_at=call.started_at + timedelta(seconds=5),
            ended_at=call.started_at + timedelta(seconds=9),
            user_text="Tell me a long story about dragons.",
            reply_text="Once upon a time a dragon lived in a cave above the sea.",
            spoken_text="Once upon a time",
            interrupted=True,
            timings={"endpoint_ms": 300.0, "first_audio_sent_ms": 610.0},
            user_audio_start_ms=5000, user_audio_end_ms=6500,
            agent_audio_start_ms=7000, agent_audio_end_ms=8200,
        ),
    ]
    data_dir = Path(server.state.settings.storage.data_dir)
    rel = f"recordings/{call.id}"
    write_opus(data_dir / rel / "user.ogg", 10.0, 220.0)
    write_opus(data_dir / rel / "agent.ogg", 10.0, 440.0)

    async def seed() -> None:
        await store.create_call(old)
        await store.create_call(call)
        for turn in turns:
            await store.save_turn(turn)
        await store.set_call_recording(call.id, f"{rel}/user.ogg", f"{rel}/agent.ogg", 1)

    server.loop.run(seed())
    return call, turns, old


def table_ids(driver: Any) -> list[str]:
    # One script, so a list being re-rendered is never read half old, half new.
    ids: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('#calls-body tr')].map((tr) => tr.dataset.id)")
    return ids


def test_conversation_browser(start_server: StartServer) -> None:
    server = start_server()
    call, turns, old = seed_calls(server)

    with chromium(None, window_size=(1280, 1000)) as driver:
        driver.get(f"{server.url}/admin/calls")
        wait_until(lambda: table_ids(driver) == [call.id, old.id], 10,
                   what="both calls, newest first")
        row = css(driver, f'#calls-body tr[data-id="{call.id}"]')
        assert "hangup" in row.text and "yes" in row.text

        # Open the call: its turns, the interrupted one marked, timings per stage.
        row.find_element("css selector", "a").click()
        wait_until(lambda: len(css_all(driver, "#turn-list .turn-card")) == 2, 10,
                   what="the call's turns")
        assert driver.current_url.endswith(f"#call={call.id}")
        first, second = css_all(driver, "#turn-list .turn-card")
        assert turns[0].user_text in first.text and turns[0].reply_text in first.text
        assert not first.find_elements("css selector", ".badge-interrupted")
        assert second.find_element("css selector", ".badge-interrupted").text == "interrupted"
        assert "Once upon a time" in second.find_element("css selector", ".bubble.agent").text
        stages = [tr.get_attribute("data-stage")
                  for tr in first.find_elements("css selector", "table.timings tr")]
        assert stages == ["endpoint_ms", "stt_ms", "llm_first_token_ms", "tts_first_audio_ms",
                          "first_audio_sent_ms"]
        assert "540 ms" in first.find_element("css selector", "tr.v2v").text

        # The recording, both tracks, and one turn's audio cut from it.
        click(driver, "#rec-user")
        rec = wait_audio(driver, "#rec-audio")
        assert rec["src"].startswith("blob:")
        click(driver, "#rec-agent")
        wait_until(lambda: (s := driver.execute_script(_AUDIO_READY_JS, "#rec-audio"))
                   and s["src"] != rec["src"] and s, 20, what="the agent track")
        first.find_element("css selector", "button[data-track=agent]").click()
        segment = wait_audio(driver, f"#turn-{turns[0].id} audio")
        expected = (turns[0].agent_audio_end_ms or 0) - (turns[0].agent_audio_start_ms or 0)
        # The server cuts the turn with a short margin either side.
        assert expected - 50 <= segment["duration"] * 1000 <= expected + 500, segment

        # Search: matching turns; a click opens the call at that turn.
        click(driver, "#call-close")
        wait_until(lambda: not visible(driver, "#call-view"), 5, what="the view to close")
        css(driver, "#search-input").send_keys("dragons")
        click(driver, "#search-form button[type=submit]")
        results = wait_until(lambda: css_all(driver, "#result-list li"), 10,
                             what="search results")
        assert len(results) == 1 and results[0].get_attribute("data-turn-id") == turns[1].id
        results[0].find_element("css selector", "a").click()
        target = wait_visible(driver, f"#turn-{turns[1].id}.highlight")
        assert "dragons" in target.text

        # Date filter: from today on, only the new call.
        today = datetime.now().astimezone().date().isoformat()
        set_value(driver, "#filter-since", today)
        click(driver, "#filter-form button[type=submit]")
        wait_until(lambda: table_ids(driver) == [call.id], 10, what="the filtered list")
        set_value(driver, "#filter-since", "2020-01-01")
        set_value(driver, "#filter-until", "2020-01-31")
        click(driver, "#filter-form button[type=submit]")
        wait_until(lambda: table_ids(driver) == [old.id], 10, what="the 2020 call")
        click(driver, "#filter-clear")
        wait_until(lambda: table_ids(driver) == [call.id, old.id], 10, what="all calls again")

        # Delete the open call through the confirm dialog.
        click(driver, "#call-delete")
        click(driver, "#confirm-ok")
        wait_until(lambda: table_ids(driver) == [old.id], 10, what="the call to go")
        assert not visible(driver, "#call-view")

    assert api(server, "GET", f"/admin/api/calls/{call.id}")[0] == 404
    data_dir = Path(server.state.settings.storage.data_dir)
    assert not (data_dir / "recordings" / call.id / "user.ogg").exists()


# --------------------------------------------------------- call page picker


def test_call_page_voice_picker(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server()
    silence = write_wav(tmp_path / "silence.wav", np.zeros(48_000 * 8, dtype=np.float32))
    with chromium(silence) as driver:
        # No profiles: no picker.
        driver.get(f"{server.url}/?processing=0")
        wait_until(lambda: "ready" in css(driver, "#server-text").text.lower(), 10,
                   what="the health check")
        assert not visible(driver, "#voice-picker")

        wav, _ = speech_wav(tmp_path / "reference.wav")
        profile = upload_profile(server, wav, "Pangram voice")
        status, voices = api(server, "GET", "/api/voices")
        assert status == 200, voices
        item = next(v for v in voices["items"] if v["id"] == profile["id"])
        assert item["active"] is True and "piper" in item["drivable_by"]

        driver.get(f"{server.url}/?processing=0")
        wait_visible(driver, "#voice-picker")
        option = css(driver, f'#voice-select option[value="{profile["id"]}"]')
        assert "Pangram voice" in option.text and "piper" in option.text
        assert option.is_enabled()
        assert css(driver, "#voice-select").get_attribute("value") == ""  # default first

        from selenium.webdriver.support.ui import Select

        Select(css(driver, "#voice-select")).select_by_value(profile["id"])
        info = css(driver, "#voice-info").text
        assert "piper" in info and "can speak it" in info, info
        assert driver.execute_script(
            "return localStorage.getItem('avatarVoice')") == profile["id"]

        # The choice survives a reload and goes out in the offer.
        driver.get(f"{server.url}/?processing=0")
        wait_visible(driver, "#voice-picker")
        assert css(driver, "#voice-select").get_attribute("value") == profile["id"]
        driver.execute_script(
            """
            window.__offers = [];
            const real = window.fetch;
            window.fetch = (url, opts) => {
              if (String(url).endsWith('/offer')) window.__offers.push(JSON.parse(opts.body));
              return real(url, opts);
            };
            """
        )
        click(driver, "#call-button")
        wait_until(lambda: driver.execute_script(
            "return window.avatarCall.connectionState") == "connected", 20,
            what="the call to connect")
        assert css(driver, "#voice-select").get_attribute("disabled") is not None
        offers = driver.execute_script("return window.__offers")
        assert [o["voice"] for o in offers] == [profile["id"]]
        click(driver, "#call-button")
        wait_until(lambda: driver.execute_script(
            "return window.avatarCall.connectionState") == "closed", 5, what="hang up")

    # The server took the profile for that call.
    async def settle() -> None:
        await asyncio.gather(*server.state.background, return_exceptions=True)

    server.loop.run(settle())
    status, calls = api(server, "GET", "/admin/api/calls")
    assert status == 200 and calls["items"], calls
    assert calls["items"][0]["voice_profile_id"] == profile["id"]


# ------------------------------------------------------ narrow screen, keyboard

_OVERFLOW_JS = "return document.documentElement.scrollWidth - document.documentElement.clientWidth"


def test_admin_pages_fit_a_phone_and_work_by_keyboard(
    start_server: StartServer, tmp_path: Path
) -> None:
    from selenium.webdriver.common.keys import Keys

    server = start_server()
    call, turns, _ = seed_calls(server)
    wav, _ = speech_wav(tmp_path / "reference.wav")
    upload_profile(server, wav, "A rather long profile name that has to wrap on a phone")

    with chromium(None, window_size=(360, 800)) as driver:
        driver.get(f"{server.url}/admin/")
        wait_visible(driver, ".profile-card")
        assert driver.execute_script(_OVERFLOW_JS) <= 0, "the profile page scrolls sideways"

        driver.get(f"{server.url}/admin/calls")
        wait_until(lambda: len(table_ids(driver)) == 2, 10, what="the calls")
        assert driver.execute_script(_OVERFLOW_JS) <= 0, "the call list scrolls sideways"
        # Keyboard only: focus the newest call's link, Enter opens it, Escape closes it.
        css(driver, f'#calls-body tr[data-id="{call.id}"] a').send_keys(Keys.ENTER)
        wait_until(lambda: len(css_all(driver, "#turn-list .turn-card")) == len(turns), 10,
                   what="the call's turns")
        assert driver.switch_to.active_element.get_attribute("id") == "call-title"
        assert driver.execute_script(_OVERFLOW_JS) <= 0, "the call view scrolls sideways"
        driver.switch_to.active_element.send_keys(Keys.ESCAPE)
        wait_until(lambda: not visible(driver, "#call-view"), 5, what="Escape to close the call")
