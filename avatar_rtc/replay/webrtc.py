"""Replay over WebRTC, like a real caller: audio files as the microphone, in real time.

One aiortc caller (avatar_rtc.caller) connects to any server through `POST /offer`,
speaks each file, waits for the agent's reply to end, leaves a gap, and goes on. It
can talk over one reply (barge-in) at a given offset into it (or, if the agent is
between two chunks then, as soon as it speaks again). On the client's clock:

  voice-to-voice    = the last voiced sample of a file handed to aiortc ->
                      the first audible agent frame received
  barge-in reaction = the first voiced sample of the barge-in handed to aiortc ->
                      the end of the last audible agent frame of the reply talked over

The server's own numbers for each turn come from the data channel ("timings").
"""

from __future__ import annotations

import asyncio
import datetime
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np

from avatar_rtc.caller import AUDIBLE_PEAK, Caller, CallerError, Utterance
from avatar_rtc.replay.errors import CALL_FAILED, ReplayError
from avatar_rtc.replay.measure import audible_at, first_quiet, last_audible_end, longest_silence
from avatar_rtc.replay.progress import ProgressSink
from avatar_rtc.replay.sources import AudioSource
from avatar_rtc.replay.timeline import AUDIO_RATE, Timeline, TimelineTurn, VadSegment, place
from media.resample import Pcm, resample_pcm

FRAME_S = 0.02  # one received frame
# A barge-in waits at most this long past its offset for the agent to speak again.
SPEAKING_WAIT_S = 3.0


@dataclass(frozen=True)
class WebrtcOptions:
    gap_s: float = 0.8  # silence after the agent's reply ends, before the next file
    lead_s: float = 0.3  # silence played before each file
    barge_in: AudioSource | None = None  # played over the agent's reply
    barge_in_at_s: float = 1.0  # into that reply, from its first audio received
    barge_in_turn: int = -1  # whose reply is talked over: index into the files (-1: last)
    voice: str | None = None  # the offer's "voice"
    reply_timeout_s: float = 60.0  # for a reply to start; then, of agent silence
    jitter_frames: int | None = None  # the client's receive buffer, for the record only
    connect_timeout_s: float = 20.0


async def server_health(url: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """GET /health, with an error that says what is wrong with the URL or server."""
    try:
        async with aiohttp.ClientSession() as http, http.get(
            f"{url}/health", timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as response:
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = None
            if not isinstance(body, dict) or "ready" not in body:
                raise ReplayError(f"{url} does not look like an avatar_rtc server "
                                  f"(GET /health answered {response.status})", CALL_FAILED)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        raise ReplayError(f"cannot reach {url}: {reason}", CALL_FAILED) from None
    if body.get("error"):
        raise ReplayError(f"server at {url} failed to load its models: {body['error']}",
                          CALL_FAILED)
    if not body.get("ready"):
        raise ReplayError(f"server at {url} is still loading its models; retry when "
                          "GET /health says ready", CALL_FAILED)
    return body


async def replay_webrtc(url: str, sources: list[AudioSource],
                        options: WebrtcOptions | None = None,
                        progress: ProgressSink | None = None) -> Timeline:
    options = options or WebrtcOptions()
    url = url.rstrip("/")
    if not sources:
        raise ReplayError("no audio files to play")
    health = await server_health(url)
    timeline = Timeline(
        mode="webrtc", source=url,
        started_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
        options={"gap_s": options.gap_s, "lead_s": options.lead_s, "voice": options.voice,
                 "barge_in": options.barge_in.name if options.barge_in else None,
                 "barge_in_at_s": options.barge_in_at_s if options.barge_in else None,
                 "barge_in_turn": options.barge_in_turn if options.barge_in else None,
                 "jitter_frames": options.jitter_frames},
        backends={str(k): str(v) for k, v in (health.get("backends") or {}).items()},
    )
    caller = Caller(url, voice=options.voice)
    try:
        await caller.connect(options.connect_timeout_s)
    except CallerError as exc:
        await caller.close()
        raise ReplayError(str(exc), CALL_FAILED) from None
    except TimeoutError:
        await caller.close()
        raise ReplayError(f"no WebRTC connection to {url} within "
                          f"{options.connect_timeout_s:.0f} s", CALL_FAILED) from None
    timeline.call_id = caller.session_id
    run = _Run(caller, options, timeline, progress)
    try:
        await run.play(sources)
        await asyncio.sleep(0.3)  # the last frames still in flight
    except CallerError as exc:  # over mid-call: the turns measured so far stay
        turns = timeline.turns
        if turns and turns[-1].error is None:
            turns[-1].error = str(exc)
        timeline.options["error"] = str(exc)
    finally:
        await caller.close()
    run.finish()
    return timeline


class _Run:
    def __init__(self, caller: Caller, options: WebrtcOptions, timeline: Timeline,
                 progress: ProgressSink | None) -> None:
        self.caller = caller
        self.options = options
        self.timeline = timeline
        self.progress = progress
        self.t0 = time.monotonic()
        timeline.clock_origin = self.t0
        self.user = np.zeros(0, np.int16)
        self.claimed: set[int] = set()
        self.done = 0

    def rel(self, at: float | None) -> float | None:
        return None if at is None else round(at - self.t0, 4)

    async def play(self, sources: list[AudioSource]) -> None:
        options = self.options
        barge_at = None
        if options.barge_in is not None:
            barge_at = options.barge_in_turn % len(sources)
        total = len(sources) + (1 if barge_at is not None else 0)
        for i, source in enumerate(sources):
            turn = self.new_turn(source.name, "turn")
            lead = np.zeros(round(options.lead_s * source.rate), np.int16)
            said = await self.speak(turn, np.concatenate([lead, source.pcm]), source.rate)
            heard = await self.wait_reply(turn, said)
            barge: tuple[TimelineTurn, Utterance] | None = None
            if i == barge_at and heard is not None:
                assert options.barge_in is not None
                barge = await self.talk_over(heard, options.barge_in)
            await self.wait_turn_end(turn, said)
            self.report(total, turn)
            if barge is not None:
                barge_turn, over = barge
                await over.done.wait()
                self.user_times(barge_turn, over)
                await self.wait_reply(barge_turn, over)
                await self.wait_turn_end(barge_turn, over)
                self.report(total, barge_turn)
            await asyncio.sleep(options.gap_s)

    def new_turn(self, source: str, role: str) -> TimelineTurn:
        turn = TimelineTurn(index=len(self.timeline.turns), source=source, role=role)
        self.timeline.turns.append(turn)
        return turn

    def report(self, total: int, turn: TimelineTurn) -> None:
        if self.progress is None:
            return
        v2v = turn.voice_to_voice_ms
        note = f"#{turn.index} {turn.role}: " + (turn.error or (
            f"v2v {v2v:.0f} ms" if v2v is not None else "no reply"))
        self.done += 1
        self.progress.update(self.done, note, total=total)

    async def speak(self, turn: TimelineTurn, pcm: Pcm, rate: int) -> Utterance:
        said = self.caller.say(pcm, rate)
        await said.done.wait()
        self.caller.check_live()  # not cut short by the end of the call
        self.user_times(turn, said)
        return said

    def user_times(self, turn: TimelineTurn, said: Utterance) -> None:
        if said.started_at is not None:
            self.user = place(self.user, said.started_at - self.t0,
                              resample_pcm(said.pcm, 48000, AUDIO_RATE))
        turn.user_start_s = self.rel(said.speech_start_at)
        turn.user_end_s = self.rel(said.speech_end_at)
        if said.speech_end_at is None:
            turn.error = "no audible speech in the file"

    async def wait_reply(self, turn: TimelineTurn, said: Utterance) -> float | None:
        """The arrival time of the reply's first audible frame (None: no reply)."""
        if said.speech_end_at is None:
            return None
        try:
            heard = await self.caller.wait_agent_audio(
                after=said.speech_end_at, timeout_s=self.options.reply_timeout_s)
        except TimeoutError:
            turn.error = f"no agent audio within {self.options.reply_timeout_s:.0f} s"
            return None
        turn.voice_to_voice_ms = round((heard - said.speech_end_at) * 1000, 1)
        turn.agent_start_s = self.rel(heard)
        return heard

    async def talk_over(self, heard: float,
                        source: AudioSource) -> tuple[TimelineTurn, Utterance]:
        delay = self.options.barge_in_at_s - (time.monotonic() - heard)
        if delay > 0:
            await asyncio.sleep(delay)
        await self.agent_speaking()
        barge_turn = self.new_turn(source.name, "barge-in")
        over = self.caller.say(source.pcm, source.rate)
        voiced = asyncio.ensure_future(over.voiced.wait())
        done = asyncio.ensure_future(over.done.wait())
        await asyncio.wait([voiced, done], return_when=asyncio.FIRST_COMPLETED)
        for waiter in (voiced, done):
            waiter.cancel()
        if over.speech_start_at is None:
            barge_turn.error = "no audible speech in the barge-in file"
            return barge_turn, over
        onset = over.speech_start_at
        # A reply may pause between clauses; it is over only once its turn ended.
        if any(event.get("type") == "turn_end" and heard <= at <= onset
               for at, event in self.caller.events):
            barge_turn.error = "the agent's reply had ended when the barge-in started"
        return barge_turn, over

    async def agent_speaking(self) -> None:
        """People talk over speech, not into the pause between two chunks: a barge-in
        started there would time the agent stopping before it began (0 ms)."""
        deadline = time.monotonic() + SPEAKING_WAIT_S
        while time.monotonic() < deadline:
            latest = [f.at for f in self.caller.frames[-1:] if f.peak >= AUDIBLE_PEAK]
            if audible_at(latest, time.monotonic(), FRAME_S):
                return
            await asyncio.sleep(FRAME_S / 2)

    async def wait_turn_end(self, turn: TimelineTurn, said: Utterance) -> None:
        if said.speech_end_at is None:
            return
        timeout = self.options.reply_timeout_s
        try:
            transcript = await self.caller.wait_event("user_transcript",
                                                      after=said.speech_end_at,
                                                      timeout_s=timeout)
        except TimeoutError:
            turn.error = turn.error or "the server transcribed no words"
            return
        index = int(transcript["turn"])
        if index in self.claimed:
            turn.error = f"server turn {index} was already matched to an earlier file"
            return
        self.claimed.add(index)
        turn.server_turn = index
        turn.user_text = str(transcript.get("text", ""))
        try:
            end = await self.wait_while_talking("turn_end", index)
            timings = await self.caller.wait_event("timings", turn=index, timeout_s=5.0)
        except TimeoutError:
            turn.error = turn.error or f"the agent went quiet for {timeout:.0f} s without " \
                                       "ending its turn"
            return
        turn.reply_text = str(end.get("reply_text", ""))
        turn.spoken_text = str(end.get("spoken_text", ""))
        turn.interrupted = bool(end.get("interrupted"))
        turn.timings_ms = {str(k): float(v) for k, v in timings["timings"].items()}

    async def wait_while_talking(self, kind: str, index: int) -> dict[str, Any]:
        """The event for server turn `index`; a long reply may take as long as it talks,
        the timeout counts only time without agent audio."""
        started = time.monotonic()
        while True:
            try:
                return await self.caller.wait_event(kind, turn=index, timeout_s=1.0)
            except TimeoutError:
                # Since the last audible frame, however long ago: a reply that paused
                # for over 2 s more than 60 s in was once taken for a silent agent.
                last = max(started, self.caller.last_audible_at or started)
                if time.monotonic() - last > self.options.reply_timeout_s:
                    raise

    def finish(self) -> None:
        """Fills what only the whole call shows: reply ends, barge-in reactions, VAD."""
        caller, timeline = self.caller, self.timeline
        end_of_call = time.monotonic()
        timeline.duration_s = round(end_of_call - self.t0, 3)
        turns = timeline.turns
        audible = [f.at for f in caller.frames if f.peak >= AUDIBLE_PEAK]
        for i, turn in enumerate(turns):
            if turn.agent_start_s is None:
                continue
            later = [t.agent_start_s for t in turns[i + 1:] if t.agent_start_s is not None]
            # Up to the next reply's first frame, not including it (times are rounded).
            window_end = self.t0 + later[0] - FRAME_S / 2 if later else end_of_call
            stopped = last_audible_end(audible, self.t0 + turn.agent_start_s, window_end,
                                       FRAME_S)
            turn.agent_end_s = self.rel(stopped)
            if stopped is not None:
                silence = longest_silence(audible, self.t0 + turn.agent_start_s, stopped,
                                          FRAME_S)
                turn.longest_silence_ms = round(silence * 1000, 1)
            barge = turns[i + 1] if i + 1 < len(turns) else None
            if (barge is not None and barge.role == "barge-in" and not barge.error
                    and barge.user_start_s is not None):
                onset = self.t0 + barge.user_start_s
                # Only the reply's tail counts: frames before the barge-in reply begins.
                stop = last_audible_end(audible, onset, window_end, FRAME_S) or onset
                pause = first_quiet(audible, onset, window_end, FRAME_S)
                turn.barge_in_reaction_ms = round((stop - onset) * 1000, 1)
                turn.barge_in_pause_ms = round((pause - onset) * 1000, 1)
        open_segment: VadSegment | None = None
        for at, event in caller.events:
            if event.get("type") != "vad":
                continue
            if event.get("speaking") and open_segment is None:
                open_segment = VadSegment(start_s=round(at - self.t0, 4))
                timeline.vad.append(open_segment)
            elif not event.get("speaking") and open_segment is not None:
                open_segment.end_s = round(at - self.t0, 4)
                open_segment = None
        timeline.user_audio = self.user
        agent = np.zeros(0, np.int16)
        for frame, pcm in zip(caller.frames, caller.audio, strict=False):
            if pcm.size:
                agent = place(agent, frame.at - self.t0, pcm)  # playable on arrival
        timeline.agent_audio = agent
