"""Figures (p50/p90) over turns, and the readable summary of a timeline."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from avatar_rtc.replay.timeline import OriginalTurn, Timeline, TimelineTurn

STAGE_LABELS = {
    "endpoint_ms": "end-of-speech wait",
    "stt_ms": "STT (duration)",
    "stt_done_ms": "STT done",
    "llm_first_token_ms": "LLM first token",
    "first_chunk_ms": "first text chunk",
    "tts_first_audio_ms": "TTS first audio",
    "first_audio_sent_ms": "first audio sent (server v2v)",
}


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=float), q))


def spread(values: Sequence[float]) -> dict[str, float | int | None]:
    return {"p50": percentile(values, 50), "p90": percentile(values, 90),
            "min": min(values, default=None), "max": max(values, default=None),
            "n": len(values)}


def summarize(turns: Iterable[TimelineTurn]) -> dict[str, Any]:
    """p50/p90 of the client-side latencies and of each server stage."""
    turns = list(turns)
    v2v = [t.voice_to_voice_ms for t in turns if t.voice_to_voice_ms is not None]
    reactions = [t.barge_in_reaction_ms for t in turns if t.barge_in_reaction_ms is not None]
    pauses = [t.barge_in_pause_ms for t in turns if t.barge_in_pause_ms is not None]
    silences = [t.longest_silence_ms for t in turns if t.longest_silence_ms is not None]
    stages: dict[str, list[float]] = {}
    for turn in turns:
        for key, value in turn.timings_ms.items():
            stages.setdefault(key, []).append(value)
    # What the server's own voice-to-voice leaves out: the WebRTC path both ways, and the
    # time its VAD takes to hear that the speech ended.
    gap = [t.voice_to_voice_ms - t.timings_ms["first_audio_sent_ms"] for t in turns
           if t.voice_to_voice_ms is not None and "first_audio_sent_ms" in t.timings_ms]
    order = list(STAGE_LABELS)
    return {
        "turns": len(turns),
        "answered": sum(1 for t in turns if t.agent_start_s is not None),
        "interrupted": sum(1 for t in turns if t.interrupted),
        "errors": sum(1 for t in turns if t.error),
        "voice_to_voice_ms": spread(v2v),
        "client_minus_server_ms": spread(gap),
        "barge_in_reaction_ms": spread(reactions),
        "barge_in_pause_ms": spread(pauses),
        "reply_longest_silence_ms": spread(silences),
        "server_stages_ms": {
            k: spread(stages[k])
            for k in sorted(stages, key=lambda k: order.index(k) if k in order else 99)
        },
    }


def _ms(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def render(timeline: Timeline) -> str:
    figures = summarize(timeline.turns)
    lines = [f"replay ({timeline.mode}) of {timeline.source}: {figures['turns']} turns, "
             f"{figures['answered']} answered, {figures['interrupted']} interrupted, "
             f"{timeline.duration_s:.1f} s"]
    if timeline.backends:
        lines.append("backends: " + ", ".join(f"{k} {v}" for k, v in timeline.backends.items()))
    lines.append("")
    for turn in timeline.turns:
        at = "" if turn.user_end_s is None else f" @ {turn.user_end_s:6.2f}s"
        head = f"#{turn.index} {turn.role} {turn.source}{at}"
        if turn.voice_to_voice_ms is not None:
            head += f"  v2v {turn.voice_to_voice_ms:.0f} ms"
        if "first_audio_sent_ms" in turn.timings_ms:
            head += f"  server {turn.timings_ms['first_audio_sent_ms']:.0f} ms"
        if turn.barge_in_reaction_ms is not None:
            head += f"  barge-in reaction {turn.barge_in_reaction_ms:.0f} ms"
            if turn.barge_in_pause_ms is not None:
                head += f" (first quiet at {turn.barge_in_pause_ms:.0f})"
        if turn.interrupted:
            head += "  [interrupted]"
        lines.append(head)
        lines.append(f"    user:  {_clip(turn.user_text, 100)!s}")
        lines.append(f"    agent: {_clip(turn.spoken_text or turn.reply_text, 100)}")
        if turn.error:
            lines.append(f"    error: {turn.error}")
    lines.append("")
    lines.extend(figure_lines(figures))
    if timeline.original is not None and timeline.matches is not None:
        lines.append("")
        lines.extend(comparison_lines(timeline))
    return "\n".join(lines) + "\n"


def figure_lines(figures: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    v = figures["voice_to_voice_ms"]
    if v["n"]:
        lines.append(f"voice-to-voice (client clock)  p50 {_ms(v['p50']):>6} ms  "
                     f"p90 {_ms(v['p90']):>6} ms  min {_ms(v['min'])}  max {_ms(v['max'])}"
                     f"  (n={v['n']})")
    g = figures["client_minus_server_ms"]
    if g["n"]:
        lines.append(f"  minus the server's own        p50 {_ms(g['p50']):>6} ms  "
                     f"p90 {_ms(g['p90']):>6} ms  (transport + VAD end detection)")
    b = figures["barge_in_reaction_ms"]
    if b["n"]:
        lines.append(f"barge-in reaction (stopped)    p50 {_ms(b['p50']):>6} ms  "
                     f"p90 {_ms(b['p90']):>6} ms  (n={b['n']})")
    q = figures["barge_in_pause_ms"]
    if q["n"]:
        lines.append(f"  first quiet 200 ms           p50 {_ms(q['p50']):>6} ms  "
                     f"p90 {_ms(q['p90']):>6} ms")
    r = figures["reply_longest_silence_ms"]
    if r["n"]:
        lines.append(f"longest silence inside a reply p50 {_ms(r['p50']):>6} ms  "
                     f"p90 {_ms(r['p90']):>6} ms  max {_ms(r['max'])}")
    if figures["server_stages_ms"]:
        lines.append("server stages, ms after the end of user speech (STT is a duration):")
        for key, value in figures["server_stages_ms"].items():
            label = STAGE_LABELS.get(key, key)
            lines.append(f"  {label:31s}p50 {_ms(value['p50']):>6}  p90 {_ms(value['p90']):>6}")
    return lines


def comparison_lines(timeline: Timeline) -> list[str]:
    assert timeline.original is not None and timeline.matches is not None
    lines = ["original call vs. replay, side by side:"]
    for match in timeline.matches:
        old = timeline.original[match.original] if match.original is not None else None
        new = timeline.turns[match.replay] if match.replay is not None else None
        at = (old.user_end_s if old is not None and old.user_end_s is not None
              else new.user_end_s if new is not None else None)
        lines.append(f"- turn {'' if at is None else f'@ {at:.2f}s'}"
                     f" (original #{_idx(old)}, replay #{_idx(new)})")
        for label, before, after in (
            ("user", old.user_text if old else None, new.user_text if new else None),
            ("reply", old.spoken_text if old else None, new.spoken_text if new else None),
        ):
            mark = "" if before == after else "  *"
            lines.append(f"    {label:6s} original: {_text(before)}{mark}")
            lines.append(f"    {'':6s} replay:   {_text(after)}")
        lines.append(f"    interrupted  original {_yes(old.interrupted if old else None)}"
                     f"  replay {_yes(new.interrupted if new else None)}")
        keys = [k for k in STAGE_LABELS
                if (old and k in old.timings_ms) or (new and k in new.timings_ms)]
        if keys:
            lines.append(f"    {'stage':31s}{'original':>9}{'replay':>9}")
            for key in keys:
                a = old.timings_ms.get(key) if old else None
                b = new.timings_ms.get(key) if new else None
                lines.append(f"    {STAGE_LABELS[key]:31s}{_ms(a):>9}{_ms(b):>9}")
    return lines


def _idx(turn: OriginalTurn | TimelineTurn | None) -> str:
    return "-" if turn is None else str(turn.index)


def _text(text: str | None) -> str:
    return "(none)" if text is None else repr(_clip(text, 90))


def _yes(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")
