"""The turn / barge-in state machine, with fake backends and a real paced track."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from avatar_rtc.backends.live_calls import LiveCalls
from avatar_rtc.conversation.events import ConversationState
from avatar_rtc.conversation.history import INTERRUPTED_MARK
from tests.conversation_helpers import harness
from tests.fakes import FakeLlm, FakeStt, FakeTts, silence, tone

pytestmark = pytest.mark.timeout(30)


async def test_a_turn_flows_through_every_stage() -> None:
    stt, llm, tts = FakeStt(), FakeLlm(), FakeTts()
    async with harness(stt=stt, llm=llm, tts=tts) as h:
        await h.say(np.concatenate([silence(0.2), tone(0.6), silence(0.5)]))
        await h.wait_for("turn_end")
        end = h.of_type("turn_end")[0]
        assert end["interrupted"] is False
        assert end["spoken_text"] == "The first sentence is here. And here is a second one."
        assert h.of_type("user_transcript") == [
            {"type": "user_transcript", "turn": 0, "text": "Hello there", "typed": False}
        ]
        states = [e["state"] for e in h.of_type("state")]
        assert states == ["thinking", "speaking", "listening"]
        assert [e["text"] for e in h.of_type("agent_text")] == tts.texts
        timings = h.of_type("timings")[0]["timings"]
        for key in ("endpoint_ms", "stt_ms", "llm_first_token_ms", "first_chunk_ms",
                    "tts_first_audio_ms", "first_audio_sent_ms"):
            assert key in timings, key
        assert timings["endpoint_ms"] >= 200  # the end-of-turn silence was waited for
        # Speculation: everything but playback was done during that silence.
        assert timings["tts_first_audio_ms"] < timings["endpoint_ms"], timings
        assert timings["first_audio_sent_ms"] >= timings["endpoint_ms"]
        assert llm.requests[0][0].content == "Be brief."
        assert h.conversation.history.exchanges[0].agent == end["spoken_text"]
        # The agent's audio went out: non-silent frames were sent.
        assert any(np.abs(f).max() > 1000 for f in h.sent_frames)


async def test_a_pause_shorter_than_end_silence_discards_the_speculative_turn() -> None:
    stt, llm = FakeStt(), FakeLlm()
    async with harness(stt=stt, llm=llm) as h:
        await h.say(np.concatenate([tone(0.4), silence(0.15), tone(0.4), silence(0.5)]))
        await h.wait_for("turn_end")
        await asyncio.sleep(0.2)
        assert len(h.of_type("user_transcript")) == 1
        assert len(h.turns) == 1
        # Two speculative starts (one per pause); the first was thrown away and the
        # committed one transcribed the whole utterance (both tones).
        assert len(stt.calls) == 2
        assert stt.calls[1] > stt.calls[0] + 0.35 * 16000


async def test_barge_in_stops_audio_within_a_frame_and_keeps_only_heard_text() -> None:
    llm = FakeLlm(reply="This is a long answer that keeps going and going. " * 3)
    tts = FakeTts(seconds_per_char=0.06)
    async with harness(llm=llm, tts=tts) as h:
        await h.say(np.concatenate([tone(0.5), silence(0.4)]))
        await h.wait_for("agent_text")
        await asyncio.sleep(0.8)  # let the agent speak a while
        assert h.track.is_playing
        frames_before = len(h.sent_frames)
        await h.say(tone(0.3))  # the user talks over it
        await h.wait_for("turn_end")
        end = h.of_type("turn_end")[0]
        assert end["interrupted"] is True
        assert end["spoken_text"] and end["spoken_text"] != end["reply_text"].strip()
        assert end["reply_text"].strip().startswith(end["spoken_text"].rstrip(".").strip()[:20])
        assert len(end["spoken_text"]) < len(end["reply_text"].strip())
        assert llm.cancelled == 1 or llm.completed == 1  # generation stopped or done
        assert not h.track.is_playing
        # Audio stopped: once the barge-in was confirmed, no agent tone went out.
        await asyncio.sleep(0.3)
        tail = h.sent_frames[frames_before + 20 :]
        assert tail and all(np.abs(f).max() == 0 for f in tail)
        # The next turn sees the cut reply, marked interrupted.
        llm.reply = "Sure."
        await h.say(silence(0.9))  # speech that interrupted ends after 800 ms of silence
        await h.wait_for("turn_end", 2)
        assistant = llm.requests[1][-2]
        assert assistant.role == "assistant"
        assert assistant.content.endswith(INTERRUPTED_MARK)
        assert assistant.content.startswith(end["spoken_text"])
        assert h.turns[0].interrupted and not h.turns[1].interrupted
        # While the user talked over the reply, the LLM got the conversation up to
        # their next words, with the cut reply, to evaluate ahead of the turn.
        assert llm.prefills[-1] == llm.requests[1][:-1]


async def test_each_call_is_one_llm_session_released_at_hang_up() -> None:
    llm = FakeLlm(reply="Hello there.")
    for _call in range(2):
        async with harness(llm=llm) as h:
            await h.say(np.concatenate([tone(0.5), silence(0.4)]))
            await h.wait_for("turn_end")
            assert llm.released == [] or len(llm.released) == 1
    # Prefill and reply of a call name the same session; the next call another.
    first, second = dict.fromkeys(llm.sessions)
    assert first and second and llm.sessions == [first, first, second, second]
    assert llm.released == [first, second]


async def test_each_open_call_counts_as_live_until_hang_up() -> None:
    calls = LiveCalls()  # the process's, shared by its calls' backends
    async with harness(live_calls=calls) as first:
        assert calls.count == 1
        async with harness(live_calls=calls):
            assert calls.count == 2 and calls.crowded
        await first.conversation.aclose()  # twice: counted out once
        assert calls.count == 0
    assert calls.count == 0


async def test_a_cough_pauses_the_agent_briefly_and_it_resumes() -> None:
    tts = FakeTts(seconds_per_char=0.03)
    stt = FakeStt()
    async with harness(tts=tts, stt=stt) as h:
        await h.say(np.concatenate([tone(0.5), silence(0.4)]))
        await h.wait_for("agent_text")
        await asyncio.sleep(0.2)
        stt.text = ""  # a cough has no words
        # 100 ms: not speech. The agent stays paused until 800 ms of quiet say so.
        await h.say(np.concatenate([tone(0.1), silence(1.0)]))
        await h.wait_for("turn_end")
        end = h.of_type("turn_end")[0]
        assert end["interrupted"] is False
        assert end["spoken_text"] == end["reply_text"].strip()
        assert len(h.of_type("user_transcript")) == 1


async def test_speech_before_the_reply_is_heard_holds_its_first_chunk() -> None:
    """The user starts talking while the agent is still quiet (its first audio is
    late): the audio that arrives meanwhile waits, and plays if it was a cough."""
    tts = FakeTts(seconds_per_char=0.03, delay_s=0.5)
    async with harness(tts=tts) as h:
        await h.say(np.concatenate([tone(0.5), silence(0.3)]))
        await h.wait_for("state")  # "thinking": committed, nothing heard yet
        assert not h.track.is_playing
        sent = len(h.sent_frames)
        await h.say(tone(0.1))  # under min_speech: a cough, or the start of speech
        await h.say(silence(0.6))  # the first chunk arrives while it is undecided
        held = h.sent_frames[sent:]
        assert h.track.is_playing and not [f for f in held if np.abs(f).max() > 0]
        await h.say(silence(0.4))  # 800 ms of quiet: it was a cough, the reply plays
        await h.wait_for("turn_end")
        end = h.of_type("turn_end")[0]
        assert end["interrupted"] is False and end["spoken_text"] == end["reply_text"].strip()


async def test_wait_comma_stop_interrupts_without_resuming_in_the_comma() -> None:
    """Two words, each shorter than min_speech, with a pause between ("Wait, stop"):
    together they are a barge-in, and the agent stays quiet from the first one on."""
    llm = FakeLlm(reply="This is a long answer that keeps going and going. " * 3)
    tts = FakeTts(seconds_per_char=0.06)
    async with harness(llm=llm, tts=tts) as h:
        await h.say(np.concatenate([tone(0.5), silence(0.4)]))
        await h.wait_for("agent_text")
        await asyncio.sleep(0.5)
        assert h.track.is_playing
        await h.say(tone(0.12))  # "Wait," (under min_speech: 160 ms)
        frames_paused = len(h.sent_frames)
        await h.say(silence(0.5))  # the comma
        await h.say(tone(0.12))  # "stop."
        await h.wait_for("turn_end")
        frames_cut = len(h.sent_frames)
        await h.say(silence(0.4))
        assert h.of_type("turn_end")[0]["interrupted"] is True
        # From the first word to the cut, no agent audio went out: no resume in the
        # comma. (Afterwards the agent answers "Wait, stop" as a turn of its own.)
        quiet = h.sent_frames[frames_paused + 3 : frames_cut]
        loud = [i for i, f in enumerate(quiet) if np.abs(f).max() > 0]
        assert len(quiet) > 20 and not loud, loud  # the comma alone is 25 frames


async def test_a_barge_in_with_a_pause_in_it_is_one_turn() -> None:
    """"Stop, ... let me ask something else": the pause after "Stop," is longer than
    end_silence (Piper's comma: 530 ms), but speech that interrupted ends later."""
    llm = FakeLlm(reply="This is a long answer that keeps going and going. " * 3)
    stt, tts = FakeStt(), FakeTts(seconds_per_char=0.06)
    async with harness(llm=llm, stt=stt, tts=tts) as h:
        await h.say(np.concatenate([tone(0.5), silence(0.4)]))
        await h.wait_for("agent_text")
        await asyncio.sleep(0.3)
        llm.reply = "Sure."
        await h.say(np.concatenate([tone(0.4), silence(0.55), tone(0.4), silence(1.0)]))
        await h.wait_for("turn_end", 2)
        assert h.of_type("turn_end")[0]["interrupted"] is True
        # One turn of both parts, not "Stop," answered and cut off by the rest.
        assert len(h.of_type("user_transcript")) == 2
        assert stt.calls[-1] >= 16 * (400 + 550 + 400)
        # The next turn, with the agent quiet, ends after the usual silence again.
        await h.say(np.concatenate([tone(0.5), silence(0.4)]))
        await h.wait_for("user_transcript", 3)


async def test_a_backend_crash_reports_an_error_and_the_agent_keeps_listening() -> None:
    llm = FakeLlm(fail=True)
    async with harness(llm=llm) as h:
        await h.say(np.concatenate([tone(0.5), silence(0.5)]))
        await h.wait_for("error")
        assert "llm" in h.of_type("error")[0]["message"]
        await h.wait_for("turn_end")
        assert h.conversation.state == "listening"
        llm.fail = False
        await h.say(np.concatenate([tone(0.5), silence(0.5)]))
        await h.wait_for("turn_end", 2)
        assert h.of_type("turn_end")[1]["spoken_text"]


async def test_hanging_up_mid_reply_stores_the_turn_as_cut_off() -> None:
    llm = FakeLlm(reply=" ".join(f"Word{i}" for i in range(60)))
    async with harness(llm=llm, tts=FakeTts(seconds_per_char=0.05)) as h:
        await h.say(np.concatenate([tone(0.5), silence(0.4)]))
        await h.wait_for("agent_text")
        await asyncio.sleep(0.3)
        await h.conversation.aclose()
        assert len(h.turns) == 1
        turn = h.turns[0]
        assert turn.cut_off and not turn.interrupted
        assert 0 < len(turn.spoken_text) < len(turn.reply_text.strip())


async def test_silence_and_noise_blips_start_no_turn() -> None:
    stt = FakeStt()
    async with harness(stt=stt) as h:
        await h.say(np.concatenate([silence(0.5), tone(0.064), silence(0.5)]))
        await asyncio.sleep(0.1)
        assert stt.calls == []
        assert h.turns == []


async def test_empty_transcript_makes_no_turn_and_returns_to_listening() -> None:
    async with harness(stt=FakeStt(text="")) as h:
        await h.say(np.concatenate([tone(0.5), silence(0.5)]))
        await asyncio.sleep(0.2)
        assert h.turns == []
        assert h.conversation.state == "listening"


async def test_the_state_starts_listening_and_a_hang_up_closes_it_without_an_event() -> None:
    async with harness() as h:
        assert h.conversation.state is ConversationState.LISTENING
        assert h.conversation.state == "listening"  # a str: the wire value
        await h.conversation.aclose()
        assert h.conversation.state is ConversationState.CLOSED
        h.conversation.feed(tone(0.5))  # heard no more
        await asyncio.sleep(0.05)
        assert h.events == [] and h.turns == []


async def test_a_barge_in_goes_back_to_listening_and_the_next_turn_thinks_again() -> None:
    llm = FakeLlm(reply="This is a long answer that keeps going and going. " * 3)
    async with harness(llm=llm, tts=FakeTts(seconds_per_char=0.06)) as h:
        await h.say(np.concatenate([tone(0.5), silence(0.4)]))
        await h.wait_for("agent_text")
        llm.reply = "Sure."
        await h.say(np.concatenate([tone(0.3), silence(1.0)]))
        await h.wait_for("turn_end", 2)
        states = [e["state"] for e in h.of_type("state")]
        assert states == ["thinking", "speaking", "listening",
                          "thinking", "speaking", "listening"], states
        # The page hears the user start, pause and stop around each turn.
        assert [e["speaking"] for e in h.of_type("vad")][:2] == [True, False]
