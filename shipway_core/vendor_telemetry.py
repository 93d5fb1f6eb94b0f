"""Third-party usage telemetry is off in every process the platform runs.

MLflow 3 reports usage to its vendor's servers from client and server processes unless told not to
(it stays quiet only on known CI runners and in its own tests). A platform for regulated teams sends
traffic only where its configuration points, so every Shipway entry point (the CLI, the serving
image) and every process or container a target starts carries these variables. In the CLI a value
the user set explicitly is kept.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

OFF: dict[str, str] = {
    "MLFLOW_DISABLE_TELEMETRY": "true",  # MLflow's own switch (client, server, UI)
    "DO_NOT_TRACK": "true",  # the cross-tool convention MLflow also honours
}


def switch_off(environ: MutableMapping[str, str] | None = None) -> None:
    """Set the ``OFF`` variables where they are not set yet (before MLflow is imported)."""
    target = os.environ if environ is None else environ
    for name, value in OFF.items():
        target.setdefault(name, value)
