"""Downloads the weights of the GPU backends, on a machine with internet.

    tools/download-models f5-tts whisper-large-v3          # into data/models
    tools/download-models --dest /srv/models cosyvoice     # then copy it anywhere

Each model lands in its own folder under the destination, where the settings look by
default (`<storage.data_dir>/models`); for an air-gapped machine, copy the folders
over and keep the default or point the printed settings at them. The server itself
never downloads: it loads local folders only.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avatar_rtc.settings import ENV_PREFIX


@dataclass(frozen=True)
class Repo:
    repo_id: str
    folder: str  # under the destination
    allow: tuple[str, ...] = ()  # file patterns; empty: the whole repository


@dataclass(frozen=True)
class ModelSpec:
    name: str
    what: str
    repos: tuple[Repo, ...]
    # Settings that point at the downloaded files: (key, path under the destination).
    settings: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = field(default=())


F5_CKPT = "F5-TTS/F5TTS_v1_Base/model_1250000.safetensors"
VOCOS = "vocos-mel-24khz"
COSYVOICE = "CosyVoice2-0.5B"

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "f5-tts", "F5-TTS v1 Base and its Vocos vocoder (fast cloning TTS)",
            (Repo("SWivid/F5-TTS", "F5-TTS", ("F5TTS_v1_Base/model_1250000.safetensors",
                                               "F5TTS_v1_Base/vocab.txt")),
             Repo("charactr/vocos-mel-24khz", VOCOS, ("config.yaml", "pytorch_model.bin"))),
            (("tts.f5_ckpt", F5_CKPT), ("tts.f5_vocoder", VOCOS)),
        ),
        ModelSpec(
            "cosyvoice", "CosyVoice2 0.5B (high-quality cloning TTS)",
            (Repo("FunAudioLLM/CosyVoice2-0.5B", COSYVOICE),),
            (("tts.cosyvoice_model", COSYVOICE),),
            ("CosyVoice's code: tools/setup --gpu installs the cosyvoice-minicpmo package",),
        ),
        ModelSpec(
            "whisper-large-v3", "faster-whisper large-v3 (CTranslate2, multilingual STT)",
            (Repo("Systran/faster-whisper-large-v3", "faster-whisper-large-v3"),),
            (("stt.model", "faster-whisper-large-v3"),),
        ),
        ModelSpec(
            "whisper-distil-large-v3", "faster-whisper distil-large-v3 (English, faster)",
            (Repo("Systran/faster-distil-whisper-large-v3", "faster-distil-whisper-large-v3"),),
            (("stt.model", "faster-distil-whisper-large-v3"),),
        ),
        ModelSpec(
            "qwen2.5-7b-awq", "Qwen2.5-7B-Instruct AWQ, for `vllm serve` (not loaded in-process)",
            (Repo("Qwen/Qwen2.5-7B-Instruct-AWQ", "Qwen2.5-7B-Instruct-AWQ"),),
            (),
            ("serve it with: vllm serve <dest>/Qwen2.5-7B-Instruct-AWQ "
             "--served-model-name Qwen/Qwen2.5-7B-Instruct-AWQ (see docs/gpu.md)",),
        ),
    )
}

Downloader = Callable[..., Any]
"""huggingface_hub.snapshot_download's signature."""


def default_path(data_dir: Path, relative: str) -> Path:
    return data_dir / "models" / relative


def download(names: Sequence[str], dest: Path, downloader: Downloader | None = None,
             out: Any = None) -> list[str]:
    """Fetches each named model into dest; returns the settings (as environment
    variables) that point at them."""
    out = out or sys.stdout
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s): {', '.join(unknown)}; have {', '.join(MODELS)}")
    if downloader is None:
        from huggingface_hub import snapshot_download

        downloader = snapshot_download
    lines: list[str] = []
    for name in names:
        spec = MODELS[name]
        for repo in spec.repos:
            target = dest / repo.folder
            print(f"{name}: {repo.repo_id} -> {target}", file=out, flush=True)
            downloader(repo_id=repo.repo_id, local_dir=str(target),
                       allow_patterns=list(repo.allow) or None)
        lines += [f"{ENV_PREFIX}{key.replace('.', '_').upper()}={(dest / rel).resolve()}"
                  for key, rel in spec.settings]
        lines += [f"# {note}" for note in spec.notes]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="download-models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="models to fetch (see --list)")
    parser.add_argument("--dest", type=Path, default=Path("data/models"),
                        help="destination folder (default: data/models)")
    parser.add_argument("--list", action="store_true", help="list the models and exit")
    args = parser.parse_args(argv)
    if args.list or not args.models:
        for spec in MODELS.values():
            print(f"{spec.name:24} {spec.what}")
        return 0 if args.list else 2
    try:
        lines = download(args.models, args.dest)
    except ValueError as exc:
        parser.error(str(exc))
    except Exception as exc:  # network, auth, disk: say which and stop
        print(f"download-models: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("\nSettings for these folders (or the same keys in TOML, or as flags):")
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
