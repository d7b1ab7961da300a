#!/usr/bin/env bash
# Build the default lab on this machine: set-up (packages, venv, daemons), then playbooks/lab.yml.
# Extra arguments go to ansible-playbook, e.g.  bash scripts/lab.sh -e @my-lab.yml
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(bash "$ROOT/scripts/setup.sh")"
cd "$ROOT"
export PATH="$VENV/bin:$PATH" ANSIBLE_CONFIG="$ROOT/ansible.cfg"
. "$ROOT/scripts/strategy.sh"
nestlab_strategy "$VENV"
exec "$VENV/bin/ansible-playbook" playbooks/lab.yml "$@"
