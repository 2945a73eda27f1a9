#!/usr/bin/env bash
# Prepare the machine, then run `clarity run` in the repo root; extra args go to it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash .ci/setup.sh
echo "demo: clarity run $*" >&2
exec .venv/bin/clarity run "$@"
