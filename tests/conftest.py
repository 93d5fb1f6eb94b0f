"""Fixtures every test folder shares."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _current_event_loop() -> Iterator[None]:
    """Pulumi's mocks (tests/support/recording.py) run on the thread's current event loop. A test
    that ran ``asyncio.run`` in the main thread (uvicorn, the load generator) leaves none set, and
    every later Pulumi test would fail with "There is no current event loop": give each test one."""
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())
    yield
