"""The HTTP surface and call lifecycle, with real aiortc peers and fast fake models."""

from __future__ import annotations

import asyncio
import gc
import threading
from pathlib import Path

import numpy as np
import pytest
from aiortc import RTCPeerConnection

from avatar_rtc import recordings
from avatar_rtc.app import create_app
from avatar_rtc.caller import Caller, CallerError
from avatar_rtc.state import STATE
from tests.fake_server import ClientFactory, base_url, settings_for, start
from tests.fakes import LONG_REPLY, FakeLlm, FakeTts, tone

pytestmark = pytest.mark.timeout(120)


async def real_offer_sdp() -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection()
    pc.addTransceiver("audio")
    pc.createDataChannel("events")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


async def test_page_and_health(aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    client, _ = await start(aiohttp_client, settings_for(tmp_path))
    page = await client.get("/")
    assert page.status == 200 and "<html" in (await page.text()).lower()
    health = await client.get("/health")
    body = await health.json()
    assert health.status == 200 and body["ready"] is True
    assert body["backends"] == {"vad": "energy", "stt": "fake-stt", "llm": "fake-llm",
                                "tts": "fake-tts"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"type": "answer", "sdp": "v=0"}', '"type" must be "offer"'),
        (b'{"type": "offer"}', '"sdp" must be a non-empty string'),
        (b'{"type": "offer", "sdp": "hello"}', "v=0"),
        (b'{"type": "offer", "sdp": "v=0\\r\\nm=video 9 UDP/TLS/RTP/SAVPF 96\\r\\n"}',
         "no audio"),
        (b'{"type": "offer", "sdp": "v=0\\r\\nm=audio 9 UDP 0\\r\\na=sendrecv\\r\\n"}',
         "ICE credentials"),
        (b'{"type": "offer", "sdp": "v=0\\r\\nm=audio 9 UDP 0\\r\\n"}', "no direction"),
        (b'{"type": "offer", "sdp": "v=0\\r\\nm=audio 9\\r\\n"}', "media line is malformed"),
        (b'\xff\xfe\x00garbage', "not valid JSON"),
    ],
)
async def test_malformed_offers_get_a_400_with_a_reason(
    aiohttp_client: ClientFactory, tmp_path: Path, body: bytes, message: str
) -> None:
    client, app = await start(aiohttp_client, settings_for(tmp_path))
    response = await client.post("/offer", data=body,
                                 headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert message in (await response.json())["error"]
    assert len(app[STATE].registry) == 0


async def test_sdp_that_passes_checks_but_aiortc_rejects_is_a_400(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    client, app = await start(aiohttp_client, settings_for(tmp_path))
    pc, sdp = await real_offer_sdp()
    broken = sdp.replace("a=setup:actpass", "a=setup:bogus")
    response = await client.post("/offer", json={"type": "offer", "sdp": broken})
    await pc.close()
    assert response.status == 400
    assert "SDP" in (await response.json())["error"]
    await asyncio.sleep(0.1)
    assert len(app[STATE].registry) == 0


async def test_a_call_that_fails_to_set_up_is_a_500_and_frees_its_slot(
    aiohttp_client: ClientFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, app = await start(aiohttp_client, settings_for(tmp_path, server__max_calls=1))

    def no_recorder(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(recordings, "new_recorder", no_recorder)
        pc, sdp = await real_offer_sdp()
        response = await client.post("/offer", json={"type": "offer", "sdp": sdp})
        await pc.close()
    assert response.status == 500
    assert (await response.json())["error"] == (
        "call setup failed: OSError: [Errno 28] No space left on device")
    assert len(app[STATE].registry) == 0
    async with Caller(base_url(client)) as caller:  # the only slot is free again
        assert caller.session_id is not None


async def test_oversized_body_is_refused_with_413(aiohttp_client: ClientFactory,
                                                  tmp_path: Path) -> None:
    client, _ = await start(aiohttp_client, settings_for(tmp_path))
    response = await client.post("/offer", data=b"x" * (200 * 1024))
    assert response.status == 413
    assert "error" in await response.json()


async def test_unknown_voice_is_a_400(aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    client, _ = await start(aiohttp_client, settings_for(tmp_path))
    pc, sdp = await real_offer_sdp()
    response = await client.post("/offer", json={"type": "offer", "sdp": sdp, "voice": "nope"})
    await pc.close()
    assert response.status == 400 and "unknown voice" in (await response.json())["error"]


async def test_server_full_answers_503_with_retry_after(aiohttp_client: ClientFactory,
                                                        tmp_path: Path) -> None:
    client, _ = await start(aiohttp_client, settings_for(tmp_path, server__max_calls=1))
    async with Caller(base_url(client)):
        pc, sdp = await real_offer_sdp()
        response = await client.post("/offer", json={"type": "offer", "sdp": sdp})
        await pc.close()
        assert response.status == 503
        assert int(response.headers["Retry-After"]) > 0
        assert "full" in (await response.json())["error"]
        with pytest.raises(CallerError, match="503"):
            await Caller(base_url(client)).connect()


async def test_failed_model_load_is_reported_by_health_and_offer(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path)
    settings.stt.model = str(tmp_path / "no-such-model-folder")
    settings.llm.model_path = str(tmp_path / "missing.gguf")
    app = create_app(settings)  # real loader, which must fail clearly
    client = await aiohttp_client(app)
    for _ in range(100):
        if app[STATE].load_error:
            break
        await asyncio.sleep(0.05)
    health = await client.get("/health")
    assert health.status == 503
    assert "stt" in (await health.json())["error"]
    pc, sdp = await real_offer_sdp()
    response = await client.post("/offer", json={"type": "offer", "sdp": sdp})
    await pc.close()
    assert response.status == 503 and "failed to load" in (await response.json())["error"]


async def test_a_peer_that_never_connects_is_closed_after_the_connect_timeout(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    client, app = await start(aiohttp_client,
                              settings_for(tmp_path, server__connect_timeout_s=1.0))
    pc, sdp = await real_offer_sdp()
    response = await client.post("/offer", json={"type": "offer", "sdp": sdp})
    assert response.status == 200
    answer = await response.json()
    assert set(answer) == {"sdp", "type", "session_id"} and answer["type"] == "answer"
    await pc.close()  # never applies the answer: no ICE, no DTLS
    assert len(app[STATE].registry) == 1
    await asyncio.sleep(2.0)
    assert len(app[STATE].registry) == 0
    store = app[STATE].store
    assert store is not None
    await asyncio.gather(*app[STATE].background)
    call = await store.get_call(answer["session_id"])
    assert call is not None and call.end_reason == "connect_timeout"


@pytest.mark.parametrize("generated", [False, True], ids=["mid-generation", "all-queued"])
async def test_a_peer_vanishing_mid_reply_stores_the_turn_cut_off(
    aiohttp_client: ClientFactory, tmp_path: Path, generated: bool
) -> None:
    # all-queued: the whole reply is synthesized and waiting in the outbound queue
    # when the peer goes (no just-in-time pacing), so only the playout knows it was
    # never heard. mid-generation: paced, most of the reply is not written yet.
    llm = FakeLlm(reply=LONG_REPLY, token_delay_s=0.0005 if generated else 0.005)
    settings = settings_for(tmp_path, llm__max_sentences=0)  # all 20 sentences
    if generated:
        settings.tts.speak_ahead_s = 0.0
    client, app = await start(aiohttp_client, settings, llm=llm,
                              tts=FakeTts(seconds_per_char=0.05))
    caller = Caller(base_url(client))
    await caller.connect()
    said = caller.say(np.concatenate([tone(0.5, 48000), np.zeros(24000, np.int16)]), 48000)
    await said.done.wait()
    await caller.wait_event("agent_text", timeout_s=10)
    await asyncio.sleep(0.3)
    if generated:  # the whole reply is generated; its 30 s of audio are still queued
        for _ in range(100):
            if llm.completed:
                break
            await asyncio.sleep(0.05)
        assert llm.completed == 1
    await caller.pc.close()  # gone mid-sentence
    for _ in range(100):
        if len(app[STATE].registry) == 0:
            break
        await asyncio.sleep(0.05)
    assert len(app[STATE].registry) == 0
    await asyncio.gather(*app[STATE].background)
    store = app[STATE].store
    assert store is not None and caller.session_id is not None
    turns = await store.turns(caller.session_id)
    assert len(turns) == 1 and turns[0].cut_off
    assert 0 < len(turns[0].spoken_text) < len(turns[0].reply_text.strip())
    call = await store.get_call(caller.session_id)
    assert call is not None and call.ended_at is not None
    await caller.close()


async def test_twenty_calls_leave_no_task_or_thread_behind(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    client, app = await start(aiohttp_client, settings_for(tmp_path),
                              llm=FakeLlm(reply="Okay."))

    async def one_call() -> None:
        async with Caller(base_url(client)) as caller:
            said = caller.say(np.concatenate([tone(0.3, 48000), np.zeros(16000, np.int16)]),
                              48000)
            await said.done.wait()
            await caller.wait_event("turn_end", timeout_s=10)

    await one_call()  # warm: first-use threads (model workers, aioice) exist after this
    await asyncio.sleep(0.5)
    gc.collect()
    tasks_before = len(asyncio.all_tasks())
    threads_before = {t.name for t in threading.enumerate()}
    for _ in range(20):
        await one_call()
    for _ in range(100):
        if len(app[STATE].registry) == 0 and not app[STATE].calls:
            break
        await asyncio.sleep(0.05)
    assert len(app[STATE].registry) == 0 and not app[STATE].calls
    # The last calls' recordings may still be saving (a loaded runner took over 0.5 s);
    # a leaked task never ends.
    for _ in range(100):
        gc.collect()
        leftover = [t for t in asyncio.all_tasks() if not t.done()]
        if len(leftover) <= tasks_before:
            break
        await asyncio.sleep(0.1)
    assert len(leftover) <= tasks_before, [t.get_name() for t in leftover]
    new_threads = {t.name for t in threading.enumerate()} - threads_before
    # The loop's default executor (aiohttp's client resolver) is a bounded pool that
    # grows on demand; anything else new is a leak.
    assert not {name for name in new_threads if not name.startswith("asyncio_")}
    store = app[STATE].store
    assert store is not None
    calls, total = await store.list_calls(100)
    assert total == 21 and all(c.ended_at is not None for c in calls)
