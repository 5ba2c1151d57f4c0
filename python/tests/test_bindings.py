"""The Python bindings against the Rust engines (through the CLI) and the float64 reference, on
random models: every dtype and memory layout, zero and one rows, NaN rows, bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

import realnvp
from conftest import F32_TOL, open_flow, rel_err, rows

DEVICES = ["native", "gpu"]


def test_log_prob_equals_the_cli_on_every_model(models, cli, tmp_path):
    """Python and `realnvp score` run the same engine on the same rows: identical values; the
    float64 reference through Python equals the CLI's float64 reference exactly."""
    for name, path in models.items():
        flow = realnvp.load(path, device="native")
        x = rows(1000, flow.dim, seed=1)
        np.save(tmp_path / "x.npy", x.astype(np.float32))
        for device, dtype in [("native", np.float32), ("cpu", np.float64)]:
            out = tmp_path / f"{device}.npy"
            cli("score", "--model", path, "--input", tmp_path / "x.npy", "--output", out, "--device", device,
                "--quiet", *(["--f64"] if dtype == np.float64 else []))
            got = open_flow(path, device).log_prob(x.astype(np.float32))
            assert got.dtype == dtype, name
            np.testing.assert_array_equal(got, np.load(out), err_msg=f"{name} on {device}")


@pytest.mark.parametrize("device", DEVICES)
def test_every_pass_agrees_with_the_float64_reference(models, device):
    for name, path in models.items():
        ref = realnvp.load(path, device="cpu")
        flow = open_flow(path, device)
        x = rows(700, flow.dim, seed=2)
        assert rel_err(flow.log_prob(x), ref.log_prob(x)) <= F32_TOL, name
        z, ld = flow.forward(x)
        z_ref, ld_ref = ref.forward(x)
        assert rel_err(z, z_ref) <= F32_TOL and rel_err(ld, ld_ref) <= F32_TOL, name
        x2, ld2 = flow.inverse(z_ref)
        x2_ref, ld2_ref = ref.inverse(z_ref)
        assert rel_err(x2, x2_ref) <= F32_TOL and rel_err(ld2, ld2_ref) <= F32_TOL, name
        # the reference's own maps invert each other and their log-dets cancel
        assert rel_err(x2_ref, x) <= 1e-10 and np.max(np.abs(ld_ref + ld2_ref)) <= 1e-10, name


def test_dtypes_and_layouts_all_read_the_same_rows(models):
    """float32/float64, C and Fortran order, strided views, lists: the same rows give the same
    values (float64 input to a float32 engine is rounded to float32 first)."""
    flow = realnvp.load(models["d5_tanh"], device="native")
    ref = realnvp.load(models["d5_tanh"], device="cpu")
    base = rows(600, 5, seed=3)
    x32 = base.astype(np.float32)
    want32 = flow.log_prob(x32)
    want64 = ref.log_prob(x32.astype(np.float64))
    wide = np.zeros((600, 10), np.float32)
    wide[:, ::2] = x32
    variants = {
        "float64": x32.astype(np.float64),
        "fortran float32": np.asfortranarray(x32),
        "fortran float64": np.asfortranarray(x32.astype(np.float64)),
        "strided columns": wide[:, ::2],
        "reversed rows": x32[::-1][::-1],
        "every other row": np.repeat(x32, 2, axis=0)[::2],
        "list": x32.tolist(),
        "big-endian": x32.astype(">f4").astype(np.float32),
    }
    for name, x in variants.items():
        np.testing.assert_array_equal(flow.log_prob(x), want32, err_msg=name)
        np.testing.assert_array_equal(ref.log_prob(x), want64, err_msg=name)


def test_c_contiguous_float32_is_read_in_place(models):
    """The extension counts the input values it copies: none for C-contiguous float32 rows on
    a float32 engine (or float64 rows on the reference); every value for other layouts and
    precisions."""
    from realnvp._realnvp import values_copied

    flow = realnvp.load(models["d5_tanh"], device="native")
    ref = realnvp.load(models["d5_tanh"], device="cpu")
    x = rows(1000, 5, seed=4).astype(np.float32)

    def copied(f, a):
        before = values_copied()
        f(a)
        return values_copied() - before

    assert copied(flow.log_prob, x) == 0
    assert copied(lambda a: flow.forward(a), x) == 0
    assert copied(ref.log_prob, x.astype(np.float64)) == 0
    assert copied(flow.log_prob, np.asfortranarray(x)) == x.size
    assert copied(flow.log_prob, x.astype(np.float64)) == x.size
    assert copied(ref.log_prob, x) == x.size
    assert copied(flow.log_prob, x[::2]) == x[::2].size


@pytest.mark.parametrize("device", ["native", "cpu", "gpu"])
def test_zero_and_one_row(models, device):
    flow = open_flow(models["d5_tanh"], device)
    empty = np.zeros((0, 5), np.float32)
    assert flow.log_prob(empty).shape == (0,)
    z, ld = flow.forward(empty)
    assert z.shape == (0, 5) and ld.shape == (0,)
    x, lq = flow.sample(0, seed=1)
    assert x.shape == (0, 5) and lq.shape == (0,)
    one = rows(1, 5, seed=5)
    ref = realnvp.load(models["d5_tanh"], device="cpu")
    assert flow.log_prob(one).shape == (1,)
    assert rel_err(flow.log_prob(one), ref.log_prob(one)) <= F32_TOL


@pytest.mark.parametrize("device", ["native", "cpu", "gpu"])
def test_nan_rows_are_isolated(models, device):
    flow = open_flow(models["d8_gelu_tanhexp"], device)
    x = rows(300, 8, seed=6)
    clean = flow.log_prob(x)
    bad = x.copy()
    bad[7, 3] = np.nan
    bad[100, 0] = np.inf
    bad[299, 7] = -np.inf
    got = flow.log_prob(bad)
    assert np.isnan(got[[7, 100, 299]]).all()
    keep = np.setdiff1d(np.arange(300), [7, 100, 299])
    np.testing.assert_array_equal(got[keep], clean[keep])
    z, ld = flow.forward(bad)
    assert np.isnan(ld[7]) and np.isnan(z[7]).all() and np.isfinite(z[keep]).all()


def test_bad_input_is_refused_with_the_rust_message(models):
    flow = realnvp.load(models["d5_tanh"], device="native")
    with pytest.raises(ValueError, match="D = 5 but the input has 4 columns"):
        flow.log_prob(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"must be 2-D \[n, D = 5\]"):
        flow.log_prob(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="must be 2-D"):
        flow.forward(np.zeros((2, 3, 5), np.float32))
    with pytest.raises(TypeError, match="dtype int64.*float32 or float64"):
        flow.log_prob(np.zeros((3, 5), np.int64))
    with pytest.raises(TypeError, match="float16"):
        flow.inverse(np.zeros((3, 5), np.float16))
    with pytest.raises(TypeError, match="NumPy array or a CPU torch tensor"):
        flow._engine.log_prob("rows")
    with pytest.raises(ValueError, match="temperature must be finite and > 0"):
        flow.sample(3, seed=1, temperature=0.0)
    with pytest.raises(ValueError, match="unknown device"):
        realnvp.load(models["d5_tanh"], device="tpu")
    with pytest.raises(ValueError, match="unknown kernel form"):
        realnvp.load(models["d5_tanh"], kernel="fast")
    with pytest.raises(ValueError, match="threads must be at least 1"):
        realnvp.load(models["d5_tanh"], threads=0)
    with pytest.raises(OSError, match="no-such-model"):
        realnvp.load("no-such-model.safetensors")
    with pytest.raises(TypeError, match="realnvp.load"):
        realnvp.Flow()


def test_sampling_equals_the_cli_row_for_row(models, cli, tmp_path):
    path = models["d5_tanh"]
    for device in ["native", "cpu"]:
        flow = open_flow(path, device)
        x, lq = flow.sample(2000, seed=7, first_row=300, temperature=0.8)
        cli("sample", "--model", path, "-n", 2000, "--seed", 7, "--first-row", 300, "--temperature", 0.8,
            "--device", device, "--output", tmp_path / "s.npy", "--with-log-prob", tmp_path / "q.npy", "--quiet",
            *(["--f64"] if device == "cpu" else []))
        np.testing.assert_array_equal(x, np.load(tmp_path / "s.npy"))
        np.testing.assert_array_equal(lq, np.load(tmp_path / "q.npy"))
        # a pure function of (seed, row): a later shard equals the tail of a larger draw
        tail, tail_lq = flow.sample(500, seed=7, first_row=1800, temperature=0.8)
        np.testing.assert_array_equal(tail, x[1500:])
        np.testing.assert_array_equal(tail_lq, lq[1500:])
    # log q at temperature 1 is the model's log p of the drawn rows
    ref = realnvp.load(path, device="cpu")
    x, lq = ref.sample(500, seed=3)
    assert rel_err(lq, ref.log_prob(x)) <= 1e-12


def test_score_file_is_the_cli_summary(models, cli, tmp_path):
    path = models["d8_gelu_tanhexp"]
    x = rows(5000, 8, seed=8)
    x[17] = np.nan
    np.save(tmp_path / "x.npy", x)
    flow = realnvp.load(path, device="native")
    summary = flow.score_file(tmp_path / "x.npy", tmp_path / "lp.npy", chunk_rows=1000)
    cli_summary = json.loads(cli("score", "--model", path, "--input", tmp_path / "x.npy", "--device", "native",
                                 "--json", "--quiet"))
    for key in ["rows", "finite_rows", "nonfinite_rows", "mean_log_likelihood", "bits_per_dim", "dim"]:
        assert summary[key] == cli_summary[key], key
    assert summary["rows"] == 5000 and summary["nonfinite_rows"] == 1
    np.testing.assert_array_equal(np.load(tmp_path / "lp.npy"), flow.log_prob(x))
    with pytest.raises(OSError, match="no-such"):
        flow.score_file(tmp_path / "no-such.npy")


def test_score_file_reads_fortran_order_and_big_endian_npy(models, tmp_path):
    """np.save of a float DataFrame's to_numpy() (Fortran order), or of big-endian data: the
    file scores as the same rows in memory, across chunk boundaries."""
    path = models["d8_gelu_tanhexp"]
    x = rows(3001, 8, seed=9).astype(np.float32)
    flow = realnvp.load(path, device="native")
    want = flow.log_prob(x)
    for name, saved in [("f.npy", np.asfortranarray(x)), ("b.npy", x.astype(">f4")),
                        ("fb.npy", np.asfortranarray(x.astype(">f4")))]:
        np.save(tmp_path / name, saved)
        flow.score_file(tmp_path / name, tmp_path / "lp.npy", chunk_rows=1000)
        np.testing.assert_array_equal(np.load(tmp_path / "lp.npy"), want, err_msg=name)


def test_score_file_reads_parquet_tables_and_directories(models, tmp_path):
    """A Parquet directory (features in two files, an id column kept) scores like the same rows
    in memory; a missing column is the CLI's error."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = models["d5_tanh"]
    x = rows(3000, 5, seed=12)
    x[7, 2] = np.nan
    (tmp_path / "data").mkdir()
    for k, part in enumerate([slice(0, 1800), slice(1800, 3000)]):
        columns = {"id": np.arange(3000)[part], **{f"f{j}": x[part, j] for j in range(5)}}
        pq.write_table(pa.table(columns), tmp_path / "data" / f"part-{k}.parquet")
    flow = realnvp.load(path, device="native")
    names = [f"f{j}" for j in range(5)]
    summary = flow.score_file(tmp_path / "data", tmp_path / "lp.parquet", columns=names, keep=["id"], chunk_rows=700)
    assert summary["rows"] == 3000 and summary["nonfinite_rows"] == 1
    out = pq.read_table(tmp_path / "lp.parquet")
    assert out.column_names == ["id", "log_prob"] and out.column("id").to_pylist() == list(range(3000))
    np.testing.assert_array_equal(out.column("log_prob").to_numpy(zero_copy_only=False), flow.log_prob(x))
    with pytest.raises(ValueError, match='no column "f9"'):
        flow.score_file(tmp_path / "data" / "part-0.parquet", columns=names[:4] + ["f9"])


@pytest.mark.parametrize("device", ["native", "gpu"])
def test_verify_reports_like_the_cli(models, device):
    flow = open_flow(models["d5_tanh"], device)
    report = flow.verify(rows(2000, 5, seed=9))
    assert report.passed and bool(report)
    assert "PASS" in str(report) and report.details["log_prob"]["compared"] == 2000
    assert report.details["engine"] == flow.engine


def test_save_and_load_round_trip(models, tmp_path):
    flow = realnvp.load(models["d8_gelu_tanhexp"], device="cpu")
    flow.save(tmp_path / "copy.safetensors")
    again = realnvp.load(tmp_path / "copy.safetensors", device="cpu")
    x = rows(100, 8, seed=10)
    np.testing.assert_array_equal(again.log_prob(x), flow.log_prob(x))
    assert (tmp_path / "copy.safetensors").read_bytes() == (models["d8_gelu_tanhexp"]).read_bytes()


def test_save_keeps_the_precision_the_model_was_stored_in(cli, tmp_path):
    # issue #31: a float32 file loaded and saved came back float64 (72 KB -> 137 KB)
    cli("init", "--dim", "6", "--layers", "4", "--hidden", "16,16", "--seed", "3", "-o", tmp_path / "f32.safetensors")
    f32 = realnvp.load(tmp_path / "f32.safetensors", device="cpu")
    f32.save(tmp_path / "again.safetensors")
    assert (tmp_path / "again.safetensors").read_bytes() == (tmp_path / "f32.safetensors").read_bytes()
    f32.save(tmp_path / "wide.safetensors", float32=False)
    assert (tmp_path / "wide.safetensors").stat().st_size > 1.5 * (tmp_path / "f32.safetensors").stat().st_size
    wide = realnvp.load(tmp_path / "wide.safetensors", device="cpu")
    x = rows(50, 6, seed=4)
    np.testing.assert_array_equal(wide.log_prob(x), f32.log_prob(x))
    wide.save(tmp_path / "wide2.safetensors")  # a float64 file stays float64
    assert (tmp_path / "wide2.safetensors").read_bytes() == (tmp_path / "wide.safetensors").read_bytes()
    wide.save(tmp_path / "narrow.safetensors", float32=True)
    assert (tmp_path / "narrow.safetensors").read_bytes() == (tmp_path / "f32.safetensors").read_bytes()


@pytest.mark.parametrize("call", ["flow.sample(10**15)", "flow.sample(2**62)"])
def test_a_sample_too_large_for_memory_raises_instead_of_aborting(models, call):
    # issue #31: flow.sample(10**15) aborted the interpreter ("memory allocation of ... failed");
    # run in a child so that a regression fails this test rather than killing the suite
    code = (
        "import realnvp, sys\n"
        f"flow = realnvp.load({str(models['d5_tanh'])!r}, device='native')\n"
        "try:\n"
        f"    {call}\n"
        "except MemoryError as e:\n"
        "    print('MemoryError:', e); sys.exit(0)\n"
        "sys.exit(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr[-2000:])
    assert "realnvp sample" in done.stdout, done.stdout


def test_info_and_repr(models):
    flow = realnvp.load(models["d5_tanh"], device="native", threads=1)
    info = flow.info
    assert info["dim"] == 5 and info["layers"] == ["coupling"] * 4 and info["dtype"] == "float32"
    assert info["parameters"] > 0 and info["flops_per_row"] > 0
    assert info["gpu_kernel"] == "tiered"  # a small model: interpreted while the unrolled kernel builds
    assert "1 thread" in flow.engine
    assert "D=5, 4 layers" in repr(flow) and flow.engine in repr(flow)
    assert realnvp.load(models["d5_tanh"], device="cpu").dtype == np.float64
    assert isinstance(realnvp.devices(), list)


def test_readme_example_runs(models):
    """python/examples/quickstart.py, the README's Python example, runs and passes its verify."""
    import subprocess
    import sys

    from conftest import ROOT

    done = subprocess.run([sys.executable, str(ROOT / "python" / "examples" / "quickstart.py"), str(models["d5_tanh"]),
                           "--device", "native"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout and "<realnvp.Flow D=5" in done.stdout
