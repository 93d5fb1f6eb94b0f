"""Pulumi entry point (`main: infra/`): all logic lives in infra.program so tests can import it."""

from infra.program import run

run()
