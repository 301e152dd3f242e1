"""Tests for the streaming sentence chunker (avatar_rtc.conversation.chunker)."""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Callable, Iterable

import pytest

from avatar_rtc.conversation.chunker import (
    ChunkerConfig,
    SentenceChunker,
    ends_sentence,
)
from avatar_rtc.conversation.cleaner import clean_for_speech

# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def feed(pieces: Iterable[str], config: ChunkerConfig | None = None) -> list[str]:
    chunker = SentenceChunker(config)
    out: list[str] = []
    for piece in pieces:
        out += chunker.push(piece)
    return out + chunker.flush()


def chunk(text: str, config: ChunkerConfig | None = None) -> list[str]:
    return feed([text], config)


def split_chars(text: str) -> list[str]:
    return list(text)


def split_words(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text)


def split_llm_like(text: str) -> list[str]:
    """Leading-space tokens, like BPE tokenizers produce (" world", "!")."""
    return re.findall(r"\s*[\w']+|\s*[^\w\s]|\s+", text)


def split_random(text: str, rng: random.Random, max_len: int = 8) -> list[str]:
    pieces: list[str] = []
    i = 0
    while i < len(text):
        step = rng.randint(1, max_len)
        pieces.append(text[i : i + step])
        i += step
    return pieces


def speakable(word: str) -> bool:
    return any(ch.isalnum() for ch in word)


def assert_no_loss(text: str, chunks: list[str], word_by_word: bool = True) -> None:
    """Chunks hold exactly the cleaned text: nothing lost, duplicated or reordered.

    Punctuation-only chunks are never emitted, so only punctuation may be missing.
    """
    cleaned = clean_for_speech(text)
    expected = "".join(cleaned.split())
    got = "".join("".join(chunks).split())
    j = 0
    for ch in expected:
        if j < len(got) and got[j] == ch:
            j += 1
        else:
            assert not ch.isalnum(), f"lost {ch!r} of {cleaned!r} in {chunks!r}"
    assert j == len(got), f"extra text in {chunks!r} for {cleaned!r}"
    if word_by_word:
        want_words = [w for w in cleaned.split() if speakable(w)]
        got_words = [w for w in " ".join(chunks).split() if speakable(w)]
        assert got_words == want_words


def assert_clean_chunks(chunks: list[str]) -> None:
    for c in chunks:
        assert c == c.strip() and c, chunks
        assert "  " not in c and "\n" not in c, chunks
        assert speakable(c), chunks
        assert not any(unicodedata.category(ch) in ("So", "Sk") for ch in c if ch not in "°©®™"), c
        assert not any(m in c for m in ("**", "`", "[", "]", "__")), c


def weighted_len(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


# --------------------------------------------------------------------------------------
# Sentence ends
# --------------------------------------------------------------------------------------


def test_sentences_are_emitted_as_soon_as_whitespace_follows() -> None:
    c = SentenceChunker()
    assert c.push("Hello") == []
    assert c.push("!") == []  # "!!" or "!?" could still follow
    assert c.push(" How") == ["Hello!"]
    assert c.push(" are you?") == []
    assert c.push(" ") == ["How are you?"]
    assert c.push("Fine") == []
    assert c.flush() == ["Fine"]
    assert c.flush() == []


def test_a_cut_off_stream_drops_its_unfinished_sentence_only() -> None:
    c = SentenceChunker()
    assert c.push("Tea is a drink. It is made from") == ["Tea is a drink."]
    assert c.flush(drop_fragment=True) == []
    assert c.push("It is hot. Drink it slowly.") == ["It is hot."]
    assert c.flush(drop_fragment=True) == ["Drink it slowly."]  # finished: kept
    assert c.push("Tea is made from") == []
    assert c.flush(drop_fragment=True) == ["Tea is made from"]  # nothing else to say


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Really?! Yes... Sure.", ["Really?!", "Yes...", "Sure."]),
        ("Wait… Now.", ["Wait…", "Now."]),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("(See the note.) Done.", ["(See the note.)", "Done."]),
        ("“Hi,” she said. “Bye!” Ok.", ["“Hi,” she said.", "“Bye!”", "Ok."]),
        ("No newline at the end.", ["No newline at the end."]),
    ],
)
def test_sentence_end_runs_and_closing_quotes(text: str, expected: list[str]) -> None:
    assert chunk(text) == expected


def test_period_needs_lookahead_before_deciding() -> None:
    c = SentenceChunker()
    assert c.push("Pi is 3.") == []  # could be 3.14
    assert c.push("14. ") == ["Pi is 3.14."]
    c = SentenceChunker()
    assert c.push("I have 3.") == []
    assert c.push(" Then") == ["I have 3."]


@pytest.mark.parametrize(
    "abbr",
    [
        "Mr.", "Mrs.", "Ms.", "Dr.", "Prof.", "Sr.", "Jr.", "St.", "vs.", "etc.", "e.g.",
        "i.e.", "a.m.", "p.m.", "U.S.", "U.K.", "No.", "Inc.", "Ltd.", "approx.",
    ],
)  # fmt: skip
def test_abbreviations_do_not_end_sentences(abbr: str) -> None:
    text = f"We talked about {abbr} 12 things today. Next."
    assert chunk(text) == [f"We talked about {abbr} 12 things today.", "Next."]


def test_abbreviations_before_names_and_lowercase() -> None:
    text = (
        "Mr. Smith met Dr. Jones and Prof. Lee at 5 p.m. on Main St. yesterday. "
        "J. R. R. Tolkien wrote it. We had apples, pears, etc. and more."
    )
    assert chunk(text, ChunkerConfig(first_chunk_min_chars=500, clause_min_chars=500)) == [
        "Mr. Smith met Dr. Jones and Prof. Lee at 5 p.m. on Main St. yesterday.",
        "J. R. R. Tolkien wrote it.",
        "We had apples, pears, etc. and more.",
    ]


def test_some_abbreviations_can_end_a_sentence_when_a_capital_follows() -> None:
    assert chunk("I work at Apple Inc. Then I left.") == ["I work at Apple Inc.", "Then I left."]
    assert chunk("Say no. I insist.") == ["Say no.", "I insist."]
    assert chunk("See No. 5 here.") == ["See No. 5 here."]


@pytest.mark.parametrize(
    "text",
    [
        "It costs $2.50 today.",
        "Pi is roughly 3.14159 here.",
        "Install v1.2.3 or 10.0.1 now.",
        "Visit www.example.com for details.",
        "Write to jane.doe@example.co.uk for help.",
        "Open https://docs.python.org/3/library/re.html please.",
        "Use the .NET runtime here.",
    ],
)
def test_decimals_versions_urls_emails_do_not_split(text: str) -> None:
    assert chunk(text) == [text]


def test_url_at_sentence_end_still_ends_the_sentence() -> None:
    assert chunk("Go to example.com. Then log in.") == ["Go to example.com.", "Then log in."]


def test_ellipsis_followed_by_lowercase_does_not_split_words() -> None:
    chunks = chunk("Well... maybe not. Wait... What?")
    assert chunks == ["Well... maybe not.", "Wait...", "What?"]


# --------------------------------------------------------------------------------------
# Clause boundaries
# --------------------------------------------------------------------------------------


def test_first_chunk_breaks_early_at_a_clause() -> None:
    c = SentenceChunker()
    assert c.push("Hi, there") == []  # "Hi," is shorter than 12 characters
    assert c.push(" my friend,") == []  # the comma needs a following space
    assert c.push(" how") == ["Hi, there my friend,"]


def test_later_chunks_need_clause_min_chars() -> None:
    text = (
        "Sure. Well, that depends on what you mean, and on the context of the question, doesn't it?"
    )
    assert chunk(text) == [
        "Sure.",
        "Well, that depends on what you mean, and on the context of the question,",
        "doesn't it?",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Here is the first part; here is the second.",
            ["Here is the first part;", "here is the second."],
        ),
        ("The answer is simple: no, never.", ["The answer is simple:", "no, never."]),
        ("It was fast — really fast indeed.", ["It was fast —", "really fast indeed."]),
        ("It was fast – really fast indeed.", ["It was fast –", "really fast indeed."]),
        ("Pages 10–20 cover it — mostly.", ["Pages 10–20 cover it —", "mostly."]),
    ],
)
def test_clause_marks(text: str, expected: list[str]) -> None:
    assert chunk(text) == expected


def test_numbers_with_separators_never_break() -> None:
    text = "The population was 1,000,000,000 people at 12:30:15 that day."
    assert chunk(text, ChunkerConfig(first_chunk_min_chars=1, clause_min_chars=1)) == [text]


def test_config_thresholds() -> None:
    text = "One, two, three, four."
    assert chunk(text, ChunkerConfig(first_chunk_min_chars=1, clause_min_chars=1)) == [
        "One,",
        "two,",
        "three,",
        "four.",
    ]
    assert chunk(text, ChunkerConfig(first_chunk_min_chars=100)) == [text]
    with pytest.raises(ValueError):
        ChunkerConfig(max_chars=1)
    with pytest.raises(ValueError):
        ChunkerConfig(clause_min_chars=-1)


def test_max_chars_forces_a_break_at_the_last_space() -> None:
    text = " ".join(f"word{i}" for i in range(100))
    chunks = chunk(text, ChunkerConfig(max_chars=50))
    assert all(len(c) <= 50 for c in chunks)
    assert all(len(c) > 40 for c in chunks[:-1])  # broke at the *last* space
    assert_no_loss(text, chunks)


def test_max_chars_cuts_a_word_only_when_it_has_no_space() -> None:
    text = "x" * 120
    chunks = chunk(text, ChunkerConfig(max_chars=50))
    assert chunks == ["x" * 50, "x" * 50, "x" * 20]


# --------------------------------------------------------------------------------------
# Newlines and markdown structure
# --------------------------------------------------------------------------------------


def test_blank_line_ends_a_chunk() -> None:
    c = SentenceChunker()
    assert c.push("A title without a period") == []
    assert c.push("\n") == []  # a single newline is just a space
    assert c.push("\n") == ["A title without a period"]
    assert c.push("Body text") == []
    assert c.flush() == ["Body text"]


def test_single_newline_inside_a_paragraph_is_a_space() -> None:
    assert chunk("This line\ncontinues here.") == ["This line continues here."]


def test_list_items_without_periods_are_chunks() -> None:
    c = SentenceChunker()
    out = c.push("You need:\n- flour\n")
    assert out == ["You need:", "flour"]  # a list item ends at its newline
    out += c.push("- sugar\n* eggs\n+ milk")
    assert out == ["You need:", "flour", "sugar", "eggs"]
    assert c.flush() == ["milk"]


def test_headings_and_ordered_list_markers_are_removed() -> None:
    text = "## Steps\n1. Preheat the oven\n2) Mix the flour\n10. Bake it"
    assert chunk(text) == ["Steps", "Preheat the oven", "Mix the flour", "Bake it"]


def test_long_answer_with_numbered_markdown_list() -> None:
    text = (
        "Great question! Here's how to make **perfect** pancakes at home:\n\n"
        "1. **Mix the dry ingredients**: combine 1.5 cups of flour, 2 tbsp of sugar, "
        "and 1 tsp of baking powder.\n"
        "2. **Add the wet ingredients** – 1 egg, 1.25 cups of milk, and 3 tbsp of "
        "melted butter\n"
        "3. *Cook* on a medium-hot pan (about 190°C) for 2-3 min. per side\n"
        "4. Serve with `maple syrup` 🥞\n\n"
        "Tip: don't over-mix, e.g. a few lumps are fine. Enjoy! 😊"
    )
    chunks = chunk(text)
    assert chunks == [
        "Great question!",
        "Here's how to make perfect pancakes at home:",
        "Mix the dry ingredients: combine 1.5 cups of flour,",
        "2 tbsp of sugar, and 1 tsp of baking powder.",
        "Add the wet ingredients – 1 egg, 1.25 cups of milk,",
        "and 3 tbsp of melted butter",
        "Cook on a medium-hot pan (about 190°C) for 2-3 min. per side",
        "Serve with maple syrup",
        "Tip: don't over-mix, e.g. a few lumps are fine.",
        "Enjoy!",
    ]
    assert_no_loss(text, chunks)
    for split in (split_chars, split_words, split_llm_like):
        assert feed(split(text)) == chunks


# --------------------------------------------------------------------------------------
# Markdown / emoji cleaning
# --------------------------------------------------------------------------------------


def test_emoji_chunks() -> None:
    text = "Done! 🎉🎉 Next, we celebrate 🥳. 👍\n✅ Task one\n✅ Task two"
    chunks = chunk(text)
    assert chunks == ["Done!", "Next, we celebrate.", "Task one", "Task two"]
    assert_clean_chunks(chunks)


def test_trailing_emoji_does_not_delay_a_sentence() -> None:
    c = SentenceChunker()
    assert c.push("Wow!") == []
    assert c.push(" 🎉") == ["Wow!"]
    assert c.push(" Next one 👍🏽") == []
    assert c.flush() == ["Next one"]


def test_empty_or_punctuation_only_chunks_are_never_emitted() -> None:
    assert chunk("") == []
    assert chunk("   \n\n  ") == []
    assert chunk("🎉🎉🎉") == []
    assert chunk("... !!! ?") == []
    assert chunk("Hello. ... 🎉 !") == ["Hello."]
    assert chunk("**\n\n- \n\n---") == []
    assert SentenceChunker().push("") == []


# --------------------------------------------------------------------------------------
# CJK
# --------------------------------------------------------------------------------------


def test_chinese_paragraph() -> None:
    text = (
        "你好！我是你的语音助手，很高兴认识你。今天天气很好，适合出去散步；"
        "你想去公园吗？如果你愿意，我可以帮你查一下附近的公园、咖啡馆和餐厅。"
    )
    chunks = chunk(text)
    assert chunks == [
        "你好！",
        "我是你的语音助手，很高兴认识你。",  # later clauses need 40 (20 wide characters)
        "今天天气很好，适合出去散步；你想去公园吗？",
        "如果你愿意，我可以帮你查一下附近的公园、",
        "咖啡馆和餐厅。",
    ]
    assert_no_loss(text, chunks, word_by_word=False)


def test_chinese_terminator_ends_a_chunk_immediately() -> None:
    c = SentenceChunker()
    assert c.push("你好") == []
    assert c.push("。") == ["你好。"]
    assert c.push("再见！") == ["再见！"]


def test_japanese_paragraph() -> None:
    text = (
        "こんにちは。今日はとても良い天気ですね！散歩に行きませんか？"
        "駅の近くに新しいカフェができたので、そこでコーヒーを飲みましょう。"
    )
    chunks = chunk(text)
    assert chunks == [
        "こんにちは。",
        "今日はとても良い天気ですね！",
        "散歩に行きませんか？",
        "駅の近くに新しいカフェができたので、そこでコーヒーを飲みましょう。",
    ]
    assert_no_loss(text, chunks, word_by_word=False)


def test_cjk_max_chars_counts_wide_characters_twice() -> None:
    text = "中文" * 150
    chunks = chunk(text)
    assert [len(c) for c in chunks] == [110, 110, 80]
    assert all(weighted_len(c) <= 220 for c in chunks)


def test_mixed_latin_and_cjk() -> None:
    assert chunk("OK.好的，我们开始吧。Bye!") == ["OK.", "好的，我们开始吧。", "Bye!"]


# --------------------------------------------------------------------------------------
# reset / flush
# --------------------------------------------------------------------------------------


def test_reset_drops_pending_text() -> None:
    c = SentenceChunker()
    assert c.push("I was saying something very") == []
    c.reset()
    assert c.push("New answer. ") == ["New answer."]
    assert c.flush() == []


def test_reset_drops_pending_markdown_state() -> None:
    c = SentenceChunker()
    c.push("Look at [this](https://exa")  # waiting for the end of the link target
    c.reset()
    assert c.push("Fresh start, then more text.") == ["Fresh start,"]
    assert c.flush() == ["then more text."]


def test_reset_and_flush_start_a_new_stream() -> None:
    c = SentenceChunker()
    assert c.push("First sentence, with more words. Well, this is long enough, ok. ") == [
        "First sentence,",
        "with more words.",
        "Well, this is long enough, ok.",
    ]
    assert c.flush() == []
    # a new stream: the first chunk may break at a clause again
    assert c.push("Another sentence, with more. ") == ["Another sentence,", "with more."]
    c.reset()
    assert c.push("Yet another one, right here. ") == ["Yet another one,", "right here."]


# --------------------------------------------------------------------------------------
# Invariants: token-split invariance and no loss
# --------------------------------------------------------------------------------------

CORPUS = [
    "Hello! How are you today? I'm fine, thanks for asking.",
    "Mr. Smith paid $2.50 for v1.2.3 at example.com at 5 p.m. today. Then he left... "
    "or did he? Yes!",
    "Sure, here are the steps:\n\n1. **Preheat** the oven\n2. Mix `flour` and *sugar*\n"
    "3. Bake for 20 min.\n\nEnjoy! 🎉",
    "## Summary\nThe total was 1,000,000 dollars — honestly, more than expected; "
    "see [the report](https://x.org/a_(b)) for details. J. R. R. Tolkien agreed.",
    "今天天气很好，我们去公园散步吧。你觉得怎么样？「好啊！」他说。",
    "今日はとても良い天気ですね。散歩に行きましょうか？はい、行きましょう！",
    "Great job 🎉! I ❤️ you. Done 👨‍👩‍👧. Hi🎉there!\n✅ Task one\n✅ Task two",
    "Well... maybe. Wait… What? “Really,” she said. (Yes.) e.g. this, i.e. that, etc. Fine.",
    "> Quote here.\n\n```python\nprint('hi')\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n---\nEnd",
    " ".join(f"token{i}" for i in range(80)) + ". " + "x" * 300,
]

_FRAGMENTS = [
    "hello", "world", "the", "answer", "is", "Mr.", "Dr.", "etc.", "e.g.", "3.14", "$2.50",
    "v1.2.3", "example.com", "1,000,000", "J.", "U.S.", "No.", "5", "p.m.", "Inc.", "12:30",
    ".", "!", "?", "...", "…", ",", ";", ":", "—", "–", "?!", '."', ".)", "“quoted”",
    "**bold**", "*it*", "`code`", "__x__", "[link](https://a.b/c)", "snake_case", "![i](p)",
    "🎉", "👍🏽", "❤️", "👨‍👩‍👧", "你好", "。", "，", "世界", "今日は", "、", "！", "？", "「引用」",
    "\n", "\n\n", "\n- ", "\n1. ", "\n## ", "\n* ", "\n> ", "\n```\n", "\n---\n", "|",
]  # fmt: skip


def _random_text(rng: random.Random) -> str:
    parts: list[str] = []
    for _ in range(rng.randint(1, 40)):
        parts.append(rng.choice(_FRAGMENTS))
        parts.append(rng.choice(["", " ", " ", " ", "  "]))
    return "".join(parts)


def _splitters(rng: random.Random) -> list[Callable[[str], list[str]]]:
    return [
        split_chars,
        split_words,
        split_llm_like,
        lambda t: split_random(t, rng, 3),
        lambda t: split_random(t, rng, 12),
    ]


@pytest.mark.parametrize("text", CORPUS, ids=range(len(CORPUS)))
def test_corpus_is_split_invariant_and_lossless(text: str) -> None:
    rng = random.Random(1234)
    expected = chunk(text)
    assert expected
    assert_clean_chunks(expected)
    has_cjk = any(unicodedata.east_asian_width(ch) == "W" for ch in text)
    assert_no_loss(text, expected, word_by_word=not has_cjk and "x" * 300 not in text)
    for split in _splitters(rng):
        assert feed(split(text)) == expected
    for _ in range(10):
        assert feed(split_random(text, rng)) == expected


def test_random_texts_are_split_invariant_and_lossless() -> None:
    rng = random.Random(20240607)
    small = ChunkerConfig(first_chunk_min_chars=8, clause_min_chars=20, max_chars=60)
    for _ in range(60):
        text = _random_text(rng)
        for config in (None, small):
            expected = chunk(text, config)
            assert_clean_chunks(expected)
            assert_no_loss(text, expected, word_by_word=False)
            for split in _splitters(rng):
                assert feed(split(text), config) == expected, text


def test_chunks_respect_max_chars() -> None:
    rng = random.Random(7)
    config = ChunkerConfig(max_chars=60)
    for _ in range(100):
        text = _random_text(rng)
        for c in chunk(text, config):
            # a sentence-end run (e.g. '?!"') may finish right at the limit
            assert weighted_len(c) <= 60 + 3, c


def test_first_chunk_max_chars_cuts_the_first_chunk_early_at_a_space() -> None:
    text = "The capital of France is Paris and it is a lovely city to visit. It is big."
    config = ChunkerConfig(first_chunk_max_chars=24)
    chunker = SentenceChunker(config)
    chunks = [c for ch in text for c in chunker.push(ch)] + chunker.flush()
    assert chunks[0] == "The capital of France is"
    assert len(chunks[0]) <= 24
    # Later chunks keep the normal policy, and no word is lost.
    assert chunks[1] == "Paris and it is a lovely city to visit."
    assert " ".join(chunks).split() == text.split()
    whole = SentenceChunker(config)
    assert whole.push(text) + whole.flush() == chunks


@pytest.mark.parametrize(
    ("chunk", "ends"),
    [
        ("Tea is a drink.", True),
        ("Is it?", True),
        ('He said "stop."', True),
        ("Well...", True),
        ("お茶です。", True),
        ("Tea is a drink,", False),
        ("First, the water; ", False),
        ("a chunk cut at the length limit", False),
        ("", False),
    ],
)
def test_ends_sentence_tells_a_sentence_from_a_clause(chunk: str, ends: bool) -> None:
    assert ends_sentence(chunk) is ends


def test_the_chunker_never_ends_a_chunk_on_an_abbreviation() -> None:
    """ends_sentence trusts where the chunker broke: "Dr." or "3.5" never end a chunk."""
    chunker = SentenceChunker()
    chunks = chunker.push("Dr. Smith measured 3.5 liters, then left. ") + chunker.flush()
    assert [ends_sentence(c) for c in chunks] == [False, True]


@pytest.mark.parametrize(("text", "expected"), [
    ("L'Alma: Paris, France. It is lovely.", ["Paris, France.", "It is lovely."]),
    ("Assistant: Hello there!", ["Hello there!"]),
    ("Voice assistant: Sure thing, I can help.", ["Sure thing, I can help."]),
    ("**Assistant:** Hello there!", ["Hello there!"]),
    # Openings that mean something stay, and so does a colon that is not a tag.
    ("Here's why: the sky scatters blue light.", ["Here's why: the sky scatters blue light."]),
    ("The answer: forty-two.", ["The answer: forty-two."]),
    ("Yes: absolutely.", ["Yes: absolutely."]),
    ("You need:\n- flour\n", ["You need:", "flour"]),
    ("At 12:30 the museum opens.", ["At 12:30 the museum opens."]),
    ("Paris is the capital of France.", ["Paris is the capital of France."]),
    ("巴黎是法国的首都。", ["巴黎是法国的首都。"]),
    ("Three small words: and then the rest.", ["Three small words:", "and then the rest."]),
])
def test_a_speaker_tag_opening_the_reply_is_not_spoken(text: str, expected: list[str]) -> None:
    assert chunk(text) == expected
    for split in (split_chars, split_words, split_llm_like):
        assert feed(split(text)) == expected, split


def test_the_chunker_tells_which_speaker_tag_it_dropped() -> None:
    c = SentenceChunker()
    for token in ["**L", "'Al", "ma", ":**", " Paris", ", France."]:
        c.push(token)
    c.flush()
    assert c.speaker_tag == "L'Alma:"
    c.push("Here's why: the sky scatters blue light.")
    assert c.speaker_tag == ""  # the next reply opens with no tag
    c.flush()
    assert c.speaker_tag == ""


def test_a_speaker_tag_is_only_dropped_at_the_start_of_a_reply() -> None:
    c = SentenceChunker()
    assert c.push("Sure, Paris is lovely in spring. ") == ["Sure, Paris is lovely in spring."]
    assert c.push("Assistant: it rains in April.") == []
    assert c.flush() == ["Assistant: it rains in April."]
    # The next reply (after flush) is checked again.
    assert feed(["Assistant", ":", " Hi", " there", "."]) == ["Hi there."]
