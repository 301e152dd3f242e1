"""Smart Turn v3.2 from the pipecat-ai wheel, on real speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avatar_rtc.backends.base import BackendError
from avatar_rtc.backends.turn_smart import SmartTurn, packaged_model_path
from tests.speech import speak

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def model() -> SmartTurn:
    return SmartTurn()  # its daemon thread ends with the tests


def test_the_weights_come_from_the_installed_wheel() -> None:
    path = packaged_model_path()
    assert path.name == "smart-turn-v3.2-cpu.onnx" and path.stat().st_size > 5_000_000


async def test_a_finished_question_sounds_finished_and_a_filler_does_not(
        model: SmartTurn) -> None:
    finished = await model.probability(speak("What is the capital of France?", 16000,
                                             steady=True), 16000)
    going_on = await model.probability(speak("I was thinking about, um", 16000,
                                             steady=True), 16000)
    trailing = await model.probability(speak("and then we went to the", 16000,
                                             steady=True), 16000)
    assert finished > 0.5 > max(going_on, trailing), (finished, going_on, trailing)


async def test_long_and_empty_audio_are_heard(model: SmartTurn) -> None:
    long = np.tile(speak("Tell me a joke.", 16000, steady=True), 6)  # > 8 s: the tail
    assert 0.0 <= await model.probability(long, 16000) <= 1.0
    assert 0.0 <= await model.probability(np.zeros(0, np.int16), 16000) <= 1.0


async def test_a_wrong_rate_or_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    model = SmartTurn()
    with pytest.raises(BackendError, match="16 kHz"):
        await model.probability(np.zeros(100, np.int16), 8000)
    await model.aclose()
    with pytest.raises(BackendError, match="cannot load"):
        SmartTurn(tmp_path / "missing.onnx")
