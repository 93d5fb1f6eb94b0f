"""Promotion and rollback: move a model's pinned version between environments, with evidence.

Promotion = quality gates pass -> the pin in ``stacks/Pulumi.<env>.yaml`` changes (one-line,
comment-preserving edit, written atomically) -> an audit record -> optionally ``pulumi up``
on that stack and deployment verification; a failed verification rolls back automatically
to the last known-good pin and runs ``up`` again.

Decisions (see docs/promotion.md):

* Nothing is written before the gates pass. A gate failure leaves the stack file untouched
  but is still recorded (gate tags on the version + a ``rejected`` audit record), because a
  refused promotion is evidence too.
* If ``pulumi up`` itself fails, the stack-file change **stays**: the file is the desired
  state under review, the failed apply is recorded as ``failed`` in the audit trail, and the
  error says how to retry or roll back. Reverting silently would hide that the desired state
  was never reached.
* Rollback skips the quality gates: it returns to a version that already passed them and
  was verified in that env (the "known-good" set is every version with an ``ok`` verify
  record). It is the emergency path and must not be blocked by a flaky golden set.
* One promotion per env at a time: ``.shipway/locks/<env>.lock`` is created with O_EXCL and
  holds the owner's pid; a lock whose pid is dead on this host is stale and taken over.

The engine (``shipway.engine``: ``stack_outputs``, ``up``, ``repo_root``) and the registry
are injected through :class:`Services` so tests run the whole flow against fakes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from shipway import audit as audit_mod
from shipway import stackfile
from shipway.audit import AuditLog
from shipway.explain import explanation_link
from shipway.lazymodel import LazyModel
from shipway.locks import LockBusy as LockBusy
from shipway.locks import env_lock
from shipway.registry import Registry, RegistryError, VersionInfo
from shipway.targets.base import AdapterContext, Check, TargetAdapter, VerificationResult, adapter_for
from shipway.targets.local import LocalAdapter
from shipway.verify import ROLLBACK_SMOKE_REQUESTS, probe_requests
from shipway_core.config import StackConfig
from shipway_core.outputs import OutputsError, PlatformOutputs

if TYPE_CHECKING:
    from shipway import gates as gates_mod
else:
    class _Gates:
        """``shipway.gates`` (scipy, the drift statistics) imported on first use, not when the CLI
        starts: `model rollback`, `env status` and `--help` never evaluate a gate."""

        def __getattr__(self, name: str) -> Any:
            import shipway.gates

            return getattr(shipway.gates, name)

    gates_mod = _Gates()


def _warm_gate_imports() -> Callable[[], None]:
    """Import what the gates need (scipy through the drift statistics, skops and sklearn for the
    model) on a background thread while the command waits on the stack's outputs and the registry,
    and return a function that waits for it. The caller waits before the gates run, so no module is
    imported by both threads at once; any import error is left for the gates to raise themselves."""
    def run() -> None:
        with contextlib.suppress(Exception):
            import sklearn.base  # noqa: F401
            import skops.io  # noqa: F401

            import shipway.gates  # noqa: F401

    thread = threading.Thread(target=run, name="shipway-warm-gate-imports", daemon=True)
    thread.start()
    return thread.join


# Golden rows sent as the smoke set (enough to catch a wrong artifact, few enough to be quick).
SMOKE_ROWS = 20


class Engine(Protocol):
    """The slice of ``shipway.engine`` promotion needs."""

    def stack_outputs(self, env: str) -> dict[str, Any]: ...

    def up(self, env: str, message: str) -> dict[str, Any]: ...

    def repo_root(self) -> Path: ...


class PromotionError(RuntimeError):
    """A promotion or rollback stopped; ``outcome`` carries what happened so far."""

    def __init__(self, message: str, outcome: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.outcome = dict(outcome or {})


class GateFailure(PromotionError):
    """At least one quality gate failed; nothing was changed."""


class UnknownInput(PromotionError):
    """The user named something that does not exist (model not pinned, version unknown...)."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


def _default_engine() -> Engine:
    from shipway import engine  # the lead's module; imported late so tests never need it

    return engine  # type: ignore[return-value]  # a module satisfies the Protocol


@dataclass
class Services:
    """Injectable dependencies of a promotion (fakes in tests, the real ones in the CLI)."""

    engine: Engine = field(default_factory=_default_engine)
    registry_factory: Callable[[str], Registry] = Registry
    audit_path: Path | None = None
    actor: str | None = None
    tracking_uri: str | None = None
    # A cap on the verification probe, whose size comes from statistics (verify.probe_requests).
    probe_seconds: float = 10.0
    progress: Callable[[str], None] = lambda _msg: None
    # The local target's probe (shipway.verify.verify_deployment); tests inject one with a fake client.
    verifier: Callable[..., VerificationResult] | None = None
    # AWS API endpoint override (moto on 127.0.0.1 in tests) and an assumed-role boto3 session.
    aws_endpoint_url: str | None = None
    aws_session: Any = None
    # The CLI's rollback on the local target: a smoke probe before returning, the full SLO probe in
    # a detached process that records its verdict in the audit trail (verify.follow_up). Off, the
    # full probe runs before rollback returns (library callers, tests, the other targets).
    background_verification: bool = False

    def repo_root(self) -> Path:
        return Path(self.engine.repo_root())

    def adapter(self, env: str, cfg: StackConfig, audit: AuditLog | None = None) -> TargetAdapter:
        """The target adapter of a deployed stack (raises PromotionError when it has no outputs)."""
        return adapter_for(platform_outputs(self, env), cfg, self.adapter_context(audit))

    def adapter_context(self, audit: AuditLog | None = None) -> AdapterContext:
        def outputs_of(env: str) -> PlatformOutputs | None:
            try:
                return platform_outputs(self, env)
            except PromotionError:
                return None

        return AdapterContext(root=self.repo_root(), registry_factory=self.registry_factory,
                              tracking_uri=self.tracking_uri, audit=audit, probe_seconds=self.probe_seconds,
                              outputs_of=outputs_of, verifier=self.verifier, aws_session=self.aws_session,
                              aws_endpoint_url=self.aws_endpoint_url)

    def audit(self) -> AuditLog:
        return AuditLog(self.audit_path or self.repo_root() / audit_mod.DEFAULT_RELATIVE_PATH)


# ----------------------------------------------------------------------- requests


@dataclass(frozen=True)
class PromoteRequest:
    model: str
    to_env: str
    version: int | None = None
    apply: bool = False
    reason: str = ""
    golden: Path | None = None
    allow_dirty: bool = False


@dataclass(frozen=True)
class RollbackRequest:
    model: str
    env: str
    to_version: int | None = None
    apply: bool = True
    reason: str = ""
    golden: Path | None = None
    allow_dirty: bool = False
    # Only roll back when the target's guardrail alarms say so (TargetAdapter.rollback_decision).
    when_alarming: bool = False


@dataclass
class Outcome:
    """What a promotion or rollback did; ``as_dict`` is the JSON the CLI prints and CI reads."""

    model: str
    env: str
    from_version: int | None
    to_version: int | None
    stack_file: str
    # unchanged | pinned | rejected | verified | rolled-back | rollback-failed | unverified
    status: str = "planned"
    message: str | None = None
    audit_seq: list[int] = field(default_factory=list)
    gates: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    prepare: dict[str, Any] | None = None
    apply: dict[str, Any] | None = None
    verification: dict[str, Any] | None = None
    rollback: dict[str, Any] | None = None
    # Seconds per step of this run (exclusive: a step's inner steps are not counted twice):
    # stack outputs, registry, gates, pin, pulumi up, verification, audit.
    timings: dict[str, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        """Only what happened: steps that did not run are absent, not null."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None and v != []}


# ------------------------------------------------------------------------ helpers


def tracking_uri_for(services: Services, cfg: StackConfig, env: str) -> str:
    """Explicit option > the stack's registryUri > the stack's ``trackingUri`` output."""
    if services.tracking_uri:
        return services.tracking_uri
    if cfg.registry_uri and cfg.registry_uri.startswith(("http://", "https://", "sqlite:")):
        return cfg.registry_uri
    try:
        outputs = platform_outputs(services, env)
    except PromotionError as exc:
        raise PromotionError(f"{exc}; cannot find its MLflow registry, pass --tracking-uri") from exc
    return outputs.registry_uri


def platform_outputs(services: Services, env: str) -> PlatformOutputs:
    """The stack's outputs under the platform contract (shipway_core.outputs)."""
    try:
        exports = services.engine.stack_outputs(env)
    except Exception as exc:
        raise PromotionError(f"cannot read the outputs of stack '{env}' ({exc})") from exc
    try:
        return PlatformOutputs.from_exports(exports or {}, stack=env)
    except OutputsError as exc:
        raise PromotionError(str(exc)) from exc


def default_version(root: Path, model: str, env: str) -> int:
    """The version pinned in the env before ``env`` (what a promotion normally carries forward)."""
    prev = stackfile.previous_env(env)
    if prev is None:
        raise UnknownInput(
            f"'{env}' is the first environment, so there is no version to carry forward; pass --version",
            "--version",
        )
    pins = stackfile.read_pins(stackfile.stack_path(root, prev))
    if model not in pins:
        raise UnknownInput(
            f"model '{model}' is not pinned in '{prev}' (the environment before '{env}'); pass --version",
            "NAME",
        )
    return pins[model]


def _require(registry: Registry, model: str, version: int, param: str) -> VersionInfo:
    try:
        return registry.require_ready(model, version)
    except RegistryError as exc:
        if "does not exist" in str(exc) or "is not registered" in str(exc):
            raise UnknownInput(str(exc), param) from exc
        raise


def load_golden(registry: Registry, info: VersionInfo, path: Path | None) -> tuple[pd.DataFrame | None, str]:
    """The golden dataset: ``--golden PATH`` or the version's ``golden.csv`` artifact."""
    if path is not None:
        if not Path(path).is_file():
            raise UnknownInput(f"golden dataset {path} not found", "--golden")
        return pd.read_csv(path), str(path)
    found = registry.download_version_file(info, gates_mod.GOLDEN_ARTIFACT)
    source = f"{gates_mod.GOLDEN_ARTIFACT} of version {info.version}"
    if found is None:
        return None, f"version {info.version} has no {gates_mod.GOLDEN_ARTIFACT} artifact"
    return pd.read_csv(found), source


def evaluation_set(registry: Registry, candidate: VersionInfo, champion: VersionInfo | None,
                   path: Path | None) -> tuple[pd.DataFrame | None, str, str | None]:
    """The set the gates score candidate and champion on: ``--golden PATH`` (the environment's),
    else the champion's golden set, else (first promotion only) the candidate's own
    (``gates.select_evaluation_set``): a candidate shipping an easy set cannot pass on it."""
    def found(info: VersionInfo | None, given: Path | None) -> tuple[pd.DataFrame, str] | None:
        if info is None and given is None:
            return None
        frame, source = load_golden(registry, info, given)  # type: ignore[arg-type]
        return (frame, source) if frame is not None else None

    # In that order, and no further than the first set found: each is a registry download.
    environment = found(None, path) if path is not None else None
    champ = found(champion, None) if environment is None else None
    cand = found(candidate, None) if environment is None and champ is None else None
    return gates_mod.select_evaluation_set(environment, champ, cand)


def pins_at(root: Path, env: str, rev: str) -> dict[str, int]:
    """The pins ``stacks/Pulumi.<env>.yaml`` held at git revision ``rev`` (none if it did not exist)."""
    rel = stackfile.stack_path(root, env).relative_to(root)
    if not rev or rev.startswith("-"):
        raise UnknownInput(f"--since: {rev!r} is not a git revision; pass a commit (e.g. the push's before-SHA)",
                           "--since")
    shown = subprocess.run(["git", "-C", str(root), "show", f"{rev}:{rel}"], capture_output=True, text=True,
                           timeout=30, check=False)
    if shown.returncode != 0:
        if "exists on disk, but not in" in shown.stderr or "does not exist in" in shown.stderr:
            return {}
        raise UnknownInput(f"--since: {rev!r} is not a revision of this repository "
                           f"(git: {shown.stderr.strip()}); pass a commit it has", "--since")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / rel.name
        copy.write_text(shown.stdout)
        return stackfile.read_pins(copy)


def _step(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A Promoter method timed as one step of the outcome's ``timings``."""
    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def timed(self: Promoter, *args: Any, **kwargs: Any) -> Any:
            with self._phase(name):
                return method(self, *args, **kwargs)
        return timed
    return wrap


def start_detached(argv: list[str], *, log: Path, env: Mapping[str, str], cwd: Path) -> int:
    """Start ``argv`` in its own session (it outlives the CLI), output to ``log``; its pid."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(env), cwd=cwd, start_new_session=True)
    return proc.pid


def _relative(root: Path, path: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------- the flow


class Promoter:
    """Runs promotions and rollbacks against injected services."""

    def __init__(self, services: Services):
        self.s = services
        self.root = services.repo_root()
        self.audit = services.audit()
        self._actor: str | None = None
        # Stack outputs per env, read once between `up`s (each read runs the engine: ~0.35 s on local).
        self._outputs: dict[str, PlatformOutputs] = {}
        self._last_verify_seq: int | None = None
        self._last_verify_pending = False
        self.timings: dict[str, float] = {}
        self._phases: list[list[Any]] = []

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        """Time a step into ``self.timings`` (what the outcome reports); nested steps are subtracted."""
        start = time.perf_counter()
        self._phases.append([name, 0.0])
        try:
            yield
        finally:
            _, inner = self._phases.pop()
            took = time.perf_counter() - start
            self.timings[name] = round(self.timings.get(name, 0.0) + took - inner, 3)
            if self._phases:
                self._phases[-1][1] += took

    @property
    def actor(self) -> str:
        if self._actor is None:
            self._actor = audit_mod.resolve_actor(self.root, self.s.actor)
        return self._actor

    def _record(self, action: str, env: str, model: str, **fields: Any) -> dict[str, Any]:
        with self._phase("audit"):
            return self._append(action, env, model, **fields)

    def _append(self, action: str, env: str, model: str, **fields: Any) -> dict[str, Any]:
        return self.audit.append(
            actor=self.actor,
            action=action,
            env=env,
            model=model,
            commit=audit_mod.git_commit(self.root),
            **fields,
        )

    def _adapter(self, env: str, cfg: StackConfig) -> TargetAdapter | None:
        """The stack's target adapter, or None while the stack has no outputs (never deployed)."""
        try:
            return self._deployed_adapter(env, cfg)
        except PromotionError:
            return None

    def _deployed_adapter(self, env: str, cfg: StackConfig) -> TargetAdapter:
        """The stack's target adapter (PromotionError when it has no outputs)."""
        if env not in self._outputs:
            with self._phase("stack outputs"):
                self._outputs[env] = platform_outputs(self.s, env)
        return adapter_for(self._outputs[env], cfg, self.s.adapter_context(self.audit))

    def _registry(self, cfg: StackConfig, env: str) -> Registry:
        """The env's registry through its target adapter; an explicit --tracking-uri wins, and a stack
        never deployed has no adapter yet, so its configured registry URI is used."""
        if not self.s.tracking_uri:
            adapter = self._adapter(env, cfg)
            if adapter is not None:
                return adapter.registry()
        return self.s.registry_factory(tracking_uri_for(self.s, cfg, env))

    def _prepare(self, cfg: StackConfig, model: str, version: int, reason: str) -> dict[str, Any] | None:
        """The target's explicit, audited step before `up` (AWS: copy the package into the env's bucket)."""
        env = cfg.environment
        adapter = self._adapter(env, cfg)
        if adapter is None:
            return None  # first deployment: the stack creates its bucket; the component packages the version
        self.s.progress(f"preparing '{model}' version {version} on {adapter.cloud}")
        try:
            result = adapter.prepare(model, version).as_dict()
        except Exception as exc:
            self._record("prepare", env, model, to_version=version, outcome="failed", reason=reason,
                         details={"error": f"{type(exc).__name__}: {exc}"})
            raise PromotionError(f"preparing version {version} of '{model}' for '{env}' failed: {exc}",
                                 {"prepare": {"error": str(exc)}}) from exc
        if result["action"] != "none":
            rec = self._record("prepare", env, model, to_version=version, outcome=result["action"], reason=reason,
                               details=result)
            result["audit_seq"] = rec["seq"]
        return result

    def _outcome(self, model: str, env: str, path: Path, current: int | None, target: int) -> Outcome:
        """The result promote and rollback both report; its status is "unchanged" (and final) when
        ``target`` is pinned already, so there is nothing to do."""
        outcome = Outcome(model=model, env=env, from_version=current, to_version=target,
                          stack_file=_relative(self.root, path), timings=self.timings)
        if current == target:
            outcome.status = "unchanged"
            outcome.message = f"'{model}' is already pinned to version {target} in '{env}'"
        return outcome

    @_step("pin")
    def _pin(
        self,
        action: str,
        registry: Registry,
        path: Path,
        outcome: Outcome,
        *,
        apply: bool,
        reason: str,
        **fields: Any,
    ) -> stackfile.PinEdit:
        """Write ``outcome``'s pin to the stack file and record it, promote and rollback alike.

        With ``apply`` every pin the stack will have is pre-flighted first, so a missing version
        stops the run before the file changes.
        """
        model, version = outcome.model, outcome.to_version
        assert version is not None  # noqa: S101 - a pin always names a version
        edit = stackfile.plan_pin(path, model, version)
        if apply:
            self._preflight(registry, {**stackfile.read_pins(path), model: version},
                            self._adapter(outcome.env, stackfile.load_config(path)))
        stackfile.apply_edit(edit)
        rec = self._record(
            action,
            outcome.env,
            model,
            from_version=outcome.from_version,
            to_version=version,
            outcome="pinned",
            reason=reason,
            **fields,
        )
        outcome.status, outcome.audit_seq = "pinned", [rec["seq"]]
        return edit

    # ---------------------------------------------------------------- promote
    def promote(self, req: PromoteRequest) -> Outcome:
        """Gate, pin, record; with ``apply`` also deploy, verify and (on failure) roll back."""
        env = stackfile.check_env(req.to_env)
        path = stackfile.stack_path(self.root, env)
        stackfile.load_config(path)  # a missing or invalid target file fails before any work
        version = req.version if req.version is not None else default_version(self.root, req.model, env)
        stackfile.check_clean(path, req.allow_dirty)
        _ = self.actor  # resolve who is acting before doing any work
        gate_imports = _warm_gate_imports()
        with env_lock(self.root, env):
            cfg = stackfile.load_config(path)
            registry = self._registry(cfg, env)
            self.s.progress(f"checking version {version} of '{req.model}' in the registry")
            with self._phase("registry"):
                cand_info = _require(registry, req.model, version, "--version")
            current = cfg.models[req.model].version if req.model in cfg.models else None
            outcome = self._outcome(req.model, env, path, current, version)
            if outcome.status == "unchanged":
                return outcome
            cand = LazyModel(registry, cand_info)
            cur = LazyModel(registry, registry.version(req.model, current)) if current is not None else None
            with self._phase("gates"):
                gate_imports()
                golden, golden_source, owner = evaluation_set(registry, cand_info, cur.info if cur else None,
                                                              req.golden)
                report = self._run_gates(registry, cfg, env, cand, cur, golden, golden_source, owner)
            outcome.gates = report.evidence()
            if not report.passed:
                rec = self._record(
                    "promote",
                    env,
                    req.model,
                    from_version=current,
                    to_version=version,
                    outcome="rejected",
                    reason=req.reason,
                    gates=report.evidence(),
                )
                failed = report.failures
                msg = "\n".join(r.message for r in failed)
                outcome.status, outcome.audit_seq = "rejected", [rec["seq"]]
                raise GateFailure(msg, outcome.as_dict())
            edit = self._pin(
                "promote",
                registry,
                path,
                outcome,
                apply=req.apply,
                reason=req.reason,
                gates=report.evidence(),
                details={"stack_file": outcome.stack_file, "apply": req.apply,
                         # the version's global explanation (compliance evidence), when training stored one
                         "explanation": explanation_link(registry.tracking_uri, req.model, cand_info.version,
                                                         cand_info.tags)},
            )
            if req.apply:
                self._apply_verify_or_rollback(outcome, cfg, registry, edit, cand, golden, req.reason)
            return outcome

    def _run_gates(
        self,
        registry: Registry,
        cfg: StackConfig,
        env: str,
        cand: LazyModel,
        cur: LazyModel | None,
        golden: pd.DataFrame | None,
        golden_source: str,
        golden_owner: str | None = None,
    ) -> gates_mod.GateReport:
        self.s.progress(
            f"running quality gates for '{cand.info.name}' version {cand.info.version} in '{env}'"
        )
        baseline = registry.load_json(cand.info, gates_mod.BASELINE_ARTIFACT)
        inputs = gates_mod.GateInputs(
            env=env,
            settings=cfg.gates,
            candidate=cand.under_test(),
            current=cur.under_test() if cur is not None else None,
            golden=golden,
            golden_source=golden_source,
            golden_owner=golden_owner,
            baseline=baseline,
        )
        report = gates_mod.run_gates(inputs)
        registry.set_tags(cand.info.name, cand.info.version, report.tags())
        return report

    # ------------------------------------------------------- apply and verify
    def _up(self, env: str, model: str, version: int | None, message: str, reason: str) -> dict[str, Any]:
        """`pulumi up` the stack; a failure is recorded and raised (the pin stays as desired state)."""
        self.s.progress(f"pulumi up on stack '{env}'")
        self._outputs.pop(env, None)  # `up` may change them (a new endpoint, a new URL)
        try:
            with self._phase("pulumi up"):
                summary = dict(self.s.engine.up(env, message) or {})
        except Exception as exc:
            summary = {"result": "failed", "error": f"{type(exc).__name__}: {exc}"}
        result = str(summary.get("result", "failed"))
        rec = self._record(
            "apply",
            env,
            model,
            to_version=version,
            outcome=result,
            reason=reason,
            # the whole engine summary: resource changes, policy results, error
            details={"message": message, "summary": json.loads(json.dumps(summary, default=str))},
        )
        summary["audit_seq"] = rec["seq"]
        outputs = summary.get("outputs")
        if result == "succeeded" and isinstance(outputs, Mapping):
            # the outputs `up` just returned: verification needs no second engine run to read them
            # (not under the platform contract: read them again when needed, which says why)
            with contextlib.suppress(OutputsError):
                self._outputs[env] = PlatformOutputs.from_exports(dict(outputs), stack=env)
        if result != "succeeded":
            path = stackfile.stack_path(self.root, env)
            raise PromotionError(
                f"pulumi up on stack '{env}' failed ({summary.get('error', result)}); "
                f"{_relative(self.root, path)} keeps version {version} of '{model}' as the desired state: "
                f"fix the cause and run `shipway model promote {model} --to {env} --version {version} "
                f"--apply` again, or `shipway model rollback {model} --env {env}`",
                {"apply": summary},
            )
        return summary

    @_step("verification")
    def _verify(
        self,
        cfg: StackConfig,
        env: str,
        model: str,
        version: int,
        lazy: LazyModel | None,
        golden: pd.DataFrame | None,
        reason: str,
        known_good_rows: pd.DataFrame | None = None,
        smoke_only: bool = False,
    ) -> VerificationResult:
        """Version, smoke (endpoint vs offline predictions of ``lazy``) and a sized SLO probe.

        ``known_good_rows`` instead of a model: the rows that verified this version before, so a
        rollback probes it without loading the model offline (seconds saved during an incident).
        ``smoke_only`` (local target): a probe of ``ROLLBACK_SMOKE_REQUESTS`` requests whose passing
        is recorded as ``pending``, not ``ok``: the SLO verdict is the full probe's record that follows.
        """
        self.s.progress(f"verifying '{model}' version {version} in '{env}'")
        features: pd.DataFrame | None = None
        try:
            adapter = self._deployed_adapter(env, cfg)
            offline = None
            if golden is not None and lazy is not None and gates_mod.LABEL_COLUMN in golden.columns:
                features = golden.drop(columns=[gates_mod.LABEL_COLUMN]).head(SMOKE_ROWS)
                offline = gates_mod.predictions(lazy.predict, features)
            elif known_good_rows is not None:
                features = known_good_rows
            if smoke_only and isinstance(adapter, LocalAdapter):
                result = adapter.verify(model, version, cfg.slo, features=features, offline=offline,
                                        max_probe_requests=ROLLBACK_SMOKE_REQUESTS)
            else:
                smoke_only = False
                result = adapter.verify(model, version, cfg.slo, features=features, offline=offline)
            if result.ok and adapter.cloud != "local":
                alias = self._set_env_alias(adapter, env, model, version)
                result = dataclasses.replace(result, checks=(*result.checks, alias))
        except Exception as exc:  # any failure to verify is a failed verification, never a silent pass
            result = VerificationResult(
                model=model,
                version=version,
                url="",
                checks=(Check("version", False, f"cannot verify: {type(exc).__name__}: {exc}"),),
            )
        pending = smoke_only and result.ok
        rec = self._record(
            "verify",
            env,
            model,
            to_version=version,
            outcome="pending" if pending else ("ok" if result.ok else "failed"),
            reason=reason,
            verification=result.as_dict(),
            details={"smoke_only": True, "full_probe": "follows in the background"} if pending else None,
        )
        self._last_verify_seq, self._last_verify_pending = int(rec["seq"]), pending
        if result.ok and features is not None:
            self._remember_probe_rows(model, version, features)
        return result

    @staticmethod
    def _set_env_alias(adapter: TargetAdapter, env: str, model: str, version: int) -> Check:
        """``models:/<model>@<env>`` follows the verified pin. The local stack sets it itself (ModelPin);
        on the cloud targets this is the step that does, once the version answers there."""
        registry = adapter.registry()
        try:
            registry.client.set_registered_model_alias(model, env, str(version))
        except Exception as exc:
            return Check("alias", False, f"cannot set alias '{env}' of '{model}' to version {version} in "
                                         f"{registry.tracking_uri}: {type(exc).__name__}: {exc}")
        return Check("alias", True, f"alias '{env}' of '{model}' points at version {version}")

    def _verify_in_background(self, cfg: StackConfig, model: str, version: int, rows: pd.DataFrame, reason: str,
                              follows: int) -> dict[str, Any]:
        """Start the full SLO probe of a smoke-verified rollback in a detached process
        (``python -m shipway.verify SPEC``) that appends its verdict to the audit trail."""
        adapter = self._deployed_adapter(cfg.environment, cfg)
        assert isinstance(adapter, LocalAdapter)  # noqa: S101 - only the local target verifies in the background
        endpoint = adapter.endpoint(model)
        work = self.root / ".shipway" / "cache" / "verify-follow"
        work.mkdir(parents=True, exist_ok=True)
        stem = work / f"{model}-v{version}-seq{follows}"
        rows.to_csv(stem.with_suffix(".csv"), index=False)
        spec = {"model": model, "version": version, "env": cfg.environment, "url": endpoint.url,
                "api_key_file": endpoint.api_key_ref, "slo": dataclasses.asdict(cfg.slo),
                "rows": str(stem.with_suffix(".csv")), "probe_seconds": self.s.probe_seconds,
                "audit_path": str(self.audit.path), "actor": self.actor, "commit": audit_mod.git_commit(self.root),
                "reason": f"{reason} (full SLO probe after the rollback's smoke verification)".lstrip(),
                "follows": follows, "stack_file": str(stackfile.stack_path(self.root, cfg.environment))}
        stem.with_suffix(".json").write_text(json.dumps(spec, indent=2))
        package_parent = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH"))
                                                           if p)}
        pid = start_detached([sys.executable, "-m", "shipway.verify", str(stem.with_suffix(".json"))],
                             log=stem.with_suffix(".log"), env=env, cwd=self.root)
        return {"pid": pid, "requests": probe_requests(cfg.slo), "follows_audit_seq": follows,
                "log": _relative(self.root, stem.with_suffix(".log"))}

    def _probe_rows_path(self, model: str, version: int) -> Path:
        return self.root / ".shipway" / "cache" / "probe-rows" / model / f"{version}.csv"

    def _remember_probe_rows(self, model: str, version: int, rows: pd.DataFrame) -> None:
        """Keep the rows a version was verified with: its rollback probes with them, no download."""
        path = self._probe_rows_path(model, version)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows.to_csv(path, index=False)

    def _known_good_rows(self, registry: Registry, info: VersionInfo) -> pd.DataFrame | None:
        """Rows to probe a rollback target with: cached from its last verification, else its golden set."""
        path = self._probe_rows_path(info.name, info.version)
        if path.is_file():
            return pd.read_csv(path)
        golden, _src = load_golden(registry, info, None)
        if golden is None:
            return None
        return golden.drop(columns=[gates_mod.LABEL_COLUMN], errors="ignore").head(SMOKE_ROWS)

    def _apply_verify_or_rollback(
        self,
        outcome: Outcome,
        cfg: StackConfig,
        registry: Registry,
        edit: stackfile.PinEdit,
        cand: LazyModel,
        golden: pd.DataFrame | None,
        reason: str,
    ) -> None:
        env, model, version = cfg.environment, edit.model, edit.to_version
        outcome.prepare = self._prepare(cfg, model, version, reason)
        outcome.apply = self._up(env, model, version, f"promote {model} to v{version}", reason)
        result = self._verify(cfg, env, model, version, cand, golden, reason)
        outcome.verification = result.as_dict()
        if result.ok:
            outcome.status = "verified"
            return
        target = self.audit.last_known_good(env, model, exclude=version) or edit.from_version
        failed = f"deployment verification of '{model}' version {version} in '{env}' failed: {result.reason}"
        where = f"version {target}" if target is not None else "the previous stack file (model removed)"
        try:
            rolled = self._auto_rollback(cfg, registry, edit, target, result.reason)
        except PromotionError as exc:
            outcome.status = "rollback-failed"
            raise PromotionError(
                f"{failed}; the rollback to {where} was pinned but did not complete: {exc}", outcome.as_dict()
            ) from exc
        outcome.status, outcome.rollback = "rolled-back", rolled
        raise PromotionError(f"{failed}; rolled back to {where}", outcome.as_dict())

    def _preflight(self, registry: Registry, pins: Mapping[str, int], adapter: TargetAdapter | None) -> None:
        """Every pin the stack will have must exist and be READY before `up`; checked before the
        stack file is written, so a missing version stops the run with nothing changed."""
        self.s.progress("pre-flight: checking every pinned version is READY")
        if adapter is not None:
            adapter.preflight(pins)
            return
        for name, version in sorted(pins.items()):
            registry.require_ready(name, version)

    def _auto_rollback(
        self, cfg: StackConfig, registry: Registry, edit: stackfile.PinEdit, target: int | None, why: str
    ) -> dict[str, Any]:
        env, model = cfg.environment, edit.model
        reason = f"automatic rollback: verification of version {edit.to_version} failed: {why}"
        self.s.progress(f"rolling back '{model}' in '{env}' to {target}")
        if target is None:
            stackfile.revert_edit(edit)
        else:
            stackfile.write_atomic(edit.path, stackfile.plan_pin(edit.path, model, target).new_text)
        rec = self._record(
            "rollback",
            env,
            model,
            from_version=edit.to_version,
            to_version=target,
            outcome="pinned",
            reason=reason,
            details={"automatic": True},
        )
        out: dict[str, Any] = {"to_version": target, "audit_seq": [rec["seq"]]}
        out["apply"] = self._up(env, model, target, f"rollback {model} to v{target}", reason)
        if target is not None:
            info = registry.version(model, target)
            golden, _src = load_golden(registry, info, None)
            out["verification"] = self._verify(
                cfg, env, model, target, LazyModel(registry, info), golden, reason
            ).as_dict()
        return out

    # --------------------------------------------------------------- rollback
    def rollback(self, req: RollbackRequest) -> Outcome:
        """Re-pin the last known-good (or ``--to``) version; with ``apply`` deploy and verify it."""
        env = stackfile.check_env(req.env)
        path = stackfile.stack_path(self.root, env)
        stackfile.load_config(path)
        stackfile.check_clean(path, req.allow_dirty)
        _ = self.actor
        with env_lock(self.root, env):
            cfg = stackfile.load_config(path)
            if req.model not in cfg.models:
                raise UnknownInput(
                    f"model '{req.model}' is not pinned in '{env}' ({_relative(self.root, path)})", "NAME"
                )
            current = cfg.models[req.model].version
            target = req.to_version
            decision = None
            if req.when_alarming:
                adapter = self._adapter(env, cfg)
                if adapter is None:
                    raise PromotionError(f"--when-alarming reads the alarms of the deployed stack '{env}', "
                                         "which has no outputs; deploy it or drop --when-alarming")
                self.s.progress(f"reading the guardrail alarms of '{req.model}' in '{env}'")
                decision = adapter.rollback_decision(req.model).as_dict()
                if not decision["rollback"]:
                    outcome = self._outcome(req.model, env, path, current, current)
                    outcome.message, outcome.decision = decision["reason"], decision
                    return outcome
                req = dataclasses.replace(req, reason=req.reason or f"automatic: {decision['reason']}")
            if target is None:
                target = self.audit.last_known_good(env, req.model, exclude=current)
            if target is None:
                raise UnknownInput(
                    f"no known-good version of '{req.model}' in '{env}' in the audit trail "
                    "(a version becomes known-good when deployment verification passes); "
                    "pass --to N",
                    "--to",
                )
            outcome = self._outcome(req.model, env, path, current, target)
            outcome.decision = decision
            if outcome.status == "unchanged":
                return outcome
            registry = self._registry(cfg, env)
            with self._phase("registry"):
                info = _require(registry, req.model, target, "--to")
            self._pin(
                "rollback",
                registry,
                path,
                outcome,
                apply=req.apply,
                reason=req.reason,
                details={"automatic": False, "apply": req.apply},
            )
            if req.apply:
                outcome.prepare = self._prepare(cfg, req.model, target, req.reason)
                with ThreadPoolExecutor(1) as pool:
                    # the known-good rows (a download when not cached) while `pulumi up` runs
                    rows = pool.submit(self._known_good_rows, registry, info) if req.golden is None else None
                    outcome.apply = self._up(
                        env, req.model, target, f"rollback {req.model} to v{target}", req.reason
                    )
                    known_good_rows = rows.result() if rows is not None else None
                background = self.s.background_verification and known_good_rows is not None
                if req.golden is not None:  # an explicit golden set: the full offline comparison
                    golden, _src = load_golden(registry, info, req.golden)
                    result = self._verify(
                        cfg, env, req.model, target, LazyModel(registry, info), golden, req.reason
                    )
                else:  # the fast path: the target is known-good here; probe it with its own rows
                    result = self._verify(cfg, env, req.model, target, None, None, req.reason,
                                          known_good_rows=known_good_rows, smoke_only=background)
                outcome.verification = result.as_dict()
                if self._last_verify_pending and self._last_verify_seq is not None and known_good_rows is not None:
                    outcome.verification["pending"] = self._verify_in_background(
                        cfg, req.model, target, known_good_rows, req.reason, self._last_verify_seq)
                    outcome.status = "smoke-verified"
                    outcome.message = (
                        f"smoke verification passed ({ROLLBACK_SMOKE_REQUESTS} requests); the full SLO probe "
                        f"({probe_requests(cfg.slo)} requests) runs in the background and appends a verify record "
                        f"following audit seq {self._last_verify_seq}: `shipway audit --env {env}`")
                    return outcome
                if not result.ok:
                    outcome.status = "unverified"
                    raise PromotionError(
                        f"rollback of '{req.model}' to version {target} in '{env}' was applied "
                        f"but verification failed: {result.reason}",
                        outcome.as_dict(),
                    )
                outcome.status = "verified"
            return outcome

    # ------------------------------------------------------- whole environments
    def verify_env(self, env: str, reason: str = "") -> dict[str, Any]:
        """Verify every pinned model of a deployed env through its target adapter (CI after `up`)."""
        env = stackfile.check_env(env)
        cfg = stackfile.load_config(stackfile.stack_path(self.root, env))
        _ = self.actor
        registry = self._registry(cfg, env)
        models: dict[str, Any] = {}
        for model, pin in sorted(cfg.models.items()):
            info = _require(registry, model, pin.version, "ENV")
            golden, _src = load_golden(registry, info, None)
            models[model] = self._verify(cfg, env, model, pin.version, LazyModel(registry, info), golden,
                                         reason).as_dict()
        return {"env": env, "ok": all(m["ok"] for m in models.values()), "models": models}

    def preflight_env(self, env: str) -> dict[str, Any]:
        """Every version the stack file pins exists and is READY in the env's registry (before any `up`)."""
        env = stackfile.check_env(env)
        cfg = stackfile.load_config(stackfile.stack_path(self.root, env))
        pins = {m: p.version for m, p in cfg.models.items()}
        self._preflight(self._registry(cfg, env), pins, self._adapter(env, cfg))
        return {"env": env, "ok": True, "pins": dict(sorted(pins.items()))}

    def revert_pins(self, env: str, since: str, reason: str = "") -> dict[str, Any]:
        """Pin again every model whose version changed since git revision ``since`` (no `up`):
        the desired state CI rolls back to when a deploy of those pins failed."""
        env = stackfile.check_env(env)
        before = pins_at(self.root, env, since)
        now = stackfile.read_pins(stackfile.stack_path(self.root, env))
        changed = {m: before[m] for m in sorted(now) if m in before and before[m] != now[m]}
        outcomes = []
        for i, (model, version) in enumerate(changed.items()):
            request = RollbackRequest(model=model, env=env, to_version=version, apply=False, reason=reason,
                                      allow_dirty=i > 0)  # the first re-pin makes the file dirty; ours
            outcomes.append(self.rollback(request).as_dict())
        return {"env": env, "since": since, "changed": outcomes}
