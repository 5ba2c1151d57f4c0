"""Type stubs of the Rust extension (python/src). Use the `realnvp` package, not this module."""

from typing import List, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

FLOAT32_TOLERANCE: float

class Model:
    """A flow: dimension, base, layers in data→latent order."""

    @staticmethod
    def load(path: str) -> Model: ...
    def save(self, path: str, float32: bool = False) -> None: ...
    @property
    def dim(self) -> int: ...
    def info_json(self) -> str: ...

class Engine:
    """One flow on one device; every method releases the GIL and honours Ctrl-C between chunks."""

    @property
    def name(self) -> str: ...
    @property
    def note(self) -> Optional[str]: ...
    @property
    def float64(self) -> bool: ...
    @property
    def model(self) -> Model: ...
    def log_prob(self, x: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]: ...
    def forward(self, x: npt.NDArray[np.floating]) -> Tuple[npt.NDArray[np.floating], npt.NDArray[np.floating]]: ...
    def inverse(self, z: npt.NDArray[np.floating]) -> Tuple[npt.NDArray[np.floating], npt.NDArray[np.floating]]: ...
    def sample(
        self, n: int, seed: int, first_row: int = 0, temperature: float = 1.0
    ) -> Tuple[npt.NDArray[np.floating], npt.NDArray[np.floating]]: ...
    def score_file(
        self,
        input: str,
        output: Optional[str] = None,
        chunk_rows: int = 0,
        float64_output: bool = False,
        columns: Optional[Sequence[str]] = None,
        keep: Optional[Sequence[str]] = None,
    ) -> str: ...
    def verify(self, x: npt.NDArray[np.floating]) -> Tuple[str, str]: ...

def open(model: Model, device: str = "auto", kernel: str = "auto", threads: Optional[int] = None) -> Engine: ...
def normflows_model(
    tensors: Sequence[Tuple[str, npt.NDArray[np.float64]]],
    activation: str,
    s_output: str,
    t_output: str,
    split_modes: Sequence[str],
    scale_map: str,
    keyless: Optional[str],
    flows: Optional[int],
) -> Model: ...
def nflows_model(
    tensors: Sequence[Tuple[str, npt.NDArray[np.float64]]],
    features: int,
    hidden: int,
    layers: int,
    blocks_per_layer: int,
    batch_norm_between: bool,
    activation: str,
) -> Model: ...
def devices() -> List[str]: ...
def values_copied() -> int: ...
