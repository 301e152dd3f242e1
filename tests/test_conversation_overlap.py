"""Talk over the reply: "mm-hmm" lets it go on, "wait" stops it."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from avatar_rtc.conversation.overlap import content_words, stop_words
from tests.conversation_helpers import Harness, harness
from tests.fakes import FakeLlm, FakeStt, FakeTts, silence, tone

LONG = "This is a long answer that keeps going and going. " * 3


@pytest.mark.parametrize(("text", "stops"), [
    ("Mm-hmm.", []), ("Uh-huh", []), ("Yeah.", []), ("Okay.", []), ("Right.", []),
    ("Sure.", []), ("I see.", []), ("(laughs)", None), ("[coughing]", None), ("", None),
    ("Oh, okay, yeah.", []), ("Wait, stop.", ["wait", "stop"]), ("No.", ["no"]),
    ("What is the capital of Spain?", ["what", "is", "capital", "spain"]),
    ("Yeah, but why?", ["but", "why"]),
])
def test_words_that_stop_the_agent(text: str, stops: list[str] | None) -> None:
    heard = content_words(text)
    assert heard == stops if stops is None else heard is not None and set(stops) <= set(heard)
    if stops == []:
        assert heard == []


@pytest.mark.parametrize(("text", "stops"), [
    ("Wait, stop.", True), ("No no, hold on.", True), ("What time is it?", True),
    ("in a man", False), ("write", False), ("I say", False), ("Mm-hmm.", False), ("", False),
])
def test_only_stop_words_interrupt_a_short_overlap(text: str, stops: bool) -> None:
    assert bool(stop_words(content_words(text))) is stops


async def talk_over(h: Harness, stt: FakeStt, said: str, seconds: float) -> int:
    """The user says `said` for `seconds` over the reply; the frames sent before."""
    await h.say(np.concatenate([tone(0.5), silence(0.4)]))
    await h.wait_for("agent_text")
    await asyncio.sleep(0.6)
    assert h.track.is_playing
    stt.text = said
    before = len(h.sent_frames)
    await h.say(np.concatenate([tone(seconds), silence(1.0)]))  # over after 800 ms
    return before


async def first_turn_end(said: str, seconds: float, *, wait_for: str = "turn_end"
                         ) -> dict[str, object]:
    """The user says `said` for `seconds` over a long reply; the reply's turn_end."""
    stt, llm = FakeStt(text="Tell me a story."), FakeLlm(reply=LONG)
    async with harness(stt=stt, llm=llm, tts=FakeTts(seconds_per_char=0.05)) as h:
        await talk_over(h, stt, said, seconds)
        await h.wait_for(wait_for, limit_s=30)
        await h.wait_for("turn_end", limit_s=30)
        return h.of_type("turn_end")[0]


def longest_gap(frames: list[np.ndarray]) -> int:
    gap = longest = 0
    for frame in frames:
        gap = gap + 1 if np.abs(frame).max() == 0 else 0
        longest = max(longest, gap)
    return longest


async def test_mm_hmm_over_the_reply_lets_it_go_on_and_makes_no_turn() -> None:
    stt, llm = FakeStt(text="Tell me a story."), FakeLlm(reply=LONG)
    async with harness(stt=stt, llm=llm, tts=FakeTts(seconds_per_char=0.05)) as h:
        before = await talk_over(h, stt, "Mm-hmm.", 0.45)
        heard = h.sent_frames[before:]
        await h.wait_for("turn_end", limit_s=30)
        end = h.of_type("turn_end")[0]
        backchannels = h.of_type("backchannel")
    assert end["interrupted"] is False and end["spoken_text"] == end["reply_text"].strip()
    assert [b["text"] for b in backchannels] == ["Mm-hmm."]
    assert len(h.of_type("user_transcript")) == 1 and len(h.turns) == 1
    assert h.turns[0].backchannels == ["Mm-hmm."]
    # It paused at the first sound, then went on: no gap of 300 ms (15 frames).
    assert longest_gap(heard) < 15, longest_gap(heard)
    # Ducked under the user, then back to full level.
    levels = [int(np.abs(f).max()) for f in heard if np.abs(f).max() > 0]
    assert min(levels) < 0.5 * max(levels)


async def test_words_that_stop_the_agent_interrupt_it() -> None:
    stt, llm = FakeStt(text="Tell me a story."), FakeLlm(reply=LONG)
    async with harness(stt=stt, llm=llm, tts=FakeTts(seconds_per_char=0.05)) as h:
        before = await talk_over(h, stt, "Wait, stop.", 0.45)
        await h.wait_for("turn_end")
        end = h.of_type("turn_end")[0]
        cut = h.sent_frames[before + 8:before + 28]  # from the pause on: quiet
    assert end["interrupted"] is True and not h.of_type("backchannel")
    assert cut and all(np.abs(f).max() == 0 for f in cut)


async def test_a_short_overlap_misheard_as_other_words_is_a_backchannel() -> None:
    stt, llm = FakeStt(text="Tell me a story."), FakeLlm(reply=LONG)
    async with harness(stt=stt, llm=llm, tts=FakeTts(seconds_per_char=0.05)) as h:
        await talk_over(h, stt, "in a man", 0.45)  # tiny.en on "Mm-hmm"
        await h.wait_for("turn_end", limit_s=30)
        assert h.of_type("turn_end")[0]["interrupted"] is False
        assert [b["text"] for b in h.of_type("backchannel")] == ["in a man"]


async def test_a_long_overlap_with_words_interrupts() -> None:
    assert (await first_turn_end('I think the engine is broken', 0.95))["interrupted"] is True


async def test_long_talk_over_the_reply_interrupts_whatever_its_words() -> None:
    assert (await first_turn_end('Yeah yeah yeah yeah yeah.', 1.6))["interrupted"] is True


async def test_a_laugh_heard_as_nothing_is_a_backchannel() -> None:
    assert (await first_turn_end('', 0.5, wait_for="backchannel"))["interrupted"] is False


async def test_with_backchannels_off_any_speech_interrupts() -> None:
    from dataclasses import replace

    from tests.conversation_helpers import CONFIG

    config = replace(CONFIG, overlap=replace(CONFIG.overlap, enabled=False))
    stt, llm = FakeStt(text="Tell me a story."), FakeLlm(reply=LONG)
    async with harness(config, stt=stt, llm=llm, tts=FakeTts(seconds_per_char=0.05)) as h:
        await talk_over(h, stt, "Mm-hmm.", 0.45)
        await h.wait_for("turn_end")
        assert h.of_type("turn_end")[0]["interrupted"] is True


async def test_the_agents_own_words_heard_back_do_not_interrupt_it() -> None:
    """Echo that leaks past the canceller is the reply's own words: not the user."""
    stt, llm = FakeStt(text="Tell me a story."), FakeLlm(reply=LONG)
    async with harness(stt=stt, llm=llm, tts=FakeTts(seconds_per_char=0.05)) as h:
        await talk_over(h, stt, "keeps going and going", 1.6)
        await h.wait_for("turn_end", limit_s=30)
        assert h.of_type("turn_end")[0]["interrupted"] is False
