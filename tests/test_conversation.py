"""The turn / barge-in state machine, with fake backends and a real paced track."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from avatar_rtc.backends.threads import LIVE_CALLS
from avatar_rtc.conversation.agent import Conversation, ConversationConfig, heard_before_cut
from avatar_rtc.conversation.endpointing import EndpointConfig
from avatar_rtc.conversation.history import INTERRUPTED_MARK, History
from avatar_rtc.conversation.turn import Turn
from media import PacedAudioTrack
from tests.fakes import FakeLlm, FakeStt, FakeTts, fake_backends, silence, tone

pytestmark = pytest.mark.timeout(30)

CONFIG = ConversationConfig(
    endpoint=EndpointConfig(
        min_speech_ms=160, end_silence_ms=256, preroll_ms=96, pause_after_ms=64
    ),
    system_prompt="Be brief.",
)


class Harness:
    def __init__(self, conversation: Conversation, track: PacedAudioTrack) -> None:
        self.conversation = conversation
        self.track = track
        self.events: list[dict[str, Any]] = []
        self.turns: list[Turn] = []
        self.sent_frames: list[np.ndarray] = []
        self.changed = asyncio.Event()

    def record(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.changed.set()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    async def say(self, pcm: np.ndarray, chunk_ms: int = 20) -> None:
        """Feeds 16 kHz audio in real time, like the inbound track does."""
        step = 16 * chunk_ms
        for start in range(0, len(pcm), step):
            self.conversation.feed(pcm[start : start + step])
            await asyncio.sleep(chunk_ms / 1000)

    async def wait_for(self, kind: str, count: int = 1, limit_s: float = 10.0) -> None:
        async with asyncio.timeout(limit_s):
            while len(self.of_type(kind)) < count:
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def harness(config: ConversationConfig = CONFIG,
                  **backend_overrides: object) -> AsyncIterator[Harness]:
    track = PacedAudioTrack()
    backends = fake_backends(**backend_overrides)
    holder: dict[str, Harness] = {}
    conversation = Conversation(
        backends,
        config,
        track,
        emit=lambda e: holder["h"].record(e),
        on_turn_finished=lambda t: holder["h"].turns.append(t),
    )
    h = Harness(conversation, track)
    holder["h"] = h
    track.add_tap(lambda pcm: h.sent_frames.append(pcm))

    async def sender() -> None:  # what aiortc's RTP sender does
        while True:
            await track.recv()

    task = asyncio.create_task(sender())
    try:
        yield h
    finally:
        await conversation.aclose()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        track.stop()


async def test_a_turn_flows_through_every_stage() -> None:
    stt, llm, tts = FakeStt(), FakeLlm(), FakeTts()
    async with harness(stt=stt, llm=llm, tts=tts) as h:
        await h.say(np.concatenate([silence(0.2), tone(0.6), silence(0.5)]))
        await h.wait_for("turn_end")
        end = h.of_type("turn_end")[0]
        assert end["interrupted"] is False
        assert end["spoken_text"] == "The first sentence is here. And here is a second one."
        assert h.of_type("user_transcript") == [
            {"type": "user_transcript", "turn": 0, "text": "Hello there"}
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


async def test_the_llm_waits_while_the_first_chunk_is_synthesized() -> None:
    llm = FakeLlm(token_delay_s=0.002)
    tts = FakeTts(delay_s=0.1)  # slow first audio: tokens would pile up meanwhile
    async with harness(llm=llm, tts=tts) as h:
        await h.say(np.concatenate([tone(0.5), silence(0.5)]))
        await h.wait_for("turn_end")
        assert llm.held_waits >= 1
        assert h.of_type("turn_end")[0]["spoken_text"] == llm.reply


async def test_later_chunks_are_synthesized_just_in_time() -> None:
    """Chunks after the first wait until less than speak_ahead_s is left to play, and
    the LLM waits with them; the reply still plays whole."""
    reply = ("The first sentence is a fairly long one to speak. The second one is also "
             "quite long for a test. The third sentence is here. The fourth sentence is "
             "about tea. The fifth sentence closes this short reply.")
    llm = FakeLlm(reply=reply, token_delay_s=0.02)  # would finish in 1 s, unpaced
    tts = FakeTts(seconds_per_char=0.02)  # ~1 s of audio per sentence
    config = dataclasses.replace(CONFIG, speak_ahead_s=0.4, max_sentences=0)
    queued_at_start: list[float] = []
    async with harness(config, llm=llm, tts=tts) as h:
        tts.on_text = lambda _text: queued_at_start.append(h.track.queued_samples / 48000)
        await h.say(np.concatenate([tone(0.5), silence(0.5)]))
        await h.wait_for("turn_end")
        assert h.of_type("turn_end")[0]["spoken_text"] == reply
    assert len(queued_at_start) == 5, tts.texts
    # Each later chunk started with at most speak_ahead_s (and a frame) still queued,
    # though the LLM and TTS could have made them all in a few milliseconds.
    assert all(left <= 0.4 + 0.025 for left in queued_at_start[1:]), queued_at_start
    assert max(queued_at_start[1:]) > 0.2, queued_at_start  # ... and not late: no gap
    assert llm.held_s > 0.5  # the LLM waited for the playout too


async def test_without_pacing_every_chunk_is_synthesized_at_once() -> None:
    reply = "The first sentence is a fairly long one to speak. The second one is long too."
    tts = FakeTts(seconds_per_char=0.02)
    config = dataclasses.replace(CONFIG, speak_ahead_s=0.0)
    queued_at_start: list[float] = []
    llm = FakeLlm(reply=reply, token_delay_s=0.03)
    async with harness(config, llm=llm, tts=tts) as h:
        tts.on_text = lambda _text: queued_at_start.append(h.track.queued_samples / 48000)
        await h.say(np.concatenate([tone(0.5), silence(0.5)]))
        await h.wait_for("turn_end")
    assert max(queued_at_start[1:]) > 0.5, queued_at_start
    assert llm.held_s < 0.25  # against > 0.5 when paced


async def _answer(llm: FakeLlm, config: ConversationConfig = CONFIG
                  ) -> tuple[dict[str, Any], FakeTts, History]:
    """One question and its whole reply: the turn_end event, the TTS that spoke it and
    the history after it."""
    tts = FakeTts()
    async with harness(config, llm=llm, tts=tts) as h:
        await h.say(np.concatenate([tone(0.5), silence(0.5)]))
        await h.wait_for("turn_end")
        end = h.of_type("turn_end")[0]
    return end, tts, h.conversation.history


async def test_a_speaker_tag_opening_the_reply_is_not_spoken() -> None:
    llm = FakeLlm(reply="L'Alma: Paris is the capital of France.", token_delay_s=0.001)
    end, tts, history = await _answer(llm)
    assert tts.texts == ["Paris is the capital of France."]
    assert end["spoken_text"] == "Paris is the capital of France."
    # Nor does the history keep the tag: the model would read it back and take it up.
    assert history.exchanges[0].agent == end["reply_text"] == end["spoken_text"]


async def test_a_reply_without_a_speaker_tag_goes_into_the_history_as_the_model_wrote_it(
        ) -> None:
    llm = FakeLlm(reply="Here's why: the **sky** scatters blue light.", token_delay_s=0.001)
    end, tts, history = await _answer(llm)
    assert tts.texts == ["Here's why: the sky scatters blue light."]
    # Its own words, markdown included: llama.cpp finds them in its KV cache.
    assert history.exchanges[0].agent == end["reply_text"].strip() == llm.reply


async def test_a_reply_that_repeats_a_sentence_is_cut_there() -> None:
    llm = FakeLlm(reply="I am sorry for that. I can help with tea. I am sorry for that. "
                        "I am sorry for that. I am sorry for that.", token_delay_s=0.001)
    end, tts, history = await _answer(llm)
    assert end["spoken_text"] == "I am sorry for that. I can help with tea."
    assert end["reply_text"] == end["spoken_text"]  # the history keeps no loop
    assert history.exchanges[0].agent == end["spoken_text"]
    assert llm.cancelled == 1  # generation stopped on the backend
    assert tts.texts == ["I am sorry for that.", "I can help with tea."]


FIVE_SENTENCES = ("Tea is a drink, and a good one. It comes from leaves. People dry them. "
                  "Then they steep them. That is all.")


async def test_a_reply_ends_after_max_sentences() -> None:
    """Clauses don't count; the sentence after the last one is neither spoken nor
    generated, and the history keeps what was said."""
    llm = FakeLlm(reply=FIVE_SENTENCES, token_delay_s=0.001)
    config = dataclasses.replace(CONFIG, max_sentences=2)
    end, tts, history = await _answer(llm, config)
    assert tts.texts == ["Tea is a drink,", "and a good one.", "It comes from leaves."]
    assert end["spoken_text"] == end["reply_text"] == (
        "Tea is a drink, and a good one. It comes from leaves.")
    assert history.exchanges[0].agent == end["spoken_text"]
    assert llm.cancelled == 1  # generation stopped on the backend


async def test_without_a_sentence_limit_the_whole_reply_is_spoken() -> None:
    llm = FakeLlm(reply=FIVE_SENTENCES, token_delay_s=0.001)
    end, _, _ = await _answer(llm, dataclasses.replace(CONFIG, max_sentences=0))
    assert end["spoken_text"] == FIVE_SENTENCES
    assert llm.cancelled == 0


async def test_a_reply_cut_at_the_token_limit_drops_its_unfinished_sentence() -> None:
    llm = FakeLlm(reply="Tea is a drink. It is made from leaves that are dried and",
                  token_delay_s=0.001, cut_short=True)
    end, tts, history = await _answer(llm)
    assert tts.texts == ["Tea is a drink."]
    assert end["spoken_text"] == end["reply_text"] == "Tea is a drink."
    assert history.exchanges[0].agent == "Tea is a drink."


async def test_a_reply_cut_before_any_sentence_ended_is_still_spoken() -> None:
    llm = FakeLlm(reply="Tea is made from leaves that are", token_delay_s=0.001,
                  cut_short=True)
    _, tts, _ = await _answer(llm)
    assert tts.texts == ["Tea is made from leaves that are"]  # a fragment beats silence


async def test_a_reply_that_repeats_a_short_piece_over_and_over_is_cut_there() -> None:
    llm = FakeLlm(reply="Tea is a drink. " + "ha " * 40 + "And that is all.",
                  token_delay_s=0.001)
    end, tts, _ = await _answer(llm)
    assert tts.texts == ["Tea is a drink."]
    assert end["spoken_text"] == end["reply_text"] == "Tea is a drink."
    assert llm.cancelled == 1  # generation stopped at the repetition, not at its end


async def test_a_repetition_before_anything_was_said_leaves_what_came_before_it() -> None:
    llm = FakeLlm(reply="Well, " + "ha " * 40, token_delay_s=0.001)
    _, tts, _ = await _answer(llm)
    assert tts.texts == ["Well, ha"]


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


async def test_the_llm_prefills_the_conversation_when_the_user_starts_speaking() -> None:
    llm = FakeLlm(reply="Hello there.")
    async with harness(llm=llm) as h:
        await h.say(np.concatenate([tone(0.5), silence(0.4)]))
        await h.wait_for("turn_end")
        assert [[m.content for m in p] for p in llm.prefills] == [["Be brief."]]
        await h.say(np.concatenate([tone(0.5), silence(0.4)]))
        await h.wait_for("turn_end", 2)
        assert len(llm.prefills) == 2
        assert llm.prefills[1] == llm.requests[1][:-1]  # everything but the new words
        assert llm.prefills[1][-1].content == "Hello there."


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
    gc.collect()  # earlier tests' calls, dropped, stop counting now and not midway
    before = LIVE_CALLS.count
    async with harness() as first:
        assert LIVE_CALLS.count == before + 1
        async with harness():
            assert LIVE_CALLS.count == before + 2 and LIVE_CALLS.crowded
        await first.conversation.aclose()  # twice: counted out once
        assert LIVE_CALLS.count == before
    assert LIVE_CALLS.count == before


async def test_the_llm_reads_the_users_first_words_while_they_still_speak() -> None:
    # Whisper starts some transcripts lower-case, some not: the LLM reads them one way.
    stt, llm = FakeStt(text="what is the capital of France?"), FakeLlm()
    async with harness(stt=stt, llm=llm) as h:
        await h.say(np.concatenate([tone(1.8), silence(0.5)]))
        await h.wait_for("turn_end")
        # Partial transcripts of the speech so far, each longer than the last, all
        # shorter than the final one (a single transcript of the whole utterance).
        assert len(stt.partials) >= 2 and len(stt.calls) == 1
        assert stt.partials == sorted(stt.partials) and stt.partials[-1] < stt.calls[0]
        # The word being said when the audio was cut is left out; the same words are
        # prefilled once.
        assert llm.prefixes == ["", "What is the capital of"]
        assert llm.prefills[-1] == llm.requests[0][:-1]
        assert llm.requests[0][-1].content == "What is the capital of France?"


async def test_listening_ahead_can_be_turned_off() -> None:
    stt, llm = FakeStt(), FakeLlm()
    config = dataclasses.replace(CONFIG, listen_ahead_ms=0)
    async with harness(config, stt=stt, llm=llm) as h:
        await h.say(np.concatenate([tone(1.8), silence(0.5)]))
        await h.wait_for("turn_end")
        assert stt.partials == [] and llm.prefixes == [""]


async def test_a_cough_pauses_the_agent_briefly_and_it_resumes() -> None:
    tts = FakeTts(seconds_per_char=0.03)
    async with harness(tts=tts) as h:
        await h.say(np.concatenate([tone(0.5), silence(0.4)]))
        await h.wait_for("agent_text")
        await asyncio.sleep(0.2)
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


@pytest.mark.parametrize(("partial", "kept"), [
    ("What is the capital of Fr", "What is the capital of"),
    ("what is the", "What is"),  # the final transcript is said with a capital
    ("Tell me something, end...", "Tell me something"),  # the comma is a guess
    ("How many legs does the sp ... ... ...", "How many legs does the"),
    ("Hello", ""),
    ("", ""),
])
def test_a_partial_transcript_keeps_the_words_before_the_cut(partial: str, kept: str) -> None:
    assert heard_before_cut(partial) == kept
