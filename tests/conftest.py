"""Fixtures every test folder shares."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Iterator
from typing import Any

import pytest

from shipway_core import vendor_telemetry

# Tests start MLflow servers and clients: no usage reports leave 127.0.0.1 (as in the CLI).
vendor_telemetry.switch_off()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``kubernetes`` run last: scripts/test.sh builds their control plane and provider
    in the background (scripts/kube-tools.sh), and everything else runs meanwhile."""
    items.sort(key=lambda item: item.get_closest_marker("kubernetes") is not None)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` (``make unit``): whole modules per worker, slowest first
    (tests/support/scheduling.py)."""
    if config.getoption("dist") != "loadgroup":
        return None
    from tests.support import scheduling

    config.pluginmanager.register(scheduling.DurationLog(), "shipway-unit-durations")
    return scheduling.make_scheduler(config, log)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Nothing is collected at interpreter exit: tearing down a session's objects (every Pulumi SDK
    module, MLflow, scikit-learn, thousands of recordings) took each pytest-xdist worker ~4 s after
    its last test, and the run waits for the slowest worker to exit."""
    gc.freeze()


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


@pytest.fixture(autouse=True)
def _no_leaked_pulumi_config() -> Iterator[None]:
    """Each test starts with an empty Pulumi config. ``record(..., config=...)`` sets the process-wide
    config map and nothing unset it: a later policy test read a leaked ``shipway:registryUri`` and its
    gate-evidence rule tried to reach that (unresolvable, non-loopback) host."""
    from pulumi.runtime import config as pulumi_config

    if pulumi_config.CONFIG.get():
        pulumi_config.set_all_config({})
    yield


# mlflow.set_tracking_uri/set_registry_uri(uri) also export MLFLOW_TRACKING_URI/MLFLOW_REGISTRY_URI
# for subprocesses, and setting them back to None does not remove the variables: a test that
# pointed MLflow at its own store would silently redirect every later client built without an
# explicit registry (seen: "attempt to write a readonly database" into another test's store).
_MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
_AT_START = {name: os.environ.get(name) for name in _MLFLOW_URI_VARIABLES}


@pytest.fixture(autouse=True)
def _no_leaked_mlflow_uris() -> Iterator[None]:
    """Each test starts with the MLflow URI variables the session started with."""
    for name, value in _AT_START.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    yield
