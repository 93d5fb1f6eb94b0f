#!/usr/bin/env bash
# The project's test command (README; .ci/run calls `make test`): lint, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.shipway/tools/bin:$PATH"
# The Kubernetes tests' control plane and provider build in the background (cached by go.sum; a
# cold build takes ~30 min on 2 cores) while lint and the other tests run; those tests wait for it.
# (`make test` already started it before setup; this is a no-op then.)
scripts/kube-tools.sh --background
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
exec .venv/bin/python -m pytest -p no:cacheprovider tests "$@"
