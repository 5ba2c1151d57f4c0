"""Live normflows and nflows models converted in one call, against the libraries' own float64
outputs: through the float64 reference within 1e-9, through the float32 engines (native, GPU on
lavapipe in CI) within verify's tolerance; the same file as `realnvp convert` of the state_dict;
anything unsupported refused with the module's path."""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nf = pytest.importorskip("normflows")
pytest.importorskip("nflows")
from nflows.flows import SimpleRealNVP  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import realnvp  # noqa: E402
from conftest import F32_TOL, float32_engines, rel_err  # noqa: E402

torch.manual_seed(0)


def perturb(model, scale=0.25, seed=0):
    """Moves every parameter and buffer of floating type away from its initialisation (variances
    stay positive)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            # masks, ActNorm's flag and nflows' constant log-normaliser are not parameters
            if not t.is_floating_point() or name.split(".")[-1] in ("data_dep_init_done", "b", "_log_z"):
                continue
            noise = scale * torch.randn(t.shape, generator=g, dtype=t.dtype)
            if name.endswith("running_var"):
                t.mul_(torch.exp(noise))
            else:
                t.add_(noise)
    return model


def mlp(sizes, leaky=0.0, output_fn=None, activation=None):
    """A normflows MLP, its LeakyReLUs optionally swapped for another activation module."""
    net = nf.nets.MLP(sizes, leaky=leaky, output_fn=output_fn)
    if activation is not None:
        for i, m in enumerate(net.net):
            if isinstance(m, nn.LeakyReLU):
                net.net[i] = activation()
    return net


def masked_affine_model(d=5, leaky=0.1, s_output="tanh", activation=None, trainable_base=True, scale=0.25):
    """MaskedAffineFlow couplings with ActNorm, shuffle and swap permutations, AffineConstFlow."""
    b = torch.tensor([j % 2 for j in range(d)], dtype=torch.float64)
    flows = []
    for k in range(4):
        mask = b if k % 2 == 0 else 1 - b
        s = mlp([d, 16, 16, d], leaky=leaky, output_fn=s_output, activation=activation)
        t = mlp([d, 16, 16, d], leaky=leaky, activation=activation)
        flows.append(nf.flows.MaskedAffineFlow(mask, t, s))
        flows.append([nf.flows.ActNorm(d), nf.flows.Permute(d, mode="shuffle"), nf.flows.Permute(d, mode="swap"),
                      nf.flows.AffineConstFlow(d)][k])
    model = nf.NormalizingFlow(nf.distributions.DiagGaussian(d, trainable=trainable_base), flows).double()
    model.log_prob(torch.randn(256, d, dtype=torch.float64))  # ActNorm's data-dependent initialisation
    return perturb(model, scale)


def coupling_block_model(d=8, split_modes=("channel", "checkerboard_inv", "channel_inv", "checkerboard"),
                         scale_map="exp", trainable_base=False):
    flows = []
    for mode in split_modes:
        d_id = {"channel": (d + 1) // 2, "channel_inv": d - (d + 1) // 2, "checkerboard": d // 2,
                "checkerboard_inv": d - d // 2}[mode]
        param_map = mlp([d_id, 24, 2 * (d - d_id)], leaky=0.0)
        flows.append(nf.flows.AffineCouplingBlock(param_map, scale_map=scale_map, split_mode=mode))
        flows.append(nf.flows.Permute(d, mode="shuffle"))
    model = nf.NormalizingFlow(nf.distributions.DiagGaussian(d, trainable=trainable_base), flows).double()
    # unbounded exp scales compound over the blocks: moderate weights keep log p in range
    return perturb(model, scale=0.1, seed=1)


def simple_realnvp(d=7, activation=F.relu, batch_norm=True):
    model = SimpleRealNVP(features=d, hidden_features=16, num_layers=4, num_blocks_per_layer=2,
                                       activation=activation, batch_norm_between_layers=batch_norm).double()
    model.eval()
    # scale 0.1: z stays O(10); at 0.15 the elu model maps to |z| ~ 1e10, where float32 engines part
    # (issue 11: lavapipe is up to 1.3x past 16x PyTorch float32 error there)
    return perturb(model, scale=0.1, seed=2)


class default_dtype:
    """normflows starts its log-det sums from torch.zeros(n), in the default dtype: the model's."""

    def __init__(self, dtype):
        self.dtype = dtype

    def __enter__(self):
        self.saved = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)

    def __exit__(self, *exc):
        torch.set_default_dtype(self.saved)


def normflows_truth(model, x, z_in=None):
    """(log p, z, log|det ∂z/∂x|, x back from z (or from z_in), its log-det) from normflows, in
    x's precision."""
    with torch.no_grad(), default_dtype(torch.float64 if x.dtype == np.float64 else torch.float32):
        xt = torch.from_numpy(x)
        logp = model.log_prob(xt)
        z, ld = model.inverse_and_log_det(xt)
        x_back, ld_back = model.forward_and_log_det(z if z_in is None else torch.from_numpy(z_in))
    return [t.numpy() for t in (logp, z, ld, x_back, ld_back)]


def nflows_truth(model, x, z_in=None):
    with torch.no_grad(), default_dtype(torch.float64 if x.dtype == np.float64 else torch.float32):
        xt = torch.from_numpy(x)
        logp = model.log_prob(xt)
        z, ld = model._transform(xt)
        x_back, ld_back = model._transform.inverse(z if z_in is None else torch.from_numpy(z_in))
    return [t.numpy() for t in (logp, z, ld, x_back, ld_back)]


def check_against(flow, truth, x, tol, yardstick=None):
    """Every output within tol of the library's float64 values (the inverse x is fed the
    library's z and compared with its x back). Where the problem is ill-conditioned (nflows'
    latent→data divides by scales down to 1e-3 per layer), an output may instead be within 16×
    the error of the library itself in the engine's precision (`yardstick`: its outputs in
    float32), or, in float64, 10× the library's own round-trip error |f⁻¹(f(x)) − x|: verify's
    rule, and no weaker than PyTorch itself."""
    names = ["log p", "z", "log-det", "x (inverse)", "log-det (inverse)"]
    fz, fld = flow.forward(x)
    got = [flow.log_prob(x), fz, fld, *flow.inverse(truth[1])]
    for k, (name, mine, ref) in enumerate(zip(names, got, truth)):
        limit = tol
        if yardstick is not None:
            limit = max(limit, 16 * rel_err(yardstick[k], ref))
        elif name == "x (inverse)":
            limit = max(limit, 10 * rel_err(truth[3], x))
        assert rel_err(mine, ref) <= limit, f"{name}: {rel_err(mine, ref):.3g} > {limit:.3g} ({flow.engine})"


def data(d, n=400, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)) * 1.2


NORMFLOWS_MODELS = {
    "masked_affine_leaky_tanh_out": lambda: masked_affine_model(),
    # unbounded scales (no tanh on s): moderate weights keep float32 in range
    "masked_affine_relu_fixed_base": lambda: masked_affine_model(d=6, leaky=0.0, s_output=None, trainable_base=False,
                                                                 scale=0.1),
    "masked_affine_tanh": lambda: masked_affine_model(activation=nn.Tanh),
    "masked_affine_elu": lambda: masked_affine_model(d=3, activation=nn.ELU),
    "masked_affine_silu": lambda: masked_affine_model(activation=nn.SiLU),
    "masked_affine_gelu": lambda: masked_affine_model(activation=nn.GELU),
    "coupling_blocks_exp": lambda: coupling_block_model(),
    # normflows' checkerboard split needs an even D; channel splits take odd D
    "coupling_blocks_odd_d": lambda: coupling_block_model(d=7, split_modes=("channel", "channel_inv")),
    "coupling_blocks_sigmoid_inv_trainable_base": lambda: coupling_block_model(
        d=6, split_modes=("checkerboard", "checkerboard_inv"), scale_map="sigmoid_inv", trainable_base=True),
}


@pytest.mark.parametrize("name", NORMFLOWS_MODELS)
def test_normflows_model_through_every_engine(name):
    model = NORMFLOWS_MODELS[name]()
    d = model.q0.loc.shape[1]
    x = data(d)
    truth = normflows_truth(model, x)
    torch32 = normflows_truth(copy.deepcopy(model).float(), x.astype(np.float32), truth[1].astype(np.float32))
    check_against(realnvp.from_normflows(model, device="cpu"), truth, x, 1e-9)
    for device, kernel in float32_engines():
        flow = realnvp.from_normflows(model, device=device, kernel=kernel)
        check_against(flow, truth, x, F32_TOL, yardstick=torch32)
        assert flow.verify(x).passed


@pytest.mark.parametrize("activation,batch_norm", [(F.relu, True), (torch.tanh, False), (F.elu, True)])
def test_nflows_simple_realnvp_through_every_engine(activation, batch_norm):
    model = simple_realnvp(activation=activation, batch_norm=batch_norm)
    x = data(7)
    check_against(realnvp.from_nflows(model, device="cpu"), nflows_truth(model, x), x, 1e-9)
    # float32 engines on rows where the model's mass is, x = f⁻¹(ε) (as verify draws them): an
    # untrained nflows model with batch norm maps N(0, I) data to |z| ~ 1e3, where latent→data
    # loses every digit in float32 (PyTorch's own float32 inverse there: relative error ~1e4)
    with torch.no_grad():
        x = model._transform.inverse(torch.from_numpy(data(7, seed=5)))[0].numpy()
    truth = nflows_truth(model, x)
    torch32 = nflows_truth(copy.deepcopy(model).float(), x.astype(np.float32), truth[1].astype(np.float32))
    for device, kernel in float32_engines():
        check_against(realnvp.from_nflows(model, device=device, kernel=kernel), truth, x, F32_TOL, yardstick=torch32)


def test_torch_tensors_in_torch_tensors_out():
    model = masked_affine_model()
    flow = realnvp.from_normflows(model, device="native")
    x32 = torch.randn(100, 5)
    logp = flow.log_prob(x32)
    assert isinstance(logp, torch.Tensor) and logp.dtype == torch.float32 and logp.shape == (100,)
    z, ld = flow.forward(x32.double().requires_grad_())
    assert isinstance(z, torch.Tensor) and z.dtype == torch.float32
    ref = realnvp.from_normflows(model, device="cpu")
    assert ref.log_prob(x32).dtype == torch.float64
    np.testing.assert_array_equal(flow.log_prob(x32.numpy()), logp.numpy())
    with pytest.raises(TypeError, match="float32 or float64"):
        flow.log_prob(x32.to(torch.bfloat16))
    if torch.cuda.is_available():
        with pytest.raises(TypeError, match=r"\.cpu\(\)"):
            flow.log_prob(x32.cuda())


def test_a_live_model_converts_to_the_file_realnvp_convert_writes(tmp_path, cli):
    """Same converter, flags read from the modules: byte-identical files."""
    cases = [
        (masked_affine_model(), ["--activation", "leaky_relu:0.1", "--s-output", "tanh", "--keyless", "swap",
                                 "--flows", "8"]),
        (coupling_block_model(), ["--split-mode", "channel,checkerboard_inv,channel_inv,checkerboard"]),
    ]
    for k, (model, flags) in enumerate(cases):
        state = {key: v.detach().clone().contiguous() for key, v in model.state_dict().items()}
        save_file(state, tmp_path / f"state{k}.safetensors")
        cli("convert", "--from", "normflows", tmp_path / f"state{k}.safetensors", "-o", tmp_path / f"cli{k}.safetensors",
            *flags)
        realnvp.from_normflows(model, device="cpu").save(tmp_path / f"live{k}.safetensors")
        assert (tmp_path / f"cli{k}.safetensors").read_bytes() == (tmp_path / f"live{k}.safetensors").read_bytes()
    model = simple_realnvp()
    save_file({key: v.detach().clone().contiguous() for key, v in model.state_dict().items()}, tmp_path / "n.safetensors")
    cli("convert", "--from", "nflows", tmp_path / "n.safetensors", "-o", tmp_path / "n_cli.safetensors", "--arch",
        "simple-realnvp", "--features", 7, "--hidden", 16, "--layers", 4, "--blocks-per-layer", 2,
        "--batch-norm-between")
    realnvp.from_nflows(model, device="cpu").save(tmp_path / "n_live.safetensors")
    assert (tmp_path / "n_cli.safetensors").read_bytes() == (tmp_path / "n_live.safetensors").read_bytes()


def test_unsupported_modules_are_refused_by_path():
    model = masked_affine_model()
    model.flows[2].s.net[1] = nn.Softplus()
    with pytest.raises(realnvp.UnsupportedModel, match=r"flows\.2\.s\.net\.1: Softplus.*supported: nn\.ReLU"):
        realnvp.from_normflows(model)

    model = masked_affine_model(s_output="sigmoid")
    with pytest.raises(realnvp.UnsupportedModel, match=r"flows\.0\.s\.net\.5: the output function Sigmoid"):
        realnvp.from_normflows(model)

    model = masked_affine_model()
    model.flows.insert(3, nf.flows.Planar((5,)))
    with pytest.raises(realnvp.UnsupportedModel, match=r"flows\.3: normflows\..*Planar is not supported"):
        realnvp.from_normflows(model)

    model = masked_affine_model()
    model.flows[0].t.net[3] = nn.ReLU()  # the other nets use LeakyReLU(0.1)
    with pytest.raises(realnvp.UnsupportedModel, match=r"flows\.0\.t\.net\.3: hidden activation relu differs"):
        realnvp.from_normflows(model)

    model = nf.NormalizingFlow(nf.distributions.GaussianMixture(2, 4), [nf.flows.Permute(4)])
    with pytest.raises(realnvp.UnsupportedModel, match=r"q0: normflows\..*GaussianMixture.*supported: DiagGaussian"):
        realnvp.from_normflows(model)

    model = simple_realnvp()
    model.train()
    with pytest.raises(realnvp.UnsupportedModel, match=r"_transform\._transforms\.1: BatchNorm in training mode"):
        realnvp.from_nflows(model)

    model = simple_realnvp(activation=F.softplus)
    with pytest.raises(realnvp.UnsupportedModel, match=r"blocks\.0\.activation: softplus is not supported"):
        realnvp.from_nflows(model)

    with pytest.raises(realnvp.UnsupportedModel, match="<model>"):
        realnvp.from_nflows(masked_affine_model())
    assert issubclass(realnvp.UnsupportedModel, ValueError)
