#!/usr/bin/env bash
# Mutation testing (TESTING.md): cargo-mutants over the modules where a wrong number is silent,
# each with the tests that guard it (fast ones first: cargo test stops at the first failing
# test binary), and the WGSL shaders through tests/wgsl_mutants.py.
#
#   bash tests/mutants.sh                      every group, one mutant in $SHARDS (default 8),
#                                              shard $SHARD (default 0) of each
#   SHARDS=1 bash tests/mutants.sh convert     every mutant of one group
#   WGSL_MUTANTS=30 bash tests/mutants.sh wgsl 30 WGSL mutants drawn at random (seed $SHARD)
#   bash tests/mutants.sh --list               the groups
#   bash tests/mutants.sh --ci                 CI's bounded run (below)
#
# Needs cargo-mutants (`cargo install cargo-mutants --locked`) and, for the GPU groups, an
# adapter (lavapipe: WGPU_BACKEND=vulkan REALNVP_REQUIRE_GPU=1). Mutates the checkout in
# place (restored after each mutant; run it on a committed tree) and builds with
# `--profile mutants` (the crate at opt-level 1: a mutant rebuilds in ~15 s). Results:
# mutants.out/<group>/mutants.out/ (missed.txt, caught.txt, timeout.txt, unviable.txt) and
# mutants.out/wgsl/outcomes.json. Exits non-zero when a mutant is missed (a timeout counts as
# caught: the mutant hangs the tests).
set -euo pipefail
cd "$(dirname "$0")/.."

# group | files (-f each) | cargo test arguments
groups=(
  "reference|src/reference.rs|--test properties --test native --test reference_math"
  "native_kernels|src/native/kernels.rs|--lib --test native"
  "native_engine|src/native/mod.rs|--test native --test properties --test verify --test sample"
  "sample|src/sample.rs src/random.rs|--lib --test sample --test format --test properties"
  "pipeline|src/pipeline.rs|--lib --test cli --test parquet --test bad_input --test plot --test sample"
  "convert|src/convert.rs|--lib --test convert"
  "verify|src/verify.rs|--test verify"
  "gpu_kernel|src/gpu/kernel/unrolled.rs src/gpu/kernel/interpreter.rs src/gpu/kernel/tiled.rs src/gpu/kernel/source.rs src/gpu/kernel/abi.rs src/gpu/kernel/mod.rs|--lib --test gpu"
  "npy|src/npy.rs|--test bad_input --test cli --test parquet"
)

# CI's bounded run (.ci/run): modules whose every viable mutant was caught in full runs
# (TESTING.md), as many mutants as fit in $MUTANTS_SECONDS (default 240; CI 120), built in place with
# the release profile that the test command has just built (each mutant rebuilds the crate
# and its test binaries: ~1 min on 2 cores). The mutants are taken one at a time (round-robin
# shards of one mutant each) from a start chosen by the commit, so a rerun repeats them and
# other commits test other mutants. A missed mutant fails CI: a test stopped guarding its
# module.
if [ "${1:-}" = --ci ]; then
  files=(-f src/npy.rs -f src/philox.rs)
  tests=(--lib --test bad_input --test cli --test parquet)
  budget="${MUTANTS_SECONDS:-240}"
  total="$(cargo mutants --list "${files[@]}" | wc -l)"
  [ "$total" -gt 0 ] || { echo "error: cargo mutants lists no mutant in ${files[*]}" >&2; exit 1; }
  first="$(( 0x$(git rev-parse --short=7 HEAD) % total ))"
  echo "== bounded mutation run: $total mutants of src/npy.rs src/philox.rs, from number $first, for ${budget} s"
  start=$SECONDS
  last=0
  done_count=0
  while [ "$done_count" -lt "$total" ]; do
    # stop before a mutant that would not fit (the last one's time as the estimate); one always runs
    if [ "$done_count" -gt 0 ] && [ $(( SECONDS - start + last )) -gt "$budget" ]; then break; fi
    k=$(( (first + done_count) % total ))
    t0=$SECONDS
    mkdir -p "mutants.out/ci/$k"
    rc=0
    cargo mutants --in-place --profile release --baseline skip --timeout 150 --build-timeout 900 --no-shuffle \
      --sharding round-robin --shard "$k/$total" "${files[@]}" -o "mutants.out/ci/$k" -- "${tests[@]}" || rc=$?
    # 2: the mutant was missed (3, a timeout, counts as caught: it hangs the tests)
    [ "$rc" = 0 ] || [ "$rc" = 3 ] || { echo "error: mutant $k/$total was not caught (mutants.out/ci/$k)" >&2; exit "$rc"; }
    last=$(( SECONDS - t0 ))
    done_count=$(( done_count + 1 ))
  done
  echo "== bounded mutation run: $done_count of $total mutants, all caught, in $(( SECONDS - start )) s"
  exit 0
fi

if [ "${1:-}" = --list ]; then
  printf '%s\n' "${groups[@]}" "wgsl|shaders/*.wgsl|tests/wgsl_mutants.py"
  exit 0
fi
shards="${SHARDS:-8}"
shard="${SHARD:-0}"
timeout="${MUTANT_TIMEOUT:-240}"
status=0
for g in "${groups[@]}"; do
  IFS='|' read -r name files tests <<<"$g"
  if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then continue; fi
  fs=()
  for f in $files; do fs+=(-f "$f"); done
  echo "== $name: shard $shard/$shards of ${files}"
  mkdir -p "mutants.out/$name"
  # shellcheck disable=SC2086
  cargo mutants --in-place --profile mutants --baseline skip --timeout "$timeout" --no-shuffle \
    --sharding round-robin --shard "$shard/$shards" "${fs[@]}" -o "mutants.out/$name" \
    -- $tests || { rc=$?; [ "$rc" = 3 ] || status=$rc; }
done
if [ $# -eq 0 ] || [[ " $* " == *" wgsl "* ]]; then
  n="${WGSL_MUTANTS:-$(( $(python3 tests/wgsl_mutants.py --list 2>/dev/null | wc -l) / shards ))}"
  echo "== wgsl: $n mutants drawn (seed $shard)"
  python3 tests/wgsl_mutants.py --profile mutants --sample "$n" --seed "$shard" --out mutants.out/wgsl || status=$?
fi
exit "$status"
