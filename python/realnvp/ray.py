"""realnvp on a Ray cluster (Ray Data): score datasets with one engine per worker, reduce, and
sample in shards that equal one process's stream row for row.

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

import realnvp

__all__ = ["score", "mean_log_prob", "sample"]

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


def score(dataset: Any, model: ModelLike, columns: Optional[Sequence[str]] = None, output_column: str = "log_prob",
          device: str = "auto", concurrency: Optional[Union[int, tuple]] = None, num_gpus: Optional[float] = None,
          batch_size: Optional[int] = 65536, kernel: str = "auto", threads: Optional[int] = None,
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
    num_gpus: per actor or task. threads: CPU threads per actor or task for the native engine
    (default: all the worker's cores; set it to ``num_cpus`` when several share a node).
    num_cpus: Ray CPUs each actor or task reserves (Ray's default 1); with actors, the read
    tasks need CPUs too, so on a cluster of C CPUs keep ``concurrency × num_cpus < C`` (e.g.
    0.5 for two actors on two CPUs), or the pipeline waits for a free CPU forever.
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
    import ray

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
    return dataset.map_batches(_Scorer, fn_constructor_args=args, compute=pool, **common)


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
    import ray

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
