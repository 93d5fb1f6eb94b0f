"""Where a test's MLflow sqlite database lives.

Creating an MLflow sqlite store runs its ~100 schema migrations, each with an fsync: seconds on a
disk, milliseconds on tmpfs. Test registries keep their artifacts where the test says; only the
database file goes to /dev/shm when the machine has one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def fast_db_dir(fallback: Path) -> Path:
    """A fresh tmpfs directory for the sqlite file when there is one, else ``fallback``."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="shipway-tests-", dir=shm))
    return fallback


@contextmanager
def sqlite_uri(fallback: Path) -> Iterator[str]:
    """``sqlite:///…/mlflow.db`` on tmpfs (or in ``fallback``), removed again on exit."""
    db_dir = fast_db_dir(fallback)
    try:
        yield f"sqlite:///{db_dir / 'mlflow.db'}"
    finally:
        if db_dir != fallback:
            shutil.rmtree(db_dir, ignore_errors=True)
