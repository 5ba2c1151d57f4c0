"""realnvp.ray on a local Ray cluster (ray.init(num_cpus=2)): a Parquet dataset of 8 files
scored by an actor pool equals the single-process CLI row for row, a worker killed mid-run is
retried, and cluster sampling equals `realnvp sample`."""

import os
import signal
import threading
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402

import realnvp  # noqa: E402
import realnvp.ray as rr  # noqa: E402
from conftest import F32_TOL, rel_err  # noqa: E402

FEATURES = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    yield
    ray.shutdown()


def write_dataset(directory, files, rows, seed=0, row_group_size=None, first_id=0):
    """`files` Parquet files: id (int64), a (float32), b, c, d (float64); c NaN in every 500th
    row, d null in every 333rd; returns the table as one."""
    rng = np.random.default_rng(seed)
    tables = []
    for k in range(files):
        x = rng.standard_normal((rows, 4))
        i = np.arange(rows)
        t = pa.table({
            "id": np.arange(first_id + k * rows, first_id + (k + 1) * rows),
            "a": x[:, 0].astype(np.float32),
            "b": x[:, 1],
            "c": np.where(i % 500 == 7, np.nan, x[:, 2]),
            "d": pa.array(x[:, 3], mask=(i % 333 == 5)),
        })
        pq.write_table(t, os.path.join(directory, f"part-{k:02d}.parquet"), row_group_size=row_group_size)
        tables.append(t)
    return pa.concat_tables(tables)


def cli_scores(cli, model, directory, out_dir):
    """`realnvp score` of every file, one process each, concatenated: id → log p (None for null)."""
    scores = {}
    for name in sorted(os.listdir(directory)):
        out = os.path.join(out_dir, name)
        cli("score", "--model", model, "--input", os.path.join(directory, name), "--columns", ",".join(FEATURES),
            "--keep", "id", "--output", out, "--device", "native", "--quiet")
        t = pq.read_table(out)
        scores.update(zip(t.column("id").to_pylist(), t.column("log_prob").to_pylist()))
    return scores


def arrow(ds):
    """A Ray Dataset as one Arrow table (Arrow keeps null and NaN apart; pandas may not)."""
    return pa.concat_tables(ray.get(ds.to_arrow_refs()))


def check_scored(table, scores, reference):
    """The cluster's rows: every id once, log p null exactly where the CLI's is, NaN where the
    CLI's is, equal to the CLI's and to the float64 reference within float32 tolerance."""
    table = table.sort_by("id")
    ids = table.column("id").to_pylist()
    assert len(ids) == len(scores) and len(set(ids)) == len(ids) and set(ids) == set(scores)
    null = table.column("log_prob").is_null().to_numpy(zero_copy_only=False)
    assert (null == np.array([scores[i] is None for i in ids])).all()
    got = table.column("log_prob").to_numpy(zero_copy_only=False).astype(np.float64)
    cli = np.array([np.nan if scores[i] is None else scores[i] for i in ids], np.float64)
    assert np.array_equal(np.isnan(got), np.isnan(cli))
    assert rel_err(got, cli) <= F32_TOL
    assert rel_err(got, reference(table)) <= F32_TOL


def reference_of(model):
    ref = realnvp.load(model, device="cpu")

    def run(table):
        x = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in FEATURES]).astype(np.float64)
        return ref.log_prob(x)

    return run


def read(reader, data):
    """The dataset in `data` as 8 blocks, read by Ray's reader or realnvp.ray's."""
    if reader == "ray":
        return ray.data.read_parquet(str(data)).repartition(8)
    return rr.read_parquet(str(data), blocks=8)


@pytest.mark.parametrize("concurrency,reader", [(2, "ray"), (None, "ray"), (None, "realnvp")],
                         ids=["actors", "tasks", "tasks-realnvp-reader"])
def test_cluster_scores_equal_the_cli_row_for_row(cluster, cli, models, tmp_path, concurrency, reader):
    data, outs = tmp_path / "data", tmp_path / "cli"
    data.mkdir(), outs.mkdir()
    table = write_dataset(data, files=8, rows=3000, row_group_size=1000)
    model = models["d5_tanh"].with_name("d4.safetensors")
    cli("init", "--dim", 4, "--layers", 4, "--hidden", "16,16", "--seed", 21, "-o", model)
    scored = rr.score(read(reader, data), model, columns=FEATURES, device="native",
                      concurrency=concurrency, num_cpus=0.5, threads=1, batch_size=1000)
    out = arrow(scored)
    assert out.column_names == ["id", "a", "b", "c", "d", "log_prob"]
    check_scored(out, cli_scores(cli, model, data, outs), reference_of(model))
    assert out.column("log_prob").null_count == table.column("d").null_count > 0
    finite = out.column("log_prob").to_numpy(zero_copy_only=False).astype(np.float64)
    assert np.isnan(finite).sum() == table.column("d").null_count + 8 * 6  # null rows, NaN rows (6 per file)
    finite = finite[np.isfinite(finite)]
    assert rr.mean_log_prob(scored) == pytest.approx(finite.mean(), rel=1e-12)


def test_actors_that_would_hold_every_cpu_are_sized_to_leave_the_reads_some(cluster, cli, models, tmp_path):
    # issue #31: concurrency=2 on a 2-CPU cluster waited forever (the actors held both CPUs,
    # the read tasks never started); left out, num_cpus is now sized to fit, and given, a
    # value that cannot fit is refused at once
    data = tmp_path / "data"
    data.mkdir()
    table = write_dataset(data, files=2, rows=500)
    model = tmp_path / "d4.safetensors"
    cli("init", "--dim", 4, "--layers", 2, "--hidden", "8", "--seed", 5, "-o", model)
    with pytest.raises(ValueError, match=r"of the cluster's 2 CPUs.*num_cpus=0.5 or less"):
        rr.score(ray.data.read_parquet(str(data)), model, columns=FEATURES, device="native", concurrency=2, num_cpus=1)
    done = {}

    def run():
        scored = rr.score(ray.data.read_parquet(str(data)), model, columns=FEATURES, device="native", concurrency=2,
                          threads=1)
        done["out"] = arrow(scored)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=90)
    assert "out" in done, "scoring with concurrency=2 on 2 CPUs did not finish in 90 s"
    assert done["out"].num_rows == table.num_rows


@pytest.mark.parametrize("concurrency,reader", [(2, "ray"), (None, "realnvp")], ids=["actors", "tasks"])
def test_a_killed_worker_is_retried_and_nothing_is_lost(cluster, cli, tmp_path, concurrency, reader):
    data, outs = tmp_path / "data", tmp_path / "cli"
    data.mkdir(), outs.mkdir()
    write_dataset(data, files=8, rows=3000, seed=1)
    # a slow model on the float64 reference: the run lasts several seconds
    model = tmp_path / "slow.safetensors"
    cli("init", "--dim", 4, "--layers", 8, "--hidden", "128,128", "--seed", 22, "--f64", "-o", model)
    # Ray 2.60 packs small files into one read block (one actor would get every row):
    # eight blocks keep both workers busy
    scored = rr.score(read(reader, data), model, columns=FEATURES, device="cpu", concurrency=concurrency, num_cpus=0.5,
                      threads=1, batch_size=250)
    killed = []

    def scorer_cpu_ticks():
        """pid → CPU clock ticks (user + system) of every Ray worker process scoring: titled
        ray::MapWorker(MapBatches(_Scorer))… (actors) or …MapBatches(_score_task)… (tasks),
        with the engine loaded (Linux /proc)."""
        ticks = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    title = f.read()
                    if b"MapBatches(_Scorer)" not in title and b"MapBatches(_score_task)" not in title:
                        continue
                with open(f"/proc/{pid}/maps") as f:
                    if "_realnvp" not in f.read():
                        continue
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                ticks[int(pid)] = int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14, 15)
            except (OSError, IndexError, ValueError):
                pass
        return ticks

    def kill_one_busy_actor():
        """Kills an actor while it scores: one whose CPU time grew over the last 0.5 s (an idle
        actor, or one the pool is retiring, is left alone; one that exits first is passed over)."""
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            before = scorer_cpu_ticks()
            time.sleep(0.5)
            after = scorer_cpu_ticks()
            busy = sorted((after[p] - before[p], p) for p in after if p in before and after[p] - before[p] >= 10)
            if busy:
                try:
                    os.kill(busy[-1][1], signal.SIGKILL)
                    killed.append(time.time())
                except ProcessLookupError:
                    pass

    killer = threading.Thread(target=kill_one_busy_actor)
    killer.start()
    out = arrow(scored)
    finished = time.time()
    killer.join()
    assert killed, "no busy actor was found to kill"
    assert killed[0] < finished - 1.0, "the actor was killed mid-run, not after it"
    check_scored(out, cli_scores(cli, model, data, outs), reference_of(model))


def test_read_parquet_reads_every_row_once_in_tasks_that_fuse_with_scoring(cluster, cli, tmp_path):
    """realnvp.ray.read_parquet over a directory tree: every row of every .parquet file once
    (Spark's _SUCCESS and hidden or temporary files left out), only the columns asked for,
    nulls kept, in the number of read tasks asked for; score's tasks fuse with them."""
    data = tmp_path / "data"
    (data / "year=2026").mkdir(parents=True)
    table = pa.concat_tables([write_dataset(data, files=3, rows=2500, row_group_size=700),
                              write_dataset(data / "year=2026", files=2, rows=1200, seed=4, first_id=10_000)])
    (data / "_SUCCESS").write_bytes(b"")
    pq.write_table(table.slice(0, 10), data / ".in-progress.parquet")
    pq.write_table(table.slice(0, 10), data / "_temporary.parquet")
    (data / "year=2026" / "loop").symlink_to(data)  # not followed: each file once
    ds = rr.read_parquet(str(data), columns=["id", "a", "d"], blocks=5)
    assert ds.schema().names == ["id", "a", "d"]
    got = arrow(ds).sort_by("id")
    want = table.select(["id", "a", "d"]).sort_by("id")
    assert got.column("id").to_pylist() == want.column("id").to_pylist()  # each row once
    assert got.equals(want)  # values, float32/float64 types and nulls
    assert got.column("d").null_count > 0
    assert "ReadParquetFiles: 5 tasks executed" in rr.read_parquet(str(data), blocks=5).materialize().stats()
    model = tmp_path / "d4.safetensors"
    cli("init", "--dim", 4, "--layers", 2, "--hidden", "8", "--seed", 3, "-o", model)
    scored = rr.score(rr.read_parquet(str(data), blocks=5), model, columns=FEATURES, device="native",
                      threads=1).materialize()
    assert scored.count() == table.num_rows
    assert "ReadParquetFiles->MapBatches(_score_task)" in scored.stats()


def test_read_parquet_refuses_bad_input_with_the_file_named(cluster, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        rr.read_parquet(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .parquet files"):
        rr.read_parquet(str(tmp_path / "empty"))
    data = tmp_path / "data"
    data.mkdir()
    write_dataset(data, files=2, rows=100)
    with pytest.raises(ValueError, match=r"part-00.parquet: no column\(s\) \['e'\]"):
        rr.read_parquet(str(data), columns=["a", "e"])
    pq.write_table(pa.table({"a": np.zeros(5, np.float64)}), data / "part-02.parquet")  # a: float64, not float32
    with pytest.raises(ValueError, match="part-02.parquet and .*part-00.parquet differ"):
        rr.read_parquet(str(data), columns=["a"])
    (data / "part-02.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="part-02.parquet: not a readable Parquet file"):
        rr.read_parquet(str(data))
    with pytest.raises(ValueError, match="blocks must be >= 1"):
        rr.read_parquet(str(data / "part-00.parquet"), blocks=0)


def test_cluster_sampling_equals_realnvp_sample(cluster, cli, models, tmp_path):
    model = models["d5_tanh"]
    ds = rr.sample(model, 3001, seed=11, shards=3, device="native", first_row=50, temperature=0.9)
    df = ds.to_pandas().sort_values("row")
    cli("sample", "--model", model, "-n", 3001, "--seed", 11, "--first-row", 50, "--temperature", 0.9,
        "--device", "native", "--output", tmp_path / "s.parquet", "--quiet")
    want = pq.read_table(tmp_path / "s.parquet").to_pandas()
    assert list(df.columns) == list(want.columns) == ["row", "x0", "x1", "x2", "x3", "x4", "log_q"]
    np.testing.assert_array_equal(df["row"].to_numpy(), np.arange(50, 3051))
    for c in want.columns:
        np.testing.assert_array_equal(df[c].to_numpy(), want[c].to_numpy(), err_msg=c)


def test_feature_names_choose_the_columns_and_name_the_samples(cluster, cli, tmp_path):
    """A model recording its feature names (here in another order than the files') scores
    those columns by default, as the CLI does without --columns, and names its samples by
    them."""
    model = tmp_path / "named.safetensors"
    cli("init", "--dim", 4, "--layers", 3, "--hidden", "8", "--seed", 5, "--feature-names", "d,b,c,a", "-o", model)
    assert realnvp.load(model, device="cpu").info["features"] == ["d", "b", "c", "a"]
    data = tmp_path / "data"
    data.mkdir()
    write_dataset(data, 2, 500, seed=3)
    table = arrow(rr.score(ray.data.read_parquet(str(data)), str(model), device="native"))
    out = tmp_path / "cli.parquet"
    cli("score", "--model", model, "--input", data / "part-00.parquet", "--keep", "id", "--output", out,
        "--device", "native", "--quiet")
    want = pq.read_table(out)
    got = table.sort_by("id").slice(0, 500)
    assert got.column("id").to_pylist() == want.column("id").to_pylist()
    a, b = got.column("log_prob").to_numpy(zero_copy_only=False), want.column("log_prob").to_numpy(zero_copy_only=False)
    assert np.array_equal(np.isnan(a.astype(np.float64)), np.isnan(b.astype(np.float64)))
    assert rel_err(a, b) <= F32_TOL
    samples = rr.sample(str(model), 20, seed=1, shards=2, device="native").to_pandas()
    assert sorted(samples.columns) == sorted(["row", "d", "b", "c", "a", "log_q"])


def test_bad_arguments_are_refused(cluster, models, tmp_path):
    ds = ray.data.from_items([{"a": 1.0, "b": 2.0}])
    with pytest.raises(ValueError, match="D = 5 but 2 feature columns"):
        rr.score(ds, models["d5_tanh"])
    with pytest.raises(ValueError, match="shards >= 1"):
        rr.sample(models["d5_tanh"], 10, seed=1, shards=0)
