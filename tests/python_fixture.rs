//! A model written from Python with `safetensors` alone, by the documented format, must load
//! and score exactly like an independent float64 NumPy implementation of the same math
//! (tests/fixtures/python/make_model.py).

use std::path::PathBuf;

use realnvp::model::Flow;
use realnvp::npy::read_all;
use realnvp::reference;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/python").join(name)
}

#[test]
fn python_written_model_matches_numpy_reference() {
    let flow = Flow::load(fixture("model.safetensors")).expect("the Python-written model loads");
    let (x, n, d) = read_all(&fixture("x.npy")).unwrap();
    let (expected_logp, _, _) = read_all(&fixture("logp.npy")).unwrap();
    let (expected_z, _, _) = read_all(&fixture("z.npy")).unwrap();
    assert_eq!((n, d), (200, flow.dim));

    let mut logp = vec![0.0; n];
    reference::log_prob(&flow, &x, &mut logp);
    let worst = logp.iter().zip(&expected_logp).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-9, "log p differs from NumPy by up to {worst}");

    let (mut z, mut ld) = (vec![0.0; x.len()], vec![0.0; n]);
    reference::forward_to_latent(&flow, &x, &mut z, &mut ld);
    let worst_z = z.iter().zip(&expected_z).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst_z < 1e-9, "z differs from NumPy by up to {worst_z}");
}
