#!/usr/bin/env bash
# Every test, set-up included: the Rust suite (cargo test --release), then the Python package
# built with maturin into a virtual environment and its pytest suite (python/tests).
#
#   bash tests/all.sh
#
# The venv is $REALNVP_VENV (default .venv in the checkout; created when missing). GPU tests run
# on any Vulkan adapter (lavapipe on CPU-only machines: apt-get install mesa-vulkan-drivers) and
# are skipped without one, unless REALNVP_REQUIRE_GPU=1 (CI), where they fail instead and a
# skipped Python test fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

start=$SECONDS
cargo test --release
echo "[all.sh] $((SECONDS - start)) s: cargo test --release (build included)"
start=$SECONDS
# the criterion benches are not built by cargo test; keep them compiling
cargo build --release --benches

venv="${REALNVP_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || { echo "error: python3 -m venv failed (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }
fi
py="$venv/bin/python"
"$py" -m pip install -q --upgrade pip
"$py" -m pip install -q -r python/tests/requirements.txt
"$py" -m pip install -q --force-reinstall --no-deps ./python
echo "[all.sh] $((SECONDS - start)) s: benches built, venv and the Python package installed"
start=$SECONDS
log="$(mktemp)"
# log records go to a file of their own (pytest's default is os.devnull, which some sandboxes
# have as a regular file that later readers of /dev/null would see)
"$py" -m pytest python/tests -ra -p no:cacheprovider --log-file "$log.records" 2>&1 | tee "$log"
echo "[all.sh] $((SECONDS - start)) s: pytest"
if [ "${REALNVP_REQUIRE_GPU:-}" = 1 ] && grep -Eq "[0-9]+ skipped" "$log"; then
  echo "error: Python tests were skipped (REALNVP_REQUIRE_GPU=1 runs every test)" >&2
  exit 1
fi
