"""The judge of what is the caller and what is the room: each rule on its own figures."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from avatar_rtc.conversation.noise import (
    NoiseConfig,
    NoiseFilter,
    Utterance,
    is_stock_phrase,
    speech_level_dbfs,
)
from avatar_rtc.settings import Settings, SettingsError
from tests.fakes import silence, tone
from tests.room_audio import mix, room_noise

QUESTION = "What is the capital of France?"
DEFAULTS = NoiseConfig()


def heard(text: str = QUESTION, level: float = -20.0, no_speech: float = 0.1,
          logprob: float = -0.2) -> Utterance:
    return Utterance(text, level, no_speech, logprob)


def reason(*utterances: Utterance, config: NoiseConfig = DEFAULTS) -> str:
    """The last utterance's reason, after the others were judged in the same call."""
    judge = NoiseFilter(config)
    return [judge.judge(u) for u in utterances][-1].reason


# ---- the speech level ---------------------------------------------------------------


def test_the_level_of_a_full_scale_sine_is_minus_3_dbfs() -> None:
    assert speech_level_dbfs(tone(1.0, amp=1.0)) == pytest.approx(-3.0, abs=0.05)


def test_the_level_is_the_voice_not_the_silence_around_it() -> None:
    """The endpointer hands over a preroll and the silence that ended the turn."""
    voice = tone(0.6, amp=0.1)  # -23 dBFS
    padded = np.concatenate([silence(1.0), voice, silence(2.0)])
    assert speech_level_dbfs(padded) == pytest.approx(-23.0, abs=0.1)


def test_a_quiet_voice_is_measured_on_the_voice_not_the_room_under_it() -> None:
    voice = np.concatenate([silence(0.5), tone(1.0, amp=0.0447), silence(0.5)])  # -30
    assert speech_level_dbfs(mix(voice, room_noise(2.0, -45.0))) == pytest.approx(-30, abs=0.5)


def test_the_level_of_silence_is_very_low() -> None:
    assert speech_level_dbfs(silence(1.0)) == speech_level_dbfs(silence(0.001)) == -100.0


# ---- the rules ----------------------------------------------------------------------


def test_a_clear_question_at_a_normal_level_is_the_caller() -> None:
    decision = NoiseFilter(DEFAULTS).judge(heard())
    assert decision.accepted and decision.reason == "" and not decision.marginal


def test_no_text_is_empty() -> None:
    assert reason(heard("")) == reason(heard(" ")) == "empty"


@pytest.mark.parametrize("text", [
    "Thank you.", "thank you", "Thanks for watching!", "Thank you for watching.", "you",
    "Bye.", "[Music]", "(upbeat music)", "*applause*", "♪ ♪", "...", "[BLANK_AUDIO]",
    "Subtitles by the Amara.org community", "Transcription by CastingWords",
    "Please subscribe to my channel.",
])
def test_whispers_stock_phrases_on_noise_are_hallucinations(text: str) -> None:
    assert is_stock_phrase(text)
    # However loud and sure: Whisper is sure of them on noise too.
    assert reason(heard(text, level=-15.0, no_speech=0.0, logprob=-0.1)) == "hallucination"


@pytest.mark.parametrize("text", [
    "Thank you for the help with my taxes.", "Yes.", "You are funny.", "Okay.",
    "Can you play some music?",
])
def test_sentences_that_merely_contain_them_are_speech(text: str) -> None:
    assert not is_stock_phrase(text)
    assert reason(heard(text)) == ""


def test_before_the_caller_spoke_a_quiet_utterance_is_under_the_floor() -> None:
    assert reason(heard(level=DEFAULTS.floor_dbfs - 0.1)) == "too_quiet"
    assert reason(heard(level=DEFAULTS.floor_dbfs + 0.1)) == ""


def test_far_below_the_callers_own_level_is_someone_else() -> None:
    loud_caller = heard(level=-10.0)
    assert reason(loud_caller, heard(level=-21.5)) == ""
    decision = NoiseFilter(DEFAULTS)
    decision.judge(loud_caller)
    tv = decision.judge(heard(level=-23.0))  # above the floor, 13 dB below the caller
    assert tv.reason == "below_caller"
    assert tv.caller_dbfs == -10.0 and tv.limit_dbfs == -22.0


def test_the_floor_still_holds_once_a_quiet_caller_is_known() -> None:
    assert reason(heard(level=-24.0), heard(level=-28.0)) == "too_quiet"


def test_no_speech_as_whisper_says_and_unsure_of_its_words_is_no_speech() -> None:
    assert reason(heard(no_speech=0.61, logprob=-1.1)) == "no_speech"
    assert reason(heard(no_speech=0.59, logprob=-1.1)) == ""
    assert reason(heard(no_speech=0.61, level=DEFAULTS.floor_dbfs + 1)) == "no_speech"


def test_one_clear_word_whisper_doubts_is_speech() -> None:
    """tiny.en is seldom sure a lone "Yes." is speech, but sure of the word."""
    assert reason(heard("Yes.", no_speech=0.7, logprob=-0.8)) == ""


def test_words_whisper_is_unsure_of_are_low_confidence() -> None:
    assert reason(heard(logprob=-1.51)) == "low_confidence"
    assert reason(heard(logprob=-1.49)) == ""


def test_one_word_said_loud_and_clear_is_a_turn() -> None:
    assert reason(heard("Yes.", level=-20.0, no_speech=0.2, logprob=-0.2)) == ""


@pytest.mark.parametrize("marginal", [
    {"level": DEFAULTS.floor_dbfs + 1.0},  # just above the floor
    {"logprob": -1.1},
])
def test_a_marginal_utterance_needs_more_words(marginal: dict[str, float]) -> None:
    assert reason(heard("Yes.", **marginal)) == "too_few_words"
    assert reason(heard("Yes, go ahead.", **marginal)) == ""


# ---- learning the caller's level ------------------------------------------------------


def test_the_callers_level_is_learned_from_accepted_utterances_only() -> None:
    judge = NoiseFilter(DEFAULTS)
    assert judge.caller_dbfs is None
    judge.judge(heard(level=-40.0))  # too quiet: not the caller
    judge.judge(heard("Thank you.", level=-5.0))  # a hallucination: not the caller
    assert judge.caller_dbfs is None
    judge.judge(heard(level=-20.0))
    assert judge.caller_dbfs == -20.0


def test_the_callers_level_rises_fast_and_falls_slowly() -> None:
    """A TV loud enough to pass before the caller spoke teaches little once the caller
    is heard; a caller's quiet aside lowers the level a little."""
    judge = NoiseFilter(DEFAULTS)
    judge.judge(heard(level=-25.0))  # a loud TV, first
    judge.judge(heard(level=-13.0))  # the caller
    assert judge.caller_dbfs == pytest.approx(-19.0)
    judge.judge(heard(level=-13.0))
    assert judge.caller_dbfs == pytest.approx(-16.0)
    judge.judge(heard(level=-21.0))
    assert judge.caller_dbfs == pytest.approx(-17.0)


def test_switched_off_only_empty_utterances_are_dropped() -> None:
    off = dataclasses.replace(DEFAULTS, enabled=False)
    assert reason(heard("Thank you.", level=-60.0, no_speech=0.99, logprob=-3.0),
                  config=off) == ""
    assert reason(heard(""), config=off) == "empty"


def test_the_figures_for_the_log() -> None:
    judge = NoiseFilter(DEFAULTS)
    judge.judge(heard(level=-18.04))
    decision = judge.judge(heard("Yes.", level=-35.0, no_speech=0.25, logprob=-0.5))
    assert decision.figures() == ("level=-35.0 dBFS limit=-27.0 caller=-18.0 no_speech=0.25 "
                                  "logprob=-0.50 marginal=True")


# ---- settings -------------------------------------------------------------------------


def test_the_defaults_are_the_settings_defaults() -> None:
    assert NoiseConfig.from_settings(Settings().noise) == DEFAULTS


def test_settings_carry_every_threshold() -> None:
    settings = Settings()
    settings.noise.floor_dbfs = -35.0
    settings.noise.marginal_min_words = 2
    config = NoiseConfig.from_settings(settings.noise)
    assert (config.floor_dbfs, config.marginal_min_words) == (-35.0, 2)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("max_no_speech_prob", 1.1, "max_no_speech_prob must be 0-1"),
    ("marginal_avg_logprob", -2.0, "min_avg_logprob <= marginal_avg_logprob"),
    ("below_caller_db", -1.0, "below_caller_db"),
    ("min_words", 0, "1 <= min_words"),
    ("marginal_min_words", 0, "min_words <= marginal_min_words"),
])
def test_thresholds_out_of_order_are_refused(key: str, value: float, message: str) -> None:
    settings = Settings()
    setattr(settings.noise, key, value)
    with pytest.raises(SettingsError, match=message):
        settings.validate()
