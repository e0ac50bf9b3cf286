#!/usr/bin/env bash
# Build a venv at the lowest bounds of pyproject.toml (`make test-oldest`): uv resolves every
# direct dependency to the lowest release its range allows (transitive ones newest-compatible).
# torch follows PIP_CONSTRAINT when set (here: the local CPU wheel), like every install.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.venv-oldest}
PY=${PY:-python3}
TOOLS=.venv-tools
if [ ! -x "$TOOLS/bin/uv" ]; then
  "$PY" -m venv "$TOOLS"
  "$TOOLS/bin/pip" install --quiet "uv==0.13.9"
fi
rm -rf "$DEST"
"$PY" -m venv "$DEST"
LINKS=${PIP_FIND_LINKS:-$(pip config get global.find-links 2>/dev/null || true)}
args=()
for d in $LINKS; do args+=(--find-links "$d"); done
[ -n "${PIP_CONSTRAINT:-}" ] && args+=(--constraint "$PIP_CONSTRAINT")
"$TOOLS/bin/uv" pip install --quiet --python "$DEST/bin/python" --resolution lowest-direct "${args[@]}" -e ".[test]"
"$TOOLS/bin/uv" pip freeze --python "$DEST/bin/python" > "$DEST/versions.txt"
echo "oldest environment in $DEST (versions in $DEST/versions.txt)"
