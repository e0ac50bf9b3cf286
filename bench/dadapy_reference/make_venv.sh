#!/usr/bin/env bash
# Create an isolated virtual environment holding DADApy 0.3.4 (the reference
# implementation) and its own pins (numpy<2, jax==0.4.30, flax==0.8.5), which
# cannot coexist with the project's numpy-2 / torch stack.
#
# Usage:  bash bench/dadapy_reference/make_venv.sh [VENV_DIR]
# Default VENV_DIR: bench/.dadapy-venv (gitignored).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${1:-$ROOT/bench/.dadapy-venv}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
# An empty PIP_CONSTRAINT so that a repo-wide constraint file (e.g. a torch
# pin) does not leak into this environment; DADApy does not need torch.
export PIP_CONSTRAINT=
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "dadapy==0.3.4"
"$VENV/bin/python" -c "import dadapy, numpy, sklearn; print('dadapy', getattr(dadapy, '__version__', '0.3.4'), 'numpy', numpy.__version__, 'sklearn', sklearn.__version__)"
echo "DADApy venv ready at $VENV"
