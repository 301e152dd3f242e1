"""What tools/bench_turns.py measures, as pure functions of what one call received.

Everything works on an `Observed` call: the arrival times of the agent's audible
frames (client clock, time.monotonic()), the data-channel events with their arrival
times, and when observing stopped. The judges take the caller's own utterance times
(first/last voiced sample sent) and return plain dicts, so the bench's JSON holds
exactly what the rates are computed from, and the tests can feed synthetic calls.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from avatar_rtc.replay.measure import QUIET_S

FRAME_S = 0.02  # one received frame
GAP_S = 0.3  # an inaudible stretch longer than this is the agent cutting out
PRE_BACKCHANNEL_S = 0.2  # the kept-talking window opens this long before the onset
POST_BACKCHANNEL_S = 2.0  # ... and closes this long after the backchannel ends
BURST_MERGE_S = 1.5  # audible stretches closer than this are one reply (phantoms)

Event = tuple[float, dict[str, Any]]


@dataclass
class Observed:
    audible: list[float]  # sorted arrival times of audible agent frames
    events: list[Event] = field(default_factory=list)
    end: float = 0.0  # when observing stopped: nothing later is known


# ---- audio -------------------------------------------------------------------


def longest_gap(audible: Sequence[float], start: float, end: float,
                frame_s: float = FRAME_S) -> float:
    """The longest stretch of [start, end] with no audible frame, the edges included
    (a reply that stops 100 ms into the window and never resumes leaves a gap to its
    end). A frame at `at` sounds over [at, at + frame_s)."""
    if end <= start:
        return 0.0
    longest, covered = 0.0, start
    for at in audible:
        if at + frame_s <= start:
            continue
        if at >= end:
            break
        longest = max(longest, at - covered)
        covered = max(covered, at + frame_s)
    return max(longest, end - covered, 0.0)


def stop_time(audible: Sequence[float], onset: float, end: float, frame_s: float = FRAME_S,
              quiet_s: float = QUIET_S) -> float | None:
    """The start of the first `quiet_s` with no audible frame at or after `onset`: when
    the agent went quiet at the client. None when no such quiet was seen before `end`
    (observing stopped while it still talked)."""
    candidate = onset
    for at in audible:
        if at + frame_s <= onset:
            continue
        if at - candidate >= quiet_s or at >= end:
            break
        candidate = max(candidate, at + frame_s)
    return candidate if candidate + quiet_s <= end else None


def first_audible(audible: Sequence[float], after: float) -> float | None:
    return next((at for at in audible if at > after), None)


def audible_between(audible: Sequence[float], start: float, end: float) -> bool:
    return any(start < at < end for at in audible)


def bursts(audible: Sequence[float], start: float, end: float, merge_s: float,
           frame_s: float = FRAME_S) -> list[tuple[float, float]]:
    """Audible stretches in [start, end): frames less than `merge_s` apart join."""
    out: list[tuple[float, float]] = []
    for at in audible:
        if not start <= at < end:
            continue
        if out and at - out[-1][1] < merge_s:
            out[-1] = (out[-1][0], at + frame_s)
        else:
            out.append((at, at + frame_s))
    return out


def silence_inside(audible: Sequence[float], start: float, end: float,
                   frame_s: float = FRAME_S) -> float:
    """The longest silence between two audible frames in [start, end) (not the edges)."""
    inside = [at for at in audible if start <= at < end]
    return max([0.0, *(b - a - frame_s for a, b in itertools.pairwise(inside))])


# ---- events ------------------------------------------------------------------


def of_type(events: Sequence[Event], kind: str, after: float = float("-inf"),
            before: float = float("inf")) -> list[Event]:
    return [(at, e) for at, e in events if e.get("type") == kind and after < at < before]


def reply_turns(events: Sequence[Event], after: float = float("-inf")) -> dict[int, float]:
    """Server turns that spoke (agent_text) after `after`: turn -> its first chunk's time."""
    turns: dict[int, float] = {}
    for at, event in of_type(events, "agent_text", after):
        turns.setdefault(int(event.get("turn", -1)), at)
    return turns


def turn_end(events: Sequence[Event], turn: int | None) -> Event | None:
    return next(((at, e) for at, e in of_type(events, "turn_end")
                 if turn is not None and e.get("turn") == turn), None)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def covers(text: str, keys: Sequence[str]) -> bool:
    """Does a transcript hold any of the key words (lower case, whole words)?"""
    said = set(words(text))
    return any(key in said for key in keys)


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


# ---- the judges, one per scenario ---------------------------------------------


def judge_complete(call: Observed, speech_end: float) -> dict[str, Any]:
    """Voice-to-voice: the last voiced sample sent -> the first audible frame received;
    answered: that audio came, and with it a reply's text."""
    heard = first_audible(call.audible, speech_end)
    replies = reply_turns(call.events, speech_end)
    return {"v2v_ms": ms(None if heard is None else heard - speech_end),
            "answered": heard is not None and bool(replies)}


def judge_hesitation(call: Observed, first_end: float, second_start: float,
                     second_end: float, keys: Sequence[str]) -> dict[str, Any]:
    """Cut off: the agent was heard in the pause, or the server made the first half a
    turn of its own (its first transcript lacks the second half, or two user turns).
    Answered once: exactly one reply, and it started after the second half ended."""
    early = audible_between(call.audible, first_end, second_start)
    users = of_type(call.events, "user_transcript", first_end)
    first_text = str(users[0][1].get("text", "")) if users else None
    split = len(users) > 1 or (first_text is not None and not covers(first_text, keys))
    replies = reply_turns(call.events, first_end)
    once = (not early and len(replies) == 1
            and next(iter(replies.values())) > second_end)
    heard = first_audible(call.audible, second_end)
    return {"cut_off": early or split, "agent_in_pause": early, "two_turns": split,
            "user_texts": [str(e.get("text", "")) for _, e in users],
            "replies": len(replies), "answered_once": once,
            "v2v_ms": ms(None if heard is None else heard - second_end)}


def judge_backchannel(call: Observed, reply_turn: int | None, reply_start: float,
                      onset: float, said_end: float) -> dict[str, Any]:
    """Kept talking: no inaudible stretch over GAP_S from PRE_BACKCHANNEL_S before the
    onset to POST_BACKCHANNEL_S after the backchannel (or to the reply's natural end),
    the reply not ended as interrupted, and no new user turn for the backchannel."""
    ended = turn_end(call.events, reply_turn)
    interrupted = ended is not None and bool(ended[1].get("interrupted"))
    window_end = min(said_end + POST_BACKCHANNEL_S, call.end)
    if ended is not None and not interrupted:  # it ended by itself: up to its last frame
        last = [at + FRAME_S for at in call.audible if reply_start <= at <= ended[0]]
        window_end = min(window_end, max(last, default=window_end))
    gap = longest_gap(call.audible, onset - PRE_BACKCHANNEL_S, window_end)
    new_users = of_type(call.events, "user_transcript", onset)
    new_replies = [t for t in reply_turns(call.events, onset) if t != reply_turn]
    new_turn = bool(new_users) or bool(new_replies)
    return {"kept_talking": gap <= GAP_S and not interrupted and not new_turn,
            "longest_gap_ms": ms(gap), "interrupted": interrupted, "new_turn": new_turn,
            "user_texts": [str(e.get("text", "")) for _, e in new_users],
            # The same measure before the backchannel: the reply's own pauses.
            "gap_before_ms": ms(longest_gap(call.audible, reply_start,
                                            onset - PRE_BACKCHANNEL_S))}


def judge_interruption(call: Observed, reply_turn: int | None, onset: float,
                       keys: Sequence[str]) -> dict[str, Any]:
    """Stop: the first voiced sample of the interruption sent -> the start of the
    agent's first QUIET_S of silence at the client. Answered: a new turn whose
    transcript holds the new question's key word, and a reply to it."""
    stopped = stop_time(call.audible, onset, call.end)
    users = [(at, e) for at, e in of_type(call.events, "user_transcript", onset)
             if e.get("turn") != reply_turn]
    heard = next((e for _, e in users if covers(str(e.get("text", "")), keys)), None)
    replied = heard is not None and int(heard.get("turn", -1)) in reply_turns(call.events)
    ended = turn_end(call.events, reply_turn)
    return {"stop_ms": ms(None if stopped is None else stopped - onset),
            "observed_ms": ms(call.end - onset),  # how long a stop was waited for
            "answered": replied,
            "reply_interrupted": ended is not None and bool(ended[1].get("interrupted")),
            "user_texts": [str(e.get("text", "")) for _, e in users]}


def judge_echo(call: Observed, reply_turn: int | None, question_end: float,
               reply_start: float) -> dict[str, Any]:
    """With only the agent's echo on the microphone: did it interrupt itself (its turn
    ended as interrupted, a user turn appeared, which can only be its own words, or it
    cut out for over GAP_S mid-reply), and did it answer itself (a reply to such a turn)?"""
    ended = turn_end(call.events, reply_turn)
    interrupted = ended is not None and bool(ended[1].get("interrupted"))
    own = [e for _, e in of_type(call.events, "user_transcript", question_end)
           if e.get("turn") != reply_turn]
    reply_end = ended[0] if ended is not None else call.end
    cut = silence_inside(call.audible, reply_start, reply_end)
    to_itself = any(t != reply_turn for t in reply_turns(call.events, question_end))
    return {"self_interrupted": interrupted or bool(own) or cut > GAP_S,
            "interrupted": interrupted, "own_words_turn": bool(own),
            "longest_cut_ms": ms(cut), "talking_to_itself": to_itself,
            "own_words": [str(e.get("text", "")) for e in own],
            "vad_starts": sum(1 for _, e in of_type(call.events, "vad", question_end)
                              if e.get("speaking"))}


def judge_noise(call: Observed, start: float) -> dict[str, Any]:
    """Phantom replies while nobody talks: server turns that spoke, or stretches of
    agent audio (whichever is more: a reply may come without text, or the reverse)."""
    minutes = max(call.end - start, 1e-9) / 60
    spoken = reply_turns(call.events, start)
    heard = bursts(call.audible, start, call.end, BURST_MERGE_S)
    phantoms = max(len(spoken), len(heard))
    return {"minutes": round(minutes, 3), "phantom_replies": phantoms,
            "per_minute": round(phantoms / minutes, 2),
            "user_texts": [str(e.get("text", ""))
                           for _, e in of_type(call.events, "user_transcript", start)],
            "vad_starts": sum(1 for _, e in of_type(call.events, "vad", start)
                              if e.get("speaking"))}
