#!/usr/bin/env bash
# Build the documentation site: the modules' and roles' own docs rendered by antsibull-docs, the
# guides in docs/*.md, one Sphinx build with warnings as errors (a broken link fails it).
#   bash scripts/docs.sh [--guides DIR] [--out DIR]      (default: docs/*.md -> build/docs/html)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GUIDES="$ROOT/docs"
OUT="$ROOT/build/docs"
while [ $# -gt 0 ]; do
  case "$1" in
    --guides) GUIDES="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "docs.sh: unknown argument '$1'; give --guides DIR or --out DIR" >&2; exit 2 ;;
  esac
done
# Python packages only: no libvirt, no QEMU, no system packages (scripts/setup.sh --docs)
VENV="$(bash "$ROOT/scripts/setup.sh" --docs)"
export PATH="$VENV/bin:$PATH" ANSIBLE_CONFIG="$ROOT/ansible.cfg" ANSIBLE_COLLECTIONS_PATH="$ROOT/collections"
SRC="$OUT/src"
rm -rf "$SRC" "$OUT/html"
mkdir -p "$SRC/guides" "$SRC/reference"
cp "$ROOT"/docs/site/*.py "$ROOT"/docs/site/*.rst "$SRC/"
cp "$GUIDES"/*.md "$SRC/guides/"
# the semantic markup in the plugins' documentation (M(), O(), RV() ...) must name things that exist
(cd "$ROOT" && antsibull-docs lint-collection-docs --plugin-docs --skip-rstcheck .)
antsibull-docs collection --use-current --squash-hierarchy --fail-on-error --dest-dir "$SRC/reference" nestlab.pci
sphinx-build -q -W --keep-going -n -b html "$SRC" "$OUT/html"
echo "documentation site: $OUT/html/index.html"
