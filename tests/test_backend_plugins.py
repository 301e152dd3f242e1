"""Backends as plugins: a separately installed package adds an STT, an LLM and a TTS
backend through entry points, and the settings pick them by name."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from avatar_rtc.backends import factories
from avatar_rtc.backends.base import BackendError, ChatMessage
from avatar_rtc.backends.cpu_turns import CpuTurns
from avatar_rtc.backends.factories import Shared
from avatar_rtc.backends.model_thread import Policy
from avatar_rtc.backends.registry import factory, load_backends
from avatar_rtc.plugins import BUILTIN, backend_names
from avatar_rtc.settings import Settings, SettingsError
from tests.fakes import silence, tone


@pytest.fixture
def plugin(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(plugin_site))  # importlib.metadata finds it there
    yield
    sys.modules.pop("avatar_echo_backends", None)


def _settings(tmp_path: Path, stt: str = "echo-stt", llm: str = "echo-llm",
              tts: str = "tone-tts") -> Settings:
    settings = Settings()
    settings.storage.data_dir = str(tmp_path)
    settings.stt.backend, settings.llm.backend, settings.tts.backend = stt, llm, tts
    return settings


def test_the_built_in_factories_are_the_built_in_names() -> None:
    assert tuple(factories.STT) == BUILTIN["stt"]
    assert tuple(factories.LLM) == BUILTIN["llm"]
    assert tuple(factories.TTS) == BUILTIN["tts"]


def test_without_the_plugin_its_names_are_refused(tmp_path: Path) -> None:
    assert "tone-tts" not in backend_names("tts")
    with pytest.raises(SettingsError, match=r"tts\.backend: one of piper, f5-tts, cosyvoice$"):
        _settings(tmp_path, stt="faster-whisper", llm="llama-cpp").validate()


@pytest.mark.usefixtures("plugin")
async def test_an_installed_plugin_is_built_by_its_names_in_the_settings(
        tmp_path: Path) -> None:
    assert backend_names("stt") == ("faster-whisper", "echo-stt")
    assert backend_names("llm") == ("llama-cpp", "openai", "echo-llm")
    assert backend_names("tts") == ("piper", "f5-tts", "cosyvoice", "tone-tts")
    backends = await load_backends(_settings(tmp_path).validate())
    try:
        assert (backends.stt.name, backends.llm.name, backends.tts.name) == (
            "echo-stt", "echo-llm", "tone-tts")
        assert backends.describe()["tts/tone-tts"] == "ready"
        heard = await backends.stt.transcribe(silence(1.0), 16000)
        assert heard.text == "What is the capital of France?"
        reply = [d async for d in backends.llm.stream([ChatMessage("user", heard.text)])]
        assert "".join(reply).strip() == "You asked: What is the capital of France?"
        audio = [p async for p in backends.tts.synthesize("Paris.", backends.tts.default_voice())]
        assert sum(len(p) for p in audio) == int(len("Paris.") * 0.02 * 16000)
    finally:
        await backends.aclose()


@pytest.mark.usefixtures("plugin")
async def test_a_plugin_backend_serves_a_conversation(tmp_path: Path) -> None:
    from tests.conversation_helpers import CONFIG, harness

    loaded = await load_backends(_settings(tmp_path).validate())
    try:
        async with harness(CONFIG, stt=loaded.stt, llm=loaded.llm, tts=loaded.tts) as h:
            await h.say(np.concatenate([tone(0.5), silence(0.5)]))
            await h.wait_for("turn_end")
            exchange = h.conversation.history.exchanges[0]
        assert exchange.agent == "You asked: What is the capital of France?"
        assert h.sent_frames and max(int(np.abs(f).max()) for f in h.sent_frames) > 1000
    finally:
        await loaded.aclose()


def test_an_unknown_backend_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"unknown tts backend 'nope'; have piper, "):
        factory("tts", "nope", factories.TTS)


def test_cloning_backends_on_one_device_share_one_model_thread() -> None:
    shared = Shared(cpu=CpuTurns())
    try:
        assert shared.device_thread("cuda") is shared.device_thread("cuda")
        assert shared.device_thread("cuda:1") is not shared.device_thread("cuda")
        # The scheduler of the embedded models: urgent first; on the CPU, in turns
        # with them; a GPU's thread takes no CPU turns.
        assert all(shared.device_thread(d).policy is Policy.URGENT_FIRST
                   for d in ("cuda", "cpu"))
        assert shared.device_thread("cpu")._cpu is shared.cpu
        assert shared.device_thread("cuda")._cpu is None
    finally:
        for device in ("cuda", "cuda:1", "cpu"):
            shared.device_thread(device).close()

