"""The caller's language: which language a reply is written in, and which voice (if
any) speaks it.

Whisper detects the language of each utterance (stt.language empty). The reply is
written in that language; it is spoken by a voice that speaks it: the call's voice,
or the one tts.voices_by_language names for it. With no such voice the reply is sent
as text only (the page shows it) and the agent stays silent: a voice never reads a
script it does not speak (an English voice spells Chinese out letter by letter, or
says nothing useful). docs/languages.md has the reasons.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from avatar_rtc.backends.base import Voice

# Whisper's language codes, for the instruction the LLM gets ("Answer in Chinese.").
LANGUAGE_NAMES: dict[str, str] = {
    "en": "English", "zh": "Chinese", "de": "German", "es": "Spanish", "ru": "Russian",
    "ko": "Korean", "fr": "French", "ja": "Japanese", "pt": "Portuguese", "tr": "Turkish",
    "pl": "Polish", "ca": "Catalan", "nl": "Dutch", "ar": "Arabic", "sv": "Swedish",
    "it": "Italian", "id": "Indonesian", "hi": "Hindi", "fi": "Finnish", "vi": "Vietnamese",
    "he": "Hebrew", "uk": "Ukrainian", "el": "Greek", "ms": "Malay", "cs": "Czech",
    "ro": "Romanian", "da": "Danish", "hu": "Hungarian", "ta": "Tamil", "no": "Norwegian",
    "th": "Thai", "ur": "Urdu", "hr": "Croatian", "bg": "Bulgarian", "lt": "Lithuanian",
    "fa": "Persian", "sk": "Slovak", "bn": "Bengali", "sr": "Serbian", "sl": "Slovenian",
    "yue": "Cantonese",
}  # fmt: skip

# Languages written in CJK scripts: only a voice of one of these may read such text.
CJK_LANGUAGES = frozenset({"zh", "yue", "ja", "ko"})


def language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code, code)


def answer_instruction(code: str) -> str:
    """The line added to the system prompt; none for English, the prompt's own
    language, so an English call keeps its cached prompt."""
    return "" if code in ("", "en") else f"Answer in {language_name(code)}."


def _is_cjk(ch: str) -> bool:
    if not ("\u2e80" <= ch <= "\U0003134f"):
        return False
    name = unicodedata.name(ch, "")
    return name.startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "IDEOGRAPHIC",
                            "FULLWIDTH", "BOPOMOFO"))


def is_cjk_text(text: str) -> bool:
    """Mostly CJK: more of its letters are CJK than Latin (and so on)."""
    letters = [ch for ch in text if ch.isalpha()]
    cjk = sum(1 for ch in letters if _is_cjk(ch))
    return cjk > 0 and cjk * 2 >= len(letters)


def can_read(text: str, languages: frozenset[str]) -> bool:
    """Whether a voice that speaks `languages` may read `text`: CJK text only by a
    voice of a CJK language."""
    return not is_cjk_text(text) or bool(languages & CJK_LANGUAGES)


def parse_voice_map(entries: list[str]) -> dict[str, str]:
    """tts.voices_by_language ("zh=huayan-medium", "en=joe-medium") as a dict; a
    ValueError names a malformed entry."""
    found: dict[str, str] = {}
    for entry in entries:
        code, sep, voice = entry.partition("=")
        code, voice = code.strip().lower(), voice.strip()
        if not sep or not code or not voice or not code.isalpha():
            raise ValueError(f"{entry!r} is not language=voice (zh=my-voice)")
        found[code] = voice
    return found


@dataclass(frozen=True)
class LanguagePlan:
    """How one turn is answered."""

    heard: str  # Whisper's code for what the caller spoke ("" unknown)
    answer: str  # the language the reply is written in
    voice: Voice | None  # None: the reply is text only
    reason: str = ""  # why the reply is not spoken, for the page and the log

    @property
    def spoken(self) -> bool:
        return self.voice is not None


def plan_reply(heard: str, call_voice: Voice, voice_map: Mapping[str, Voice],
               speaks: Callable[[Voice], frozenset[str]]) -> LanguagePlan:
    """The call's voice if it speaks `heard`, else the mapped voice for it, else text
    only, in the heard language."""
    if not heard:
        return LanguagePlan(heard, "", call_voice)
    if heard in speaks(call_voice):
        return LanguagePlan(heard, heard, call_voice)
    mapped = voice_map.get(heard)
    if mapped is not None and heard in speaks(mapped):
        return LanguagePlan(heard, heard, mapped)
    return LanguagePlan(heard, heard, None, f"no voice for {heard}")
