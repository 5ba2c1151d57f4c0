"""realnvp: Real NVP normalizing flows evaluated in bulk.

Exact log-likelihoods, data→latent and latent→data maps with their log-determinants, and
reproducible sampling, for NumPy arrays and CPU torch tensors, on any GPU (wgpu) or on the CPU
(a float32 SIMD engine), every engine checked against a float64 reference. The engines are
Rust (the ``realnvp`` crate); this package is a thin layer over them.

>>> import numpy as np, realnvp
>>> flow = realnvp.load("model.safetensors")          # doctest: +SKIP
>>> logp = flow.log_prob(np.zeros((10, flow.dim), np.float32))   # doctest: +SKIP

- :func:`load` opens a model file; :func:`from_normflows` and :func:`from_nflows` convert a
  live PyTorch model; :func:`devices` lists the GPU adapters.
- :class:`Flow`: ``log_prob``, ``forward``, ``inverse``, ``sample``, ``score_file``,
  ``verify``, ``save``, ``info``.

Rows are ``[n, D]`` arrays of float32 or float64 in any memory order. Results come back in the
caller's library (torch in → torch out) and in the engine's precision: float32, or float64
for the reference ``device="cpu"``. Every call releases the GIL (a ``Flow`` may be used from
several threads at once) and stops on Ctrl-C between chunks of rows.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _realnvp
from .convert import UnsupportedModel

__all__ = [
    "Flow",
    "VerifyReport",
    "UnsupportedModel",
    "load",
    "from_normflows",
    "from_nflows",
    "devices",
    "FLOAT32_TOLERANCE",
]
__version__ = "0.1.0"

#: The tolerance ``verify`` holds float32 engines to: |Δ|/(1+|reference|) per value.
FLOAT32_TOLERANCE: float = _realnvp.FLOAT32_TOLERANCE

PathLike = Union[str, "os.PathLike[str]"]


def load(path: PathLike, device: str = "auto", kernel: str = "auto", threads: Optional[int] = None) -> "Flow":
    """Opens a model file (``.safetensors``, as written by ``realnvp init``/``convert``).

    device: ``"auto"`` (a hardware GPU if there is one, else the native engine), ``"native"``
    (float32 SIMD on the CPU), ``"cpu"`` (the float64 reference), ``"gpu"``, ``"gpu:N"`` (adapter N
    of :func:`devices`), ``"all"`` (every adapter). kernel: the GPU kernel form, ``"auto"``
    (tiered for models of up to 20,000 operations per row: the interpreter while the unrolled
    kernel builds, then unrolled; rows agree within float32 rounding either way; larger models
    run tiled), ``"interpreted"``, ``"unrolled"`` or ``"tiled"`` (fix one for bit-identical
    reruns; tiled rows equal interpreted ones). threads: CPU threads of the native and
    reference engines (default: one per core).
    """
    return Flow._open(_realnvp.Model.load(os.fspath(path)), device, kernel, threads)


def from_normflows(model: Any, device: str = "auto", kernel: str = "auto", threads: Optional[int] = None) -> "Flow":
    """A live ``normflows.NormalizingFlow`` as a :class:`Flow`.

    Supported: base ``DiagGaussian`` (trainable or fixed); flows ``MaskedAffineFlow`` (``nets.MLP``
    s and t), ``AffineCouplingBlock`` (any split mode, ``scale_map`` exp or sigmoid_inv),
    ``ActNorm``, ``AffineConstFlow``, ``Permute`` (shuffle or swap); hidden activations ReLU,
    LeakyReLU(slope), Tanh, ELU, SiLU, GELU; output functions none or tanh. Activations, slopes,
    output functions, split and scale modes are read from the modules. Anything else raises
    :class:`UnsupportedModel` naming the module's path (``flows.3.s.net.2: nn.SiLU …``). Dropout
    is converted as in eval mode (refused in training mode). The parameters are copied: later
    training does not change the Flow.
    """
    from .convert import from_normflows_model

    return Flow._open(from_normflows_model(model), device, kernel, threads)


def from_nflows(model: Any, device: str = "auto", kernel: str = "auto", threads: Optional[int] = None) -> "Flow":
    """A live nflows ``SimpleRealNVP`` (``ResidualNet`` conditioners, optional ``BatchNorm``
    between layers, ``StandardNormal`` base) as a :class:`Flow`. The model must be in eval mode
    when it has BatchNorm layers (their running statistics are what is converted)."""
    from .convert import from_nflows_model

    return Flow._open(from_nflows_model(model), device, kernel, threads)


def devices() -> List[str]:
    """The GPU adapters wgpu finds, one line each (index for ``device="gpu:N"``, backend, type,
    driver, limits), as ``realnvp devices`` prints them."""
    return _realnvp.devices()


def _host_array(x: Any, name: str) -> Tuple[np.ndarray, Any]:
    """x as a NumPy array (sharing memory where possible) and the torch module when x was a
    torch tensor (results go back as tensors), else None."""
    if isinstance(x, np.ndarray):
        return x, None
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        if x.device.type != "cpu":
            raise TypeError(
                f"{name} is a torch tensor on {x.device}; realnvp reads host memory: pass {name}.cpu() "
                "(an explicit copy) or use device='gpu' on the array"
            )
        try:
            return x.detach().numpy(), torch
        except TypeError as e:  # bfloat16 and other dtypes NumPy lacks
            raise TypeError(f"{name} has dtype {x.dtype}; realnvp reads float32 or float64 rows ({e})") from None
    return np.asarray(x), None


def _like(torch: Any, *arrays: np.ndarray) -> Any:
    """The results in the caller's library."""
    out = tuple(a if torch is None else torch.from_numpy(a) for a in arrays)
    return out[0] if len(out) == 1 else out


class VerifyReport:
    """An engine against the float64 reference on the same rows (:meth:`Flow.verify`).

    ``passed``: every output within :data:`FLOAT32_TOLERANCE` (or, on ill-conditioned rows,
    within 16× plain float32's own error there); ``str(report)`` is the CLI's table;
    ``report.details`` the numbers (per output: compared rows, max abs error, worst row,
    failures).
    """

    __slots__ = ("details", "_text")

    def __init__(self, details: Dict[str, Any], text: str) -> None:
        self.details = details
        self._text = text

    @property
    def passed(self) -> bool:
        return bool(self.details["passed"])

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return f"<VerifyReport {verdict}: {self.details['engine']}, {self.details['rows']} rows>"


class Flow:
    """A Real NVP flow on one engine. Open one with :func:`load`, :func:`from_normflows` or
    :func:`from_nflows`.

    x (data) and z (latent) are ``[n, D]`` rows; log-densities and log-determinants are in nats.
    """

    __slots__ = ("_engine",)

    def __init__(self) -> None:
        raise TypeError("open a Flow with realnvp.load, realnvp.from_normflows or realnvp.from_nflows")

    @classmethod
    def _open(cls, model: Any, device: str, kernel: str, threads: Optional[int]) -> "Flow":
        self = object.__new__(cls)
        self._engine = _realnvp.open(model, device=device, kernel=kernel, threads=threads)
        return self

    @property
    def dim(self) -> int:
        """D, the number of features."""
        return self._engine.model.dim

    @property
    def engine(self) -> str:
        """The engine and device, e.g. ``native float32 (2 threads)``."""
        return self._engine.name

    @property
    def dtype(self) -> np.dtype:
        """The precision results come back in: float64 for ``device="cpu"``, else float32."""
        return np.dtype(np.float64 if self._engine.float64 else np.float32)

    @property
    def info(self) -> Dict[str, Any]:
        """dim, base, layers (kinds, data→latent), parameters, flops_per_row (log p), gpu_kernel
        (what ``kernel="auto"`` runs: ``"tiered"`` or ``"tiled"``), features (the data features' names, or None),
        engine, dtype, note (e.g. why ``auto`` chose this engine)."""
        info = json.loads(self._engine.model.info_json())
        info.update(engine=self.engine, dtype=str(self.dtype), note=self._engine.note)
        return info

    def __repr__(self) -> str:
        info = json.loads(self._engine.model.info_json())
        return (
            f"<realnvp.Flow D={info['dim']}, {len(info['layers'])} layers, {info['parameters']:,} parameters, "
            f"{info['base']} base; engine: {self.engine}>"
        )

    def log_prob(self, x: Any) -> Any:
        """log p(x) in nats, shape ``[n]``, for data rows x ``[n, D]``. Rows with NaN/±Inf give NaN
        (that row only)."""
        a, torch = _host_array(x, "x")
        return _like(torch, self._engine.log_prob(a))

    def forward(self, x: Any) -> Tuple[Any, Any]:
        """Data→latent: (z ``[n, D]``, log|det ∂z/∂x| ``[n]``)."""
        a, torch = _host_array(x, "x")
        return _like(torch, *self._engine.forward(a))

    def inverse(self, z: Any) -> Tuple[Any, Any]:
        """Latent→data: (x ``[n, D]``, log|det ∂x/∂z| ``[n]``)."""
        a, torch = _host_array(z, "z")
        return _like(torch, *self._engine.inverse(a))

    def sample(self, n: int, seed: int = 0, *, first_row: int = 0, temperature: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
        """Draws n rows: (x ``[n, D]``, log q(x) ``[n]``), as NumPy arrays (``torch.from_numpy``
        shares them).

        Row i is row ``first_row + i`` of ``seed``'s stream, a pure function of (seed, row): the
        same on every engine (to float32 rounding), for any chunking or thread count, and equal
        to ``realnvp sample --seed S --first-row K``. ``temperature`` scales the base's standard
        deviation; log q is then the tempered model's density.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if seed < 0 or first_row < 0:
            raise ValueError("seed and first_row are unsigned 64-bit integers")
        return self._engine.sample(n, seed, first_row=first_row, temperature=float(temperature))

    def score_file(self, input: PathLike, output: Optional[PathLike] = None, *, chunk_rows: int = 0,
                   float64: bool = False, columns: Optional[Sequence[str]] = None,
                   keep: Optional[Sequence[str]] = None) -> Dict[str, Any]:
        """Scores a file in bounded memory, as ``realnvp score`` does: a ``.npy`` array
        ``[N, D]``, a ``.parquet`` table, or a directory of ``.parquet`` files read as one table
        in path order (feature ``columns`` in the model's order, default the model's feature
        names, else every column not kept; nulls give null log p). Writes per-row log p ``[N]``
        to ``output`` (atomically, float32 unless ``float64``) if given: ``.npy``, or
        ``.parquet`` with the ``keep`` columns (e.g. ``["id"]``) and ``log_prob``. Returns the
        summary: rows, finite_rows, nonfinite_rows, mean_log_likelihood, bits_per_dim, seconds,
        rows_per_second, engine, dim."""
        out = None if output is None else os.fspath(output)
        return json.loads(self._engine.score_file(os.fspath(input), out, chunk_rows=chunk_rows, float64_output=float64,
                                                  columns=None if columns is None else list(columns),
                                                  keep=None if keep is None else list(keep)))

    def verify(self, x: Any) -> VerifyReport:
        """This engine against the float64 reference on rows x ``[n, D]`` (e.g. your data): z,
        both log-determinants, log p, the inverse and the mean log-likelihood."""
        a, _ = _host_array(x, "x")
        details, text = self._engine.verify(a)
        return VerifyReport(json.loads(details), text)

    def save(self, path: PathLike, *, float32: Optional[bool] = None) -> None:
        """Writes the model (``.safetensors``, atomically); parameters in float32 if ``float32``
        is True, float64 if False, and by default in the precision they were loaded in (a model
        file's own; float64 for a converted model). ``realnvp`` CLI commands and :func:`load`
        read it."""
        self._engine.model.save(os.fspath(path), float32=float32)
