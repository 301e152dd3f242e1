"""What the conversation asks of the model threads: each stage of a turn is queued
with the turn's place in line, and only what the user waits on is urgent."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conversation_helpers import harness
from tests.fakes import FakeLlm, FakeStt, FakeTts, silence, tone

pytestmark = pytest.mark.timeout(30)


async def test_each_stage_of_a_turn_is_queued_with_the_turns_priority() -> None:
    stt, llm, tts = FakeStt(), FakeLlm(), FakeTts()
    async with harness(stt=stt, llm=llm, tts=tts) as h:
        await h.say(np.concatenate([tone(0.5), silence(0.5)]))
        await h.wait_for("turn_end")
    # The final transcript: urgent, in line by when the user began to wait.
    assert stt.priorities and all(p is not None and p.urgent and p.wait is not None
                                  for p in stt.priorities), stt.priorities
    waits = [p.wait for p in stt.priorities if p is not None]
    # The reply: its first tokens are urgent by the LLM's own count, not by the turn.
    assert llm.priorities and all(p is not None and not p.urgent
                                  and any(p.wait is w for w in waits)
                                  for p in llm.priorities), llm.priorities
    # The first chunk's audio jumps the TTS queue; the next ones keep the turn's place.
    assert len(tts.priorities) >= 2, tts.texts
    first, *rest = tts.priorities
    assert first is not None and first.urgent
    assert all(p is not None and not p.urgent for p in rest), tts.priorities
    assert all(p is not None and p.wait is first.wait for p in rest)
    # A partial transcript heard ahead is background work: no turn waits on it yet.
    assert stt.partials == [] or len(stt.priorities) == len(stt.calls)
