#!/usr/bin/env bash
# Creates .venv (if missing) and installs the pinned dependencies and agmm itself (editable).
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
log=$(mktemp)
pip_quiet() {
  # pip's own output is long (this machine's find-links warnings); show it only when pip fails.
  if ! .venv/bin/python -m pip install -q --disable-pip-version-check "$@" >"$log" 2>&1; then
    grep -v "^WARNING: Location 'file://" "$log" >&2
    echo "setup.sh: pip install $* failed" >&2
    exit 1
  fi
}
pip_quiet -r requirements.lock
pip_quiet --no-deps --no-build-isolation -e .
rm -f "$log"
.venv/bin/python -c "import agmm, torch; print(f'agmm {agmm.__version__} ready (torch {torch.__version__})')"
