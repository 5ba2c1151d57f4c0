#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation on stable Rust (the flags
# cargo-fuzz would pass, minus its nightly-only sanitizer) and runs them from seed corpora made
# of the repository's real files.
#
#   fuzz/run.sh                      every target for $FUZZ_SECONDS s (default 45; CI's smoke
#                                    pass: 30), as many at a time as there are cores (each
#                                    target is one single-threaded process)
#   fuzz/run.sh npy -runs=1000000    one target, libFuzzer options after it
#
# Corpora grow in fuzz/corpus/<target> (ignored by git); crashes land in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")"
root=..
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# an explicit --target keeps RUSTFLAGS off build scripts and proc macros (as cargo-fuzz does)
host="$(rustc -vV | sed -n 's/^host: //p')"
# stdin from /dev/null: cargo's rustc probe reads stdin, and CI's may hold anything
cargo build --release --bins --quiet --target "$host" < /dev/null
bin="$CARGO_TARGET_DIR/$host/release"

seed() { # target, files…
  local dir="corpus/$1"; shift
  mkdir -p "$dir"
  for f in "$@"; do cp -f "$f" "$dir/"; done
}
# model files: the Python-written fixture and the committed models of the other tests
seed model_file "$root"/tests/fixtures/python/model.safetensors seeds/model_file/*
# state_dicts, each behind the 4 option bytes of its converter (see fuzz_targets/state_dict.rs)
mkdir -p corpus/state_dict
pt="$root/tests/fixtures/pytorch"
for name in normflows_checkerboard_sigmoid normflows_shuffle_odd normflows_swap_odd normflows_masked_actnorm; do
  { printf '\x02\x00\x00\x00'; cat "$pt/$name.state.safetensors"; } > "corpus/state_dict/$name"
done
{ printf '\x01\x05\x18\x03'; cat "$pt/nflows_realnvp_odd.state.safetensors"; } > corpus/state_dict/nflows_realnvp_odd
{ printf '\x07\x06\x20\x04'; cat "$pt/nflows_realnvp_bn.state.safetensors"; } > corpus/state_dict/nflows_realnvp_bn
seed npy "$root"/tests/fixtures/python/*.npy
seed parquet seeds/parquet/*
mkdir -p artifacts

run() { # target, libFuzzer options…
  local target="$1"; shift
  echo "== $target"
  "$bin/$target" "corpus/$target" -artifact_prefix="artifacts/$target-" \
    -max_len=262144 -rss_limit_mb=4096 -print_final_stats=1 "$@"
}
if [ $# -gt 0 ]; then
  run "$@"
else
  targets=(model_file state_dict npy parquet)
  jobs="$(nproc)"
  logs="$(mktemp -d)"
  pids=()
  for t in "${targets[@]}"; do
    # a free core for each running target; its output is printed when it ends
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    ( run "$t" -max_total_time="${FUZZ_SECONDS:-45}" > "$logs/$t.log" 2>&1 ) &
    pids+=("$!")
  done
  status=0
  for k in "${!targets[@]}"; do
    rc=0
    wait "${pids[$k]}" || rc=$?
    cat "$logs/${targets[$k]}.log"
    if [ "$rc" != 0 ]; then echo "error: fuzz target ${targets[$k]} failed (exit $rc): a crash is in fuzz/artifacts/" >&2; status=1; fi
  done
  rm -rf "$logs"
  exit "$status"
fi
