"""Stages 1 and 2 of the sentence chunker: raw LLM text in, plain speakable text out.

1. ``MarkdownCleaner`` strips markdown and emoji from the raw stream.  It holds back
   only what it cannot decide yet (a line start that may be a list marker, ``]`` that may
   open a link target, ``*``/``_`` whose meaning depends on the next character).  Its
   output is plain text in which ``"\\n"`` marks a *hard* break (blank line, list item,
   heading, table row, code fence) and every other newline has become a space.
2. ``normalize`` collapses whitespace into single separators (``" "`` or ``"\\n"``) and
   drops a space left in front of ``! ? , ; : ) …`` (typically by a removed emoji).
"""

from __future__ import annotations

import enum
import re
import unicodedata
from functools import lru_cache

__all__ = [
    "CJK_CLAUSE_MARKS",
    "CJK_TERMINATORS",
    "GAP",
    "LATIN_TERMINATORS",
    "MarkdownCleaner",
    "clean_for_speech",
    "normalize",
]

LATIN_TERMINATORS = frozenset(".!?…")
CJK_TERMINATORS = frozenset("。！？｡")
CJK_CLAUSE_MARKS = frozenset("，、；：､")
# A space directly in front of these (after a word character) is dropped: "job 🎉!" -> "job!".
_NO_SPACE_BEFORE = frozenset("!?,;:)…")
_NO_SPACE_BEFORE_GAP = _NO_SPACE_BEFORE | LATIN_TERMINATORS | CJK_TERMINATORS | CJK_CLAUSE_MARKS
GAP = "\x1f"  # emitted by the cleaner where it removed an emoji
# Symbols of category So that are spoken, not pictographs.
_KEEP_SYMBOLS = frozenset("°℃℉©®™№")


@lru_cache(maxsize=8192)
def _is_emoji(ch: str) -> bool:
    """Emoji, pictographs and their glue: So/Sk symbols, variation selectors, ZWJ, tags."""
    if ch in _KEEP_SYMBOLS:
        return False
    code = ord(ch)
    if (
        0xFE00 <= code <= 0xFE0F  # variation selectors
        or code in (0x200B, 0x200C, 0x200D, 0x20E3)  # zero width space/joiners, keycap
        or 0xE0000 <= code <= 0xE007F  # tag characters (subdivision flags)
    ):
        return True
    return unicodedata.category(ch) in ("So", "Sk")


# --------------------------------------------------------------------------------------
# Stage 1: streaming markdown / emoji cleaner
# --------------------------------------------------------------------------------------


class _LineKind(enum.Enum):
    PLAIN = enum.auto()
    ITEM = enum.auto()
    HEADING = enum.auto()
    TABLE = enum.auto()


_HARD_LINE_KINDS = frozenset({_LineKind.ITEM, _LineKind.HEADING, _LineKind.TABLE})
_MARKER_LIMIT = 40
_MARKER_RUN = re.compile(rf"[ \t#*+\-•0-9.)>`~_=|:]{{0,{_MARKER_LIMIT}}}")
_LINE_MARKER = re.compile(
    r"[ \t]*(?:(?P<quote>>[ \t]?)|(?P<heading>#{1,6})[ \t]|(?P<bullet>[-*+•])[ \t]"
    r"|(?P<number>\d{1,3})[.)][ \t]|(?P<table>\|))"
)
_FENCE = re.compile(r"[ \t]*(?:```|~~~)")
_RULE_CHARS = frozenset("-*_=|: \t")
_URL_STOP = re.compile(r"[()\s]")
_URL_LIMIT = 2048
_NEEDS_NEXT = frozenset("*_~!]")


class MarkdownCleaner:
    """Incremental markdown/emoji stripper.  ``feed`` returns the text it could decide."""

    def __init__(self) -> None:
        self._raw = ""
        self._line_start = True
        self._kind = _LineKind.PLAIN
        self._prev = ""  # previous raw character on the current line

    def _reset(self) -> None:
        self._raw = ""
        self._line_start = True
        self._kind = _LineKind.PLAIN
        self._prev = ""

    def feed(self, text: str) -> str:
        self._raw += text.replace("\r", "")
        return self._run(final=False)

    def finish(self) -> str:
        out = self._run(final=True)
        self._reset()
        return out

    def _run(self, final: bool) -> str:
        s = self._raw
        n = len(s)
        i = 0
        out: list[str] = []
        while i < n:
            if self._line_start:
                step = self._line_start_step(s, i, final)
                if step is None:
                    break
                i, emitted = step
                out.append(emitted)
                continue
            c = s[i]
            if c == "\n":
                out.append("\n" if self._kind in _HARD_LINE_KINDS else " ")
                self._line_start = True
                self._kind = _LineKind.PLAIN
                self._prev = ""
                i += 1
                continue
            if c in _NEEDS_NEXT:
                if i + 1 >= n and not final:
                    break
                nxt = s[i + 1] if i + 1 < n else ""
                if c == "]" and nxt == "(":
                    end = self._link_target_end(s, i + 2, final)
                    if end is None:
                        break
                    if end > 0:  # "](url)": drop the target, the text was already emitted
                        self._prev = ")"
                        i = end
                        continue
                    # not a link target: drop the bracket, keep the parenthesis
                elif c == "*":
                    prev_ok = self._prev.isdigit() or self._prev == " "
                    if prev_ok and (nxt.isdigit() or nxt == " "):
                        out.append(c)  # arithmetic "2 * 3", not emphasis
                elif c == "_":
                    if self._prev.isalnum() and nxt.isalnum():
                        out.append(" ")  # snake_case -> "snake case"
                elif c == "~":
                    if nxt == "~":  # ~~strikethrough~~ marker
                        self._prev = c
                        i += 2
                        continue
                    out.append(c)
                elif c == "!" and nxt != "[":  # "![alt](src)": drop the image marker
                    out.append(c)
            elif c in "[`":
                pass
            elif c == "|" or c == "\t":
                out.append(" ")
            else:
                out.append(GAP if _is_emoji(c) else c)
            self._prev = c
            i += 1
        self._raw = s[i:]
        return "".join(out)

    def _link_target_end(self, s: str, start: int, final: bool) -> int | None:
        """End index of ``(url)`` opened at ``start - 1``; 0 if it is no link; None: wait."""
        depth = 0
        for m in _URL_STOP.finditer(s, start):
            if m.start() - start > _URL_LIMIT:
                return 0
            ch = m.group()
            if ch == "(":
                depth += 1
            elif ch == ")":
                if depth == 0:
                    return m.end()
                depth -= 1
            else:
                return 0
        if len(s) - start > _URL_LIMIT or final:
            return 0
        return None

    def _line_start_step(self, s: str, i: int, final: bool) -> tuple[int, str] | None:
        """Handle block markers at the start of a line.  Returns (next index, output)."""
        n = len(s)
        m = _MARKER_RUN.match(s, i)
        k = m.end() if m else i
        capped = k - i >= _MARKER_LIMIT
        if k == n and not capped and not final:
            return None
        seg = s[i:k]
        nxt = s[k] if k < n else ""
        if _FENCE.match(seg):  # ``` or ~~~ fence line: drop it entirely
            end = s.find("\n", k)
            if end < 0:
                if not final:
                    return None
                return n, "\n"
            return end + 1, "\n"
        if not capped and nxt in ("\n", ""):
            body = seg.strip(" \t")
            if not body:  # blank line
                return (k + 1 if nxt else k), "\n"
            if all(ch in _RULE_CHARS for ch in body) and sum(ch in "-*_=" for ch in body) >= 3:
                return (k + 1 if nxt else k), "\n"  # horizontal rule / table separator
        marker = _LINE_MARKER.match(seg)
        if marker is not None:
            end = i + marker.end()
            if marker.group("quote") is not None:
                return end, ""  # stay at line start: "> - item" is a quoted list item
            self._line_start = False
            self._prev = ""
            if marker.group("heading") is not None:
                self._kind = _LineKind.HEADING
            elif marker.group("table") is not None:
                self._kind = _LineKind.TABLE
            else:
                self._kind = _LineKind.ITEM
            return end, "\n"
        self._line_start = False
        self._prev = ""
        self._kind = _LineKind.PLAIN
        if nxt and not seg.strip(" \t") and _is_emoji(nxt):
            self._kind = _LineKind.ITEM  # "✅ Done" lines are list items
            return k, "\n"
        return i, ""


# --------------------------------------------------------------------------------------
# Stage 2: whitespace normalization
# --------------------------------------------------------------------------------------


def normalize(buf: str, tail: str, text: str) -> tuple[str, str]:
    """Append cleaned ``text`` to ``buf``; ``tail`` is a separator not yet committed.

    ``tail`` is "" (none), " ", "\n" (hard break) or ``GAP`` (a space next to a removed
    emoji, dropped before punctuation: "Done 🎉." -> "Done.", "Hi🎉there" -> "Hi there").
    """
    parts: list[str] = []
    last = buf[-1] if buf else ""
    for c in text:
        if c == "\n":
            tail = "\n"
        elif c == GAP:
            if tail in ("", " "):
                tail = GAP
        elif c.isspace():
            if not tail:
                tail = " "
        else:
            if tail:
                # Only after a word: a space after punctuation may already have ended a chunk.
                drop_before = _NO_SPACE_BEFORE_GAP if tail == GAP else _NO_SPACE_BEFORE
                dropped = tail != "\n" and last.isalnum() and c in drop_before
                if last and not dropped:
                    parts.append(" " if tail == GAP else tail)
                tail = ""
            parts.append(c)
            last = c
    return buf + "".join(parts), tail


def clean_for_speech(text: str) -> str:
    """Strip markdown and emoji from ``text`` and normalize its whitespace."""
    cleaner = MarkdownCleaner()
    cleaned = cleaner.feed(text) + cleaner.finish()
    buf, _ = normalize("", "", cleaned)
    return buf.replace("\n", " ")
