"""Shared fixtures: the CLI (to compare the bindings with the Rust engines it runs) and random
models written by `realnvp init`."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import realnvp

ROOT = Path(__file__).resolve().parents[2]

#: verify's float32 tolerance: |Δ| / (1 + |reference|) per value.
F32_TOL = 2e-4


def rel_err(a, ref):
    """Largest |a − ref| / (1 + |ref|); equal values (infinities too) and NaN against NaN count as 0."""
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    both_nan = np.isnan(a) & np.isnan(ref)
    err = np.abs(a - ref) / (1 + np.abs(ref))
    err[both_nan | (a == ref)] = 0
    return float(np.max(err, initial=0.0))


@pytest.fixture(scope="session")
def cli():
    """Runs the `realnvp` binary ($REALNVP_BIN, else cargo's release build, in $CARGO_TARGET_DIR
    or target/; built by `cargo build --release` if it is not there)."""
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    exe = Path(os.environ.get("REALNVP_BIN") or target / "release" / "realnvp")
    if not exe.exists():
        subprocess.run(["cargo", "build", "--release", "--bin", "realnvp"], cwd=ROOT, check=True)

    def run(*args):
        done = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    return run


@pytest.fixture(scope="session")
def models(cli, tmp_path_factory):
    """Random non-trivial models: (name → path). Odd D, several activations and scale functions,
    float64 parameters."""
    d = tmp_path_factory.mktemp("models")
    specs = {
        "d5_tanh": ["--dim", 5, "--layers", 4, "--hidden", "16,16", "--activation", "tanh", "--seed", 11],
        "d3_leaky_sigmoid": ["--dim", 3, "--layers", 3, "--hidden", "8", "--activation", "leaky_relu:0.2",
                             "--scale-fn", "sigmoid", "--seed", 12],
        "d8_gelu_tanhexp": ["--dim", 8, "--layers", 6, "--hidden", "32,32", "--activation", "gelu",
                            "--scale-fn", "tanh-exp", "--s-output", "tanh", "--seed", 13],
        "d2_relu": ["--dim", 2, "--layers", 2, "--hidden", "4", "--seed", 14],
    }
    paths = {}
    for name, args in specs.items():
        paths[name] = d / f"{name}.safetensors"
        cli("init", *args, "--f64", "-o", paths[name])
    return paths


def open_flow(path, device, **kw):
    """realnvp.load, with the interpreted GPU kernel: lavapipe (CI's GPU) compiles unrolled
    kernels of the larger models for minutes; tests/gpu.rs covers the unrolled form."""
    if device.startswith("gpu"):
        kw.setdefault("kernel", "interpreted")
        if not realnvp.devices() and os.environ.get("REALNVP_REQUIRE_GPU") != "1":
            pytest.skip("no GPU adapter (install mesa-vulkan-drivers for lavapipe)")
    return realnvp.load(path, device=device, **kw)


def float32_engines():
    """(device, kernel) of the float32 engines to check: native, and the GPU where there is an
    adapter (always under REALNVP_REQUIRE_GPU=1, as in CI)."""
    engines = [("native", "auto")]
    if realnvp.devices() or os.environ.get("REALNVP_REQUIRE_GPU") == "1":
        engines.append(("gpu", "interpreted"))
    return engines


def rows(n, d, seed, scale=1.5):
    return (np.random.default_rng(seed).standard_normal((n, d)) * scale).astype(np.float64)
