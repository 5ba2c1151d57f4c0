#!/bin/bash
# The prepared device check for the benchmarks issue, for a session that is lent a GPU
# (see ../shared/device/README.md): copy to .gpu/ next to the release binary, carry .gl and
# .gpu, run `bash .gpu/gpu-bench.sh` with timeout_s ≈ 300. Results land in $OUT.
#
# What it answers: the d64 log p fraction of the card's FMA rate at 10⁸ rows (the H200
# target) with the tiled kernel (`auto` for d64) against the row interpreter, and its
# rows equal (tiled.txt: `cmp` of the two log p files); which kernel form
# (`--kernel interpreted|unrolled|tiled`) is faster on a hardware GPU for the small models,
# where `auto` runs tiered (interpreter while the unrolled kernel builds, chosen from
# lavapipe figures), and how soon a tiered run switches (whole.txt).
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f $icd ] && export VK_DRIVER_FILES=$icd
export WGPU_BACKEND=vulkan
OUT=${OUT:-$(mktemp -d)}; mkdir -p "$OUT"
B=.gpu/realnvp
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
$B devices 2>&1 | tee "$OUT/devices.txt"
W=$(mktemp -d)
# most important first: a timeout still returns what is already under $OUT
for k in tiled interpreted; do
  $B bench --model d64 --rows 100000000 --device gpu --kernel $k --passes log_prob --max-seconds 30 \
    --json "$OUT/bench_d64_$k.json" 2>&1 | tee -a "$OUT/bench.txt"
done
$B sample --model d64 --rows 1000000 --output $W/x64.npy --device gpu --quiet
for k in tiled interpreted; do
  /usr/bin/time -f "d64 10^6 rows --kernel $k: %e s whole process" $B score --model d64 \
    --input $W/x64.npy --output $W/lp64_$k.npy --device gpu --kernel $k --quiet 2>&1 | tee -a "$OUT/tiled.txt"
done
cmp $W/lp64_tiled.npy $W/lp64_interpreted.npy && echo "d64 tiled == interpreted, bit for bit" | tee -a "$OUT/tiled.txt"
$B init --dim 4 --layers 6 --hidden 32,32 --seed 2024 -o $W/seed4d.safetensors
for k in interpreted unrolled; do
  $B verify --model $W/seed4d.safetensors -n 1000000 --device gpu --kernel $k 2>&1 | tail -3 | tee -a "$OUT/verify.txt"
  $B bench --model seed4d --rows 100000000 --device gpu --kernel $k --max-seconds 20 \
    --json "$OUT/bench_seed4d_$k.json" 2>&1 | tee -a "$OUT/bench.txt"
done
# whole processes: start-up and the tiered switch (auto) against each fixed form, seed4d,
# 256 rows and 10⁷ rows (float32 file in and out)
$B sample --model seed4d --rows 10000000 --output $W/x.npy --device gpu --quiet
$B sample --model seed4d --rows 256 --output $W/x256.npy --device gpu --quiet
for rows in x256 x; do
  for k in auto interpreted unrolled auto; do
    /usr/bin/time -f "seed4d $rows --kernel $k: %e s whole process" $B score --model seed4d \
      --input $W/$rows.npy --output $W/o.npy --device gpu --kernel $k --quiet 2>&1 | grep -E "engine|throughput|whole" | tee -a "$OUT/whole.txt"
  done
done
# d16 unrolled last: its compile is the slowest (a driver may compile all three pipelines at once)
for k in tiled interpreted unrolled; do
  $B bench --model d16 --rows 100000000 --device gpu --kernel $k --passes log_prob --max-seconds 20 \
    --json "$OUT/bench_d16_$k.json" 2>&1 | tee -a "$OUT/bench.txt"
done
