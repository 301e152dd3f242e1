"""Spoken quiz: does the agent answer simple questions right, and how fast?

For each --llm-model (and each --stt-model), starts `avatar-rtc serve` on it (or uses
--url), and has --callers concurrent callers (aiortc peers, tools/turns_audio.py: the
questions said by espeak-ng voices, never the agent's) ask the twelve questions of
tools/quiz_score.py, one call per question. The agent's audio of each call is
transcribed afterwards (Whisper base when installed, else tiny.en), and a reply is
right when that transcript holds the question's answer (tools/quiz_score.py); the
reply's text (data channel) is scored too. Voice-to-voice: the last voiced sample sent
-> the first audible agent frame received (tools/turns_measure.py).

Then the word error rate of the speech-to-text models (--wer-models) on the same
spoken questions, each model loaded in this process, with its per-utterance
transcription time: a model that cannot be loaded (not installed, or incomplete) is
listed with the reason.

Writes bench-results/quiz-<time>.json. Latency on a machine shared with other work is
not the server's: measure it alone.

    tools/bench-quiz                                    # both LLMs, 1 caller, WER table
    tools/bench-quiz --llm-model qwen2.5-0.5b --callers 4 --wer-models ""
    tools/bench-quiz --stt-model tiny.en,base --wer-models tiny.en,base,small
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # its siblings, also when imported

from bench import start_server, wait_ready  # noqa: E402  tools/bench.py, beside this script
from quiz_score import QUIZ, Question, mentions, word_error_rate  # noqa: E402
from turns_audio import VOICES, RoomCaller, espeak_missing, speak  # noqa: E402
from turns_measure import Observed, judge_complete, of_type  # noqa: E402

from avatar_rtc.backends.base import BackendError, SpeechToText  # noqa: E402
from avatar_rtc.caller import AUDIBLE_PEAK, RATE, CallerError  # noqa: E402
from avatar_rtc.replay.summary import spread  # noqa: E402
from media.latency import set_audio_prefetch  # noqa: E402
from media.resample import Pcm, resample_pcm  # noqa: E402
from signaling.ice import restrict_host_addresses  # noqa: E402

LEAD_S = 0.5  # microphone silence between connecting and the question
REPLY_TIMEOUT_S = 60.0  # for the reply to start (a busy 2-core machine is slow)
TURN_END_TIMEOUT_S = 40.0  # for the reply to play out after it started
STT_RATE = 16000


@dataclass(frozen=True)
class Ask:
    question: Question
    number: int  # the question's index in QUIZ
    voice: str


def plan(callers: int, seed: int = 0) -> list[list[Ask]]:
    """Each caller asks every question, starting at a different one, in a voice that
    changes from question to question and from caller to caller."""
    return [[Ask(QUIZ[(c + i) % len(QUIZ)], (c + i) % len(QUIZ),
                 VOICES[(seed + c * 3 + i) % len(VOICES)]) for i in range(len(QUIZ))]
            for c in range(callers)]


async def ask(url: str, item: Ask, reply_timeout_s: float = REPLY_TIMEOUT_S) -> dict[str, Any]:
    """One question in a call of its own: what was heard, replied and when."""
    caller = RoomCaller(url)
    record: dict[str, Any] = {"question": item.number, "text": item.question.text,
                              "voice": item.voice, "error": None}
    try:
        await caller.connect()
        await asyncio.sleep(LEAD_S)
        utterance = caller.say(speak(item.question.text, item.voice), RATE)
        await utterance.done.wait()
        caller.check_live()
        end = utterance.speech_end_at
        if end is None:
            raise CallerError("the question had no voiced sample")
        try:
            await caller.wait_agent_audio(after=end, timeout_s=reply_timeout_s)
            await caller.wait_event("turn_end", after=end, timeout_s=TURN_END_TIMEOUT_S)
        except TimeoutError:
            pass  # judged from what came
        observed = Observed(audible=[f.at for f in caller.frames if f.peak >= AUDIBLE_PEAK],
                            events=list(caller.events), end=time.monotonic())
        record.update(judge_complete(observed, end))
        record["heard"] = " ".join(e["text"] for _, e in of_type(caller.events,
                                                                 "user_transcript"))
        # What the caller heard, whole; else the chunks so far (each a clause or more).
        ended = [e for _, e in of_type(caller.events, "turn_end", end)]
        record["reply_text"] = (ended[0]["spoken_text"] if ended else
                                " ".join(e["text"] for _, e in of_type(caller.events,
                                                                       "agent_text", end)))
        record["reply_audio"] = caller.agent_audio()  # 16 kHz; transcribed later
    except (CallerError, TimeoutError) as exc:
        record["error"] = str(exc) or type(exc).__name__
    finally:
        await caller.close()
    return record


async def run_callers(url: str, plans: list[list[Ask]],
                      reply_timeout_s: float = REPLY_TIMEOUT_S) -> list[dict[str, Any]]:
    async def one(index: int, asks: list[Ask]) -> list[dict[str, Any]]:
        await asyncio.sleep(index * 0.37)  # callers do not start in the same frame
        out = []
        for item in asks:
            record = await ask(url, item, reply_timeout_s)
            record["caller"] = index
            note = record["error"] or (f"v2v {record['v2v_ms']} ms, heard "
                                       f"{record['heard']!r}, said {record['reply_text']!r}")
            print(f"[caller {index}] {item.question.text} {note}", flush=True)
            out.append(record)
        return out

    groups = await asyncio.gather(*(one(i, p) for i, p in enumerate(plans)))
    return [r for group in groups for r in group]


def load_stt(model: str, cache_dir: Path) -> SpeechToText:
    from avatar_rtc.backends.stt_whisper import WhisperStt

    return WhisperStt(model, cache_dir=cache_dir, cpu_threads=2)


async def transcribe_all(stt: SpeechToText, clips: list[Pcm]) -> list[tuple[str, float]]:
    """Each clip's transcript and how long it took (s), one at a time."""
    out = []
    for clip in clips:
        started = time.perf_counter()
        result = await stt.transcribe(clip, STT_RATE)
        out.append((result.text, time.perf_counter() - started))
    return out


def audible_part(pcm: Pcm, most_s: float = 28.0) -> Pcm:
    """From the first audible sample on, at most `most_s` (one Whisper window)."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) >= AUDIBLE_PEAK)
    start = max(0, int(loud[0]) - STT_RATE // 10) if loud.size else 0
    return pcm[start:start + int(most_s * STT_RATE)]


async def score_replies(records: list[dict[str, Any]], models_dir: Path) -> str:
    """Transcribes each reply's audio, as a caller hears it, and scores it."""
    name = "base"
    try:
        stt = load_stt(name, models_dir)
    except BackendError:
        name = "tiny.en"
        stt = load_stt(name, models_dir)
    try:
        for record in records:
            audio = record.pop("reply_audio", None)
            record["reply_heard"] = ""
            if audio is not None and audio.size:
                (text, _), = await transcribe_all(stt, [audible_part(audio)])
                record["reply_heard"] = text
            answers = QUIZ[record["question"]].answers
            record["right"] = mentions(record["reply_heard"], answers)
            record["right_text"] = mentions(record.get("reply_text", ""), answers)
    finally:
        await stt.aclose()
    return name


def summarize(records: list[dict[str, Any]], callers: int) -> dict[str, Any]:
    asked = len(records)
    v2v = [r["v2v_ms"] for r in records if r.get("v2v_ms") is not None]
    heard = [(r["text"], r.get("heard", "")) for r in records if not r["error"]]
    return {"asked": asked, "right": sum(bool(r.get("right")) for r in records),
            "right_text": sum(bool(r.get("right_text")) for r in records),
            "per_caller": round(sum(bool(r.get("right")) for r in records) / callers, 1),
            "v2v_ms": spread(v2v), "server_wer": word_error_rate(heard),
            "errors": [f"{r['text']}: {r['error']}" for r in records if r["error"]],
            "wrong": [f"{r['text']} heard {r.get('heard')!r} -> {r.get('reply_heard')!r}"
                      for r in records if not r.get("right")]}


async def wer_table(models: list[str], models_dir: Path, seed: int) -> list[dict[str, Any]]:
    """Each STT model on every quiz question, said by two voices."""
    clips, texts = [], []
    for offset in (0, 4):
        for i, question in enumerate(QUIZ):
            voice = VOICES[(seed + offset + i) % len(VOICES)]
            clips.append(resample_pcm(speak(question.text, voice), RATE, STT_RATE))
            texts.append(question.text)
    rows: list[dict[str, Any]] = []
    for model in models:
        try:
            stt = load_stt(model, models_dir)
        except BackendError as exc:
            rows.append({"model": model, "error": str(exc)})
            print(f"wer: {model}: {exc}", flush=True)
            continue
        try:
            await transcribe_all(stt, clips[:1])  # warm
            results = await transcribe_all(stt, clips)
        finally:
            await stt.aclose()
        wer = word_error_rate(zip(texts, [t for t, _ in results], strict=True))
        times = [s * 1000 for _, s in results]
        misheard = [f"{ref} -> {hyp!r}" for ref, (hyp, _) in zip(texts, results, strict=True)
                    if word_error_rate([(ref, hyp)])]
        rows.append({"model": model, "wer": wer, "utterances": len(clips),
                     "ms": spread(times), "misheard": misheard,
                     "transcripts": [t for t, _ in results]})
        print(f"wer: {model}: {wer:.3f}, p50 {spread(times)['p50']} ms", flush=True)
    return rows


async def text_quiz(models: list[str], heard: dict[str, list[str]],
                    models_dir: Path) -> list[dict[str, Any]]:
    """Each LLM, in this process, on the questions as written and as each STT model
    heard them: the answers' quality without the call's timing (temperature 0)."""
    from avatar_rtc.backends.base import ChatMessage
    from avatar_rtc.backends.llm_llamacpp import LlamaCppLlm
    from avatar_rtc.settings import DEFAULT_SYSTEM_PROMPT

    rows: list[dict[str, Any]] = []
    sources = {"written": [q.text for q in QUIZ], **heard}
    for model in models:
        llm = LlamaCppLlm(model=model, temperature=0.0, max_contexts=1, max_tokens=60,
                          cache_dir=models_dir)
        try:
            for source, texts in sources.items():
                replies = []
                for text in texts:
                    messages = [ChatMessage("system", DEFAULT_SYSTEM_PROMPT),
                                ChatMessage("user", text)]
                    reply = "".join([d async for d in llm.stream(messages)])
                    replies.append(reply)
                right = sum(mentions(r, QUIZ[i % len(QUIZ)].answers)
                            for i, r in enumerate(replies))
                rows.append({"llm_model": model, "questions": source, "right": right,
                             "asked": len(texts), "replies": replies})
                print(f"text quiz: {model} on {source}: {right}/{len(texts)}", flush=True)
        finally:
            await llm.aclose()
    return rows


def show(value: float | int | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(runs: list[dict[str, Any]], wer_rows: list[dict[str, Any]],
           text_rows: list[dict[str, Any]] | None = None) -> list[str]:
    lines = ["", "== spoken quiz (right: the reply as heard holds the answer)",
             f"{'llm':14s} {'stt':8s} {'callers':>7s} {'right':>9s} {'text':>6s} "
             f"{'v2v p50':>8s} {'p90':>7s} {'heard WER':>9s}"]
    for run in runs:
        s = run["summary"]
        lines.append(f"{run['llm_model']:14s} {run['stt_model']:8s} {run['callers']:7d} "
                     f"{s['right']:>4d}/{s['asked']:<4d} {s['right_text']:>6d} "
                     f"{show(s['v2v_ms']['p50']):>8s} {show(s['v2v_ms']['p90']):>7s} "
                     f"{show(s['server_wer'], 3):>9s}")
    for run in runs:
        for wrong in run["summary"]["wrong"]:
            lines.append(f"  {run['llm_model']} wrong: {wrong}")
        for error in run["summary"]["errors"]:
            lines.append(f"  {run['llm_model']} error: {error}")
    if wer_rows:
        lines += ["", "== speech-to-text on the quiz questions (this process, 2 threads)",
                  f"{'model':8s} {'WER':>6s} {'p50 ms':>7s} {'p90 ms':>7s}"]
        for row in wer_rows:
            if "error" in row:
                lines.append(f"{row['model']:8s} unavailable: {row['error']}")
                continue
            lines.append(f"{row['model']:8s} {row['wer']:6.3f} {show(row['ms']['p50']):>7s} "
                         f"{show(row['ms']['p90']):>7s}")
            lines += [f"  {m}" for m in row["misheard"]]
    if text_rows:
        lines += ["", "== the LLMs alone, on the questions as written and as heard",
                  f"{'llm':14s} {'questions':12s} {'right':>7s}"]
        lines += [f"{r['llm_model']:14s} {r['questions']:12s} {r['right']:>3d}/{r['asked']}"
                  for r in text_rows]
    return lines


def names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="quiz a running server (its own models) instead")
    parser.add_argument("--llm-model", default="smollm2-135m,qwen2.5-0.5b",
                        help="comma-separated llm.model names, one server each")
    parser.add_argument("--stt-model", default="tiny.en",
                        help="comma-separated stt.model names the servers use")
    parser.add_argument("--callers", type=int, default=1, help="concurrent callers")
    parser.add_argument("--wer-models", default="tiny.en,base,small",
                        help="comma-separated STT models for the WER table; empty: none")
    parser.add_argument("--seed", type=int, default=0, help="another choice of voices")
    parser.add_argument("--no-calls", action="store_true",
                        help="no server: only the WER table (and --text-quiz)")
    parser.add_argument("--text-quiz", action="store_true",
                        help="also each LLM in this process on the questions as written "
                        "and as each --wer-models model heard them")
    parser.add_argument("--reply-timeout-s", type=float, default=REPLY_TIMEOUT_S,
                        help="wait this long for a reply to start (a busy machine: more)")
    parser.add_argument("--jitter-frames", type=int, default=2, metavar="N",
                        help="the caller's receive buffer in 20 ms frames (as tools/bench)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    parser.add_argument("server_args", nargs="*",
                        help="extra `avatar-rtc serve` flags after --")
    args = parser.parse_args()
    if args.callers < 1:
        parser.error("--callers must be >= 1")
    missing = espeak_missing()
    if missing:
        raise SystemExit(f"bench-quiz: {missing}; tools/bench-quiz installs it")
    set_audio_prefetch(args.jitter_frames)
    restrict_host_addresses(["127.0.0.1"])
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    # Joined models (Qwen, Whisper base) are kept between runs, as the server keeps them.
    models_dir = Path(os.environ.get("AVATAR_STORAGE_DATA_DIR", "data")) / "models"
    plans = plan(args.callers, args.seed)
    combos = ([] if args.no_calls else [("(server)", "(server)")] if args.url else
              [(llm, stt) for llm in names(args.llm_model) for stt in names(args.stt_model)])
    runs = []
    for llm, stt in combos:
        data_dir = tempfile.mkdtemp(prefix="avatar-bench-quiz-")
        models_dir.mkdir(parents=True, exist_ok=True)
        (Path(data_dir) / "models").symlink_to(models_dir.resolve(), target_is_directory=True)
        server, url = None, args.url
        if url is None:
            server, url = start_server(["--llm-model", llm, "--stt-model", stt,
                                        *args.server_args], args.callers + 1, data_dir)
        try:
            health = wait_ready(url, timeout_s=600)
            print(f"bench-quiz: {url} ready; backends {health.get('backends')}", flush=True)
            started = time.monotonic()
            records = asyncio.run(run_callers(url, plans, args.reply_timeout_s))
            wall = time.monotonic() - started
        finally:
            if server is not None:
                server.terminate()
                server.wait(30)
            shutil.rmtree(data_dir, ignore_errors=True)
        judge = asyncio.run(score_replies(records, models_dir))
        runs.append({"llm_model": llm, "stt_model": stt, "callers": args.callers,
                     "backends": health.get("backends"), "wall_s": round(wall, 1),
                     "reply_stt": judge, "summary": summarize(records, args.callers),
                     "records": records})
    wer_rows = asyncio.run(wer_table(names(args.wer_models), models_dir, args.seed))
    text_rows: list[dict[str, Any]] = []
    if args.text_quiz:
        heard = {f"heard by {r['model']}": r["transcripts"] for r in wer_rows
                 if "transcripts" in r}
        text_rows = asyncio.run(text_quiz(names(args.llm_model), heard, models_dir))
    print("\n".join(report(runs, wer_rows, text_rows)))
    record = {"when": stamp, "kind": "quiz", "server_args": args.server_args,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_avg": os.getloadavg()},
              "runs": runs, "wer": wer_rows, "text_quiz": text_rows}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"quiz-{stamp}.json"
    path.write_text(json.dumps(record, indent=1, default=str))
    print(f"\nbench-quiz: results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
