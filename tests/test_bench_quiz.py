"""tools/bench_quiz.py's pure parts: the questions, keyword scoring, word error rate,
who asks what, and the summary of a run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import bench_quiz as bq
import quiz_score as qs


@pytest.mark.parametrize(("reply", "answers", "right"), [
    ("The capital of France is Paris.", ("paris",), True),
    ("PARIS!", ("paris",), True),
    ("L'Étoile de la Cité is the capital.", ("paris",), False),
    ("Bees produce honey, pollen, and wax.", ("honey",), True),
    ("That would be nice.", ("ice",), False),  # a word inside another is no answer
    ("It is ice.", ("ice",), True),
    ("There are 7 days in a week.", ("seven", "7"), True),
    ("There are twenty-four hours in a day.", ("twenty four", "24"), True),
    ("There are twenty hours, then four more.", ("twenty four",), False),
    ("", ("cold",), False),
])
def test_a_reply_is_right_when_it_holds_an_answer_as_words(
    reply: str, answers: tuple[str, ...], right: bool,
) -> None:
    assert qs.mentions(reply, answers) is right


def test_every_question_has_answers_that_are_not_in_the_question() -> None:
    assert len(qs.QUIZ) >= 12
    assert len({q.text for q in qs.QUIZ}) == len(qs.QUIZ)
    for question in qs.QUIZ:
        assert question.answers
        assert not qs.mentions(question.text, question.answers), question.text


def test_word_error_rate_counts_substitutions_deletions_insertions() -> None:
    assert qs.word_error_rate([("What do bees make?", "what do bees make")]) == 0.0
    # 'these make': two deletions and a substitution, of four words.
    assert qs.word_error_rate([("What do bees make?", "these make?")]) == 0.75
    assert qs.word_error_rate([("frozen water", "frozen wager")]) == 0.5
    assert qs.word_error_rate([("hot", "it is hot")]) == 2.0  # two insertions, one word
    # Pooled over utterances: 1 error in 2 words + 0 in 6 = 1/8, not the mean of rates.
    assert qs.word_error_rate([("frozen water", "frozen wager"),
                               ("the opposite of hot is cold", "the opposite of hot is cold")]
                              ) == 0.125
    assert qs.word_error_rate([]) is None
    assert qs.edits(["a", "b", "c"], ["a", "c", "d"]) == 2


def test_each_caller_asks_every_question_from_its_own_start() -> None:
    plans = bq.plan(4)
    assert len(plans) == 4
    for index, asks in enumerate(plans):
        assert sorted(a.number for a in asks) == list(range(len(qs.QUIZ)))
        assert asks[0].number == index
        assert all(a.question is qs.QUIZ[a.number] for a in asks)
    # At a time, the callers ask different questions in different voices.
    for step in range(len(qs.QUIZ)):
        assert len({p[step].number for p in plans}) == 4
        assert len({p[step].voice for p in plans}) == 4


def _record(question: int, heard: str, reply: str, v2v: float | None,
            error: str | None = None) -> dict[str, Any]:
    q = qs.QUIZ[question]
    return {"question": question, "text": q.text, "heard": heard, "error": error,
            "reply_heard": reply, "right": qs.mentions(reply, q.answers),
            "right_text": qs.mentions(reply, q.answers), "v2v_ms": v2v}


def test_the_summary_counts_right_answers_latency_and_what_the_server_heard() -> None:
    records = [
        _record(0, "What is the capital of France?", "Paris.", 400.0),
        _record(1, "What do these make?", "They make music.", 600.0),
        _record(3, "What is the opposite of hot?", "Cold.", 500.0),
        _record(4, "", "", None, error="no reply within 60 s"),
    ]
    summary = bq.summarize(records, callers=1)
    assert (summary["asked"], summary["right"], summary["right_text"]) == (4, 2, 2)
    assert summary["v2v_ms"]["p50"] == 500.0 and summary["v2v_ms"]["n"] == 3
    # 'bees' heard as 'these': one word of the 16 in the three questions answered.
    assert summary["server_wer"] == pytest.approx(1 / 16)
    assert summary["errors"] == ["How many days are there in a week?: no reply within 60 s"]
    assert len(summary["wrong"]) == 2 and "'What do these make?'" in summary["wrong"][0]


def test_only_the_replys_audio_is_transcribed() -> None:
    rate = bq.STT_RATE
    pcm = np.zeros(rate * 40, dtype=np.int16)
    pcm[rate * 3: rate * 5] = 5000  # the reply starts 3 s in
    part = bq.audible_part(pcm)
    assert part.size == 28 * rate  # one Whisper window at most
    assert np.flatnonzero(part)[0] == rate // 10  # from just before the reply
    assert bq.audible_part(np.zeros(100, dtype=np.int16)).size == 100
