"""backend_errors: a backend's failure leaves as a BackendError naming its stage."""

from __future__ import annotations

import pytest

from avatar_rtc.backends.base import BackendError, backend_errors
from avatar_rtc.errors import AvatarError


def test_a_failure_is_wrapped_with_its_stage_and_a_backend_error_passes() -> None:
    wrapped = pytest.raises(BackendError, match=r"^stt: out of memory$")
    with wrapped as caught, backend_errors("stt"):
        raise RuntimeError("out of memory")
    assert caught.value.stage == "stt" and isinstance(caught.value, AvatarError)
    assert isinstance(caught.value.__cause__, RuntimeError)
    own = BackendError("tts", "voice not installed")
    with pytest.raises(BackendError) as passed, backend_errors("stt"):
        raise own
    assert passed.value is own


def test_a_prefix_names_the_library_and_the_error_type() -> None:
    wrapped = pytest.raises(BackendError, match=r"^tts: f5-tts: KeyError: 'mel'$")
    with wrapped, backend_errors("tts", "f5-tts: "):
        raise KeyError("mel")


def test_only_the_errors_caught_are_wrapped() -> None:
    wrapped = pytest.raises(BackendError, match=r"^llm: ConnectionError: refused$")
    with wrapped, backend_errors("llm", "", catch=ConnectionError):
        raise ConnectionError("refused")
    with pytest.raises(ValueError, match="a bug"), backend_errors("llm", "", catch=ConnectionError):
        raise ValueError("a bug")
