#!/usr/bin/env bash
# Refresh the dependency lock used by `make test`, `make demo` and CI (`make lock` runs this).
#
#   requirements.lock        every dependency of ".[test]" except torch, exact versions + sha256 hashes
#                            (uv pip compile; hashes cover every file of each release, so the
#                            lock installs on any linux x86_64 CPython 3.11)
#   requirements-torch.lock  the torch version alone, WITHOUT a hash: on these machines torch is
#                            the local CPU wheel that pip finds through its find-links (and
#                            ../shared/ci/constraints.txt pins); elsewhere pip takes the registry's.
#
# torch's own dependencies are resolved against the CPU wheel (found through PIP_FIND_LINKS or
# pip's configured find-links), so no CUDA packages enter the lock. Usage:
#   tools/lock.sh                 # newest releases allowed by pyproject.toml, torch as pinned now
#   TORCH=2.14.0 tools/lock.sh    # move torch too
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
UV_VERSION=0.13.9
TOOLS=.venv-tools
if [ ! -x "$TOOLS/bin/uv" ]; then
  "$PY" -m venv "$TOOLS"
  "$TOOLS/bin/pip" install --quiet "uv==$UV_VERSION"
fi
TORCH=${TORCH:-$(sed -n 's/^torch==\([^ ]*\).*/\1/p' requirements-torch.lock)}
LINKS=${PIP_FIND_LINKS:-$(pip config get global.find-links 2>/dev/null || true)}
args=()
for d in $LINKS; do args+=(--find-links "$d"); done
wheel=$(for d in $LINKS; do ls "$d"/torch-"$TORCH"+cpu-*.whl 2>/dev/null; done | head -1)
if [ -z "$wheel" ]; then
  echo "tools/lock.sh: no CPU wheel torch-$TORCH+cpu in the find-links ($LINKS); the lock would pull CUDA packages." >&2
  echo "Put the CPU wheel in a find-links folder (PIP_FIND_LINKS=DIR) or set TORCH to a version you have." >&2
  exit 2
fi
override=$(mktemp)
trap 'rm -f "$override"' EXIT
echo "torch==$TORCH+cpu" > "$override"
"$TOOLS/bin/uv" pip compile pyproject.toml --extra test --generate-hashes --quiet \
  --python-version 3.11 --python-platform x86_64-manylinux_2_28 "${args[@]}" \
  --override "$override" --no-emit-package torch --custom-compile-command "make lock" -o requirements.lock.tmp
mv requirements.lock.tmp requirements.lock
printf '# torch comes from the local CPU wheel (find-links / PIP_CONSTRAINT) here, the registry elsewhere; see tools/lock.sh\ntorch==%s\n' "$TORCH" > requirements-torch.lock.tmp
mv requirements-torch.lock.tmp requirements-torch.lock
echo "locked $(grep -c '^[A-Za-z0-9].*==' requirements.lock) packages + torch==$TORCH"
