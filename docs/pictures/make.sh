#!/usr/bin/env bash
# Regenerates README's pictures from the built-in example (the seed's 4-D flow, `seed4d`):
#
#   bash docs/pictures/make.sh
#
# density.png: the 2-D marginal of dimensions 0 and 2 from 10^6 rows sampled from the model,
# beside the histogram of 20,000 other rows (seed 1) standing in for data; scores.png: the
# log p of those rows with the 1 % quantile marked; bench.png: `realnvp bench` on this machine
# (every device: native, lavapipe where installed, the float64 reference).
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --quiet
realnvp=../../target/release/realnvp
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
$realnvp sample --model seed4d -n 20000 --seed 1 --output "$tmp/x.npy" --device native --quiet
$realnvp plot density --model seed4d --dims 0,2 --data "$tmp/x.npy" --device native --quiet --size 720x480 -o density.png
$realnvp score --model seed4d --input "$tmp/x.npy" --output "$tmp/logp.npy" --device native --quiet > /dev/null
$realnvp plot scores --input "$tmp/logp.npy" --quantile 0.01 --model seed4d --size 720x480 -o scores.png
$realnvp bench --model seed4d -n 200000 --device all,cpu --repeats 2 --max-seconds 10 --json "$tmp/bench.json" > /dev/null
$realnvp plot bench --json "$tmp/bench.json" --size 720x480 -o bench.png
