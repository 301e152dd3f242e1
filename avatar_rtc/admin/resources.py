"""What admin handlers take from the app state, or the ApiError that says why not."""

from __future__ import annotations

from avatar_rtc.backends.registry import Backends
from avatar_rtc.http_errors import ApiError
from avatar_rtc.state import AppState
from avatar_rtc.storage import Store


def store_of(state: AppState) -> Store:
    if state.store is None:
        raise ApiError(503, "storage is not open")
    return state.store


def ready_backends(state: AppState) -> Backends:
    if state.backends is None or not state.ready.is_set():
        raise ApiError(503, "warming up: models are loading", headers={"Retry-After": "5"})
    return state.backends
