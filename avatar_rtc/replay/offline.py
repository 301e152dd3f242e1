"""Offline replay: a recorded call's user track through the pipeline, without WebRTC.

The user's audio (16 kHz, 512-sample frames) goes into a real Conversation built on
the current backends, exactly as the inbound track feeds it in a call; the agent's
audio goes to the outbound track's playout queue (media.PlayoutQueue), played in 20 ms
slots on the replay clock, so barge-in cuts the reply where a caller would have heard
it cut.

Two speeds, one clock. In real time the driver sleeps until each input frame and each
output slot is due. Fast, the replay clock jumps ahead whenever no backend is working
(the user talking, the agent playing audio, silence), and runs at wall-clock speed
while STT, the LLM or TTS compute, so every stage timing is still a real one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar_rtc.backends.base import Pcm
from avatar_rtc.backends.registry import Backends
from avatar_rtc.caller import AUDIBLE_PEAK, VOICED_PEAK
from avatar_rtc.conversation import events as call_events
from avatar_rtc.conversation.agent import Conversation, ConversationConfig
from avatar_rtc.conversation.endpointing import FRAME_SAMPLES, SAMPLE_RATE
from avatar_rtc.conversation.turn import Turn
from avatar_rtc.replay.errors import ReplayError
from avatar_rtc.replay.measure import first_quiet, last_audible_end
from avatar_rtc.replay.observed import Activity, observed
from avatar_rtc.replay.progress import ProgressSink
from avatar_rtc.replay.sources import AudioSource, load_audio
from avatar_rtc.replay.timeline import (
    AUDIO_RATE,
    Match,
    OriginalTurn,
    Timeline,
    TimelineTurn,
    VadSegment,
)
from avatar_rtc.settings import Settings
from avatar_rtc.storage import Store, default_url
from media.playout import FRAME_SAMPLES as OUT_FRAME
from media.playout import SAMPLE_RATE as OUT_RATE
from media.playout import PlayoutQueue
from media.resample import resample_pcm

IN_FRAME_S = FRAME_SAMPLES / SAMPLE_RATE  # 32 ms
OUT_FRAME_S = OUT_FRAME / OUT_RATE  # 20 ms
MIN_TAIL_S = 1.0  # silence fed after the recording, so its last turn can end
MAX_TAIL_S = 120.0  # and no more, whatever the pipeline does
MATCH_TOLERANCE_S = 1.5  # two turns whose speech ends this close are the same turn


class ReplayClock:
    """Monotonic time plus the time skipped in fast mode."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.skipped

    def skip(self, seconds: float) -> None:
        self.skipped += max(0.0, seconds)


# ---- the recorded call ---------------------------------------------------------------


@dataclass
class RecordedCall:
    call_id: str
    user: AudioSource
    original: list[OriginalTurn]


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000


def _database_url(settings: Settings) -> str:
    url = settings.storage.database_url
    if not url:
        url = default_url(settings.storage.data_dir)
        database = Path(url.removeprefix("sqlite:///"))
        if not database.exists():  # Store.open would create an empty one
            raise ReplayError(f"no database at {database}: point --data-dir (or "
                              "--database-url) at the server's storage")
    return url


def _recording_path(data_dir: str, call_id: str, relative: str) -> Path:
    root = Path(data_dir).resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise ReplayError(f"call {call_id}: recording path {relative!r} lies outside {root}")
    return path


async def load_recorded_call(settings: Settings, call_id: str) -> RecordedCall:
    """The call's user track and stored turns, or a ReplayError saying what is missing."""
    url = await asyncio.to_thread(_database_url, settings)
    try:
        store = await Store.open(url)
    except Exception as exc:
        raise ReplayError(f"cannot open the database {url}: {exc}") from None
    try:
        call = await store.get_call(call_id)
        if call is None:
            raise ReplayError(f"unknown call ID {call_id!r} (not in {url})")
        turns = await store.turns(call_id)
    finally:
        await store.close()
    if call.recording_deleted:
        raise ReplayError(f"call {call_id}: its recording was deleted (retention)")
    if not call.user_audio_path:
        raise ReplayError(f"call {call_id} has no recording (recording was off, or the "
                          "call predates recordings)")
    path = await asyncio.to_thread(_recording_path, settings.storage.data_dir, call_id,
                                   call.user_audio_path)
    user = await asyncio.to_thread(load_audio, path, SAMPLE_RATE, name="recording")
    original = [
        OriginalTurn(
            index=t.index, user_text=t.user_text, reply_text=t.reply_text,
            spoken_text=t.spoken_text, interrupted=t.interrupted, timings_ms=dict(t.timings),
            user_start_s=_seconds(t.user_audio_start_ms), user_end_s=_seconds(t.user_audio_end_ms),
            agent_start_s=_seconds(t.agent_audio_start_ms),
            agent_end_s=_seconds(t.agent_audio_end_ms),
        )
        for t in turns
    ]
    return RecordedCall(call_id=call_id, user=user, original=original)


# ---- the replay ------------------------------------------------------------------------


async def replay_offline(
    backends: Backends,
    config: ConversationConfig,
    user: AudioSource,
    *,
    source: str,
    fast: bool = False,
    original: list[OriginalTurn] | None = None,
    progress: ProgressSink | None = None,
) -> Timeline:
    """Feeds `user` (16 kHz) through a Conversation; returns the timeline."""
    if user.rate != SAMPLE_RATE:
        user = AudioSource(user.name, resample_pcm(user.pcm, user.rate, SAMPLE_RATE),
                           SAMPLE_RATE)
    if fast:  # skipped time would outrun real-time pacing: synthesize as fast as possible
        config = dataclasses.replace(config, speak_ahead_s=0.0)
    clock = ReplayClock()
    activity = Activity()
    playout = PlayoutQueue(clock)
    played: list[tuple[float, Pcm]] = []  # (slot time, 48 kHz PCM), audible only
    events: list[tuple[float, call_events.Event]] = []
    finished: list[Turn] = []
    start = clock()
    conversation = Conversation(
        observed(backends, activity), config, playout,
        emit=lambda event: events.append((clock() - start, event)),
        on_turn_finished=finished.append, clock=clock,
    )
    timeline = Timeline(
        mode="offline", source=source,
        started_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
        options={"fast": fast, "end_silence_ms": config.endpoint.end_silence_ms,
                 "speculative": config.speculative},
        backends=backends.describe(),
    )
    wall = time.monotonic()
    try:
        ended = await _drive(conversation, playout, played, user, clock, activity, start,
                             fast, config.endpoint.end_silence_ms / 1000, progress)
    finally:
        await conversation.aclose()
    timeline.options["wall_s"] = round(time.monotonic() - wall, 3)
    if not ended:
        timeline.options["note"] = f"the pipeline was still busy {MAX_TAIL_S:.0f} s after " \
                                   "the recording ended"
    timeline.duration_s = round(clock() - start, 3)
    timeline.clock_origin = start
    _fill(timeline, finished, events, played, user, start)
    if original is not None:
        timeline.original = original
        timeline.matches = match_turns(original, timeline.turns)
    return timeline


async def _drive(conversation: Conversation, playout: PlayoutQueue,
                 played: list[tuple[float, Pcm]], user: AudioSource, clock: ReplayClock,
                 activity: Activity, start: float, fast: bool, end_silence_s: float,
                 progress: ProgressSink | None) -> bool:
    """Feeds input frames and plays output slots in time order, keeping the audible
    ones in `played`; True when it ended quiet (False: still busy after MAX_TAIL_S of
    silence)."""
    pcm = user.pcm
    frames = -(-len(pcm) // FRAME_SAMPLES)
    audio_s = frames * IN_FRAME_S
    tail_s = max(MIN_TAIL_S, end_silence_s + 0.7)
    silence = np.zeros(FRAME_SAMPLES, np.int16)
    fed = slots = 0
    quiet_since: float | None = None
    while True:
        next_in = start + fed * IN_FRAME_S
        next_out = start + slots * OUT_FRAME_S
        due = min(next_in, next_out)
        delay = due - clock()
        if delay > 0:
            if fast and activity.working == 0:
                clock.skip(delay)
            else:
                await asyncio.sleep(delay)
        if next_out <= next_in:
            out = playout.next_frame(next_out)
            if out.any():
                played.append((next_out, out))
            slots += 1
        else:
            frame = pcm[fed * FRAME_SAMPLES : (fed + 1) * FRAME_SAMPLES]
            if frame.size < FRAME_SAMPLES:
                frame = np.concatenate([frame, silence[: FRAME_SAMPLES - frame.size]])
            conversation.feed(frame)
            fed += 1
            position = fed * IN_FRAME_S
            if progress is not None and fed % 16 == 0:
                progress.update(min(position, audio_s),
                                f"{len(conversation.finished_turns)} turns")
            if position >= audio_s + tail_s:
                idle = (conversation.state == "listening" and not playout.is_playing
                        and activity.working == 0)
                if not idle:
                    quiet_since = None
                elif quiet_since is None:
                    quiet_since = position
                elif position - quiet_since >= end_silence_s + 0.2:
                    return True
                if position >= audio_s + MAX_TAIL_S:
                    return False
        # Lets turn tasks started by this frame reach their backend call, so the fast
        # driver sees them working before it decides to skip time.
        await asyncio.sleep(0)


def _fill(timeline: Timeline, finished: list[Turn], events: list[tuple[float, call_events.Event]],
          played: list[tuple[float, Pcm]], user: AudioSource, start: float) -> None:
    agent48 = np.zeros(round(timeline.duration_s * OUT_RATE) + OUT_FRAME, np.int16)
    audible: list[float] = []
    for slot, pcm in played:
        pos = round((slot - start) * OUT_RATE)
        agent48[pos : pos + OUT_FRAME] = pcm[: max(0, len(agent48) - pos)]
        if int(np.abs(pcm).max()) >= AUDIBLE_PEAK:
            audible.append(slot - start)
    timeline.agent_audio = resample_pcm(agent48, OUT_RATE, AUDIO_RATE)
    timeline.user_audio = user.pcm
    voiced = np.flatnonzero(np.abs(user.pcm) > VOICED_PEAK)

    def onset(begin: float, end: float) -> float | None:
        lo, hi = np.searchsorted(voiced, [begin * SAMPLE_RATE, end * SAMPLE_RATE])
        return None if lo >= hi else round(float(voiced[lo]) / SAMPLE_RATE, 4)

    def last_audible(begin: float, end: float) -> float | None:
        stop = last_audible_end(audible, begin, end, OUT_FRAME_S)
        return None if stop is None else round(stop, 4)

    turns = sorted(finished, key=lambda t: t.speech_end_at)
    for i, turn in enumerate(turns):
        end_s = round(turn.speech_end_at - start, 4)
        first = turn.marks.get("first_audio_sent")
        timeline.turns.append(TimelineTurn(
            index=i, source=user.name, server_turn=turn.index,
            user_start_s=onset(end_s - len(turn.audio) / SAMPLE_RATE, end_s), user_end_s=end_s,
            agent_start_s=None if first is None else round(first - start, 4),
            user_text=turn.user_text, reply_text=turn.reply_text,
            spoken_text=turn.spoken_text, interrupted=turn.interrupted,
            timings_ms=turn.timings_ms(), error=turn.error,
        ))
    for i, item in enumerate(timeline.turns):
        if item.agent_start_s is None:
            continue
        later = [t.agent_start_s for t in timeline.turns[i + 1:] if t.agent_start_s is not None]
        # Up to the next reply's first frame, not including it (times are rounded).
        window_end = later[0] - OUT_FRAME_S / 2 if later else timeline.duration_s + 1
        item.agent_end_s = last_audible(item.agent_start_s, window_end)
        if item.interrupted:
            # The speech that cut the reply: the next turn's, or any voiced audio.
            nxt = timeline.turns[i + 1] if i + 1 < len(timeline.turns) else None
            talk = (nxt.user_start_s if nxt is not None and nxt.user_start_s is not None
                    else onset(item.agent_start_s, window_end))
            if talk is not None:
                stop = last_audible(talk, window_end) or talk
                pause = first_quiet(audible, talk, window_end, OUT_FRAME_S)
                item.barge_in_reaction_ms = round((stop - talk) * 1000, 1)
                item.barge_in_pause_ms = round((pause - talk) * 1000, 1)
    open_segment: VadSegment | None = None
    for at, event in events:
        if not isinstance(event, call_events.Vad):
            continue
        if event.speaking and open_segment is None:
            open_segment = VadSegment(start_s=round(at, 4))
            timeline.vad.append(open_segment)
        elif not event.speaking and open_segment is not None:
            open_segment.end_s = round(at, 4)
            open_segment = None


def match_turns(original: list[OriginalTurn], replay: list[TimelineTurn],
                tolerance_s: float = MATCH_TOLERANCE_S) -> list[Match]:
    """Pairs turns in time order by the end of the user's speech (in order when the
    original has no recording offsets); a turn with no partner gets a row of its own."""
    rows: list[Match] = []
    i = j = 0
    while i < len(original) or j < len(replay):
        if i < len(original) and j < len(replay):
            a, b = original[i].user_end_s, replay[j].user_end_s
            if a is None or b is None or abs(a - b) <= tolerance_s:
                rows.append(Match(i, j))
                i, j = i + 1, j + 1
            elif a < b:
                rows.append(Match(i, None))
                i += 1
            else:
                rows.append(Match(None, j))
                j += 1
        elif i < len(original):
            rows.append(Match(i, None))
            i += 1
        else:
            rows.append(Match(None, j))
            j += 1
    return rows
