"""Load and soak: N real aiortc callers talk with a server for D minutes, with pauses
and barge-ins, while the server's resources are sampled.

Starts `avatar-rtc serve` (the embedded default unless settings say otherwise, see
tools/bench.py) or uses a running server with --url. Each caller makes calls of a few
turns in a row: a spoken question (espeak-ng voices, tools/turns_audio.py), the answer,
a pause of 1-5 s; every third turn it talks over the answer ("Wait, stop."). Every
--sample-s seconds it reads the server's GET /metrics: resident memory, open file
descriptors, threads and event-loop tasks.

Prints, per --window-s window, the turns, the errors and the voice-to-voice latency
(p50/p90, on the caller's clock), then the growth of each resource after the warm-up
(--warmup-s). Goal: no errors, RSS growth under 5 %, descriptors, threads and tasks
flat. Writes bench-results/soak-<time>.json and .csv, and .png when matplotlib is
installed. Not a test: run it on a quiet machine.

    tools/soak                                    # 4 callers, 30 minutes
    .venv/bin/python tools/soak.py --callers 2 --minutes 1
    .venv/bin/python tools/soak.py --url http://127.0.0.1:8080 --minutes 60
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from bench import start_server, wait_ready  # noqa: E402
from turns_audio import VOICES, espeak_missing, silence, speak, trimmed  # noqa: E402

from avatar_rtc.caller import Caller, CallerError  # noqa: E402
from avatar_rtc.replay.summary import percentile  # noqa: E402
from signaling.ice import restrict_host_addresses  # noqa: E402

QUESTIONS = ("What is the capital of France?", "How many legs does a spider have?",
             "Can you recommend a good book?", "What should I cook for dinner tonight?",
             "Why is the sky blue?", "Tell me something about the moon.")
BARGE_IN = "Wait, stop."
TURNS_PER_CALL = 5
# GET /metrics name -> column
METRICS = {"process_resident_memory_bytes": "rss_bytes", "process_open_fds": "fds",
           "avatar_threads": "threads", "avatar_asyncio_tasks": "tasks",
           "avatar_active_calls": "calls"}


@dataclass
class TurnResult:
    at: float  # seconds since the start
    caller: int
    v2v_ms: float | None
    barge_in: bool
    error: str | None = None


@dataclass
class Sample:
    at: float
    values: dict[str, float] = field(default_factory=dict)


async def caller_loop(url: str, index: int, voice: str, deadline: float, t0: float,
                      results: list[TurnResult]) -> None:
    rng = random.Random(index)
    questions = [trimmed(speak(q, voice)) for q in QUESTIONS]
    barge = trimmed(speak(BARGE_IN, voice))
    turn = 0
    while time.monotonic() < deadline:
        try:
            async with Caller(url) as caller:
                for _ in range(TURNS_PER_CALL):
                    if time.monotonic() >= deadline:
                        break
                    turn += 1
                    results.append(await one_turn(caller, index, turn, rng, questions,
                                                  barge, t0))
                    await asyncio.sleep(rng.uniform(1.0, 5.0))  # a pause
        except (CallerError, TimeoutError, OSError) as exc:
            results.append(TurnResult(time.monotonic() - t0, index, None, False,
                                      f"{type(exc).__name__}: {exc}"))
            await asyncio.sleep(2.0)


async def one_turn(caller: Caller, index: int, turn: int, rng: random.Random,
                   questions: list[Any], barge: Any, t0: float) -> TurnResult:
    pcm = questions[rng.randrange(len(questions))]
    said = caller.say(np.concatenate([pcm, silence(0.2)]), 48000)
    await said.done.wait()
    assert said.speech_end_at is not None
    errors_before = sum(1 for _, e in caller.events if e.get("type") == "error")
    heard = await caller.wait_agent_audio(after=said.speech_end_at, timeout_s=60)
    v2v = (heard - said.speech_end_at) * 1000
    barge_in = turn % 3 == 0
    if barge_in:
        await asyncio.sleep(rng.uniform(0.5, 1.5))
        over = caller.say(barge, 48000)
        await over.done.wait()
    await caller.wait_event("turn_end", after=said.speech_end_at, timeout_s=90)
    if barge_in:  # the turn of "Wait, stop." itself
        await caller.wait_event("state", state="listening", after=time.monotonic(),
                                timeout_s=60)
    errors = [e.get("message") for _, e in caller.events if e.get("type") == "error"]
    error = errors[-1] if len(errors) > errors_before else None
    return TurnResult(time.monotonic() - t0, index, v2v, barge_in, error)


def read_metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in METRICS:
            values[METRICS[name]] = float(value)
    return values


async def sampler(url: str, every_s: float, deadline: float, t0: float,
                  samples: list[Sample]) -> None:
    while True:
        try:
            values = await asyncio.to_thread(read_metrics, url)
            samples.append(Sample(time.monotonic() - t0, values))
        except OSError as exc:
            print(f"soak: /metrics failed: {exc}", file=sys.stderr)
        if time.monotonic() >= deadline:
            return
        await asyncio.sleep(every_s)


def windows(results: list[TurnResult], window_s: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if not results:
        return rows
    last = max(r.at for r in results)
    start = 0.0
    while start <= last:
        inside = [r for r in results if start <= r.at < start + window_s]
        latencies = [r.v2v_ms for r in inside if r.v2v_ms is not None]
        rows.append({"from_s": start, "turns": len(inside),
                     "errors": sum(1 for r in inside if r.error),
                     "v2v_p50_ms": percentile(latencies, 50),
                     "v2v_p90_ms": percentile(latencies, 90)})
        start += window_s
    return rows


def growth(samples: list[Sample], warmup_s: float) -> dict[str, dict[str, float]]:
    """Each resource after the warm-up: first, last, min, max, growth (last vs first)."""
    after = [s for s in samples if s.at >= warmup_s] or samples[-1:]
    report: dict[str, dict[str, float]] = {}
    for column in METRICS.values():
        values = [s.values[column] for s in after if column in s.values]
        if not values:
            continue
        first, last = values[0], values[-1]
        report[column] = {"first": first, "last": last, "min": min(values),
                          "max": max(values), "growth": last - first,
                          "growth_pct": (last - first) / first * 100 if first else 0.0}
    return report


def plot(path: Path, samples: list[Sample], rows: list[dict[str, Any]]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = [("rss_bytes", "RSS (MiB)", 1 / 2**20), ("fds", "open fds", 1.0),
              ("threads", "threads", 1.0), ("tasks", "asyncio tasks", 1.0)]
    figure, axes = plt.subplots(len(panels) + 1, 1, figsize=(9, 11), sharex=True)
    minutes = [s.at / 60 for s in samples]
    for axis, (column, label, scale) in zip(axes, panels, strict=False):
        axis.plot(minutes, [s.values.get(column, np.nan) * scale for s in samples])
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    latency = axes[-1]
    at = [r["from_s"] / 60 for r in rows]
    for key, style in (("v2v_p50_ms", "-"), ("v2v_p90_ms", "--")):
        latency.plot(at, [r[key] if r[key] is not None else np.nan for r in rows], style,
                     label=key.split("_")[1])
    latency.set_ylabel("voice-to-voice (ms)")
    latency.set_xlabel("minutes")
    latency.legend()
    latency.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


async def soak(url: str, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.monotonic()
    deadline = t0 + args.minutes * 60
    results: list[TurnResult] = []
    samples: list[Sample] = []
    watch = asyncio.create_task(sampler(url, args.sample_s, deadline, t0, samples))
    await asyncio.gather(*(caller_loop(url, i, VOICES[i % len(VOICES)], deadline, t0, results)
                           for i in range(args.callers)))
    await watch
    # The last sample once the server has closed every call: what is left then is kept.
    for _ in range(30):  # polled: /metrics has no "all closed" to wait for
        if not (await asyncio.to_thread(read_metrics, url)).get("calls", 0):
            break
        await asyncio.sleep(1.0)
    await asyncio.sleep(2.0)  # the closed calls' last tasks
    samples.append(Sample(time.monotonic() - t0, await asyncio.to_thread(read_metrics, url)))
    rows = windows(results, args.window_s)
    return {"callers": args.callers, "minutes": args.minutes, "url": url,
            "turns": len(results), "errors": [asdict(r) for r in results if r.error],
            "windows": rows, "growth_after_warmup": growth(samples, args.warmup_s),
            "samples": [{"at_s": s.at, **s.values} for s in samples]}


def report(summary: dict[str, Any]) -> None:
    print(f"\nsoak: {summary['callers']} callers, {summary['minutes']:g} min, "
          f"{summary['turns']} turns, {len(summary['errors'])} errors")
    for error in summary["errors"][:20]:
        print(f"  error at {error['at']:.0f}s (caller {error['caller']}): {error['error']}")
    print(f"{'from':>6} {'turns':>6} {'errors':>6} {'p50 ms':>8} {'p90 ms':>8}")
    for row in summary["windows"]:
        p50, p90 = (("-" if v is None else f"{v:.0f}")
                    for v in (row["v2v_p50_ms"], row["v2v_p90_ms"]))
        print(f"{row['from_s'] / 60:>5.1f}m {row['turns']:>6} {row['errors']:>6} "
              f"{p50:>8} {p90:>8}")
    print("after warm-up:")
    for column, g in summary["growth_after_warmup"].items():
        print(f"  {column:>9}: {g['first']:.0f} -> {g['last']:.0f} (min {g['min']:.0f}, "
              f"max {g['max']:.0f}, {g['growth_pct']:+.1f} %)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--callers", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--sample-s", type=float, default=10.0, help="sampling period")
    parser.add_argument("--window-s", type=float, default=120.0, help="latency windows")
    parser.add_argument("--warmup-s", type=float, default=120.0,
                        help="growth is measured from the first sample after this")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    parser.add_argument("server_args", nargs="*", help="after --: flags of avatar-rtc serve")
    args = parser.parse_args()
    if (missing := espeak_missing()) is not None:
        raise SystemExit(f"soak: {missing}")
    restrict_host_addresses(["127.0.0.1"])  # the callers offer loopback too
    server = None
    url = args.url
    with tempfile.TemporaryDirectory(prefix="avatar-soak-") as data_dir:
        if url is None:
            # Every caller here is 127.0.0.1: the per-address offer limits would
            # refuse them as one client (later flags still override these).
            open_doors = ["--server-max-pending-per-address", "0",
                          "--server-offer-rate-per-min", "0"]
            server, url = start_server([*open_doors, *args.server_args], args.callers,
                                       data_dir)
        try:
            wait_ready(url)
            summary = asyncio.run(soak(url, args))
        finally:
            if server is not None:
                server.terminate()
                server.wait(60)
    report(summary)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"soak-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    stem.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    with stem.with_suffix(".csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["at_s", *METRICS.values()])
        for s in summary["samples"]:
            writer.writerow([f"{s['at_s']:.1f}", *(s.get(c, "") for c in METRICS.values())])
    written = [stem.with_suffix(".json"), stem.with_suffix(".csv")]
    if plot(stem.with_suffix(".png"), [Sample(s["at_s"], s) for s in summary["samples"]],
            summary["windows"]):
        written.append(stem.with_suffix(".png"))
    print("written: " + ", ".join(str(p) for p in written))
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
