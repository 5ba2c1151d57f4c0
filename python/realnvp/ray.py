"""realnvp on a Ray cluster (Ray Data): score datasets with one engine per worker, reduce, and
sample in shards that equal one process's stream row for row.

- :func:`read_parquet`: Parquet files as a Ray Dataset, one read task per group of row groups
  (footers read once on the driver, no per-read actor pool: the cheap read for scoring).
- :func:`score`: ``map_batches`` in Ray tasks (each worker process opens the engine once),
  or an actor pool (``concurrency``; a GPU each with ``num_gpus=1``), appending a log p
  column to every Arrow batch and keeping every input column.
- :func:`mean_log_prob`: the mean over rows with a finite log p (the CLI's summary).
- :func:`sample`: ``shards`` tasks, each drawing its own ``first_row`` range of the stream.

Ray retries work lost with a worker (actors are restarted, their batches re-run); the results
do not depend on which worker ran a batch. docs/SCALING.md says how to size a cluster.

Requires ``ray[data]`` and ``pyarrow`` (not dependencies of realnvp itself).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import ray
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

import realnvp

__all__ = ["read_parquet", "score", "mean_log_prob", "sample"]

ModelLike = Union[str, "os.PathLike[str]", "realnvp.Flow", bytes]


def _model_bytes(model: ModelLike) -> bytes:
    """The model file's bytes, shipped to every worker (no shared file system needed)."""
    if isinstance(model, bytes):
        return model
    if isinstance(model, realnvp.Flow):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "model.safetensors")
            model.save(path)
            with open(path, "rb") as f:
                return f.read()
    with open(os.fspath(model), "rb") as f:
        return f.read()


def _open(model: bytes, device: str, kernel: str, threads: Optional[int]) -> "realnvp.Flow":
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.safetensors")
        with open(path, "wb") as f:
            f.write(model)
        return realnvp.load(path, device=device, kernel=kernel, threads=threads)


def _append_log_prob(flow: "realnvp.Flow", batch: Any, columns: Sequence[str], output_column: str) -> Any:
    """An Arrow batch plus ``output_column``: log p of its feature ``columns`` (in the model's
    order) under ``flow``; null where a feature is null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    missing = [c for c in columns if c not in batch.column_names]
    if missing:
        raise ValueError(f"no column(s) {missing}; the dataset has {batch.column_names}")
    features = [batch.column(c) for c in columns]
    for name, column in zip(columns, features):
        if not pa.types.is_floating(column.type):
            raise TypeError(f"column {name!r} is {column.type}; feature columns must be float32 or float64")
    # columns → row-major rows [n, D] (one copy; nulls become NaN and their log p null)
    dtype = np.float64 if any(c.type == pa.float64() for c in features) else np.float32
    x = np.empty((batch.num_rows, len(features)), dtype)
    null = np.zeros(batch.num_rows, bool)
    for j, column in enumerate(features):
        x[:, j] = column.to_numpy(zero_copy_only=False)
        if column.null_count:
            null |= pc.is_null(column).to_numpy(zero_copy_only=False)
    logp = flow.log_prob(x)
    return batch.append_column(output_column, pa.array(logp, mask=null if null.any() else None))


class _Scorer:
    """One engine per Ray actor (``concurrency`` given): Arrow batches in, the same batches
    plus a log p column out."""

    def __init__(self, model: bytes, columns: Sequence[str], output_column: str, device: str, kernel: str,
                 threads: Optional[int]) -> None:
        self.flow = _open(model, device, kernel, threads)
        self.columns = list(columns)
        self.output_column = output_column

    def __call__(self, batch: Any) -> Any:
        return _append_log_prob(self.flow, batch, self.columns, self.output_column)


# Engines opened by this worker process for task-based scoring, by (model digest, device,
# kernel, threads): Ray reuses worker processes across tasks, so each opens an engine once.
_ENGINES: "Dict[tuple, realnvp.Flow]" = {}


def _score_task(batch: Any, model: bytes, columns: Sequence[str], output_column: str, device: str, kernel: str,
                threads: Optional[int], digest: str) -> Any:
    """The task form of :class:`_Scorer` (``concurrency`` not given): it fuses with the read
    task, so the input blocks never pass through the object store. ``digest``: the model's
    SHA-256, computed once on the driver."""
    key = (digest, device, kernel, threads)
    flow = _ENGINES.get(key)
    if flow is None:
        if len(_ENGINES) >= 4:
            _ENGINES.clear()
        flow = _ENGINES[key] = _open(model, device, kernel, threads)
    return _append_log_prob(flow, batch, columns, output_column)


def _parquet_files(paths: Union[str, Sequence[str]], filesystem: Any) -> List[tuple]:
    """(filesystem, path) of every Parquet file named by ``paths``: files as given, directories
    searched recursively for ``*.parquet`` (names starting with ``_`` or ``.`` left out, as
    Spark and Hive write them; local links to directories not followed), in sorted order;
    local paths or URIs (``s3://…``)."""
    import pyarrow.fs as pafs

    files = []
    for path in [paths] if isinstance(paths, (str, os.PathLike)) else list(paths):
        path = os.fspath(path)
        if filesystem is not None:
            fs, root = filesystem, path
        elif "://" in path:
            fs, root = pafs.FileSystem.from_uri(path)
        else:
            fs, root = pafs.LocalFileSystem(), os.path.abspath(path)
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"{path}: no such file or directory")
        if info.type == pafs.FileType.Directory:
            if isinstance(fs, pafs.LocalFileSystem):
                # os.walk does not follow links to directories (pyarrow's selector does, so a
                # link back up the tree would list the same files many times)
                listed = [os.path.join(d, f) for d, _, names in os.walk(root) for f in names]
            else:
                listed = [i.path for i in fs.get_file_info(pafs.FileSelector(root, recursive=True)) if i.is_file]
            found = sorted(p for p in listed if p.endswith(".parquet")
                           and not any(part.startswith(("_", ".")) for part in os.path.relpath(p, root).split("/")))
            if not found:
                raise FileNotFoundError(f"{path}: no .parquet files in this directory")
            files += [(fs, f) for f in found]
        else:
            files.append((fs, root))
    if not files:
        raise FileNotFoundError("no Parquet files were given")
    return files


class _ReadUnit:
    """One read task's work: row groups of one or more files, read column by column and yielded
    one Arrow table per row group (memory bounded by the largest row group)."""

    def __init__(self, parts: List[tuple], columns: Optional[List[str]]) -> None:
        self.parts = parts  # [(filesystem, path, [row group index…])]
        self.columns = columns

    def __call__(self) -> Any:
        import pyarrow.parquet as pq

        for fs, path, groups in self.parts:
            with fs.open_input_file(path) as f:
                reader = pq.ParquetFile(f)
                for g in groups:
                    yield reader.read_row_group(g, columns=self.columns)


def read_parquet(paths: Union[str, Sequence[str]], columns: Optional[Sequence[str]] = None, *,
                 filesystem: Any = None, blocks: Optional[int] = None) -> Any:
    """Parquet files as a Ray Dataset, for :func:`score`: the cheap way to read a dataset that
    fits in a few thousand files.

    paths: a file, a directory (searched recursively for ``*.parquet``; names starting with
    ``_`` or ``.`` are left out, local links to directories are not followed; Hive-style
    ``key=value`` directories are searched, but their values do not become columns) or a list
    of them; local paths or URIs (``s3://…``, ``gs://…``
    through pyarrow's file systems), or paths in ``filesystem`` (a ``pyarrow.fs.FileSystem``).
    columns: the columns to read (default: all); score needs the feature columns and any you
    want kept (e.g. an id). blocks: how many read tasks at most (default: 4 × the cluster's
    CPUs; more if a task would exceed Ray's target block size); each reads consecutive whole
    row groups, as even a share of the rows as the row groups allow (a file of one row group is
    one task), and yields one table per row group.

    Against ``ray.data.read_parquet``: the footers are read here, on the driver (32 threads),
    and the read tasks are planned once, so a read costs no pool of footer-reading actors and
    no bin packing (Ray 2.60 spends ≈ 1–2 s per read on them, which decides a job of seconds on
    a small node: BENCHMARKS.md, 2026-12-01 (session 3)); and the tasks are planned under Ray's
    target block size and asked for in that number, so Ray does not split their output and
    :func:`score`'s tasks fuse with them (Ray 2.60 asks for 200 blocks and splits fewer).
    For tens of thousands of files, whose footers one driver reads slowly, use
    ``ray.data.read_parquet``, which :func:`score` accepts as well.
    """
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa
    import pyarrow.parquet as pq

    files = _parquet_files(paths, filesystem)

    def footer(entry: tuple) -> Any:
        fs, path = entry
        try:
            with fs.open_input_file(path) as f:
                return pq.ParquetFile(f).metadata
        except (OSError, pa.ArrowInvalid) as e:
            raise ValueError(f"{path}: not a readable Parquet file ({e})") from e

    with ThreadPoolExecutor(min(32, len(files))) as pool:
        footers = list(pool.map(footer, files))
    schema = None
    for (_, path), meta in zip(files, footers):
        s = meta.schema.to_arrow_schema()
        if columns is not None:
            missing = [c for c in columns if c not in s.names]
            if missing:
                raise ValueError(f"{path}: no column(s) {missing}; it has {s.names}")
            s = pa.schema([s.field(c) for c in columns])
        s = s.remove_metadata()
        if schema is None:
            schema, first = s, path
        elif not s.equals(schema):
            raise ValueError(f"{path} and {first} differ in their columns or types: {s} vs {schema}")
    columns = list(schema.names) if columns is not None else None
    width = sum(_bytes_per_value(f.type) for f in schema) or 1  # bytes per row in memory
    groups = [(fs, path, g, meta.row_group(g).num_rows)
              for (fs, path), meta in zip(files, footers) for g in range(meta.num_row_groups)
              if meta.row_group(g).num_rows > 0]
    total = sum(g[3] for g in groups)
    if blocks is None:
        blocks = 4 * max(1, int(ray.cluster_resources().get("CPU", 1))) if ray.is_initialized() else 8
    if blocks < 1:
        raise ValueError(f"blocks must be >= 1, got {blocks}")
    # Ray splits a read task's output bigger than its target block size, and a split read
    # no longer fuses with score's map tasks: enough tasks to stay under it
    limit = ray.data.DataContext.get_current().target_max_block_size
    if limit:
        blocks = max(blocks, -(-total * width // limit))
    # a row group goes to task ⌊first row × blocks / total⌋: at most `blocks` tasks of
    # consecutive row groups, as even as the row groups allow
    units: List[List[tuple]] = []  # [[(filesystem, path, [row group…]) …] …]
    rows: List[int] = []
    start, task = 0, -1
    for fs, path, g, n in groups:
        if start * blocks // total != task:
            task = start * blocks // total
            units.append([])
            rows.append(0)
        if units[-1] and units[-1][-1][1] == path:
            units[-1][-1][2].append(g)
        else:
            units[-1].append((fs, path, [g]))
        rows[-1] += n
        start += n
    source = _ParquetFilesSource(units, rows, columns, schema, width)
    return ray.data.read_datasource(source, override_num_blocks=max(1, len(units)))


def _bytes_per_value(t: Any) -> int:
    """An Arrow type's bytes per value in memory: its width if fixed, else an estimate of 8."""
    try:
        return max(1, t.bit_width // 8)
    except ValueError:
        return 8


class _ParquetFilesSource(Datasource):
    """The read tasks :func:`read_parquet` planned: one per unit of row groups."""

    def __init__(self, units: List[List[tuple]], rows: List[int], columns: Optional[List[str]], schema: Any,
                 width: int) -> None:
        super().__init__()
        self.units, self.rows, self.columns, self.schema, self.width = units, rows, columns, schema, width

    def get_name(self) -> str:
        return "ParquetFiles"

    def estimate_inmemory_data_size(self) -> Optional[int]:
        return sum(self.rows) * self.width

    def get_read_tasks(self, parallelism: int, per_task_row_limit: Optional[int] = None,
                       data_context: Any = None) -> List[Any]:
        """The planned units, whatever ``parallelism`` (read_parquet asked for exactly as many)."""
        return [
            ReadTask(_ReadUnit(unit, self.columns),
                     BlockMetadata(num_rows=rows, size_bytes=rows * self.width, exec_stats=None,
                                   input_files=[path for _, path, _ in unit]),
                     schema=self.schema)
            for unit, rows in zip(self.units, self.rows)
        ]


def score(dataset: Any, model: ModelLike, columns: Optional[Sequence[str]] = None, output_column: str = "log_prob",
          device: str = "auto", concurrency: Optional[Union[int, tuple]] = None, num_gpus: Optional[float] = None,
          batch_size: Optional[int] = None, kernel: str = "auto", threads: Optional[int] = None,
          num_cpus: Optional[float] = None) -> Any:
    """Scores a Ray Dataset: a Dataset of the same rows with every input column and
    ``output_column`` (log p in nats; null where a feature is null, NaN where one is NaN).

    model: a model file's path (read here and shipped to the workers), its bytes, or a
    :class:`realnvp.Flow`. columns: the feature columns in the model's order (default: the
    model's feature names when it records them, else every floating-point column of the
    dataset, in schema order). concurrency: an actor pool (``n`` or ``(min, max)``), one
    engine per actor, kept for the whole run: use it for GPUs (``num_gpus=1``,
    ``concurrency`` = the number of GPUs), whose kernels take a while to build. Without it
    (the default) batches are scored in Ray tasks, each worker process opening the engine
    once; a task fuses with the read task, so the input never passes through the object
    store (BENCHMARKS.md, 2026-12-01: 4.8 s against 5.5–7.7 s for 2 actors on 2 CPUs).
    batch_size: rows per call of the engine (default: a whole block, as the read made it; Ray
    2.60 does not fuse a map that asks for a batch size with the read before it). num_gpus:
    per actor or task. threads: CPU threads per actor or task for the native engine
    (default: all the worker's cores; set it to ``num_cpus`` when several share a node).
    num_cpus: Ray CPUs each actor or task reserves (Ray's default 1). With actors, the read
    tasks need a whole CPU too: on a cluster of C CPUs the actors' ``concurrency × num_cpus``
    must leave one free, or the pipeline would wait for a free CPU forever. Left out, it is
    sized to ``(C − 1) / concurrency`` where Ray's 1 would not fit (two actors on two CPUs: 0.5
    each); given, a value that would not fit is a ``ValueError`` saying what to pass.
    """
    payload = _model_bytes(model)
    info = _open(payload, "cpu", "auto", 1).info
    dim = info["dim"]
    if columns is None and info.get("features"):
        columns = info["features"]
    if columns is None:
        import pyarrow as pa

        schema = dataset.schema()
        columns = [n for n, t in zip(schema.names, schema.types) if pa.types.is_floating(_arrow_type(t))]
    columns = list(columns)
    if len(columns) != dim:
        raise ValueError(f"the model has D = {dim} but {len(columns)} feature columns were given or found: {columns}")
    if output_column in columns:
        raise ValueError(f"output_column {output_column!r} is a feature column")

    args = (payload, columns, output_column, device, kernel, threads)
    # no retry arguments: Ray Data restarts dead map actors and retries their batches (and
    # retries map tasks) without limit by default, which test_ray's killed workers check;
    # Ray 2.60 deprecates passing them (`**ray_remote_args`, `ray_remote_args_fn`)
    common = dict(batch_format="pyarrow", batch_size=batch_size, num_gpus=num_gpus, num_cpus=num_cpus,
                  zero_copy_batch=True)
    if concurrency is None:
        import hashlib

        return dataset.map_batches(_score_task, fn_args=args + (hashlib.sha256(payload).hexdigest(),), **common)
    pool = ray.data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1]) if isinstance(
        concurrency, tuple) else ray.data.ActorPoolStrategy(size=concurrency)
    common["num_cpus"] = _actor_cpus(concurrency, num_cpus)
    return dataset.map_batches(_Scorer, fn_constructor_args=args, compute=pool, **common)


def _actor_cpus(concurrency: Union[int, tuple], num_cpus: Optional[float]) -> float:
    """CPUs per scoring actor that leave a read task its CPU: ``num_cpus`` if the largest pool
    leaves one free, else an error; Ray's default 1 where it does, else the cluster's CPUs but
    one shared by the actors (a pool holding every CPU starves the reads forever)."""
    if not ray.is_initialized():
        ray.init()  # what Ray Data does on first use; its CPU count is needed here
    cluster = float(ray.cluster_resources().get("CPU", 0))
    actors = concurrency[1] if isinstance(concurrency, tuple) else concurrency
    spare = max(cluster - 1.0, 0.0) / max(actors, 1)
    if num_cpus is not None:
        if actors * num_cpus > cluster - 1.0:
            raise ValueError(
                f"concurrency={concurrency!r} actors of num_cpus={num_cpus:g} would hold {actors * num_cpus:g} of the "
                f"cluster's {cluster:g} CPUs, leaving no whole CPU for the read tasks (the run would wait forever); "
                f"pass num_cpus={spare:.3g} or less, or fewer actors")
        return num_cpus
    return min(1.0, spare)


def _arrow_type(t: Any) -> Any:
    """A Ray schema type as an Arrow type (Ray may report NumPy dtypes)."""
    import pyarrow as pa

    if isinstance(t, pa.DataType):
        return t
    try:
        return pa.from_numpy_dtype(np.dtype(t))
    except TypeError:
        return pa.null()


def _finite_sum(batch: Any, column: str) -> Dict[str, List[float]]:
    v = batch.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
    finite = np.isfinite(v)
    return {"rows": [len(v)], "finite_rows": [int(finite.sum())], "sum": [float(v[finite].sum())]}


def mean_log_prob(dataset: Any, column: str = "log_prob") -> float:
    """Mean of ``column`` over its finite rows (nulls, NaN and ±Inf are counted out), as
    ``realnvp score`` reports it; NaN when no row is finite."""
    parts = dataset.map_batches(_finite_sum, fn_kwargs={"column": column}, batch_format="pyarrow").take_all()
    finite = sum(p["finite_rows"] for p in parts)
    return float(sum(p["sum"] for p in parts) / finite) if finite else float("nan")


def _sample_shard(batch: Dict[str, np.ndarray], model: bytes, seed: int, temperature: float, device: str,
                  kernel: str, threads: Optional[int]) -> Dict[str, np.ndarray]:
    flow = _open(model, device, kernel, threads)
    names = flow.info.get("features") or [f"x{j}" for j in range(flow.dim)]
    out: Dict[str, List[np.ndarray]] = {}
    for first, rows in zip(batch["first_row"], batch["rows"]):
        x, log_q = flow.sample(int(rows), seed=seed, first_row=int(first), temperature=temperature)
        out.setdefault("row", []).append(np.arange(int(first), int(first) + int(rows), dtype=np.uint64))
        for j, name in enumerate(names):
            out.setdefault(name, []).append(x[:, j])
        out.setdefault("log_q", []).append(log_q)
    return {k: np.concatenate(v) for k, v in out.items()}


def sample(model: ModelLike, n: int, seed: int, shards: int = 1, device: str = "auto", *, first_row: int = 0,
           temperature: float = 1.0, kernel: str = "auto", threads: Optional[int] = None,
           num_gpus: Optional[float] = None) -> Any:
    """Draws rows ``first_row … first_row + n − 1`` of ``seed``'s stream as a Ray Dataset with
    columns ``row`` (the global row index), ``x0…`` (or the model's feature names) and
    ``log_q``; shard k draws its own
    contiguous range, so the rows equal ``realnvp sample --seed S -n N`` row for row (sort by
    ``row``: Ray does not keep the shards' order unless told to)."""
    if n < 0 or shards < 1:
        raise ValueError(f"n must be >= 0 and shards >= 1, got n={n}, shards={shards}")
    payload = _model_bytes(model)
    bounds = [first_row + (n * k) // shards for k in range(shards + 1)]
    items = [{"first_row": bounds[k], "rows": bounds[k + 1] - bounds[k]} for k in range(shards)]
    return ray.data.from_items(items, override_num_blocks=shards).map_batches(
        _sample_shard,
        fn_kwargs=dict(model=payload, seed=seed, temperature=temperature, device=device, kernel=kernel, threads=threads),
        batch_size=1,
        num_gpus=num_gpus,
    )
