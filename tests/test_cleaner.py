"""Markdown and emoji out of the LLM's text (avatar_rtc.conversation.cleaner)."""

from __future__ import annotations

import pytest

from avatar_rtc.conversation.cleaner import clean_for_speech


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("This is **bold** and *italic*.", "This is bold and italic."),
        ("Both __bold__ and _it_ styles.", "Both bold and it styles."),
        ("Call `print()` now.", "Call print() now."),
        ("# Title", "Title"),
        ("### Sub title\nText.", "Sub title Text."),
        ("- item one\n- item two", "item one item two"),
        ("* star\n1. first\n2. second", "star first second"),
        ("See [the docs](https://example.com/a_(b)) now.", "See the docs now."),
        ("![a cat](cat.png) Cute.", "a cat Cute."),
        ("Read [this] (or not).", "Read this (or not)."),
        ("Use snake_case and __init__ here.", "Use snake case and init here."),
        ("Math: 2 * 3 = 6 and 4*5.", "Math: 2 * 3 = 6 and 4*5."),
        ("Old ~~price~~ now.", "Old price now."),
        ("> Quoted\n> text.", "Quoted text."),
        ("```python\nx = 1\n```\nDone.", "x = 1 Done."),
        ("Above\n\n---\n\nBelow", "Above Below"),
        ("| a | b |\n|---|---|\n| 1 | 2 |", "a b 1 2"),
        ("  lots   of\t\tspace  \n\n\n here ", "lots of space here"),
        ("It is 25°C and ©2024.", "It is 25°C and ©2024."),
    ],
)
def test_clean_for_speech_markdown(raw: str, clean: str) -> None:
    assert clean_for_speech(raw) == clean


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Great job 🎉!", "Great job!"),
        ("I ❤️ you.", "I you."),
        ("Family 👨‍👩‍👧 time 👍🏽.", "Family time."),
        ("Flags 🇫🇷🇯🇵 and keycap 1️⃣.", "Flags and keycap 1."),
        ("Stars ★☆ and ✓ checks ✅", "Stars and checks"),
        ("Hi🎉there", "Hi there"),
        ("🚀", ""),
    ],
)
def test_clean_for_speech_emoji(raw: str, clean: str) -> None:
    assert clean_for_speech(raw) == clean
