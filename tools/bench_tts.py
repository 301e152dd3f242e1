"""F5-TTS synthesis speed at the real model size, with random weights.

Builds F5TTS_v1_Base (22-layer DiT, dim 1024) and the full-size Vocos vocoder with
random weights, saves them as the released checkpoints are saved, loads them through
the server's own `F5Tts`, and synthesizes reply-sized sentences with the reference
clip shipped in f5-tts. Speed does not depend on the weights' values, so the figures
hold for the real checkpoint (not the voice quality, which is noise here).

    .venv-gpu/bin/python tools/bench_tts.py --device cpu --nfe 16 32
    .venv-gpu/bin/python tools/bench_tts.py --device cuda --nfe 32 --sentences 10

Prints, per step count, time to first audio and real-time factor (synthesis time /
audio duration) at p50/p90, and writes bench-results/bench-tts-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SENTENCES = [
    "Sure, I can help with that.",
    "The capital of France is Paris.",
    "It usually takes about twenty minutes by train,",
    "and the first one leaves at a quarter past seven in the morning.",
    "Let me know if you would like me to check the weather as well.",
    "Good night, and thanks for calling.",
    "That depends on how many people are coming to dinner.",
    "I would book a table for eight, just to be safe.",
    "The museum is closed on Mondays,",
    "but it opens late on Thursdays until nine in the evening.",
]


@dataclass
class Sample:
    nfe: int
    text: str
    first_audio_s: float
    total_s: float
    audio_s: float

    @property
    def rtf(self) -> float:
        return self.total_s / self.audio_s if self.audio_s else float("inf")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def build_checkpoint(root: Path, tiny: bool = False) -> tuple[Path, Path, dict[str, Any]]:
    """F5TTS_v1_Base and Vocos mel-24khz, random weights, released file layout.

    `tiny`: a 2-layer DiT and a 1-layer Vocos instead (a check of the tools that use
    it); info["config"] is the model config to load it with."""
    from importlib.resources import files

    import torch
    import yaml
    from omegaconf import OmegaConf
    from safetensors.torch import save_file

    from avatar_rtc.backends.tts_f5 import _import_f5

    _, f5_model, _ = _import_f5()  # first: it makes torchaudio importable
    from vocos import Vocos
    config = OmegaConf.load(str(files("f5_tts").joinpath("configs/F5TTS_v1_Base.yaml")))
    config_name = "F5TTS_v1_Base"
    root.mkdir(parents=True, exist_ok=True)
    if tiny:
        config.model.name = "F5TTS_tiny"
        config.model.arch.update(dim=64, depth=2, heads=2, ff_mult=2, text_dim=32,
                                 conv_layers=1)
        config_name = str(root / "F5TTS_tiny.yaml")
        OmegaConf.save(config, config_name)
    vocab, size = f5_model.utils.get_tokenizer(
        str(files("f5_tts").joinpath("infer/examples/vocab.txt")), "custom")
    torch.manual_seed(0)
    model = f5_model.CFM(
        transformer=f5_model.DiT(**config.model.arch, text_num_embeds=size, mel_dim=100),
        mel_spec_kwargs=dict(n_fft=1024, hop_length=256, win_length=1024, n_mel_channels=100,
                             target_sample_rate=24000, mel_spec_type="vocos"),
        vocab_char_map=vocab,
    )
    params = sum(p.numel() for p in model.parameters())
    ckpt = root / "model_random.safetensors"
    save_file({f"ema_model.{k}": v.contiguous() for k, v in model.state_dict().items()},
              str(ckpt))
    del model
    vocoder = root / "vocos"
    vocoder.mkdir()
    hparams = {  # charactr/vocos-mel-24khz's config.yaml
        "feature_extractor": {"class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
                              "init_args": {"sample_rate": 24000, "n_fft": 1024,
                                            "hop_length": 256, "n_mels": 100,
                                            "padding": "center"}},
        "backbone": {"class_path": "vocos.models.VocosBackbone",
                     "init_args": {"input_channels": 100, "dim": 32 if tiny else 512,
                                   "intermediate_dim": 64 if tiny else 1536,
                                   "num_layers": 1 if tiny else 8}},
        "head": {"class_path": "vocos.heads.ISTFTHead",
                 "init_args": {"dim": 32 if tiny else 512, "n_fft": 1024, "hop_length": 256,
                               "padding": "center"}},
    }
    (vocoder / "config.yaml").write_text(yaml.safe_dump(hparams))
    vocos = Vocos.from_hparams(str(vocoder / "config.yaml"))
    torch.save(vocos.state_dict(), vocoder / "pytorch_model.bin")
    info = {"config": config_name, "dit_params_m": round(params / 1e6, 1),
            "vocos_params_m": round(sum(p.numel() for p in vocos.parameters()) / 1e6, 1)}
    return ckpt, vocoder, info


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from avatar_rtc.backends.tts_f5 import F5Tts

    if args.threads:
        torch.set_num_threads(args.threads)
    sentences = SENTENCES[: args.sentences]
    with tempfile.TemporaryDirectory(prefix="bench-tts-") as tmp:
        started = time.perf_counter()
        ckpt, vocoder, info = build_checkpoint(Path(tmp))
        print(f"random F5TTS_v1_Base: DiT {info['dit_params_m']} M params, Vocos "
              f"{info['vocos_params_m']} M (built in {time.perf_counter() - started:.0f} s)",
              flush=True)
        samples: list[Sample] = []
        for nfe in args.nfe:
            tts = F5Tts(ckpt=ckpt, vocoder_dir=vocoder, device=args.device, nfe_step=nfe)
            voice = tts.default_voice()
            try:
                async for _ in tts.synthesize("Warm up.", voice):  # prepares the reference
                    pass
                for text in sentences:
                    t0 = time.perf_counter()
                    first = 0.0
                    samples_out = 0
                    async for pcm in tts.synthesize(text, voice):
                        if not first:
                            first = time.perf_counter() - t0
                        samples_out += len(pcm)
                    sample = Sample(nfe, text, first, time.perf_counter() - t0,
                                    samples_out / tts.sample_rate)
                    samples.append(sample)
                    print(f"  nfe {nfe:2d}  first audio {sample.first_audio_s:6.2f} s  "
                          f"total {sample.total_s:6.2f} s  audio {sample.audio_s:5.2f} s  "
                          f"RTF {sample.rtf:6.2f}  {text!r}", flush=True)
            finally:
                await tts.aclose()
    summary: dict[str, Any] = {"device": args.device, "threads": torch.get_num_threads(),
                               **info, "by_nfe": {}}
    print(f"\nF5TTS_v1_Base, random weights, {args.device}, {torch.get_num_threads()} threads")
    print("nfe  sentences  first audio p50 / p90 (s)   RTF p50 / p90")
    for nfe in args.nfe:
        rows = [s for s in samples if s.nfe == nfe]
        firsts = [s.first_audio_s for s in rows]
        rtfs = [s.rtf for s in rows]
        stats = {"first_audio_p50_s": percentile(firsts, 50),
                 "first_audio_p90_s": percentile(firsts, 90),
                 "rtf_p50": percentile(rtfs, 50), "rtf_p90": percentile(rtfs, 90),
                 "mean_audio_s": statistics.mean(s.audio_s for s in rows)}
        summary["by_nfe"][str(nfe)] = stats
        print(f"{nfe:3d}  {len(rows):9d}  {stats['first_audio_p50_s']:8.2f} / "
              f"{stats['first_audio_p90_s']:<8.2f}          {stats['rtf_p50']:6.2f} / "
              f"{stats['rtf_p90']:.2f}")
    summary["samples"] = [dict(asdict(s), rtf=s.rtf) for s in samples]
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--nfe", type=int, nargs="+", default=[32],
                        help="flow-matching step counts to measure (default 32)")
    parser.add_argument("--sentences", type=int, default=5, help=f"1-{len(SENTENCES)}")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    summary = asyncio.run(run(args))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench-tts-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(summary, indent=2))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
