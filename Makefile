# The README's two commands: `make up` (set up + run the local platform) and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: setup up down test unit lint bench
setup:
	@scripts/setup.sh

up: setup  ## set everything up, train+register the example model, `pulumi up` the local stack
	@$(PY) -m shipway.cli platform up --stack local

down:  ## stop every process of the local stack (`pulumi destroy`)
	@$(PY) -m shipway.cli platform down --stack local

test:  ## lint, type-check and run every test (unit, policy, integration with real processes)
	@scripts/kube-tools.sh --background  # the Kubernetes tests' Go builds overlap setup and the suite
	@scripts/setup.sh
	@scripts/test.sh

unit: setup  ## the fast loop: every test but the integration ones, on every core (pytest-xdist)
	@# Bytecode and pytest's rewritten test modules are cached between runs even where the
	@# environment says PYTHONDONTWRITEBYTECODE (compiling them is ~4 s of every worker's start).
	@PYTHONDONTWRITEBYTECODE= .venv/bin/python -m pytest -p no:cacheprovider -n auto --dist loadgroup -m "not integration" tests

bench: setup  ## on-demand benchmarks against reference tools -> benchmarks/RESULTS.md
	@$(PY) -m benchmarks.run
