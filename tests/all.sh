#!/usr/bin/env bash
# Every test, set-up included: the Rust suite (cargo test --release), then the Python package's
# wheel built with maturin into a virtual environment and its pytest suite (python/tests).
#
#   bash tests/all.sh
#
# The venv is $REALNVP_VENV (default .venv in the checkout; created when missing). GPU tests run
# on any Vulkan adapter (lavapipe on CPU-only machines: apt-get install mesa-vulkan-drivers) and
# are skipped without one, unless REALNVP_REQUIRE_GPU=1 (CI), where they fail instead and a
# skipped Python test fails the run.
#
# Each crate is compiled once (TESTING.md, "CI time"): the tests, the benches' build and the
# Python wheel share target/release (the wheel's build resolves the same features as the test
# build, see Cargo.toml), and the venv's downloads run in the background during the Rust build.
set -euo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d)"
venv="${REALNVP_VENV:-.venv}"
# the Python packages the tests need, installed while cargo compiles (network and unpacking
# against the compiler's CPU); its output is shown if it fails
(
  venv_start=$SECONDS
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || { echo "error: python3 -m venv failed (Debian/Ubuntu: apt-get install python3-venv)"; exit 1; }
  fi
  "$venv/bin/python" -m pip install -q --upgrade pip
  # --no-compile: no .pyc for the thousands of modules the tests never import (torch's)
  "$venv/bin/python" -m pip install -q --no-compile -r python/tests/requirements.txt "maturin>=1.9,<2"
  echo "[all.sh] $((SECONDS - venv_start)) s: the venv's packages installed (in the background)"
) > "$work/venv.log" 2>&1 < /dev/null &
venv_pid=$!
trap 'kill "$venv_pid" 2> /dev/null || true; rm -rf "$work"' EXIT

start=$SECONDS
if cargo nextest --version > /dev/null 2>&1; then
  # every test binary's tests in one pool (.config/nextest.toml), then the doctests, which
  # nextest does not run: together what cargo test --release runs
  cargo nextest run --release --no-fail-fast
  cargo test --release --doc
else
  cargo test --release
fi
echo "[all.sh] $((SECONDS - start)) s: the Rust tests (build included)"
start=$SECONDS
# the criterion benches are not built by cargo test; keep them compiling (only the bench
# target itself compiles here)
cargo build --release --benches
echo "[all.sh] $((SECONDS - start)) s: benches built"

start=$SECONDS
if ! wait "$venv_pid"; then
  cat "$work/venv.log" >&2
  echo "error: setting up the Python environment in $venv failed (above)" >&2
  exit 1
fi
tail -n 1 "$work/venv.log"
echo "[all.sh] $((SECONDS - start)) s: waited for the venv"
start=$SECONDS
py="$venv/bin/python"
# the wheel, built once in target/release beside the tests' build, and installed as a user's would be
"$venv/bin/maturin" build --release --quiet --manifest-path python/Cargo.toml -o "$work/wheels"
"$py" -m pip install -q --force-reinstall --no-deps "$work"/wheels/realnvp-*.whl
echo "[all.sh] $((SECONDS - start)) s: the Python package built and installed"
start=$SECONDS
log="$work/pytest.log"
# log records go to a file of their own (pytest's default is os.devnull, which some sandboxes
# have as a regular file that later readers of /dev/null would see)
"$py" -m pytest python/tests -ra -p no:cacheprovider --durations=10 --log-file "$work/pytest.records" 2>&1 | tee "$log"
echo "[all.sh] $((SECONDS - start)) s: pytest"
if [ "${REALNVP_REQUIRE_GPU:-}" = 1 ] && grep -Eq "[0-9]+ skipped" "$log"; then
  echo "error: Python tests were skipped (REALNVP_REQUIRE_GPU=1 runs every test)" >&2
  exit 1
fi
