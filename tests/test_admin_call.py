"""Real calls (an aiortc client against the real server and models) seen through the
admin API: a voice profile chosen in the offer drives the agent's voice, and a finished
call's turns and recording come back from the history routes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from avatar_rtc.backends.base import Pcm, TextToSpeech, Voice
from avatar_rtc.backends.priority import Priority
from avatar_rtc.backends.registry import Backends
from avatar_rtc.caller import Caller
from avatar_rtc.storage import CallRecord, Store
from media.resample import resample_pcm
from tests.admin_helpers import (
    API,
    REFERENCE_TEXT,
    ClientFactory,
    admin_server,
    create_profile,
    decode_to,
    encode,
    read_wav,
    reference_speech,
    rms,
)
from tests.conftest import LiveServer
from tests.speech import speak, with_silence, word_error_rate
from tests.test_server import base_url, real_offer_sdp

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

QUESTION = "What is the capital of France?"


class SpyTts:
    """The real Piper, noting the Voice of every synthesis the conversation asks for."""

    def __init__(self, inner: TextToSpeech) -> None:
        self.inner = inner
        self.name = inner.name
        self.sample_rate = inner.sample_rate
        self.used: list[Voice] = []

    def synthesize(self, text: str, voice: Voice, *,
                   priority: Priority | None = None) -> AsyncIterator[Pcm]:
        self.used.append(voice)
        return self.inner.synthesize(text, voice, priority=priority)

    def voices(self) -> list[str]:
        return self.inner.voices()

    def default_voice(self) -> Voice:
        return self.inner.default_voice()

    async def warmup(self) -> None:
        pass

    async def aclose(self) -> None:
        pass  # the real Piper is shared by the whole session


async def wait_for_call(store: Store, call_id: str, ready: Any,
                        timeout_s: float = 20.0) -> CallRecord:
    deadline = time.monotonic() + timeout_s
    while True:
        call = await store.get_call(call_id)
        if call is not None and ready(call):
            return call
        assert time.monotonic() < deadline, f"call {call_id} never got there: {call}"
        await asyncio.sleep(0.2)


def data_dir_of(server: LiveServer) -> Path:
    return Path(server.state.settings.storage.data_dir).resolve()


async def ask(caller: Caller) -> dict[str, Any]:
    said = caller.say(with_silence(speak(QUESTION), 48000, 0.5, 0.0), 48000)
    await said.done.wait()
    end: dict[str, Any] = await caller.wait_event("turn_end", timeout_s=60)
    return end


async def test_a_profile_chosen_in_the_offer_drives_the_call(
    aiohttp_client: ClientFactory, real_backends: Backends, tmp_path: Path
) -> None:
    spy = SpyTts(real_backends.tts)
    backends = Backends(vad=real_backends.vad, stt=real_backends.stt, llm=real_backends.llm,
                        tts=spy)  # type: ignore[arg-type]
    async with admin_server(aiohttp_client, backends, tmp_path / "data") as admin:
        clip = encode(reference_speech(24000), 24000, "webm")
        profile = await create_profile(admin.client, clip, "me.webm", name="Fast Joe",
                                       voice="joe-medium", speed="1.5",
                                       reference_text=REFERENCE_TEXT)
        voices = await (await admin.client.get("/api/voices")).json()
        assert [v["id"] for v in voices["items"]] == [profile["id"]]
        assert voices["items"][0]["active"] is True

        # Unknown voices are refused before a call starts.
        for voice in ("00000000-0000-4000-8000-000000000000", "not-a-voice"):
            pc, sdp = await real_offer_sdp()
            response = await admin.client.post("/offer", json={"type": "offer", "sdp": sdp,
                                                                "voice": voice})
            await pc.close()
            assert response.status == 400, voice
            assert (await response.json())["error"] == f"unknown voice {voice!r}"

        async with Caller(base_url(admin.client), voice=profile["id"]) as caller:
            end = await ask(caller)
            assert caller.session_id is not None
            call_id = caller.session_id
            live = admin.state.calls[call_id]
            assert live.conversation.voice == spy.used[0]
        assert end["spoken_text"].strip()
        assert spy.used, "the agent never spoke"
        assert {(v.name, v.speed, v.profile_id) for v in spy.used} == {
            ("joe-medium", 1.5, profile["id"])}
        reference = spy.used[0].reference_audio
        assert reference == str(admin.data_dir / "profiles" / profile["id"] / "reference.wav")
        assert spy.used[0].reference_text == REFERENCE_TEXT

        assert admin.state.store is not None
        stored = await wait_for_call(admin.state.store, call_id, lambda c: True)
        assert stored.voice_profile_id == profile["id"]
        summary = await (await admin.client.get(f"{API}/calls/{call_id}")).json()
        assert summary["voice_profile_id"] == profile["id"]

        # An installed Piper voice name still works, and records no profile.
        spy.used.clear()
        async with Caller(base_url(admin.client), voice="joe-medium") as caller:
            await ask(caller)
            plain_id = caller.session_id
        assert spy.used and all(v.profile_id is None and v.speed == 1.0 for v in spy.used)
        assert plain_id is not None
        plain = await wait_for_call(admin.state.store, plain_id, lambda c: True)
        assert plain.voice_profile_id is None


async def test_a_real_call_shows_up_in_history_with_its_recording(
    live_server: LiveServer, real_backends: Backends
) -> None:
    async with Caller(live_server.url) as caller:
        end = await ask(caller)
        call_id = caller.session_id
    assert call_id is not None and end["spoken_text"].strip()
    store = live_server.state.store
    assert store is not None
    recorded = live_server.state.settings.recording.enabled
    call = await wait_for_call(store, call_id, lambda c: c.ended_at is not None
                               and (c.user_audio_path is not None or not recorded))

    async with aiohttp.ClientSession(live_server.url) as http:  # loopback-only mode: no token
        async with http.get(f"{API}/calls") as response:
            page = await response.json()
        assert response.status == 200 and page["total"] == 1
        summary = page["items"][0]
        assert summary["id"] == call_id and summary["turns"] == 1
        assert summary["ended_at"] is not None
        async with http.get(f"{API}/calls/{call_id}") as response:
            detail = await response.json()
        turn = detail["turns"][0]
        assert word_error_rate(QUESTION, turn["user_text"]) <= 0.3, turn
        assert turn["spoken_text"] == end["spoken_text"]
        assert "stt_ms" in turn["timings"]
        async with http.get(f"{API}/search", params={"q": turn["user_text"]}) as response:
            found = await response.json()
        assert [t["id"] for t in found["items"]] == [turn["id"]]

        # The recording (written by the call's recorder) holds what the user said.
        data_dir = data_dir_of(live_server)
        assert call.user_audio_path == f"recordings/{call_id}/user.ogg"
        assert (data_dir / call.user_audio_path).is_file()
        assert summary["has_recording"] is True
        async with http.get(f"{API}/calls/{call_id}/recording") as response:
            assert response.status == 200 and response.content_type == "audio/ogg"
            user = decode_to(await response.read(), 16000)
        heard = await real_backends.stt.transcribe(user[: 28 * 16000], 16000)
        assert word_error_rate(QUESTION, heard.text) <= 0.3, heard.text
        async with http.get(f"{API}/calls/{call_id}/recording?track=agent") as response:
            assert response.status == 200
            agent = decode_to(await response.read(), 16000)
        assert rms(agent) > 50  # the agent's answer is in its track

        # The turn's own segment, cut at its offsets, holds the question too.
        assert turn["user_audio_start_ms"] is not None
        async with http.get(turn["audio_url"]) as response:
            assert response.status == 200 and response.content_type == "audio/wav"
            segment, rate, _ = read_wav(await response.read())
        assert len(segment) / rate < len(user) / 16000
        heard = await real_backends.stt.transcribe(resample_pcm(segment, rate, 16000), 16000)
        assert word_error_rate(QUESTION, heard.text) <= 0.3, heard.text
        # And the agent's segment, its span plus the margins, holds speech. (Its words are
        # SmolLM's and may be odd, e.g. "L'Alma: Paris", so they are not compared.)
        assert turn["agent_audio_start_ms"] is not None
        async with http.get(turn["audio_url"], params={"track": "agent"}) as response:
            assert response.status == 200
            segment, rate, _ = read_wav(await response.read())
        # The call hung up right after the answer: the file may end inside the margin.
        span_s = (turn["agent_audio_end_ms"] - turn["agent_audio_start_ms"]) / 1000
        assert span_s - 0.02 <= len(segment) / rate <= span_s + 0.3 + 0.02
        assert rms(segment) > 300
        heard = await real_backends.stt.transcribe(resample_pcm(segment, rate, 16000), 16000)
        assert heard.text.strip(), "no speech in the agent's segment"

        async with http.delete(f"{API}/calls/{call_id}") as response:
            assert response.status == 204
        assert not (data_dir / "recordings" / call_id).exists()
