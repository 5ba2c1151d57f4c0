"""The Python package against the CLI with the same engine and against PyTorch, side by side in
one run (issue 14's acceptance):

  cli        `realnvp score --device native` of the rows in a .npy file: its own rows/s (scoring,
             file reading included) and the whole process (start-up and model load included)
  python     `flow.log_prob(x)` on the same rows in memory (best of --repeats), and a cold
             `realnvp.load` + `log_prob` in a fresh interpreter (import included)
  torch      normflows `log_prob` eager and `torch.compile`d (peers.py's torch peers)

The model is peers.py's normflows seed4d (D = 4, 6 couplings, [4,32,32,4] ReLU nets) converted
with `realnvp.from_normflows`, so every contender evaluates the very same weights; each
contender's log p is checked against the float64 reference on the first rows before timing.

Usage (a venv with torch, normflows and the realnvp package, e.g. tests/all.sh's .venv):
  .venv/bin/python bench/peers/python_api.py [--rows 1000000] [--threads 2] [--repeats 5]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402

import realnvp  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--realnvp", default=os.path.join(os.path.dirname(__file__), "../../target/release/realnvp"))
    args = ap.parse_args()

    model = peers.normflows_model(peers.MODELS["seed4d"], seed=0)
    x = np.random.default_rng(0).standard_normal((args.rows, 4), dtype=np.float32)
    tmp = tempfile.mkdtemp()
    model_path, x_path = os.path.join(tmp, "seed4d.safetensors"), os.path.join(tmp, "x.npy")
    flow = realnvp.from_normflows(model, device="native", threads=args.threads)
    flow.save(model_path)
    np.save(x_path, x)
    reference = realnvp.load(model_path, device="cpu").log_prob(x[:1000])
    rows = {}

    def check(name, logp):
        err = float(np.max(np.abs(np.asarray(logp, np.float64) - reference) / (1 + np.abs(reference))))
        assert err <= realnvp.FLOAT32_TOLERANCE, f"{name}: {err}"
        return err

    # the CLI, same engine and threads; its summary times the scoring, the wall clock the process
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    cli = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        out = subprocess.run([args.realnvp, "score", "--model", model_path, "--input", x_path, "--device", "native",
                              "--json", "--quiet"], capture_output=True, text=True, check=True, env=env).stdout
        cli.append((json.loads(out)["rows_per_second"], args.rows / (time.perf_counter() - start)))
    rows["cli score (its rows/s)"] = max(c[0] for c in cli)
    rows["cli score (whole process)"] = max(c[1] for c in cli)

    check("python", flow.log_prob(x[:1000]))
    rows["python flow.log_prob"] = args.rows / peers.best_of(lambda: flow.log_prob(x), args.repeats)
    cold = f"import realnvp, numpy as np; x = np.load({x_path!r}); realnvp.load({model_path!r}, device='native', threads={args.threads}).log_prob(x)"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", cold], check=True)
    rows["python cold (import, load, np.load, log_prob)"] = args.rows / (time.perf_counter() - start)

    for name, (seconds, logp) in peers.torch_peers(model, x, args.repeats, args.threads).items():
        check(name, logp)
        rows[name] = args.rows / seconds

    print(f"seed4d, {args.rows} float32 rows, {args.threads} threads, best of {args.repeats}; engine: {flow.engine}")
    cli_rate = rows["cli score (its rows/s)"]
    torch_best = max(v for k, v in rows.items() if k.startswith("torch"))
    for name, rate in rows.items():
        print(f"  {name:<46} {rate / 1e6:8.3f} M rows/s   {rate / cli_rate:5.2f}x cli   {rate / torch_best:5.2f}x best torch")


if __name__ == "__main__":
    main()
