"""tools/download-models: what it asks the hub for, where it puts it, what it prints."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from avatar_rtc.backends import factories
from avatar_rtc.backends.base import BackendError
from avatar_rtc.backends.factories import Shared
from avatar_rtc.models_download import MODELS, download
from avatar_rtc.settings import Settings


def test_downloads_each_repo_into_its_folder_and_prints_settings(tmp_path: Path) -> None:
    calls: list[dict[str, Any]] = []
    lines = download(["f5-tts", "whisper-large-v3"], tmp_path,
                     downloader=lambda **kw: calls.append(kw), out=io.StringIO())
    assert calls == [
        {"repo_id": "SWivid/F5-TTS", "local_dir": str(tmp_path / "F5-TTS"),
         "allow_patterns": ["F5TTS_v1_Base/model_1250000.safetensors",
                            "F5TTS_v1_Base/vocab.txt"]},
        {"repo_id": "charactr/vocos-mel-24khz", "local_dir": str(tmp_path / "vocos-mel-24khz"),
         "allow_patterns": ["config.yaml", "pytorch_model.bin"]},
        {"repo_id": "Systran/faster-whisper-large-v3",
         "local_dir": str(tmp_path / "faster-whisper-large-v3"), "allow_patterns": None},
    ]
    root = tmp_path.resolve()
    assert lines == [
        f"AVATAR_TTS_F5_CKPT={root}/F5-TTS/F5TTS_v1_Base/model_1250000.safetensors",
        f"AVATAR_TTS_F5_VOCODER={root}/vocos-mel-24khz",
        f"AVATAR_STT_MODEL={root}/faster-whisper-large-v3",
    ]
    with pytest.raises(ValueError, match="unknown model"):
        download(["nope"], tmp_path, downloader=lambda **kw: None)


def test_the_default_settings_look_where_it_downloads(tmp_path: Path) -> None:
    """With no paths set, the backends look in <data_dir>/models, so a copied folder
    works as is; the error names the exact file it looked for."""
    settings = Settings()
    settings.storage.data_dir = str(tmp_path)
    settings.tts.device = "cpu"
    for name, expected in (("f5-tts", "models/F5-TTS/F5TTS_v1_Base/model_1250000.safetensors"),
                           ("cosyvoice", "models/CosyVoice2-0.5B")):
        with pytest.raises(BackendError) as caught:
            factories.TTS[name](settings, Shared())
        assert f"weights not found: {tmp_path / expected}" in str(caught.value)


def test_command_line_lists_models() -> None:
    result = subprocess.run([sys.executable, "-m", "avatar_rtc.models_download", "--list"],
                            capture_output=True, text=True, timeout=60, check=True)
    assert all(name in result.stdout for name in MODELS)
