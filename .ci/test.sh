#!/usr/bin/env bash
# Prepare the machine, then run the whole test suite; extra args go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash .ci/setup.sh
export CLARITY_REQUIRE_DOCKER=1   # Docker tests fail, never skip, here
echo "test: .venv/bin/python -m pytest $*" >&2
rc=0
.venv/bin/python -m pytest "$@" || rc=$?
if ((rc == 5)); then
  echo "test: pytest collected no tests; treating that as a failure" >&2
  exit 1
fi
exit "$rc"
