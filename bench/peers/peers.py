"""Peer libraries on the benchmark's three reference architectures, timed side by side with
`realnvp bench` in one run.

Models (same sizes, layers and activations as realnvp's built-in reference models):
  seed4d: D=4, 6 couplings, s and t MLPs [4,32,32,4], ReLU
  d16:    D=16, 8 couplings, [16,64,64,16], leaky ReLU 0.01, s output tanh
  d64:    D=64, 8 couplings, [64,256,256,64], ReLU
all with alternating half masks and a standard normal base.

Peers, each timed on the same N(0, I) float32 rows, best of --repeats after a warm-up:
  torch-eager     normflows NormalizingFlow.log_prob, torch.no_grad
  torch-compile   the same, torch.compile'd (no_grad; inference_mode breaks compile)
  torch-cuda      the same on CUDA, when a GPU is present
  jax-plain       the same math in JAX: jit, float32, batched row-major matrices, unpruned
  jax-tuned       JAX hand-tuned: feature-major, mask-pruned, chunked inside the jit (lax.map,
                  each chunk transposed inside; the best of --chunks tile sizes)
Every peer's log p is checked against jax-plain on the first rows before it is timed.

Usage: bench/peers/run.sh [--rows 1000000] [--threads 2] [--models seed4d,d16,d64]
(run.sh makes the venv from requirements.txt and calls this file; --realnvp PATH adds
`realnvp bench` on the same models to the table.)
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

MODELS = {
    "seed4d": dict(dim=4, layers=6, hidden=32, leaky=0.0, s_tanh=False),
    "d16": dict(dim=16, layers=8, hidden=64, leaky=0.01, s_tanh=True),
    "d64": dict(dim=64, layers=8, hidden=256, leaky=0.0, s_tanh=False),
}


def masks(dim, layers):
    first = [1.0 if i < (dim + 1) // 2 else 0.0 for i in range(dim)]
    return [first if k % 2 == 0 else [1.0 - b for b in first] for k in range(layers)]


def best_of(fn, repeats):
    fn()  # warm-up (compilation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# ---------------------------------------------------------------- normflows / PyTorch
def normflows_model(spec, seed):
    import torch
    import normflows as nf

    torch.manual_seed(seed)
    d, h = spec["dim"], spec["hidden"]
    flows = []
    for b in masks(d, spec["layers"]):
        s = nf.nets.MLP([d, h, h, d], leaky=spec["leaky"], output_fn="tanh" if spec["s_tanh"] else None, init_zeros=False)
        t = nf.nets.MLP([d, h, h, d], leaky=spec["leaky"], init_zeros=False)
        flows.append(nf.flows.MaskedAffineFlow(torch.tensor(b), t, s))
    base = nf.distributions.DiagGaussian(d, trainable=False)
    return nf.NormalizingFlow(base, flows).eval()


def extract(model):
    """(mask, s layers, t layers) per coupling, weights as NumPy float32 [out, in]."""
    import torch

    out = []
    for f in model.flows:
        def layers(net):
            return [(m.weight.detach().numpy(), m.bias.detach().numpy()) for m in net.net if isinstance(m, torch.nn.Linear)]
        out.append((f.b.detach().numpy().reshape(-1), layers(f.s), layers(f.t)))
    return out


def torch_peers(model, x, repeats, threads):
    import torch

    torch.set_num_threads(threads)
    xt = torch.from_numpy(x)
    results = {}
    with torch.no_grad():
        results["torch-eager"] = (best_of(lambda: model.log_prob(xt), repeats), model.log_prob(xt[:1000]).numpy())
        compiled = torch.compile(model.log_prob)
        results["torch-compile"] = (best_of(lambda: compiled(xt), repeats), compiled(xt[:1000]).numpy())
        if torch.cuda.is_available():
            cuda = model.to("cuda")
            xc = xt.to("cuda")

            def run():
                cuda.log_prob(xc)
                torch.cuda.synchronize()

            results["torch-cuda"] = (best_of(run, repeats), cuda.log_prob(xc[:1000]).cpu().numpy())
            model.to("cpu")
    return results


# ---------------------------------------------------------------- JAX
def jax_peers(params, spec, x, repeats, chunks):
    import jax
    import jax.numpy as jnp
    import numpy as np

    d = spec["dim"]
    leaky = spec["leaky"]
    half_log_2pi = 0.5 * d * math.log(2 * math.pi)

    def act(v):
        return jnp.where(v >= 0, v, leaky * v)

    # normflows' math, row-major, full (unpruned) matrices: data→latent is the inverse pass.
    def mlp_rows(layers, v, tanh_out):
        for k, (w, b) in enumerate(layers):
            v = v @ w.T + b
            if k < len(layers) - 1:
                v = act(v)
        return jnp.tanh(v) if tanh_out else v

    @jax.jit
    def plain(xr):
        logdet = jnp.zeros(xr.shape[0], xr.dtype)
        z = xr
        for b, s_layers, t_layers in reversed(params):
            zm = z * b
            s = mlp_rows(s_layers, zm, spec["s_tanh"])
            t = mlp_rows(t_layers, zm, False)
            z = zm + (1 - b) * (z - t) * jnp.exp(-s)
            logdet = logdet - jnp.sum((1 - b) * s, axis=1)
        return -0.5 * jnp.sum(z * z, axis=1) - half_log_2pi + logdet

    # Tuned: feature-major [D, chunk] tiles, first/last Linear pruned to the mask, lax.map over chunks.
    pruned = []
    for b, s_layers, t_layers in reversed(params):
        ident = np.nonzero(b > 0.5)[0]
        trans = np.nonzero(b < 0.5)[0]

        def prune(layers):
            out = []
            for k, (w, bias) in enumerate(layers):
                if k == 0:
                    w = w[:, ident]
                if k == len(layers) - 1:
                    w, bias = w[trans], bias[trans]
                out.append((jnp.asarray(w), jnp.asarray(bias)[:, None]))
            return out

        pruned.append((ident, trans, prune(s_layers), prune(t_layers)))

    def mlp_cols(layers, v, tanh_out):
        for k, (w, b) in enumerate(layers):
            v = w @ v + b
            if k < len(layers) - 1:
                v = act(v)
        return jnp.tanh(v) if tanh_out else v

    def tile(xt):
        feats = [xt[i] for i in range(d)]
        logdet = jnp.zeros_like(feats[0])
        for ident, trans, s_layers, t_layers in pruned:
            inp = jnp.stack([feats[i] for i in ident])
            s = mlp_cols(s_layers, inp, spec["s_tanh"])
            t = mlp_cols(t_layers, inp, False)
            for k, f in enumerate(trans):
                feats[f] = (feats[f] - t[k]) * jnp.exp(-s[k])
            logdet = logdet - jnp.sum(s, axis=0)
        z = jnp.stack(feats)
        return -0.5 * jnp.sum(z * z, axis=0) - half_log_2pi + logdet

    def tuned(chunk):
        @jax.jit
        def run(xr):
            n = xr.shape[0]
            # each chunk transposed inside the map: faster than one transpose of all rows first
            return jax.lax.map(lambda c: tile(c.T), xr.reshape(n // chunk, chunk, d)).reshape(n)

        return run

    # the best tile size differs by model and machine (seed4d: 16,384 rows, d16: 8,192 on a
    # 2-core Xeon), so the tuned peer is timed at each of `chunks` and its best one reported
    xj = jnp.asarray(x)
    results = {"jax-plain": (best_of(lambda: plain(xj).block_until_ready(), repeats), np.asarray(plain(xj[:1000])))}
    for chunk in chunks:
        n = (x.shape[0] // chunk) * chunk
        run = tuned(chunk)
        seconds = best_of(lambda: run(xj[:n]).block_until_ready(), repeats) * x.shape[0] / n
        if "jax-tuned" not in results or seconds < results["jax-tuned"][0]:
            results["jax-tuned"] = (seconds, np.asarray(run(xj[:chunk])[:1000]))
    return results


def realnvp_bench(binary, model, rows, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), WGPU_BACKEND=os.environ.get("WGPU_BACKEND", "vulkan"))
    with_gpu = os.environ.get("PEERS_REALNVP_DEVICES", "native,gpu")
    out = subprocess.run(
        [binary, "bench", "--model", model, "-n", str(rows), "--device", with_gpu, "--passes", "log_prob", "--json", "/tmp/realnvp-bench.json", "--max-seconds", "30"],
        env=env, capture_output=True, text=True,
    )
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return {}
    report = json.load(open("/tmp/realnvp-bench.json"))
    results = {}
    for dev in report["devices"]:
        for p in dev["passes"]:
            label = "realnvp " + ("native" if dev["engine"].startswith("native") else dev["engine"])
            results[label] = (p["rows"] / p["rows_per_second"], p["rows"], dev.get("fma_gflops"), p.get("kernel_rows_per_second"))
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--models", default="seed4d,d16,d64")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunks", default="4096,8192,16384", help="rows per jax-tuned tile: each is timed, the best reported")
    ap.add_argument("--realnvp", help="path of the realnvp binary to time side by side")
    ap.add_argument("--json", help="write all results here")
    args = ap.parse_args()

    import numpy as np

    rng = np.random.default_rng(0)
    table = []
    for name in args.models.split(","):
        spec = MODELS[name]
        x = rng.standard_normal((args.rows, spec["dim"]), dtype=np.float32)
        model = normflows_model(spec, seed=1)
        params = extract(model)
        flops = spec["layers"] * 2 * 2 * ((spec["dim"] // 2) * spec["hidden"] + spec["hidden"] ** 2 + spec["hidden"] * (spec["dim"] // 2))
        results = jax_peers(params, spec, x, args.repeats, [int(c) for c in args.chunks.split(",")])
        results.update(torch_peers(model, x, args.repeats, args.threads))
        reference = results["jax-plain"][1]
        for peer, (seconds, logp) in results.items():
            err = float(np.max(np.abs(logp[: len(reference)] - reference) / (1 + np.abs(reference))))
            if err > 1e-3:
                raise SystemExit(f"{name}: {peer} disagrees with jax-plain (max rel err {err:.2e})")
            table.append(dict(model=name, peer=peer, rows=args.rows, seconds=seconds, rows_per_second=args.rows / seconds, gflops=flops * args.rows / seconds / 1e9))
            print(f"{name:7} {peer:24} {args.rows / seconds:>14,.0f} rows/s", flush=True)
        if args.realnvp:
            for peer, (seconds, rows, fma, kernel) in realnvp_bench(args.realnvp, name, args.rows, args.threads).items():
                table.append(dict(model=name, peer=peer, rows=rows, seconds=seconds, rows_per_second=rows / seconds, gflops=flops * rows / seconds / 1e9, fma_gflops=fma, kernel_rows_per_second=kernel))
                print(f"{name:7} {peer[:24]:24} {rows / seconds:>14,.0f} rows/s ({rows} rows; FMA ceiling {fma} GFLOP/s)", flush=True)
    print("\n| model | implementation | rows | rows/s | GFLOP/s (mask-pruned count) |\n|---|---|---:|---:|---:|")
    for r in table:
        print(f"| {r['model']} | {r['peer']} | {r['rows']} | {r['rows_per_second']:,.0f} | {r['gflops']:.1f} |")
    if args.json:
        json.dump(dict(threads=args.threads, results=table), open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
