"""Live normflows and nflows models → realnvp models, with no flags.

The walk reads from the modules themselves what a state_dict cannot say (hidden activations
and their slopes, output functions, split modes, scale maps, parameter-free permutations, the
nflows architecture), gathers the tensors, and hands both to the converters behind
``realnvp convert`` (``src/convert.rs``): a live model and its saved state_dict converted
with the right flags give the same file. Anything the engines cannot evaluate exactly is
refused with the module's path in the tree and what is supported; nothing is approximated.

Both libraries are imported lazily: realnvp does not depend on torch.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import numpy as np

from . import _realnvp

SUPPORTED_NORMFLOWS = (
    "normflows: NormalizingFlow with base DiagGaussian (trainable or fixed) and flows "
    "MaskedAffineFlow (s, t: nets.MLP), AffineCouplingBlock (nets.MLP param_map, scale_map "
    "exp or sigmoid_inv), ActNorm, AffineConstFlow, Permute (shuffle or swap)"
)
SUPPORTED_NFLOWS = (
    "nflows: SimpleRealNVP (AffineCouplingTransform with ResidualNet, BatchNorm between "
    "layers, StandardNormal base)"
)
SUPPORTED_ACTIVATIONS = (
    "nn.ReLU, nn.LeakyReLU(slope), nn.Tanh, nn.ELU(alpha=1), nn.SiLU, nn.GELU(approximate='none')"
)


class UnsupportedModel(ValueError):
    """A module the engines cannot evaluate exactly; the message names its path in the tree."""


def _refuse(path: str, what: str, supported: str) -> UnsupportedModel:
    return UnsupportedModel(f"{path}: {what} is not supported; supported: {supported}")


def _kind(module: Any) -> str:
    cls = type(module)
    prefix = "nn." if cls.__module__.startswith("torch.nn") else f"{cls.__module__}."
    return prefix + cls.__name__


def _float64(t: Any) -> np.ndarray:
    """A tensor's values as a C-contiguous float64 NumPy array (integers exactly)."""
    import torch

    return np.ascontiguousarray(t.detach().to(device="cpu", dtype=torch.float64).numpy())


def _tensors(prefix: str, module: Any) -> List[Tuple[str, np.ndarray]]:
    return [(f"{prefix}.{k}", _float64(v)) for k, v in module.state_dict().items()]


def _module_activation(path: str, m: Any) -> str:
    """The converter's name of a hidden activation module."""
    from torch import nn

    if type(m) is nn.ReLU:
        return "relu"
    if type(m) is nn.LeakyReLU:
        slope = float(m.negative_slope)
        return "relu" if slope == 0.0 else f"leaky_relu:{slope!r}"
    if type(m) is nn.Tanh:
        return "tanh"
    if type(m) is nn.ELU and float(m.alpha) == 1.0:
        return "elu"
    if type(m) is nn.SiLU:
        return "silu"
    if type(m) is nn.GELU and m.approximate == "none":
        return "gelu"
    return _refuse_activation(path, repr(m))


def _refuse_activation(path: str, what: str) -> str:
    raise _refuse(path, what, SUPPORTED_ACTIVATIONS)


def _agree(found: Optional[str], new: str, path: str, what: str) -> str:
    """One value of an option the whole model shares; a second, different one is refused."""
    if found is not None and found != new:
        raise UnsupportedModel(
            f"{path}: {what} {new} differs from {found} elsewhere in the model; realnvp models use one {what} throughout"
        )
    return new


class _Normflows:
    """The options of one normflows model, gathered while walking it."""

    def __init__(self) -> None:
        self.activation: Optional[str] = None
        self.s_output: Optional[str] = None
        self.t_output: Optional[str] = None
        self.shared_output: Optional[str] = None
        self.split_modes: List[str] = []
        self.scale_map: Optional[str] = None
        self.keyless = False

    def mlp(self, path: str, net: Any, training: bool) -> str:
        """Checks a ``nets.MLP`` (Linear, activation, …, Linear[, output function]); returns its
        output function."""
        from torch import nn

        if type(net).__name__ != "MLP" or not isinstance(getattr(net, "net", None), nn.Sequential):
            raise _refuse(path, _kind(net), "normflows.nets.MLP conditioners")
        layers = list(net.net.named_children())
        linears = [i for i, (_, m) in enumerate(layers) if type(m) is nn.Linear]
        if not linears or linears[0] != 0:
            raise _refuse(f"{path}.net", "an MLP that does not start with nn.Linear", "nets.MLP")
        output = "identity"
        for i, (name, m) in enumerate(layers):
            where = f"{path}.net.{name}"
            if type(m) is nn.Linear:
                if m.bias is None:
                    raise _refuse(where, "nn.Linear(bias=False)", "nn.Linear with bias")
            elif type(m) is nn.Dropout:
                if training and m.p > 0:
                    raise UnsupportedModel(f"{where}: nn.Dropout(p={m.p}) in training mode; call model.eval() first")
            elif i > linears[-1]:
                if type(m) is nn.Tanh and i == len(layers) - 1:
                    output = "tanh"
                else:
                    raise _refuse(where, f"the output function {m!r}", "none (identity) or nn.Tanh (output_fn='tanh')")
            else:
                self.activation = _agree(self.activation, _module_activation(where, m), where, "hidden activation")
        return output

    def flow(self, path: str, f: Any, training: bool) -> None:
        kind = type(f).__name__
        if kind == "MaskedAffineFlow":
            from torch import nn

            for name in ("s", "t"):
                if not isinstance(getattr(f, name), nn.Module):
                    raise _refuse(f"{path}.{name}", f"MaskedAffineFlow without a {name} net", "nets.MLP s and t")
            self.s_output = _agree(self.s_output, self.mlp(f"{path}.s", f.s, training), f"{path}.s", "s output function")
            self.t_output = _agree(self.t_output, self.mlp(f"{path}.t", f.t, training), f"{path}.t", "t output function")
        elif kind == "AffineCouplingBlock":
            split, coupling = f.flows[0], f.flows[1]
            if not getattr(coupling, "scale", False):
                raise _refuse(f"{path}.flows.1", "AffineCoupling(scale=False)", "scale=True")
            if coupling.scale_map not in ("exp", "sigmoid_inv"):
                raise _refuse(f"{path}.flows.1", f"scale_map={coupling.scale_map!r}", "'exp', 'sigmoid_inv'")
            self.scale_map = _agree(self.scale_map, coupling.scale_map, f"{path}.flows.1", "scale_map")
            modes = ("channel", "channel_inv", "checkerboard", "checkerboard_inv")
            if split.mode not in modes:
                raise _refuse(f"{path}.flows.0", f"split_mode={split.mode!r}", ", ".join(modes))
            self.split_modes.append(split.mode)
            where = f"{path}.flows.1.param_map"
            output = self.mlp(where, coupling.param_map, training)
            self.shared_output = _agree(self.shared_output, output, where, "param_map output function")
        elif kind in ("ActNorm", "AffineConstFlow"):
            if f.s.dim() != 2 or f.s.shape[0] != 1:
                raise _refuse(path, f"{kind} of shape {tuple(f.s.shape[1:])}", f"{kind}(D) on flat features")
        elif kind == "Permute":
            if f.mode == "swap":
                self.keyless = True
            elif f.mode != "shuffle":
                raise _refuse(path, f"Permute(mode={f.mode!r})", "'shuffle', 'swap'")
        else:
            raise _refuse(path, f"{type(f).__module__}.{kind}", SUPPORTED_NORMFLOWS)


def from_normflows_model(model: Any) -> "_realnvp.Model":
    """A normflows ``NormalizingFlow`` as a realnvp model (see :func:`realnvp.from_normflows`)."""
    q0 = getattr(model, "q0", None)
    flows = getattr(model, "flows", None)
    if q0 is None or flows is None:
        raise _refuse("<model>", _kind(model), SUPPORTED_NORMFLOWS)
    if type(q0).__name__ != "DiagGaussian":
        raise _refuse("q0", _kind(q0), "DiagGaussian")
    if getattr(q0, "temperature", None) is not None:
        raise UnsupportedModel(
            f"q0: DiagGaussian.temperature = {q0.temperature} is set; unset it and pass temperature= to Flow.sample instead"
        )
    if q0.loc.dim() != 2 or q0.loc.shape[0] != 1:
        raise _refuse("q0", f"DiagGaussian of shape {tuple(q0.loc.shape[1:])}", "DiagGaussian(D) on flat features")
    options = _Normflows()
    tensors = _tensors("q0", q0)
    for i, f in enumerate(flows):
        options.flow(f"flows.{i}", f, model.training)
        tensors += _tensors(f"flows.{i}", f)
    s_output, t_output = options.s_output, options.t_output
    if options.shared_output is not None:
        s_output = _agree(s_output, options.shared_output, "flows", "output function")
        t_output = _agree(t_output, options.shared_output, "flows", "output function")
    return _realnvp.normflows_model(
        tensors,
        activation=options.activation or "relu",
        s_output=s_output or "identity",
        t_output=t_output or "identity",
        split_modes=options.split_modes or ["channel"],
        scale_map=options.scale_map or "exp",
        keyless="swap" if options.keyless else None,
        flows=len(flows),
    )


def _functional_activation(path: str, fn: Any) -> str:
    """The converter's name of an nflows ResidualBlock's functional activation."""
    import torch
    from torch.nn import functional as F

    names = {F.relu: "relu", torch.relu: "relu", torch.tanh: "tanh", F.tanh: "tanh", F.elu: "elu",
             F.silu: "silu", F.gelu: "gelu", F.leaky_relu: "leaky_relu:0.01"}
    for candidate, name in names.items():
        if fn is candidate:
            return name
    if hasattr(fn, "forward"):  # an nn.Module used as the activation
        return _module_activation(path, fn)
    return _refuse_activation(path, getattr(fn, "__name__", repr(fn)))


def from_nflows_model(model: Any) -> "_realnvp.Model":
    """An nflows ``SimpleRealNVP`` as a realnvp model (see :func:`realnvp.from_nflows`)."""
    transform = getattr(model, "_transform", None)
    base = getattr(model, "_distribution", None)
    if transform is None or base is None or type(transform).__name__ != "CompositeTransform":
        raise _refuse("<model>", _kind(model), SUPPORTED_NFLOWS)
    if type(base).__name__ != "StandardNormal":
        raise _refuse("_distribution", _kind(base), "StandardNormal")
    if getattr(model, "_embedding_net", None) is not None and type(model._embedding_net).__name__ != "Identity":
        raise _refuse("_embedding_net", _kind(model._embedding_net), "none (no context)")
    features = int(np.prod(base._shape))
    couplings, batch_norms, activation = [], 0, None
    hidden = blocks = None
    for i, t in enumerate(transform._transforms):
        path = f"_transform._transforms.{i}"
        kind = type(t).__name__
        if kind == "BatchNorm":
            if model.training:
                raise UnsupportedModel(f"{path}: BatchNorm in training mode (batch statistics); call model.eval() first")
            batch_norms += 1
            continue
        if kind != "AffineCouplingTransform":
            raise _refuse(path, f"{type(t).__module__}.{kind}", SUPPORTED_NFLOWS)
        net = t.transform_net
        where = f"{path}.transform_net"
        if type(net).__name__ != "ResidualNet":
            raise _refuse(where, _kind(net), "nflows.nn.nets.ResidualNet")
        hidden = net.initial_layer.out_features if hidden is None else hidden
        blocks = len(net.blocks) if blocks is None else blocks
        for b, block in enumerate(net.blocks):
            bpath = f"{where}.blocks.{b}"
            if getattr(block, "use_batch_norm", False):
                raise _refuse(bpath, "ResidualBlock(use_batch_norm=True)", "ResidualNet without batch norm within layers")
            if getattr(block, "context_layer", None) is not None:
                raise _refuse(bpath, "a context input", "unconditional flows")
            if model.training and block.dropout.p > 0:
                raise UnsupportedModel(f"{bpath}.dropout: Dropout(p={block.dropout.p}) in training mode; call model.eval() first")
            activation = _agree(activation, _functional_activation(f"{bpath}.activation", block.activation), bpath, "activation")
        couplings.append(i)
    if not couplings:
        raise _refuse("_transform", "a model without coupling layers", SUPPORTED_NFLOWS)
    tensors = _tensors("_transform", transform)
    return _realnvp.nflows_model(
        tensors,
        features=features,
        hidden=hidden,
        layers=len(couplings),
        blocks_per_layer=blocks,
        batch_norm_between=batch_norms > 0,
        activation=activation or "relu",
    )

