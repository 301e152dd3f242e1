"""tools/bench_quiz.py's questions and how it scores them, as pure functions.

A reply is right when it holds one of the question's answers as whole words ("ice" in
"It is ice." but not in "nice"; "twenty four" in "twenty-four hours"). Word error rate
is Levenshtein over words, case and punctuation aside, summed over a set of utterances
before dividing (one long sentence weighs more than a short one, as in the literature).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Question:
    text: str
    answers: tuple[str, ...]  # any one of them, as words, makes a reply right


QUIZ = (
    Question("What is the capital of France?", ("paris",)),
    Question("What do bees make?", ("honey",)),
    Question("What do you call frozen water?", ("ice",)),
    Question("What is the opposite of hot?", ("cold",)),
    Question("How many days are there in a week?", ("seven", "7")),
    Question("What color is the sky on a sunny day?", ("blue",)),
    Question("How many legs does a spider have?", ("eight", "8")),
    Question("What is the largest planet in our solar system?", ("jupiter",)),
    Question("Which animal says moo?", ("cow", "cows")),
    Question("What do you call a baby cat?", ("kitten", "kittens", "kitty")),
    Question("How many hours are there in a day?", ("twenty four", "24")),
    Question("What is the opposite of up?", ("down",)),
)


def words(text: str) -> list[str]:
    """Lower-case words and numbers; hyphens and punctuation split or drop."""
    return re.findall(r"[a-z0-9']+", text.lower().replace("’", "'"))


def mentions(text: str, answers: Iterable[str]) -> bool:
    """Does `text` hold one of `answers` as a run of whole words?"""
    said = words(text)
    for answer in answers:
        wanted = words(answer)
        size = len(wanted)
        if size and any(said[i:i + size] == wanted for i in range(len(said) - size + 1)):
            return True
    return False


def edits(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Substitutions, deletions and insertions turning `reference` into `hypothesis`."""
    row = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        previous, row[0] = row[0], i
        for j, hyp in enumerate(hypothesis, 1):
            current = min(row[j] + 1, row[j - 1] + 1, previous + (ref != hyp))
            previous, row[j] = row[j], current
    return row[len(hypothesis)]


def word_error_rate(pairs: Iterable[tuple[str, str]]) -> float | None:
    """The WER of (reference, hypothesis) pairs, all together; None without words."""
    errors = total = 0
    for reference, hypothesis in pairs:
        ref = words(reference)
        errors += edits(ref, words(hypothesis))
        total += len(ref)
    return errors / total if total else None
