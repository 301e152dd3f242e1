"""Has the user finished? The sound of the pause (an end-of-turn model) and its words.

Smart Turn hears a person's prosody: a falling pitch, a finished word, or a filler
and a held vowel. Its judgement of synthetic or read speech is much weaker (every
sentence a TTS says ends with a falling pitch: "Could you tell me" scored 0.98 in a
Piper voice), so the words of the pause's transcript are judged too: an utterance
that ends on "and", "the", "um", a comma or Whisper's trailing "..." is unfinished,
whatever it sounds like.

The verdict moves the end of the turn (the endpointer's silence limit), never the
work: the reply is computed from the pause on and only its audio waits.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Verdict(enum.Enum):
    COMPLETE = "complete"  # the turn ends now
    UNSURE = "unsure"  # the usual silence ends it
    INCOMPLETE = "incomplete"  # a long silence ends it


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Words a sentence does not end on: it goes on after them.
_CONTINUES = _set("""
    and or but because if when while although though since unless until than
    which whom whose whether nor yet as
    the a an these those my your its our their every each another
    about of to for with in on at from by into onto like after before between over under
    through during without against towards toward around across behind beyond near via
    be been being i we they he she very really
    um uh er erm uhm
    let's want need wondering wonder thinking guess
""")

# Closing words that need a complement: "could you tell me ...", "I want to know ...".
_OPENERS = (
    re.compile(r"\b(tell|show|give|ask|remind|teach|let|send|bring|explain to|read) me$"),
    re.compile(r"\b(happen|happened|want|wanted|need|needed|like) to know$"),
    re.compile(r"\b(can|could|would|will) you (explain|describe|recommend|suggest|name)$"),
    re.compile(r"\b(i|we) (forgot|forget|remember|wondered|want|need|would like|'d like|"
               r"wanted|needed|was wondering|"
               r"am wondering|wonder|think|guess|mean|was thinking|am thinking|"
               r"was going to|want to know|wanted to know|need to know|wanted to ask|"
               r"want to ask)$"),
    re.compile(r"\b(to|do you|did you|can you|could you|would you) "
               r"(ask|say|tell|think|see|find|get|make|do|go|have|try)$"),
    re.compile(r"^(so|well|okay so|ok so|also|actually|then|now|"
               r"the thing is|the question is|my question is|here's the thing|"
               r"i have a question|one more thing|another thing|excuse me)$"),
    # Only words that take the floor ("Wait, stop.", "No no, hold on."): what they
    # stopped the agent for comes next.
    re.compile(r"^((wait|stop|hold on|hang on|hey|listen|no|okay|ok|sorry|um|uh|"
               r"actually|please) ?)*(wait|stop|hold on|hang on|hey|listen)"
               r"( (wait|stop|hold on|hang on|hey|listen|no|okay|ok|sorry|um|uh|"
               r"actually|please|a (second|sec|moment|minute)))*$"),
)

# A verb that ends a sentence only in an embedded question ("... where the moon is").
_AUXILIARIES = _set("""
    is are was were am do does did have has had can could will would shall should may
    might must
""")
_PRONOUNS = _set("i you we they he she it that this there not so")
_ASKS = _set("what where how who when why which whether if")

_TRAILING = re.compile(r"(\.\.\.|…|,|;|:|-|—)\s*$")
_WORDS = re.compile(r"[a-z']+")


def text_verdict(text: str) -> Verdict:
    """The words' own verdict: INCOMPLETE when they cannot end a turn, COMPLETE when
    they end on sentence punctuation, else UNSURE (an empty or unpunctuated text)."""
    stripped = text.strip()
    if not stripped:
        return Verdict.UNSURE
    if _TRAILING.search(stripped):
        return Verdict.INCOMPLETE
    words = _WORDS.findall(stripped.lower().replace("’", "'"))
    if not words:
        return Verdict.UNSURE
    if words[-1] in _CONTINUES:
        return Verdict.INCOMPLETE
    if (words[-1] in _AUXILIARIES and not _ASKS.intersection(words[:-2])
            and (len(words) < 2 or words[-2] not in _PRONOUNS)):
        return Verdict.INCOMPLETE
    phrase = " ".join(words)
    if any(pattern.search(phrase) for pattern in _OPENERS):
        return Verdict.INCOMPLETE
    return Verdict.COMPLETE if stripped[-1] in ".?!" else Verdict.UNSURE


@dataclass(frozen=True)
class TurnEndConfig:
    complete_threshold: float = 0.5
    incomplete_threshold: float = 0.1
    text_cues: bool = True


def decide(probability: float | None, text: str | None, config: TurnEndConfig) -> Verdict:
    """The verdict of a pause from the model's probability that the speaker is done
    (None: no model) and its transcript (None: not transcribed).

    Words that cannot end a turn, or a model sure the speaker goes on (unless the words
    are a finished sentence), hold the turn open; a model that hears an end, with words
    that may end, ends it now; anything else is left to the usual silence.
    """
    words = text_verdict(text) if config.text_cues and text is not None else Verdict.UNSURE
    if words is Verdict.INCOMPLETE:
        return Verdict.INCOMPLETE
    if probability is None:
        return words
    if probability < config.incomplete_threshold:
        # A finished sentence the model hears as unfinished (synthetic voices often
        # sound so) waits the usual silence, not the long one.
        return Verdict.UNSURE if words is Verdict.COMPLETE else Verdict.INCOMPLETE
    if probability >= config.complete_threshold:
        return Verdict.COMPLETE
    return Verdict.UNSURE
