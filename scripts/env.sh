# Source me: `source scripts/env.sh` — the built Pulumi CLI on PATH, the project's file
# backend, no update checks or plugin downloads. The passphrase default is for the
# `local` stack only (docs/security.md); export your own for any other stack.
_shipway_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$_shipway_root/.shipway/tools/bin:$_shipway_root/.venv/bin:$PATH"
export PULUMI_BACKEND_URL="file://$_shipway_root/.shipway/state"
export PULUMI_HOME="$_shipway_root/.shipway/pulumi-home"
export PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE:-shipway-local-dev}"
mkdir -p "$_shipway_root/.shipway/state"
unset _shipway_root
