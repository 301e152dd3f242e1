"""Streaming sentence chunker: LLM token deltas in, speakable TTS chunks out.

The pipeline has three stages, each a deterministic function of the text seen so far:
the first two (markdown and emoji out, whitespace normalized) are in cleaner.py; the
third, ``SentenceChunker._scan``, walks the normalized text and decides, position by
position, whether a chunk ends there.  A decision is taken only once the characters it
depends on are present; otherwise the scan stops and waits for more text.

Because no stage ever decides on a prefix something it would decide differently with more
text, the chunks do not depend on how the stream was split into tokens.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from avatar_rtc.conversation.cleaner import (
    CJK_CLAUSE_MARKS,
    CJK_TERMINATORS,
    GAP,
    LATIN_TERMINATORS,
    MarkdownCleaner,
    normalize,
)

__all__ = ["ChunkerConfig", "SentenceChunker", "ends_sentence"]


@dataclass(frozen=True)
class ChunkerConfig:
    """Chunk length policy.

    Lengths are measured in characters, with East Asian wide characters (CJK) counted
    twice, which roughly matches their speaking time.
    """

    first_chunk_min_chars: int = 12  # the first chunk may break at a clause boundary once this long
    clause_min_chars: int = 40  # later chunks break at clause boundaries once this long
    max_chars: int = 220  # force a break (at the last space) past this
    # The first chunk's own cap (0: max_chars). Time to first audio grows with the first
    # chunk: the LLM must write it and TTS must speak all of it before any sound.
    first_chunk_max_chars: int = 0

    def __post_init__(self) -> None:
        if self.first_chunk_min_chars < 0 or self.clause_min_chars < 0:
            raise ValueError("clause thresholds must not be negative")
        if self.max_chars < 2:
            raise ValueError("max_chars must be at least 2")
        if self.first_chunk_max_chars and self.first_chunk_max_chars < 2:
            raise ValueError("first_chunk_max_chars must be 0 or at least 2")


# --------------------------------------------------------------------------------------
# Character classes
# --------------------------------------------------------------------------------------

_CLOSERS = frozenset("\"')]}»”’」』】〕）〉》")
_CLAUSE_MARKS = frozenset(",;:")
_DASHES = frozenset("—–")
_SEPARATORS = frozenset(" \n")

# Abbreviations, lower-cased, without their final period.
_ABBREV_NEVER_END = frozenset(
    {
        "mr", "mrs", "ms", "mx", "dr", "prof", "sr", "jr", "st", "mt", "vs", "cf", "viz",
        "e.g", "i.e", "eg", "ie", "approx", "ca", "est", "al", "u.s", "u.k", "u.n", "e.u",
        "u.s.a", "gen", "gov", "sen", "rep", "rev", "hon", "capt", "col", "lt", "sgt",
        "messrs", "dept",
    }
)  # fmt: skip
# Ends a sentence unless the next word starts with a lowercase letter or a digit.
_ABBREV_END_IF_CAPITAL = frozenset(
    {
        "etc", "inc", "ltd", "co", "corp", "llc", "plc", "a.m", "p.m", "min", "mins", "hr",
        "hrs", "sec", "secs", "tbsp", "tsp", "oz", "lb", "lbs", "ft", "yd", "mi", "sq",
    }
)  # fmt: skip
# Ends a sentence unless a number follows ("No. 5", "Jan. 3", "p. 12").
_ABBREV_END_UNLESS_NUMBER = frozenset(
    {
        "no", "nos", "nr", "vol", "vols", "p", "pp", "ch", "chap", "sec", "fig", "figs",
        "eq", "ref", "tel", "ext", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
        "sept", "oct", "nov", "dec",
    }
)  # fmt: skip
# A small model sometimes opens its reply with a speaker tag ("L'Alma:", "Assistant:"),
# which TTS would read out. One or two name-like words and a colon, at the very start.
_NAME = r"[^\W\d_][\w'’-]*"
_SPEAKER_LABEL = re.compile(rf"(?P<first>{_NAME})(?: {_NAME})?:(?= )")
_SPEAKER_LABEL_SO_FAR = re.compile(rf"{_NAME}(?: (?:{_NAME})?)?:?")  # could become one
# ... but not an opening that means something: "Here's why: ...", "The answer: ...".
_NOT_SPEAKERS = frozenset({"here", "here's", "heres", "yes", "no", "so", "well", "why",
                           "but", "and", "because", "then", "now", "remember", "the", "a",
                           "an", "my", "our", "your", "this", "that", "it", "i", "you",
                           "we", "they", "he", "she", "there", "what", "how"})
_DOTTED_INITIALS = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")
_LEADING_NON_WORD = re.compile(r"^[\W_]+")


@lru_cache(maxsize=8192)
def _is_wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


def _weight(ch: str) -> int:
    return 2 if _is_wide(ch) else 1


def _is_speakable(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def ends_sentence(chunk: str) -> bool:
    """Does this chunk (as SentenceChunker made it) end a sentence, not a clause? The
    chunker only breaks after a terminator where the sentence ends, so no abbreviation
    ("Dr.") or decimal is taken for one."""
    core = chunk.rstrip("".join(_CLOSERS))
    return bool(core) and (core[-1] in LATIN_TERMINATORS or core[-1] in CJK_TERMINATORS)


# --------------------------------------------------------------------------------------
# Stage 3: chunking
# --------------------------------------------------------------------------------------


class _Decision(enum.Enum):
    NO = enum.auto()
    YES = enum.auto()
    WAIT = enum.auto()


_END = ""  # look-ahead value meaning "end of the stream" (flush)


class SentenceChunker:
    """Turns streamed LLM text into speakable chunks as early as the text allows."""

    def __init__(self, config: ChunkerConfig | None = None) -> None:
        self._config = config or ChunkerConfig()
        self._cleaner = MarkdownCleaner()
        self._buf = ""  # normalized text of the pending chunk and what follows it
        self._tail = ""  # trailing separator not yet committed to _buf
        self._pos = 0  # every position before this one is decided "no break"
        self._pos_weight = 0  # weighted length of _buf[:_pos]
        self._first = True  # no chunk emitted yet in this stream
        self._label_checked = False  # the stream's start was checked for a speaker tag
        self.speaker_tag = ""  # the tag dropped from the start of the last stream

    def push(self, text: str) -> list[str]:
        """Feed a token/delta; return the chunks it completed."""
        if not text:
            return []
        self._buf, self._tail = normalize(self._buf, self._tail, self._cleaner.feed(text))
        if not self._label_checked and not self._strip_speaker_label(final=False):
            return []
        return self._scan(final=False)

    def flush(self, *, drop_fragment: bool = False) -> list[str]:
        """End of stream: return whatever remains, cleaned; the next push starts a new stream.

        `drop_fragment`: the text was cut off (the LLM's token limit), so what follows
        the last chunk is an unfinished sentence; it is dropped, unless the stream made
        no chunk at all (a fragment beats silence)."""
        self._buf, self._tail = normalize(self._buf, self._tail, self._cleaner.finish())
        if not self._label_checked:
            self._strip_speaker_label(final=True)
        out = self._scan(final=True)
        if not drop_fragment or self._first:  # (_emit clears _first)
            self._emit(self._buf, out)
        self.reset()
        return out

    def reset(self) -> None:
        """Drop everything pending (barge-in)."""
        self._cleaner = MarkdownCleaner()
        self._buf = ""
        self._tail = ""
        self._pos = 0
        self._pos_weight = 0
        self._first = True
        self._label_checked = False

    def _strip_speaker_label(self, final: bool) -> bool:
        """Drops a speaker tag that opens the stream; False while the text so far could
        still turn out to be one (nothing is scanned until then: a few tokens)."""
        text = self._buf + ("" if final else self._tail)
        label = _SPEAKER_LABEL.match(text)
        self.speaker_tag = ""
        if label is not None and label["first"].lower() not in _NOT_SPEAKERS:
            self.speaker_tag = label[0]
            self._buf = self._buf[label.end():].lstrip()
            if not self._buf:
                self._tail = ""
        elif not final and not self._buf:
            return False  # nothing yet (a markdown marker held back, say)
        elif (not final and len(text) <= 24 and _SPEAKER_LABEL_SO_FAR.fullmatch(text)
                and not any(map(_is_wide, text))):
            return False
        self._label_checked = True
        return True

    # -- scanning ------------------------------------------------------------------

    def _scan(self, final: bool) -> list[str]:
        out: list[str] = []
        while True:
            max_chars = self._max_chars()
            buf = self._buf
            i = self._pos
            if i >= len(buf):
                if buf and self._tail == "\n":
                    self._cut(len(buf), len(buf), out)
                    continue
                return out
            c = buf[i]
            width = _weight(c)
            if c not in _SEPARATORS and i > 0 and self._pos_weight + width > max_chars:
                self._forced_cut(i, out)
                continue
            if c == "\n":
                self._cut(i, i + 1, out)
                continue
            decision, end = self._decide(i, final)
            if decision is _Decision.WAIT:
                return out
            if decision is _Decision.YES:
                self._cut(end, end, out)
                continue
            self._pos = i + 1
            self._pos_weight += width

    def _max_chars(self) -> int:
        cfg = self._config
        return cfg.first_chunk_max_chars if self._first and cfg.first_chunk_max_chars \
            else cfg.max_chars

    def _decide(self, i: int, final: bool) -> tuple[_Decision, int]:
        """May a chunk end right after the candidate starting at ``i``? (decision, end)."""
        buf = self._buf
        c = buf[i]
        prev = buf[i - 1] if i > 0 else ""
        if c in CJK_TERMINATORS:
            return _Decision.YES, i + 1
        if c in CJK_CLAUSE_MARKS:
            return (_Decision.YES if self._long_enough(i + 1) else _Decision.NO), i + 1
        if c in LATIN_TERMINATORS:
            if prev in LATIN_TERMINATORS:
                return _Decision.NO, i + 1  # inside a run decided at its start
            end = i
            while end < len(buf) and buf[end] in LATIN_TERMINATORS:
                end += 1
            while end < len(buf) and buf[end] in _CLOSERS:
                end += 1
            return self._sentence_end(i, end, final), end
        if c in _CLAUSE_MARKS:
            if not self._long_enough(i + 1):
                return _Decision.NO, i + 1
            return self._followed_by_space(i + 1, final), i + 1
        if c in _DASHES:
            if prev != " ":  # only spaced dashes: " — " and " – "
                return _Decision.NO, i + 1
            end = i
            while end < len(buf) and buf[end] in _DASHES:
                end += 1
            decision = self._followed_by_space(end, final)  # first: the run may go on
            if decision is _Decision.YES and not self._long_enough(end):
                decision = _Decision.NO
            return decision, (end if decision is _Decision.YES else i + 1)
        return _Decision.NO, i + 1

    def _lookahead(self, j: int, final: bool) -> str | None:
        """Character at ``j``: a separator, text, ``_END`` after flush, or None (unknown)."""
        if j < len(self._buf):
            return self._buf[j]
        if self._tail == GAP:  # a space unless dropped, which happens only after a word
            return " " if self._buf and not self._buf[-1].isalnum() else None
        if self._tail:
            return self._tail
        return _END if final else None

    def _word_after(self, j: int, final: bool) -> str | None:
        """First character of the word after the separator at ``j``."""
        if j + 1 < len(self._buf):
            return self._buf[j + 1]
        return _END if final else None

    def _followed_by_space(self, j: int, final: bool) -> _Decision:
        la = self._lookahead(j, final)
        if la is None:
            return _Decision.WAIT
        return _Decision.YES if la == _END or la in _SEPARATORS else _Decision.NO

    def _sentence_end(self, i: int, end: int, final: bool) -> _Decision:
        la = self._lookahead(end, final)
        if la is None:
            return _Decision.WAIT
        if la == _END:
            return _Decision.YES
        # A hard break ("\n") is judged like a space: a trailing space may still turn into
        # one, and the break itself ends the chunk right after the run anyway.
        if la not in _SEPARATORS:
            # "3.14", "example.com", "e.g": no break; text in a spaceless script proves it.
            return _Decision.YES if _is_wide(la) else _Decision.NO
        core = "".join(ch for ch in self._buf[i:end] if ch not in _CLOSERS)
        if core == ".":
            word = self._word_before(i)
            low = word.lower()
            if low in _ABBREV_NEVER_END or _DOTTED_INITIALS.fullmatch(word):
                return _Decision.NO
            if len(word) == 1 and word.isupper():
                return _Decision.NO  # initial: "J. R. R. Tolkien"
            if low in _ABBREV_END_IF_CAPITAL or low in _ABBREV_END_UNLESS_NUMBER:
                nxt = self._word_after(end, final)
                if nxt is None:
                    return _Decision.WAIT
                if nxt.isdigit() or (low in _ABBREV_END_IF_CAPITAL and nxt.islower()):
                    return _Decision.NO
        elif (len(core) > 1 and set(core) <= {".", "…"}) or core == "…":
            nxt = self._word_after(end, final)  # ellipsis: "well... maybe" keeps going
            if nxt is None:
                return _Decision.WAIT
            if nxt.islower():
                return _Decision.NO
        return _Decision.YES

    def _word_before(self, i: int) -> str:
        buf = self._buf
        k = i
        while k > 0 and buf[k - 1] not in _SEPARATORS:
            k -= 1
        return _LEADING_NON_WORD.sub("", buf[k:i])

    def _long_enough(self, end: int) -> bool:
        weight = self._pos_weight + sum(_weight(ch) for ch in self._buf[self._pos : end])
        cfg = self._config
        return weight >= (cfg.first_chunk_min_chars if self._first else cfg.clause_min_chars)

    def _forced_cut(self, i: int, out: list[str]) -> None:
        """``_buf[:i + 1]`` is too long: break at the last space (or CJK character) before i."""
        buf = self._buf
        space = buf.rfind(" ", 1, i)
        cjk = 0
        for k in range(i, max(space, 0), -1):
            before, after = buf[k - 1], buf[k]
            if (
                (_is_wide(before) or _is_wide(after))
                and " " not in (before, after)
                and not unicodedata.category(after).startswith("P")
            ):
                cjk = k
                break
        if cjk > 0 and cjk > space:
            self._cut(cjk, cjk, out)
        elif space > 0:
            self._cut(space, space + 1, out)
        else:
            self._cut(i, i, out)  # one endless word: cut it

    def _cut(self, chunk_end: int, rest_start: int, out: list[str]) -> None:
        chunk = self._buf[:chunk_end]
        rest = self._buf[rest_start:]
        if rest and rest[0] in _SEPARATORS:
            rest = rest[1:]
        self._buf = rest
        if not rest:
            self._tail = ""
        self._pos = 0
        self._pos_weight = 0
        self._emit(chunk, out)

    def _emit(self, chunk: str, out: list[str]) -> None:
        text = chunk.strip()
        if _is_speakable(text):
            out.append(text)
            self._first = False
