"""The verdict on each pause of one call: the end-of-turn model, then the words.

At a pause the model hears the utterance (on its own thread, beside the tentative
turn's transcript); the verdict waits for the pause's transcript too when the words
are judged. A newer pause, or the user speaking on, makes an old verdict moot: the
endpointer ignores verdicts on pauses other than its current one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from avatar_rtc.backends.base import EndOfTurnModel, Pcm
from avatar_rtc.backends.priority import Priority
from avatar_rtc.conversation.endpointing import SAMPLE_RATE
from avatar_rtc.conversation.turn_end import TurnEndConfig, Verdict, decide

log = logging.getLogger(__name__)

VerdictSink = Callable[[int, Verdict], None]


class PauseJudge:
    def __init__(self, model: EndOfTurnModel | None, config: TurnEndConfig, *,
                 wants_text: bool, on_verdict: VerdictSink) -> None:
        self._model = model
        self._config = config
        self._wants_text = wants_text and config.text_cues
        self._on_verdict = on_verdict
        self._pause = 0
        self._probability: float | None = None
        self._heard = False  # the model's probability is in (or there is no model)
        self._text: str | None = None
        self._decided = True
        self._task: asyncio.Task[None] | None = None
        self.last: tuple[float | None, str | None, Verdict] | None = None  # for logs, tests

    @property
    def active(self) -> bool:
        """Whether a verdict comes for each pause (else silence alone ends turns)."""
        return self._model is not None or self._wants_text

    def pause(self, pause: int, audio: Pcm) -> None:
        """A new pause: the model hears its utterance now."""
        self.cancel()
        self._pause, self._probability, self._text = pause, None, None
        self._heard, self._decided = self._model is None, False
        if self._model is not None:
            self._task = asyncio.create_task(self._hear(pause, audio, self._model),
                                             name=f"turn-model-{pause}")
        self._maybe_decide()

    def heard(self, pause: int, text: str) -> None:
        """The pause's transcript (the tentative turn's)."""
        if pause == self._pause and self._text is None:
            self._text = text
            self._maybe_decide()

    async def _hear(self, pause: int, audio: Pcm, model: EndOfTurnModel) -> None:
        try:
            # The user waits on it, like the transcript it runs beside.
            probability: float | None = await model.probability(
                audio, SAMPLE_RATE, priority=Priority(urgent=True))
        except Exception as exc:  # the words, or the silence, still decide
            log.warning("end-of-turn model failed: %s", exc)
            probability = None
        if pause == self._pause:
            self._probability, self._heard = probability, True
            self._maybe_decide()

    def _maybe_decide(self) -> None:
        if self._decided or not self._heard or (self._wants_text and self._text is None):
            return
        self._decided = True
        text = self._text if self._wants_text else None
        verdict = decide(self._probability, text, self._config)
        self.last = (self._probability, text, verdict)
        log.debug("pause %d: p=%s %r -> %s", self._pause, self._probability, text,
                  verdict.value)
        self._on_verdict(self._pause, verdict)

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def aclose(self) -> None:
        task = self._task
        self.cancel()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
