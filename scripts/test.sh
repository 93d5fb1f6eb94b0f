#!/usr/bin/env bash
# The project's test command (README; .ci/run calls `make test`): lint, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.shipway/tools/bin:$PATH"
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
exec .venv/bin/python -m pytest -p no:cacheprovider tests "$@"
