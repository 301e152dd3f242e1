"""CpuGate: the conversation's hold on its reply's local LLM."""

from __future__ import annotations

import time

import pytest

from avatar_rtc.backends.cpu_gate import CpuGate


def test_a_cpu_gate_holds_for_at_most_max_wait_but_paces_until_released(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CpuGate, "MAX_WAIT_S", 0.05)
    gate = CpuGate()
    assert gate.is_open()
    gate.hold()  # the first chunk's TTS
    assert not gate.is_open()
    time.sleep(0.06)
    assert gate.is_open()  # a hung TTS never stalls the LLM for good
    gate.release()
    gate.paced = True  # the reply is far ahead of its playout
    time.sleep(0.06)
    assert not gate.is_open()  # no cap: the conversation lifts it
    gate.paced = False
    assert gate.is_open()
