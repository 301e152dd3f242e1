"""One turn's reply: pacing, and the guards that end a small model's reply early."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.conversation_helpers import CONFIG, answer, harness
from tests.fakes import FakeLlm, FakeTts, silence, tone

pytestmark = pytest.mark.timeout(30)


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


async def test_a_speaker_tag_opening_the_reply_is_not_spoken() -> None:
    llm = FakeLlm(reply="L'Alma: Paris is the capital of France.", token_delay_s=0.001)
    end, tts, history = await answer(llm)
    assert tts.texts == ["Paris is the capital of France."]
    assert end["spoken_text"] == "Paris is the capital of France."
    # Nor does the history keep the tag: the model would read it back and take it up.
    assert history.exchanges[0].agent == end["reply_text"] == end["spoken_text"]


async def test_a_reply_without_a_speaker_tag_goes_into_the_history_as_the_model_wrote_it(
        ) -> None:
    llm = FakeLlm(reply="Here's why: the **sky** scatters blue light.", token_delay_s=0.001)
    end, tts, history = await answer(llm)
    assert tts.texts == ["Here's why: the sky scatters blue light."]
    # Its own words, markdown included: llama.cpp finds them in its KV cache.
    assert history.exchanges[0].agent == end["reply_text"].strip() == llm.reply


async def test_a_reply_that_repeats_a_sentence_is_cut_there() -> None:
    llm = FakeLlm(reply="I am sorry for that. I can help with tea. I am sorry for that. "
                        "I am sorry for that. I am sorry for that.", token_delay_s=0.001)
    end, tts, history = await answer(llm)
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
    end, tts, history = await answer(llm, config)
    assert tts.texts == ["Tea is a drink,", "and a good one.", "It comes from leaves."]
    assert end["spoken_text"] == end["reply_text"] == (
        "Tea is a drink, and a good one. It comes from leaves.")
    assert history.exchanges[0].agent == end["spoken_text"]
    assert llm.cancelled == 1  # generation stopped on the backend


async def test_without_a_sentence_limit_the_whole_reply_is_spoken() -> None:
    llm = FakeLlm(reply=FIVE_SENTENCES, token_delay_s=0.001)
    end, _, _ = await answer(llm, dataclasses.replace(CONFIG, max_sentences=0))
    assert end["spoken_text"] == FIVE_SENTENCES
    assert llm.cancelled == 0


async def test_a_reply_cut_at_the_token_limit_drops_its_unfinished_sentence() -> None:
    llm = FakeLlm(reply="Tea is a drink. It is made from leaves that are dried and",
                  token_delay_s=0.001, cut_short=True)
    end, tts, history = await answer(llm)
    assert tts.texts == ["Tea is a drink."]
    assert end["spoken_text"] == end["reply_text"] == "Tea is a drink."
    assert history.exchanges[0].agent == "Tea is a drink."


async def test_a_reply_cut_before_any_sentence_ended_is_still_spoken() -> None:
    llm = FakeLlm(reply="Tea is made from leaves that are", token_delay_s=0.001,
                  cut_short=True)
    _, tts, _ = await answer(llm)
    assert tts.texts == ["Tea is made from leaves that are"]  # a fragment beats silence


async def test_a_reply_that_repeats_a_short_piece_over_and_over_is_cut_there() -> None:
    llm = FakeLlm(reply="Tea is a drink. " + "ha " * 40 + "And that is all.",
                  token_delay_s=0.001)
    end, tts, _ = await answer(llm)
    assert tts.texts == ["Tea is a drink."]
    assert end["spoken_text"] == end["reply_text"] == "Tea is a drink."
    assert llm.cancelled == 1  # generation stopped at the repetition, not at its end


async def test_a_repetition_before_anything_was_said_leaves_what_came_before_it() -> None:
    llm = FakeLlm(reply="Well, " + "ha " * 40, token_delay_s=0.001)
    _, tts, _ = await answer(llm)
    assert tts.texts == ["Well, ha"]
