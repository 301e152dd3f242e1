"""The GPU check: the gpu tests, then real-size TTS speed and faster-whisper on CUDA.

Made for a lent NVIDIA machine with PyTorch and no internet (tools/gpu-check sets it
up from carried wheels), and short enough for a few minutes:

1. the `gpu`-marked tests (F5-TTS, CosyVoice2 and tiny Whisper on CUDA);
2. F5-TTS at its real size (F5TTS_v1_Base and Vocos, random weights) at NFE 16 and
   32, and CosyVoice2 at its real size (CosyVoice2-0.5B's modules, random weights;
   its flow takes a fixed 10 steps), each with 1, 4, 8 and 16 concurrent streams
   through the server's own backends and their shared model thread: time to first
   audio and real-time factor (a stream's synthesis time / its audio's duration);
3. faster-whisper on CUDA (tiny.en, float16), or why CTranslate2 cannot use it.

Random weights make noise, not speech, but cost the same time as the released ones;
CosyVoice's random LLM never says its end token, so each sentence is held to about
the real model's length (`COSY_TOKENS_PER_CHAR` tokens a character).

    tools/gpu-check                       # on the GPU machine
    tools/gpu-check --device cpu --tiny   # the same steps on tiny models, on a CPU

Writes one JSON file of figures (bench-results/gpu-check-<time>.json, or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

SENTENCE = "It usually takes about twenty minutes by train, so leave early."
CONCURRENCY = (1, 4, 8, 16)
NFE = (16, 32)
COSY_TOKENS_PER_CHAR = 1.6  # CosyVoice2 speaks ~15 characters a second, 25 tokens a second
TEST_FILES = ["tests/test_tts_f5.py", "tests/test_tts_cosyvoice.py",
              "tests/test_stt_ctranslate2_tiny.py"]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def environment(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "device": device, "cuda_available": torch.cuda.is_available(),
                            "cpu_count": os.cpu_count()}
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda)
    return info


def run_tests(marker: str, timeout_s: float) -> dict[str, Any]:
    """The marked tests in a child pytest; its summary line and exit code."""
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-m", marker, "-p", "no:cacheprovider",
             *TEST_FILES], cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    except subprocess.TimeoutExpired:
        return {"marker": marker, "error": f"timed out after {timeout_s:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    summary = next((line for line in reversed(lines)
                    if re.search(r"\d+ (passed|failed|skipped|error)", line)), "")
    failures = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    return {"marker": marker, "exit_code": done.returncode, "summary": summary.strip("= "),
            "failures": failures[:20], "seconds": round(time.perf_counter() - started, 1)}


async def concurrent_streams(tts: Any, voice: Any, text: str, streams: int
                             ) -> dict[str, Any]:
    """`streams` sentences at once through one backend; per-stream timings."""

    async def one() -> tuple[float, float, float]:
        started = time.perf_counter()
        first = 0.0
        samples = 0
        async for pcm in tts.synthesize(text, voice):
            if not first:
                first = time.perf_counter() - started
            samples += len(pcm)
        return first, time.perf_counter() - started, samples / tts.sample_rate

    started = time.perf_counter()
    results = await asyncio.gather(*(one() for _ in range(streams)))
    wall = time.perf_counter() - started
    firsts = [r[0] for r in results]
    rtfs = [r[1] / r[2] if r[2] else float("inf") for r in results]
    audio = sum(r[2] for r in results)
    return {"streams": streams, "first_audio_p50_s": round(percentile(firsts, 50), 3),
            "first_audio_max_s": round(max(firsts), 3),
            "rtf_p50": round(percentile(rtfs, 50), 3), "rtf_max": round(max(rtfs), 3),
            "all_above_real_time": max(rtfs) < 1.0,
            "audio_s_per_stream": round(statistics.mean(r[2] for r in results), 2),
            "wall_s": round(wall, 2), "audio_s_per_wall_s": round(audio / wall, 2)}


async def sweep(make: Callable[[], Awaitable[tuple[Any, Any]]], concurrency: tuple[int, ...],
                deadline: float) -> list[dict[str, Any]]:
    tts, voice = await make()
    rows: list[dict[str, Any]] = []
    try:
        async for _ in tts.synthesize("Warm up.", voice):  # prepares the reference
            pass
        for streams in concurrency:
            if time.monotonic() > deadline:
                rows.append({"streams": streams, "skipped": "time budget spent"})
                continue
            row = await concurrent_streams(tts, voice, SENTENCE, streams)
            print(f"    {streams:2d} streams: first audio p50 {row['first_audio_p50_s']:.3f} s "
                  f"(max {row['first_audio_max_s']:.3f}), RTF p50 {row['rtf_p50']:.3f} "
                  f"(max {row['rtf_max']:.3f})", flush=True)
            rows.append(row)
    finally:
        await tts.aclose()
    return rows


async def f5_figures(args: argparse.Namespace, root: Path, deadline: float) -> dict[str, Any]:
    from bench_tts import build_checkpoint

    from avatar_rtc.backends.tts_f5 import F5Tts

    started = time.perf_counter()
    ckpt, vocoder, info = build_checkpoint(root, tiny=args.tiny)
    out: dict[str, Any] = {"model": "F5TTS_tiny" if args.tiny else "F5TTS_v1_Base", **info,
                           "build_s": round(time.perf_counter() - started, 1), "by_nfe": {}}
    for nfe in args.nfe:
        print(f"  F5-TTS, NFE {nfe}", flush=True)

        async def make(nfe: int = nfe) -> tuple[Any, Any]:
            tts = F5Tts(ckpt=ckpt, vocoder_dir=vocoder, device=args.device, nfe_step=nfe,
                        model=info["config"])
            return tts, tts.default_voice()

        out["by_nfe"][str(nfe)] = await sweep(make, args.concurrency, deadline)
    return out


async def cosyvoice_figures(args: argparse.Namespace, root: Path, deadline: float
                            ) -> dict[str, Any]:
    from random_cosyvoice import build_cosyvoice2

    from avatar_rtc.backends.base import Voice
    from avatar_rtc.backends.tts_cosyvoice import CosyVoiceTts
    from avatar_rtc.backends.tts_f5 import PACKAGED_REFERENCE, PACKAGED_REFERENCE_TEXT

    started = time.perf_counter()
    model_dir = build_cosyvoice2(root, "tiny" if args.tiny else "full")
    out: dict[str, Any] = {"model": model_dir.name, "flow_steps": 10,
                           "build_s": round(time.perf_counter() - started, 1)}
    from importlib.resources import files

    clip = str(files("f5_tts").joinpath(PACKAGED_REFERENCE))
    print("  CosyVoice2", flush=True)

    async def make() -> tuple[Any, Any]:
        tts = CosyVoiceTts(model_dir, device="cuda" if args.device.startswith("cuda")
                           else "cpu", fp16=args.device.startswith("cuda"))
        tts._engine.tokens_per_char = COSY_TOKENS_PER_CHAR
        voice = Voice(backend="cosyvoice", profile_id="check", reference_audio=clip,
                      reference_text=PACKAGED_REFERENCE_TEXT)
        return tts, voice

    out["by_streams"] = await sweep(make, args.concurrency, deadline)
    return out


def whisper_figures(args: argparse.Namespace) -> dict[str, Any]:
    """tiny.en on CUDA through the server's WhisperStt, or why not."""
    import numpy as np

    from avatar_rtc.backends.stt_whisper import WhisperStt

    device = args.device if args.device.startswith("cuda") else "cpu"
    compute = "float16" if device.startswith("cuda") else "int8"
    out: dict[str, Any] = {"model": "tiny.en", "device": device, "compute_type": compute}
    try:
        import ctranslate2

        out["ctranslate2"] = ctranslate2.__version__
        out["cuda_devices_seen"] = ctranslate2.get_cuda_device_count()
        started = time.perf_counter()
        stt = WhisperStt("tiny.en", cache_dir=Path(tempfile.gettempdir()), device=device,
                         compute_type=compute)
        out["load_s"] = round(time.perf_counter() - started, 2)
        rng = np.random.default_rng(0)
        audio = (rng.standard_normal(16000 * 5) * 300).astype(np.int16)

        async def transcribe() -> list[float]:
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                await stt.transcribe(audio, 16000)
                times.append(time.perf_counter() - t0)
            await stt.aclose()
            return times

        times = asyncio.run(transcribe())
        out.update(ok=True, transcribe_5s_p50_s=round(percentile(times, 50), 3))
    except Exception as exc:  # the reason is the figure here
        out.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        if device.startswith("cuda"):
            out["note"] = ("CTranslate2's wheel could not use CUDA here; it needs the CUDA 12 "
                           "cuBLAS and cuDNN 9 libraries on the library path")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny models instead of the real sizes (a check of the script)")
    parser.add_argument("--nfe", type=int, nargs="+", default=list(NFE))
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY))
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="measurements stop starting after this many seconds")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["tests", "f5", "cosyvoice", "whisper"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.concurrency = tuple(args.concurrency)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    deadline = time.monotonic() + args.budget_s
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "tiny": args.tiny, "sentence": SENTENCE,
                              "environment": environment(args.device)}
    print(json.dumps(report["environment"]), flush=True)
    steps: list[tuple[str, Callable[[], Any]]] = []
    if "tests" not in args.skip:
        # Without CUDA they skip (tools/test-gpu runs the CPU ones).
        steps.append(("tests", lambda: run_tests("gpu", timeout_s=300)))
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        if "f5" not in args.skip:
            steps.append(("f5_tts", lambda: asyncio.run(
                f5_figures(args, Path(tmp) / "f5", deadline))))
        if "cosyvoice" not in args.skip:
            steps.append(("cosyvoice2", lambda: asyncio.run(
                cosyvoice_figures(args, Path(tmp) / "cosy", deadline))))
        if "whisper" not in args.skip:
            steps.append(("faster_whisper", lambda: whisper_figures(args)))
        for name, step in steps:
            print(f"{name} ...", flush=True)
            started = time.perf_counter()
            try:
                report[name] = step()
            except Exception as exc:  # one step's failure is its figure
                traceback.print_exc()
                report[name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out = args.out or ROOT / "bench-results" / f"gpu-check-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
