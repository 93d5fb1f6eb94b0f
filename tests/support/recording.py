"""Recording Pulumi mocks: run a program, keep every resource it registered.

Component tests assert the exact child types, names and security-relevant inputs from
the recording (STYLE rule 12); construction alone proves nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import MockCallArgs, MockResourceArgs, Mocks

# A fake account id that cannot be anyone's: the repo guard test rejects real-looking ones.
FAKE_ACCOUNT = "000000000000"


@dataclass
class Recorded:
    """One registered resource as the engine would have seen it."""

    type: str
    name: str
    inputs: dict[str, Any]
    custom: bool | None
    provider: str | None


@dataclass
class Recording:
    """Everything a program registered, with lookup helpers."""

    resources: list[Recorded] = field(default_factory=list)
    calls: list[MockCallArgs] = field(default_factory=list)
    result: Any = None

    def of_type(self, type_: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> Recorded:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        if len(found) != 1:
            have = sorted(f"{r.type}::{r.name}" for r in self.resources)
            raise AssertionError(f"expected one {type_} named {name!r}, found {len(found)}; have {have}")
        return found[0]

    def named(self, name: str) -> Recorded:
        found = [r for r in self.resources if r.name == name]
        if len(found) != 1:
            raise AssertionError(f"expected one resource named {name!r}, found {len(found)}")
        return found[0]

    @property
    def types(self) -> list[str]:
        return sorted({r.type for r in self.resources})

    def names(self, type_: str) -> list[str]:
        return sorted(r.name for r in self.of_type(type_))


class RecordingMocks(Mocks):
    """Echo inputs back as outputs (plus plausible ids/arns) and record every call."""

    def __init__(self, recording: Recording, outputs: Callable[[MockResourceArgs], dict] | None = None):
        self.recording = recording
        self.extra_outputs = outputs

    def new_resource(self, args: MockResourceArgs):
        self.recording.resources.append(
            Recorded(type=args.typ, name=args.name, inputs=dict(args.inputs), custom=args.custom,
                     provider=args.provider)
        )
        outputs = dict(args.inputs)
        outputs.setdefault("arn", f"arn:aws:mock:eu-west-1:{FAKE_ACCOUNT}:{args.name}")
        outputs.setdefault("name", outputs.get("name", args.name))
        if self.extra_outputs is not None:
            outputs.update(self.extra_outputs(args))
        return [f"{args.name}-id", outputs]

    def call(self, args: MockCallArgs):
        self.recording.calls.append(args)
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": FAKE_ACCOUNT, "arn": f"arn:aws:iam::{FAKE_ACCOUNT}:user/mock", "userId": "mock"}
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": "eu-west-1", "region": "eu-west-1", "id": "eu-west-1"}
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
        if args.token.startswith("azure-native:authorization:getClientConfig"):
            return {"clientId": "00000000-0000-0000-0000-000000000001",
                    "objectId": "00000000-0000-0000-0000-000000000002",
                    "subscriptionId": "00000000-0000-0000-0000-000000000003",
                    "tenantId": "00000000-0000-0000-0000-000000000004"}
        return {}


def record(build: Callable[[], Any], *, stack: str = "dev", project: str = "shipway",
           outputs: Callable[[MockResourceArgs], dict] | None = None,
           config: dict[str, str] | None = None) -> Recording:
    """Run ``build`` under recording mocks and wait until every registration finished."""
    recording = Recording()
    if config is not None:
        pulumi.runtime.set_all_config(config)
    pulumi.runtime.set_mocks(RecordingMocks(recording, outputs), project=project, stack=stack, preview=False)

    @pulumi.runtime.test
    def run() -> Any:
        recording.result = build()
        return None

    run()
    return recording


def resolve(output: Any) -> Any:
    """Read a resolved Output's value inside a recording (mocks resolve synchronously)."""
    from pulumi.runtime.sync_await import _sync_await

    return _sync_await(pulumi.Output.from_input(output).future())
