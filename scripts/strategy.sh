# Sourced by the collection's own entry points (scripts/lab.sh, scripts/test.sh): Ansible's
# strategy for them. Mitogen's mitogen_linear keeps one Python interpreter per host for the whole
# run instead of starting one per task, which is most of a task's time inside a TCG-emulated L1.
# It is used when the virtual environment has Mitogen and the running ansible-core is in the range
# requirements.txt pins it for; otherwise the run uses Ansible's own linear strategy and says why
# in one line. A strategy set by the caller (ANSIBLE_STRATEGY) is left as it is;
# NESTLAB_STRATEGY=linear asks for linear. The roles and modules work under either.
#
#   nestlab_strategy VENV
nestlab_strategy() {
  local venv="$1" found
  if [ -n "${ANSIBLE_STRATEGY:-}" ]; then
    echo "nestlab: Ansible strategy $ANSIBLE_STRATEGY (ANSIBLE_STRATEGY)" >&2
    return 0
  fi
  if [ "${NESTLAB_STRATEGY:-mitogen}" = linear ]; then
    echo "nestlab: Ansible strategy linear (NESTLAB_STRATEGY=linear)" >&2
    return 0
  fi
  found="$("$venv/bin/python" - <<'PY' 2>&1
import os
import sys

try:
    import ansible_mitogen
    from ansible.release import __version__
except Exception as exc:  # any failure to import means: run linear
    print("Mitogen cannot be imported (%s)" % exc)
    sys.exit(1)
version = tuple(int(part) for part in __version__.split(".")[:2])
if not (2, 16) <= version < (2, 20):
    print("ansible-core %s is outside 2.16 to 2.19, the range Mitogen is pinned for here" % __version__)
    sys.exit(1)
print(os.path.join(os.path.dirname(ansible_mitogen.__file__), "plugins", "strategy"))
PY
)" && [ -d "$found" ] || {
    [ -n "$found" ] || found="the strategy plugins of Mitogen are missing"
    echo "nestlab: Ansible strategy linear: $found" >&2
    return 0
  }
  export ANSIBLE_STRATEGY_PLUGINS="$found" ANSIBLE_STRATEGY=mitogen_linear
  echo "nestlab: Ansible strategy mitogen_linear (Mitogen, one interpreter per host for the run)" >&2
}
