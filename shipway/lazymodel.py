"""A registry version loaded once, on first use, and shared by the gates and verification."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from shipway.registry import Registry, VersionInfo

if TYPE_CHECKING:
    from shipway import gates as gates_mod


class LazyModel:
    """Loads a version with mlflow.pyfunc on first use and keeps it (gates and verify share it)."""

    def __init__(self, registry: Registry, info: VersionInfo):
        self.registry, self.info = registry, info
        self._path: Path | None = None
        self._model: Any = None

    def path(self) -> Path:
        if self._path is None:
            self._path = self.registry.model_path(self.info)
        return self._path

    def signature(self) -> Any:
        from mlflow.models import Model

        return Model.load(str(self.path() / "MLmodel")).signature

    def predict(self, frame: pd.DataFrame) -> Any:
        from shipway.registry import mlflow_uris

        # MLflow 3 looks the logged model up in the process-wide registry while loading.
        with mlflow_uris(self.registry.tracking_uri):
            if self._model is None:
                import mlflow.pyfunc

                self._model = mlflow.pyfunc.load_model(str(self.path()))
            return self._model.predict(frame)

    def under_test(self) -> gates_mod.ModelUnderTest:
        from shipway import gates as gates_mod  # scipy: only when a gate runs

        return gates_mod.ModelUnderTest(
            name=self.info.name,
            version=self.info.version,
            run_id=self.info.run_id,
            metrics=self.registry.run_metrics(self.info.run_id),
            signature=self.signature(),
            predict=self.predict,
            tags=dict(self.info.tags),
        )
