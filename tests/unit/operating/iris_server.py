"""A real serving process (uvicorn + ServingApp) around an iris model trained at start-up.

    python -m tests.unit.operating.iris_server --pin-file P --port N --api-key-file K ...

Takes the serving CLI's arguments. The registry is the model's one dependency: an ``http``
tracking URI in the pin must answer, as the real loader's REST calls must, else the load fails
(which is how the resilience test's "registry down on reload" is exercised).
"""

from __future__ import annotations

import sys
from typing import Any

import httpx

from shipway.serving.cli import config_from_args
from shipway.serving.config import Pin
from shipway.serving.model import LoadedModel, ModelLoadError
from shipway.serving.server import run
from tests.unit.operating.support import iris_loader


def main() -> int:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from tests.unit.operating.support import IRIS_COLUMNS

    x, y = load_iris(return_X_y=True, as_frame=True)
    x.columns = IRIS_COLUMNS
    build = iris_loader(LogisticRegression(max_iter=300).fit(x, y), x)

    def loader(pin: Pin, log: Any = None) -> LoadedModel:
        if pin.tracking_uri.startswith("http"):
            try:
                httpx.get(pin.tracking_uri, timeout=1.0)
            except httpx.HTTPError as exc:
                raise ModelLoadError(f"registry {pin.tracking_uri} unreachable: {exc}") from exc
        return build(pin, log)

    return run(config_from_args(sys.argv[1:]), loader=loader)


if __name__ == "__main__":
    sys.exit(main())
