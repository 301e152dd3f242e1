"""How urgently the user waits for a piece of model work: passed where work is queued.

Every call that queues work on a model thread (`SpeechToText.transcribe`,
`LanguageModel.stream`, `TextToSpeech.synthesize`) takes a `priority`, so the call site
shows that it reorders the model's queue for every other call.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class UserWait:
    """What the user of one turn is waiting for, in time.monotonic() seconds; every
    stream started for the turn (transcript, reply, each chunk's audio) carries it.

    `since`: when the user began to wait. Urgent streams rank by it, so a turn's STT,
    first tokens and first audio keep the turn's place in line whichever model they
    reach. Ranked by each stream's own start instead, a later turn's transcript would
    overtake an earlier turn's first tokens: every waiting turn finishes late, instead
    of the first early.

    `due`: when the reply audio queued so far runs out (None before the first). Taking
    turns with other replies, the next chunk's tokens and audio could miss it by
    seconds on a busy CPU (four callers on two cores: 5-13 s silences mid-reply).
    DUE_LEAD_S (model_thread) before it, the turn's streams turn urgent, in line as if
    the user had been waiting since then. The conversation moves it as audio queues up.
    """

    since: float
    due: float | None = None


@dataclass(frozen=True)
class Priority:
    """`urgent`: the user waits on this whole stream (a final transcript, a reply's
    first audio): it goes before replies already playing. `wait`: the turn it serves."""

    urgent: bool = False
    wait: UserWait | None = None

