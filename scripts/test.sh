#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up (packages, venv, daemons), then pytest.
# Extra arguments go to pytest, e.g.  bash scripts/test.sh -k planner
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(bash "$ROOT/scripts/setup.sh")"
cd "$ROOT"
export PATH="$VENV/bin:$PATH" ANSIBLE_CONFIG="$ROOT/ansible.cfg"
. "$ROOT/scripts/strategy.sh"
nestlab_strategy "$VENV"
exec "$VENV/bin/python" -m pytest "$@"
