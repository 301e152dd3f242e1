"""A picture of the call: both waveforms on one time axis with the VAD segments, each
turn's stages as bars, and the latencies annotated. PNG, or a self-contained HTML page
(the same figure as inline SVG, with the summary and a table of the turns).

matplotlib's Figure is used directly (no pyplot): no global state, no GUI backend; PNG
goes through Agg.
"""

from __future__ import annotations

import html
import io
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from avatar_rtc.replay.summary import STAGE_LABELS, render
from avatar_rtc.replay.timeline import AUDIO_RATE, Timeline
from media.resample import Pcm

USER_COLOR = "#1f77b4"
AGENT_COLOR = "#ff7f0e"
VAD_COLOR = "#2ca02c"
# Each bar: (label, start key, end key); None start = the end of the user's speech.
BARS: tuple[tuple[str, str | None, str], ...] = (
    ("end-of-speech wait", None, "endpoint_ms"),
    ("STT", "stt_start", "stt_done_ms"),
    ("LLM first token", "stt_done_ms", "llm_first_token_ms"),
    ("first text chunk", "llm_first_token_ms", "first_chunk_ms"),
    ("TTS first audio", "first_chunk_ms", "tts_first_audio_ms"),
    ("to first frame sent", None, "first_audio_sent_ms"),
)
_BAR_COLORS = ("#9e9e9e", "#8c564b", "#9467bd", "#bcbd22", "#d62728", AGENT_COLOR)


def _envelope(pcm: Pcm, duration_s: float, bins: int = 3000) -> tuple[np.ndarray, np.ndarray,
                                                                          np.ndarray]:
    """Min/max per bin: a waveform that plots fast at any length."""
    length = max(len(pcm), round(duration_s * AUDIO_RATE), 1)
    data = np.zeros(length, np.float32)
    data[: len(pcm)] = pcm.astype(np.float32) / 32768.0
    bins = max(1, min(bins, length))
    size = length // bins
    shaped = data[: size * bins].reshape(bins, size)
    t = (np.arange(bins) * size + size / 2) / AUDIO_RATE
    return t, shaped.min(axis=1), shaped.max(axis=1)


def figure(timeline: Timeline) -> Figure:
    turns = timeline.turns
    duration = max(timeline.duration_s, 1.0)
    fig = Figure(figsize=(max(10.0, min(30.0, duration * 0.5)), 6.5), layout="constrained")
    wave, stages = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    wave.set_title(f"replay ({timeline.mode}) of {timeline.source}", fontsize=10, loc="left")
    for pcm, color, sign, label in ((timeline.user_audio, USER_COLOR, 1, "user (sent)"),
                                    (timeline.agent_audio, AGENT_COLOR, -1, "agent (heard)")):
        if pcm is None or not len(pcm):
            continue
        t, low, high = _envelope(pcm, duration)
        # The user above the axis, the agent below it: one time axis, both visible.
        peak = np.maximum(np.abs(low), np.abs(high))
        wave.fill_between(t, 0, sign * peak, color=color, linewidth=0, label=label)
    for n, segment in enumerate(timeline.vad):
        end = segment.end_s if segment.end_s is not None else duration
        wave.axvspan(segment.start_s, end, color=VAD_COLOR, alpha=0.12,
                     label="server VAD: speech" if n == 0 else None)
    wave.set_ylim(-1.15, 1.35)
    wave.set_yticks([0.5, -0.5], ["user", "agent"])
    wave.axhline(0, color="black", linewidth=0.5)
    for turn in turns:
        if turn.user_end_s is not None:
            wave.axvline(turn.user_end_s, color=USER_COLOR, linestyle=":", linewidth=0.8)
        if turn.user_end_s is not None and turn.agent_start_s is not None:
            latency = turn.voice_to_voice_ms
            kind = "v2v"
            if latency is None and "first_audio_sent_ms" in turn.timings_ms:
                latency, kind = turn.timings_ms["first_audio_sent_ms"], "server v2v"
            wave.annotate("", xy=(turn.agent_start_s, 1.1), xytext=(turn.user_end_s, 1.1),
                          arrowprops={"arrowstyle": "->", "color": "black", "lw": 0.8})
            if latency is not None:
                wave.text(turn.user_end_s, 1.17, f"{kind} {latency:.0f} ms", fontsize=7)
        if turn.barge_in_reaction_ms is not None and turn.agent_end_s is not None:
            onset = turn.agent_end_s - turn.barge_in_reaction_ms / 1000
            wave.annotate("", xy=(turn.agent_end_s, -1.05), xytext=(onset, -1.05),
                          arrowprops={"arrowstyle": "->", "color": "red", "lw": 0.8})
            wave.text(onset, -1.13, f"barge-in {turn.barge_in_reaction_ms:.0f} ms",
                      fontsize=7, color="red", va="top")
    fig.legend(loc="outside upper right", fontsize=7, ncols=3)
    rows = [label for label, _, _ in BARS]
    for turn in turns:
        if turn.user_end_s is None:
            continue
        timings = turn.timings_ms
        for row, ((_, start_key, end_key), color) in enumerate(zip(BARS, _BAR_COLORS,
                                                                   strict=True)):
            if end_key not in timings:
                continue
            if start_key == "stt_start":
                if "stt_ms" not in timings:
                    continue
                begin = timings[end_key] - timings["stt_ms"]
            elif start_key is None:
                begin = 0.0
            elif start_key in timings:
                begin = timings[start_key]
            else:
                continue
            width = max(timings[end_key] - begin, 1.0)
            stages.broken_barh([(turn.user_end_s + begin / 1000, width / 1000)],
                               (row - 0.35, 0.7), color=color)
        if "first_audio_sent_ms" in timings:
            stages.text(turn.user_end_s + timings["first_audio_sent_ms"] / 1000 + 0.05,
                        len(rows) - 1, f"{timings['first_audio_sent_ms']:.0f} ms",
                        fontsize=7, va="center")
    stages.set_yticks(range(len(rows)), rows, fontsize=8)
    stages.set_ylim(len(rows) - 0.4, -0.6)
    stages.set_xlabel("seconds" + (" (client clock; server stages from the end of speech "
                                   "sent)" if timeline.mode == "webrtc" else ""))
    stages.set_xlim(0, duration)
    stages.grid(axis="x", alpha=0.3)
    return fig


def render_png(timeline: Timeline, path: Path) -> Path:
    fig = figure(timeline)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=110)
    return path


def _svg(timeline: Timeline) -> str:
    buffer = io.StringIO()
    figure(timeline).savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog: it is inline


def render_html(timeline: Timeline, path: Path) -> Path:
    rows = []
    for turn in timeline.turns:
        cells = [str(turn.index), turn.role, turn.source,
                 "" if turn.user_end_s is None else f"{turn.user_end_s:.2f}",
                 turn.user_text, turn.spoken_text or turn.reply_text,
                 "yes" if turn.interrupted else "",
                 "" if turn.voice_to_voice_ms is None else f"{turn.voice_to_voice_ms:.0f}",
                 "" if turn.barge_in_reaction_ms is None else f"{turn.barge_in_reaction_ms:.0f}",
                 *(f"{turn.timings_ms[k]:.0f}" if k in turn.timings_ms else ""
                   for k in STAGE_LABELS),
                 turn.error or ""]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    heads = ["#", "role", "file", "speech end s", "user", "agent", "interrupted",
             "v2v ms (client)", "barge-in ms", *STAGE_LABELS.values(), "error"]
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>replay {html.escape(timeline.mode)}: {html.escape(timeline.source)}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }}
svg {{ max-width: 100%; height: auto; }}
table {{ border-collapse: collapse; font-size: 12px; }}
td, th {{ border: 1px solid #ccc; padding: 3px 6px; vertical-align: top; }}
th {{ background: #f3f3f3; }}
pre {{ background: #f7f7f7; padding: 1em; overflow-x: auto; }}
</style></head><body>
<h1>Replay ({html.escape(timeline.mode)}) of {html.escape(timeline.source)}</h1>
<p>Started {html.escape(timeline.started_at)}, {timeline.duration_s:.1f} s.</p>
<figure>{_svg(timeline)}</figure>
<h2>Turns</h2>
<table><thead><tr>{"".join(f"<th>{html.escape(h)}</th>" for h in heads)}</tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<h2>Summary</h2>
<pre>{html.escape(render(timeline))}</pre>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path


def render_report(timeline: Timeline, path: Path) -> Path:
    """PNG or HTML, by the file's suffix."""
    if path.suffix.lower() in (".html", ".htm"):
        return render_html(timeline, path)
    return render_png(timeline, path)
