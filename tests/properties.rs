//! Property tests (proptest) over random valid models and inputs: the float64 reference's
//! invariants and the native engine's agreement with it. 256 cases per run keep CI
//! short; `PROPTEST_CASES=10000 cargo test --release --test properties` searches longer. A
//! failing case is shrunk and printed with the seeds that rebuild it.

use std::sync::Arc;

use proptest::prelude::*;
use realnvp::device::{open_engine, Device};
use realnvp::model::Flow;
use realnvp::random::random_mixed_flow;
use realnvp::reference;

mod common;

/// A random model of every layer kind (couplings of each conditioner, scale and activation,
/// elementwise affines, permutations; a standard or diagonal base), rebuilt from its seeds.
fn flows() -> impl Strategy<Value = (Flow, u64)> {
    (1usize..=9, 1usize..=6, 1usize..=24, any::<u64>())
        .prop_map(|(dim, depth, hidden, seed)| (random_mixed_flow(dim, depth, hidden, seed), seed))
}

/// `rows` standard-normal data rows scaled by `spread`.
fn rows(flow: &Flow, n: usize, seed: u64, spread: f64) -> Vec<f64> {
    common::gaussian_rows(n, flow.dim, seed).iter().map(|v| v * spread).collect()
}

fn cases() -> ProptestConfig {
    ProptestConfig { cases: 256, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(cases())]

    /// Every layer's latent→data map undoes its data→latent map, and their log-dets cancel
    /// (float64), layer by layer along the flow. Each coordinate is held to float64's bound
    /// for x = (z − t)/s: a few ε·(|x| + 2|z|/s), with s = ∂z_j/∂x_j measured on the layer
    /// (each layer is affine in its transformed coordinates); random models reach scales of
    /// e⁻³⁰⁰, where x·s + t has lost x in any float64 code: conditioning, not a bug.
    #[test]
    fn each_layer_inverse_undoes_its_forward((flow, seed) in flows(), spread in 0.1f64..3.0) {
        let d = flow.dim;
        let x = rows(&flow, 16, seed ^ 1, spread);
        for r in 0..16 {
            let mut v = x[r * d..(r + 1) * d].to_vec();
            for (i, layer) in flow.layers.iter().enumerate() {
                let one = Flow { features: None, dim: d, base: flow.base.clone(), layers: vec![layer.clone()] };
                let (mut out, mut back) = (vec![0.0; d], vec![0.0; d]);
                let ld = reference::row_to_latent(&one, &v, &mut out);
                let ld_back = reference::row_to_data(&one, &out, &mut back);
                if !ld.is_finite() || out.iter().any(|o| !o.is_finite()) {
                    break;
                }
                for j in 0..d {
                    let mut moved = v.clone();
                    moved[j] += 1.0;
                    let mut out_moved = vec![0.0; d];
                    reference::row_to_latent(&one, &moved, &mut out_moved);
                    let slope = (out_moved[j] - out[j]).abs(); // 0 where a permutation moved x_j
                    let bound = if slope > 0.0 { 16.0 * f64::EPSILON * (v[j].abs() + 2.0 * out[j].abs() / slope) } else { f64::INFINITY };
                    prop_assert!((v[j] - back[j]).abs() <= bound.max(1e-300), "row {r} layer {i} col {j}: {} → {} (bound {bound:e})", v[j], back[j]);
                }
                prop_assert!((ld + ld_back).abs() <= 1e-9 * (1.0 + ld.abs()), "row {r} layer {i}: log-dets {ld} and {ld_back}");
                v = out;
            }
        }
    }

    /// log p(x) = log N_base(z) + log|det ∂z/∂x| row by row.
    #[test]
    fn log_p_is_the_base_density_plus_the_log_det((flow, seed) in flows()) {
        let d = flow.dim;
        let x = rows(&flow, 8, seed ^ 2, 1.0);
        let (mut z, mut ld, mut lp) = (vec![0.0; x.len()], vec![0.0; 8], vec![0.0; 8]);
        reference::forward_to_latent(&flow, &x, &mut z, &mut ld);
        reference::log_prob(&flow, &x, &mut lp);
        for r in 0..8 {
            let want = reference::base_log_density(&flow.base, &z[r * d..(r + 1) * d]) + ld[r];
            if want.is_finite() {
                prop_assert!((lp[r] - want).abs() <= 1e-9 * (1.0 + want.abs()), "row {r}: {} vs {want}", lp[r]);
            }
        }
    }

    /// The native float32 engine agrees with the float64 reference on every output, by
    /// `verify`'s float32 rule (rows float32 cannot represent are reported, not failed).
    #[test]
    fn native_engine_agrees_with_the_reference((flow, seed) in flows()) {
        let flow = Arc::new(flow);
        let engine = open_engine(flow.clone(), &Device::Native, &Default::default()).unwrap();
        let x = rows(&flow, 33, seed ^ 3, 1.0);
        let report = realnvp::verify::verify(engine.as_ref(), &x).unwrap();
        prop_assert!(report.passed(), "{report}");
    }
}
