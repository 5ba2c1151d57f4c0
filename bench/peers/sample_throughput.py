"""Sampling throughput, side by side in one run (issue #13): `realnvp sample` against
`realnvp inverse` on the same engine (the latent→data pass over a file of N(0, I) rows), and
normflows' eager `model.sample(n)` on the same architecture and thread count.

Usage: python bench/peers/sample_throughput.py --realnvp target/release/realnvp [--rows 1000000]
       [--devices native,gpu] [--models seed4d,d16] [--repeats 3] [--threads 2]
Wall time of each whole command (what a user waits for: start-up, drawing or reading, the
pass, writing the .npy); best of --repeats, the commands alternating.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from peers import MODELS, normflows_model  # noqa: E402

INIT = {
    "seed4d": ["--dim", "4", "--layers", "6", "--hidden", "32,32", "--seed", "2024"],
    "d16": ["--dim", "16", "--layers", "8", "--hidden", "64,64", "--activation", "leaky_relu", "--s-output", "tanh", "--seed", "16"],
}


def wall(cmd):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--realnvp", required=True)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--devices", default="native,gpu")
    ap.add_argument("--models", default="seed4d,d16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--peer", action="store_true", help="also time normflows' model.sample(n)")
    args = ap.parse_args()
    r, n = args.realnvp, str(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        p = lambda name: os.path.join(tmp, name)  # noqa: E731
        print("| model | device | sample rows/s | inverse rows/s | sample / inverse |")
        print("| --- | --- | ---: | ---: | ---: |")
        for model in args.models.split(","):
            m = p(model + ".safetensors")
            subprocess.run([r, "init", *INIT[model], "-o", m], check=True, stdout=subprocess.DEVNULL)
            # N(0, I) latents for inverse: realnvp's own base draws of an identity-free model
            # are not needed; any float32 [N, D] file of standard normals will do
            import numpy as np

            np.save(p("z.npy"), np.random.default_rng(1).standard_normal((args.rows, MODELS[model]["dim"]), dtype=np.float32))
            for device in args.devices.split(","):
                common = ["--model", m, "--device", device, "--quiet"]
                sample = [r, "sample", *common, "-n", n, "--seed", "1", "--output", p("x.npy")]
                inverse = [r, "inverse", *common, "--input", p("z.npy"), "--output", p("x2.npy")]
                wall(sample)  # warm-up: the kernel compile and the page cache
                wall(inverse)
                ts, ti = [], []
                for _ in range(args.repeats):
                    ts.append(wall(sample))
                    ti.append(wall(inverse))
                s, i = args.rows / min(ts), args.rows / min(ti)
                print(f"| {model} | {device} | {s:,.0f} | {i:,.0f} | {s / i:.2f} |", flush=True)
            if args.peer:
                import torch

                torch.set_num_threads(args.threads)
                nf_model = normflows_model(MODELS[model], 0)
                with torch.no_grad():
                    nf_model.sample(1000)
                    times = []
                    for _ in range(args.repeats):
                        start = time.perf_counter()
                        nf_model.sample(args.rows)
                        times.append(time.perf_counter() - start)
                print(f"| {model} | normflows eager `model.sample(n)` (torch {torch.__version__}, {args.threads} threads, in-process) | {args.rows / min(times):,.0f} | | |", flush=True)


if __name__ == "__main__":
    main()
