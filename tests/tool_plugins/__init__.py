"""Tools as Python entry points, for the tests (`tests.tool_plugins:...`)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

CALLS: list[str] = []


def weather(city: str) -> dict[str, Any]:
    """A synchronous tool: runs on a thread, not on the event loop."""
    CALLS.append(f"weather on {'loop' if _on_loop() else 'thread'}")
    return {"city": city, "sky": "sunny"}


async def clock() -> str:
    return "14:05"


async def slow() -> str:
    await asyncio.sleep(10)
    return "late"


def blocking() -> str:
    time.sleep(0.5)
    return "done"


def broken(**_: Any) -> None:
    raise ValueError("the sensor is offline")


def _on_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return threading.current_thread() is threading.main_thread()
