//! `--device all`: a batch split across engines must equal one engine's results, in order.

use std::sync::Arc;

use realnvp::cpu::CpuReference;
use realnvp::engine::{Engine, LogLikelihoodSum};
use realnvp::random::random_mixed_flow;
use realnvp::split::SplitEngine;

mod common;

#[test]
fn split_engine_merges_results_in_row_order() {
    let flow = Arc::new(random_mixed_flow(5, 6, 16, 42));
    let engines: Vec<Box<dyn Engine>> =
        (0..3).map(|_| Box::new(CpuReference::new(flow.clone())) as Box<dyn Engine>).collect();
    let split = SplitEngine::new(flow.clone(), engines).unwrap();
    let shares: f64 = split.shares().iter().map(|(_, s)| s).sum();
    assert!((shares - 1.0).abs() < 1e-12);
    let single = CpuReference::new(flow);
    let (split, single): (&dyn Engine, &dyn Engine) = (&split, &single);
    for n in [1, 7, 1000] {
        let x = common::gaussian_rows(n, 5, n as u64);
        let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
        let (mut sa, mut sb) = (LogLikelihoodSum::default(), LogLikelihoodSum::default());
        split.log_prob(&x, &mut a, &mut sa).unwrap();
        single.log_prob(&x, &mut b, &mut sb).unwrap();
        assert_eq!(a, b);
        assert_eq!((sa.rows, sa.finite_rows), (sb.rows, sb.finite_rows));
        assert!((sa.mean() - sb.mean()).abs() <= 1e-12 * sb.mean().abs());
        let (mut za, mut la, mut zb, mut lb) = (vec![0.0; 5 * n], vec![0.0; n], vec![0.0; 5 * n], vec![0.0; n]);
        split.forward_to_latent(&x, &mut za, &mut la).unwrap();
        single.forward_to_latent(&x, &mut zb, &mut lb).unwrap();
        assert_eq!(za, zb);
        assert_eq!(la, lb);
        let (mut xa, mut xb) = (vec![0.0; 5 * n], vec![0.0; 5 * n]);
        split.inverse_to_data(&zb, &mut xa, &mut la).unwrap();
        single.inverse_to_data(&zb, &mut xb, &mut lb).unwrap();
        assert_eq!(xa, xb);
        assert_eq!(la, lb);
    }
}

/// The agreement suite on a `--device all`-style split of two native engines.
mod two_natives {
    use super::*;
    use realnvp::model::Flow;
    use realnvp::native::NativeEngine;

    fn open(flow: &Flow, _chunk_rows: usize) -> Option<Box<dyn Engine>> {
        let flow = Arc::new(flow.clone());
        let natives: Vec<Box<dyn Engine>> =
            (0..2).map(|_| Box::new(NativeEngine::new(flow.clone())) as Box<dyn Engine>).collect();
        Some(Box::new(SplitEngine::new(flow, natives).expect("split engine")))
    }

    agreement_suite!(&open, rounding);
}
