"""A typed message from a real headless Chromium: the page's text box sends it on the
data channel, and the real server's reply shows in the transcript."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.browser import FAKE_MIC_RATE, call_state, chromium, wait_for_event, wait_until, write_wav
from tests.test_browser_call import _click, _diagnostics, _text, needs_browser

QUESTION = "What is the capital of France?"


@needs_browser
@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_typed_message_is_answered_in_the_transcript(live_server: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    # A silent microphone: only the typed message makes a turn.
    quiet = write_wav(tmp_path / "quiet.wav", np.zeros(FAKE_MIC_RATE * 60))
    with chromium(quiet) as driver:
        driver.get(f"{live_server.url}/?processing=0")
        box = driver.find_element(By.ID, "text-input")
        assert not box.is_enabled()  # no call, nothing to send on
        label = driver.find_element(By.CSS_SELECTOR, "label[for='text-input']")
        assert label.text == "Type a message"
        _click(driver, "call-button")
        try:
            wait_until(box.is_enabled, timeout=20, what="the text box to open")
            box.send_keys(QUESTION + Keys.ENTER)  # Enter sends
            transcript = wait_for_event(driver, "user_transcript", timeout=30)
            end = wait_for_event(driver, "turn_end", timeout=60)
        except TimeoutError as exc:
            pytest.fail(f"{exc}\n{_diagnostics(driver)}")
        assert transcript["text"] == QUESTION and transcript["typed"] is True
        assert box.get_attribute("value") == ""
        wait_until(lambda: QUESTION in _text(driver, "transcript"), timeout=5,
                   what="the typed question in the transcript")
        page = _text(driver, "transcript")
        assert "TYPED" in page.upper()
        assert end["spoken_text"] and end["spoken_text"].split()[0] in page, (end, page)
        assert not [e for e in call_state(driver)["events"] if e["type"] == "error"]
        _click(driver, "call-button")  # hang up: the box closes with the call
        wait_until(lambda: not box.is_enabled(), timeout=5, what="the text box to close")
