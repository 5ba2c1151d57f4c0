//! The float64 reference against the mathematics: hand-computed coupling values, invertibility,
//! log-det against a finite-difference Jacobian, and densities that integrate to one.

mod common;

use realnvp::model::{
    Activation, Base, Conditioner, Coupling, Direction, Flow, Layer, Layout, Linear, Mlp, OutputFn, ScaleFn,
};
use realnvp::random::{random_mixed_flow, ALL_ACTIVATIONS};
use realnvp::reference;

const LN_2PI: f64 = 1.8378770664093453;

fn linear(inputs: usize, outputs: usize, weight: &[f64], bias: &[f64]) -> Linear {
    Linear { inputs, outputs, weight: weight.to_vec(), bias: bias.to_vec() }
}

/// The seed's layer, b = (1,1,0,0), with single-Linear s and t nets whose weights on the
/// transformed inputs are non-zero: the mask must stop x3, x4 from reaching them.
fn seed_layer(direction: Direction) -> Coupling {
    #[rustfmt::skip]
    let ws = [
        0.3, -0.2, 5.0, 7.0,
        0.1,  0.4, 6.0, 8.0,
        0.5, -0.7, 9.0, 1.0,
       -0.6,  0.2, 2.0, 3.0,
    ];
    #[rustfmt::skip]
    let wt = [
        1.0, 2.0, 3.0, 4.0,
        0.5, 0.5, 0.5, 0.5,
        0.9, -1.1, 4.0, 4.0,
        0.3, 0.8, -4.0, 4.0,
    ];
    Coupling {
        mask: vec![true, true, false, false],
        direction,
        conditioner: Conditioner::MaskedSt {
            s: Mlp {
                linears: vec![linear(4, 4, &ws, &[0.1, 0.2, -0.3, 0.25])],
                activation: Activation::Relu,
                output: OutputFn::Identity,
                residual_blocks: 0,
            },
            t: Mlp {
                linears: vec![linear(4, 4, &wt, &[0.0, 0.0, 0.4, -0.5])],
                activation: Activation::Relu,
                output: OutputFn::Identity,
                residual_blocks: 0,
            },
        },
        scale: ScaleFn::Exp,
    }
}

#[test]
fn seed_coupling_matches_hand_computed_values() {
    let flow = Flow {
        features: None,
        dim: 4,
        base: Base::StandardNormal,
        layers: vec![Layer::Coupling(seed_layer(Direction::DataToLatent))],
    };
    let x = [0.7, -1.3, 0.4, 2.1];
    // s3 = 0.5·x1 − 0.7·x2 − 0.3, s4 = −0.6·x1 + 0.2·x2 + 0.25 (x3, x4 are masked out)
    let s3 = 0.5 * 0.7 - 0.7 * -1.3 - 0.3;
    let s4 = -0.6 * 0.7 + 0.2 * -1.3 + 0.25;
    let t3 = 0.9 * 0.7 - 1.1 * -1.3 + 0.4;
    let t4 = 0.3 * 0.7 + 0.8 * -1.3 - 0.5;
    let expected = [0.7, -1.3, 0.4 * f64::exp(s3) + t3, 2.1 * f64::exp(s4) + t4];
    let mut z = [0.0; 4];
    let logdet = reference::row_to_latent(&flow, &x, &mut z);
    for i in 0..4 {
        assert!((z[i] - expected[i]).abs() < 1e-14, "z{} = {} but by hand {}", i + 1, z[i], expected[i]);
    }
    assert!((logdet - (s3 + s4)).abs() < 1e-14, "log-det {logdet} but s3 + s4 = {}", s3 + s4);
    let logp_by_hand = -0.5 * expected.iter().map(|v| v * v).sum::<f64>() - 2.0 * LN_2PI + s3 + s4;
    let logp = reference::row_log_prob(&flow, &x, &mut z);
    assert!((logp - logp_by_hand).abs() < 1e-13);

    // the closed-form inverse: x3 = (z3 − t3)·exp(−s3), with s, t evaluated at b⊙z = b⊙x
    let mut back = [0.0; 4];
    let inv_logdet = reference::row_to_data(&flow, &expected, &mut back);
    assert!((back[2] - (expected[2] - t3) * f64::exp(-s3)).abs() < 1e-14);
    assert!((inv_logdet + s3 + s4).abs() < 1e-14);
}

#[test]
fn latent_to_data_direction_inverts_the_stored_map() {
    // normflows' convention: the stored map goes latent→data, so data→latent divides.
    let flow = Flow {
        features: None,
        dim: 4,
        base: Base::StandardNormal,
        layers: vec![Layer::Coupling(seed_layer(Direction::LatentToData))],
    };
    let x = [0.7, -1.3, 0.4, 2.1];
    let s3 = 0.5 * 0.7 - 0.7 * -1.3 - 0.3;
    let t3 = 0.9 * 0.7 - 1.1 * -1.3 + 0.4;
    let s4 = -0.6 * 0.7 + 0.2 * -1.3 + 0.25;
    let mut z = [0.0; 4];
    let logdet = reference::row_to_latent(&flow, &x, &mut z);
    assert!((z[2] - (0.4 - t3) / f64::exp(s3)).abs() < 1e-14);
    assert!((logdet + s3 + s4).abs() < 1e-14);
}

#[test]
fn hidden_layer_and_shared_conditioner_by_hand() {
    // D = 3, b = (1,0,0); st: [1,2,4] with tanh hidden, layout interleaved; sigmoid scale.
    let st = Mlp {
        linears: vec![
            linear(1, 2, &[1.5, -0.5], &[0.1, 0.2]),
            linear(2, 4, &[1.0, 0.0, 0.0, 1.0, 0.5, 0.5, -1.0, 2.0], &[0.0, 0.1, 0.2, 0.3]),
        ],
        activation: Activation::Tanh,
        output: OutputFn::Identity,
        residual_blocks: 0,
    };
    let c = Coupling {
        mask: vec![true, false, false],
        direction: Direction::DataToLatent,
        conditioner: Conditioner::Shared { st, layout: Layout::Interleaved },
        scale: ScaleFn::Sigmoid { offset: 2.0, eps: 1e-3 },
    };
    let flow = Flow { features: None, dim: 3, base: Base::StandardNormal, layers: vec![Layer::Coupling(c)] };
    let x = [0.8, 1.5, -2.0];
    let h = [(1.5 * 0.8 + 0.1f64).tanh(), (-0.5 * 0.8 + 0.2f64).tanh()];
    let out = [h[0], h[1] + 0.1, 0.5 * h[0] + 0.5 * h[1] + 0.2, -h[0] + 2.0 * h[1] + 0.3];
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let f1 = sig(out[1] + 2.0) + 1e-3; // feature 1: shift out[0], scale input out[1]
    let f2 = sig(out[3] + 2.0) + 1e-3; // feature 2: shift out[2], scale input out[3]
    let mut z = [0.0; 3];
    let logdet = reference::row_to_latent(&flow, &x, &mut z);
    assert_eq!(z[0], 0.8);
    assert!((z[1] - (1.5 * f1 + out[0])).abs() < 1e-14);
    assert!((z[2] - (-2.0 * f2 + out[2])).abs() < 1e-14);
    assert!((logdet - (f1.ln() + f2.ln())).abs() < 1e-14);
}

fn mixed_flows() -> Vec<Flow> {
    let mut flows = Vec::new();
    for (k, seed) in common::seeds(48).into_iter().enumerate() {
        let dim = 1 + k % 7;
        let depth = 1 + k % 12;
        flows.push(random_mixed_flow(dim, depth, 24, seed));
    }
    flows
}

#[test]
fn random_flows_cover_every_kind() {
    let flows = mixed_flows();
    let couplings: Vec<&Coupling> = flows
        .iter()
        .flat_map(|f| f.layers.iter())
        .filter_map(|l| if let Layer::Coupling(c) = l { Some(c) } else { None })
        .collect();
    let any = |p: &dyn Fn(&Coupling) -> bool| couplings.iter().any(|c| p(c));
    assert!(any(&|c| matches!(c.conditioner, Conditioner::MaskedSt { .. })));
    assert!(any(&|c| matches!(c.conditioner, Conditioner::Shared { layout: Layout::ShiftScale, .. })));
    assert!(any(&|c| matches!(c.conditioner, Conditioner::Shared { layout: Layout::Interleaved, .. })));
    for scale in 0..4 {
        assert!(any(&|c| matches!(
            (&c.scale, scale),
            (ScaleFn::Exp, 0)
                | (ScaleFn::TanhExp { .. }, 1)
                | (ScaleFn::Sigmoid { .. }, 2)
                | (ScaleFn::SoftClampExp { .. }, 3)
        )));
    }
    assert!(any(&|c| c.direction == Direction::DataToLatent) && any(&|c| c.direction == Direction::LatentToData));
    for act in ALL_ACTIVATIONS {
        let uses = |m: &Mlp| std::mem::discriminant(&m.activation) == std::mem::discriminant(&act);
        assert!(
            any(&|c| match &c.conditioner {
                Conditioner::MaskedSt { s, .. } => uses(s),
                Conditioner::Shared { st, .. } => uses(st),
            }),
            "no random flow uses {act:?}"
        );
    }
    let layers = || flows.iter().flat_map(|f| f.layers.iter());
    assert!(layers().any(|l| matches!(l, Layer::ElementwiseAffine { direction: Direction::LatentToData, .. })));
    assert!(layers().any(|l| matches!(l, Layer::ElementwiseAffine { direction: Direction::DataToLatent, .. })));
    assert!(layers().any(|l| matches!(l, Layer::Permutation { .. })));
    assert!(flows.iter().any(|f| matches!(f.base, Base::DiagonalNormal { .. })));
}

#[test]
fn inverse_of_forward_is_identity_and_logdets_cancel() {
    for flow in mixed_flows() {
        flow.validate().unwrap();
        let n = 64;
        let x = common::gaussian_rows(n, flow.dim, 7);
        let (mut z, mut ld_fwd) = (vec![0.0; x.len()], vec![0.0; n]);
        reference::forward_to_latent(&flow, &x, &mut z, &mut ld_fwd);
        let (mut back, mut ld_inv) = (vec![0.0; x.len()], vec![0.0; n]);
        reference::inverse_to_data(&flow, &z, &mut back, &mut ld_inv);
        for (a, b) in x.iter().zip(&back) {
            assert!((a - b).abs() <= 1e-10 * a.abs().max(1.0), "x = {a}, inverse(forward(x)) = {b}");
        }
        for (f, i) in ld_fwd.iter().zip(&ld_inv) {
            assert!((f + i).abs() <= 1e-10 * f.abs().max(1.0), "forward log-det {f}, inverse log-det {i}");
        }
    }
}

#[test]
fn logdet_equals_finite_difference_jacobian() {
    for flow in mixed_flows() {
        let x = common::gaussian_rows(4, flow.dim, 11);
        for row in x.chunks(flow.dim) {
            let mut z = vec![0.0; flow.dim];
            let logdet = reference::row_to_latent(&flow, row, &mut z);
            let numeric = common::finite_difference_logdet(&flow, row, 1e-6);
            assert!(
                (logdet - numeric).abs() < 1e-6,
                "log-det {logdet} vs finite differences {numeric} (D = {})",
                flow.dim
            );
        }
    }
}

#[test]
fn one_dimensional_density_integrates_to_one() {
    for seed in common::seeds(4) {
        let flow = random_mixed_flow(1, 4, 8, seed);
        let (lo, hi, n) = (-40.0, 40.0, 400_000);
        let step = (hi - lo) / n as f64;
        let x: Vec<f64> = (0..n).map(|i| lo + (i as f64 + 0.5) * step).collect();
        let mut logp = vec![0.0; n];
        reference::log_prob(&flow, &x, &mut logp);
        let mass: f64 = logp.iter().map(|l| l.exp() * step).sum();
        assert!((mass - 1.0).abs() < 1e-3, "1-D density integrates to {mass}");
    }
}

#[test]
fn two_dimensional_density_integrates_to_one() {
    // couplings of every conditioner kind in D = 2, random base; grid [−40, 40]² (some random
    // flows put ~13 % of their mass beyond ±14)
    // each seed also with a diagonal base (its loc and scale enter the density directly)
    let diagonal = |flow: Flow| Flow {
        base: realnvp::model::Base::DiagonalNormal { loc: vec![0.8, -1.1], log_scale: vec![0.3, -0.45] },
        ..flow
    };
    let flows = common::seeds(3).into_iter().flat_map(|seed| {
        let flow = random_mixed_flow(2, 5, 16, seed);
        [(seed, flow.clone()), (seed, diagonal(flow))]
    });
    for (seed, flow) in flows {
        let couplings = flow.layers.iter().filter(|l| matches!(l, Layer::Coupling(_))).count();
        assert!(couplings >= 1, "seed {seed} drew no coupling layer");
        let (lo, hi, n) = (-40.0, 40.0, 2000);
        let step = (hi - lo) / n as f64;
        let mut x = Vec::with_capacity(2 * n * n);
        for i in 0..n {
            for j in 0..n {
                x.push(lo + (i as f64 + 0.5) * step);
                x.push(lo + (j as f64 + 0.5) * step);
            }
        }
        let mut logp = vec![0.0; n * n];
        reference::log_prob(&flow, &x, &mut logp);
        let mass: f64 = logp.iter().map(|l| l.exp() * step * step).sum();
        assert!((mass - 1.0).abs() < 1e-3, "2-D density (seed {seed}) integrates to {mass}");
    }
}

#[test]
fn nonfinite_rows_give_nan_for_that_row_only() {
    let flow = random_mixed_flow(5, 6, 16, 3);
    let mut x = common::gaussian_rows(6, 5, 5);
    let clean = x.clone();
    x[5 + 2] = f64::NAN;
    x[15 + 4] = f64::INFINITY;
    let (mut logp, mut logp_clean) = (vec![0.0; 6], vec![0.0; 6]);
    reference::log_prob(&flow, &x, &mut logp);
    reference::log_prob(&flow, &clean, &mut logp_clean);
    for r in 0..6 {
        if r == 1 || r == 3 {
            assert!(logp[r].is_nan());
        } else {
            assert_eq!(logp[r], logp_clean[r]);
        }
    }
}
