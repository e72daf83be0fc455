#!/usr/bin/env bash
# Installs Synapse from PyPI into a cached venv, for the federation tests and `make bench`.
# The venv lives outside the clone (default ~/.cache/kith/synapse-venv; KITH_SYNAPSE_VENV
# overrides) so later runs reuse it. Prints nothing but errors; the tests find the venv at
# the same path.
set -euo pipefail

VENV="${KITH_SYNAPSE_VENV:-$HOME/.cache/kith/synapse-venv}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import synapse' 2>/dev/null; then
    exit 0
fi
echo "== installing Synapse from PyPI into $VENV (once)"
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q matrix-synapse
"$VENV/bin/python" -c 'import synapse; print("== Synapse", synapse.__version__)'
