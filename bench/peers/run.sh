#!/usr/bin/env bash
# Times the peer libraries (normflows on PyTorch eager / compiled / CUDA, JAX plain / tuned)
# next to `realnvp bench`, on the same machine in one run. Makes its own venv (PyPI only).
#   bench/peers/run.sh [--rows N] [--threads T] [--models seed4d,d16,d64] [--json out.json]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r "$here/requirements.txt"
fi
(cd "$root" && cargo build --release -q)
exec "$venv/bin/python" "$here/peers.py" --realnvp "$root/target/release/realnvp" "$@"
