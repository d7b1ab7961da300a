#!/usr/bin/env bash
# ansible-test sanity on the working tree (tracked and new files that git does not ignore), in a
# temporary ansible_collections/nestlab/pci.
# ansible-test fetches a pip bootstrap script from a host outside the package registries;
# hack/get-pip-shim.py stands in for it (ensurepip, then pip from the package index).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NESTLAB_VENV:-$ROOT/.venv}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
DEST="$WORK/ansible_collections/nestlab/pci"
mkdir -p "$DEST"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
  | tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -x -C "$DEST"
rm -rf "$DEST/collections"          # the checkout's self-link is not part of the collection
git -C "$DEST" init -q && git -C "$DEST" add -A && git -C "$DEST" -c user.name=sanity -c user.email=sanity@localhost commit -qm sanity
PIP_VERSION="$("$VENV/bin/python" -c '
import os, re, ansible_test
src = open(os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")).read()
print(re.search(r"pip=.([0-9.]+).,", src).group(1))')"
mkdir -p ~/.ansible/test/cache
cp "$ROOT/hack/get-pip-shim.py" ~/.ansible/test/cache/get_pip_"${PIP_VERSION//./_}".py
cd "$DEST"
PY="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
"$VENV/bin/ansible-test" sanity --python "$PY" "$@"
