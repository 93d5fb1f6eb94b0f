"""A registry version loaded once, on first use, and shared by the gates and verification.

For the common case (a registry reached over http(s) that keeps artifacts on this machine's
filesystem, and an sklearn-flavoured model) the version is loaded by the serving app's own
loader (:mod:`shipway.serving.fastload`): no MLflow import, and the gates judge the model
through the same code path that serves it. Anything else is loaded with ``mlflow.pyfunc``.
"""

from __future__ import annotations

import atexit
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from shipway.registry import Registry, RegistryError, VersionInfo

if TYPE_CHECKING:
    from shipway import gates as gates_mod
    from shipway.serving.model import LoadedModel


@dataclass(frozen=True)
class ColumnView:
    """One input column of a signature, as the gates read it."""

    name: str
    type: str
    required: bool


@dataclass(frozen=True)
class InputsView:
    """The ``inputs`` of a signature read from the MLmodel file's JSON (what ``ModelSignature.inputs``
    offers the gates, without importing MLflow)."""

    items: tuple[dict[str, Any], ...]

    def has_input_names(self) -> bool:
        return bool(self.items) and all("name" in item for item in self.items)

    def is_tensor_spec(self) -> bool:
        return any(item.get("type") == "tensor" for item in self.items)

    @property
    def inputs(self) -> list[ColumnView]:
        return [ColumnView(str(i["name"]), str(i.get("type")), bool(i.get("required", True))) for i in self.items]

    def to_dict(self) -> list[dict[str, Any]]:
        return [dict(item) for item in self.items]


@dataclass(frozen=True)
class SignatureView:
    inputs: InputsView | None


def signature_from_mlmodel(path: Path) -> SignatureView | None:
    """The input signature stored in an MLmodel file, None when it has none."""
    import orjson
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    meta = yaml.load(path.read_text(), Loader=loader)  # noqa: S506 - a SafeLoader
    raw = (meta.get("signature") or {}).get("inputs") if isinstance(meta, dict) else None
    if not raw:
        return None
    return SignatureView(InputsView(tuple(orjson.loads(raw))))


class LazyModel:
    """Loads a version on first use and keeps it (gates and verify share it)."""

    def __init__(self, registry: Registry, info: VersionInfo):
        self.registry, self.info = registry, info
        self._path: Path | None = None
        self._model: Any = None
        self._served: LoadedModel | None = None
        self._served_tried = False

    def _serving_load(self) -> LoadedModel | None:
        """The version as the serving app loads it, None when its fast loader does not apply."""
        if not self._served_tried:
            self._served_tried = True
            if self.registry.tracking_uri.startswith(("http://", "https://")):
                from shipway.serving.config import Pin
                from shipway.serving.fastload import load_fast
                from shipway.serving.model import ModelLoadError

                try:
                    self._served = load_fast(Pin(self.info.name, self.info.version, self.registry.tracking_uri))
                except ModelLoadError as exc:
                    raise RegistryError(
                        f"cannot load version {self.info.version} of model '{self.info.name}': {exc}"
                    ) from exc
                if self._served is not None:
                    atexit.register(self._served.discard)  # its private copy of the model directory
        return self._served

    def path(self) -> Path:
        if self._path is None:
            served = self._serving_load()
            if served is not None and served.workdir:
                self._path = Path(served.workdir) / "model"
            else:
                self._path = self.registry.model_path(self.info)
        return self._path

    def signature(self) -> Any:
        if self._serving_load() is not None:
            return signature_from_mlmodel(self.path() / "MLmodel")
        from mlflow.models import Model

        return Model.load(str(self.path() / "MLmodel")).signature

    def predict(self, frame: pd.DataFrame) -> Any:
        served = self._serving_load()
        if served is not None:
            from shipway.serving.schema import batch_from_columns

            # NaN -> None: a missing value, as the request parser sees it
            columns = {str(c): frame[c].astype(object).where(frame[c].notna(), None).tolist() for c in frame.columns}
            return served.predict(batch_from_columns(columns, served.schema))
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
