//! The PyTorch importers against the libraries' own float64 outputs. Fixtures: state_dicts of
//! briefly trained normflows and nflows models and their `log_prob`, latent and inverse
//! outputs, made by tests/fixtures/pytorch/make_fixtures.py with the real libraries
//! (manifest.json lists each fixture and its `realnvp convert` options).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use realnvp::device::{open_engine, Device};
use realnvp::model::Flow;
use realnvp::reference;
use realnvp::verify::verify;
use safetensors::SafeTensors;

mod common;
use common::pytorch::{self, convert, fixture_dir, Fixture};

fn fixtures() -> Vec<Fixture> {
    pytorch::fixtures("manifest.json")
}

/// Float64 tensors of a fixture's `.expected.safetensors`.
fn expected(name: &str) -> HashMap<String, Vec<f64>> {
    pytorch::tensors(&format!("{name}.expected.safetensors"))
}

fn converted(f: &Fixture, dir: &Path) -> Flow {
    pytorch::converted(f, "", dir)
}

fn assert_close(name: &str, what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{name}: {what} length");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{name}: {what}[{k}] = {g}, library {w} (|Δ| = {:e})",
            (g - w).abs()
        );
    }
}

#[test]
fn every_fixture_matches_its_library_in_float64() {
    let dir = common::tempdir();
    let all = fixtures();
    assert!(all.iter().any(|f| f.library == "normflows") && all.iter().any(|f| f.library == "nflows"));
    for f in &all {
        let flow = converted(f, dir.path());
        let e = expected(&f.name);
        let (x, d) = (&e["x"], flow.dim);
        let n = x.len() / d;
        let mut logp = vec![0.0; n];
        reference::log_prob(&flow, x, &mut logp);
        // log p: 1e-9 absolute, as the issue demands
        for (k, (g, w)) in logp.iter().zip(&e["logp"]).enumerate() {
            assert!((g - w).abs() <= 1e-9, "{}: log p[{k}] = {g}, library {w}", f.name);
        }
        let (mut z, mut ld) = (vec![0.0; x.len()], vec![0.0; n]);
        reference::forward_to_latent(&flow, x, &mut z, &mut ld);
        assert_close(&f.name, "z", &z, &e["z"], 1e-9);
        let z_in = &e["z_in"];
        let (mut x_out, mut ld) = (vec![0.0; z_in.len()], vec![0.0; z_in.len() / d]);
        reference::inverse_to_data(&flow, z_in, &mut x_out, &mut ld);
        assert_close(&f.name, "x = f⁻¹(z)", &x_out, &e["x_out"], 1e-9);
        // the fixtures hold no inverse log-det: it must be minus the forward log-det at the
        // library's own x = f⁻¹(z) (the forward one is pinned to the library through log p and z)
        let (mut z_back, mut ld_fwd) = (vec![0.0; z_in.len()], vec![0.0; ld.len()]);
        reference::forward_to_latent(&flow, &e["x_out"], &mut z_back, &mut ld_fwd);
        for (k, (inv, fwd)) in ld.iter().zip(&ld_fwd).enumerate() {
            assert!((inv + fwd).abs() <= 1e-9 * (1.0 + fwd.abs()), "{}: inverse log-det[{k}] {inv} vs {fwd}", f.name);
        }
    }
}

#[test]
fn converted_fixtures_pass_verify_on_native_and_gpu() {
    let dir = common::tempdir();
    for f in fixtures() {
        let flow = Arc::new(converted(&f, dir.path()));
        let x = &expected(&f.name)["x"];
        let mut devices = vec![Device::Native];
        if !realnvp::gpu::adapters(&realnvp::gpu::instance()).is_empty() {
            devices.push(Device::Gpu(None));
        } else if std::env::var_os("REALNVP_REQUIRE_GPU").is_some() {
            panic!("REALNVP_REQUIRE_GPU is set but no wgpu adapter was found");
        }
        for device in devices {
            let engine = open_engine(flow.clone(), &device, &Default::default()).unwrap();
            let report = verify(engine.as_ref(), x).unwrap();
            assert!(report.passed(), "{} on {device}:\n{report}", f.name);
        }
    }
}

/// Re-serializes a fixture's state_dict after `edit`, writes it to `dir`, and converts it.
fn convert_edited(
    name: &str,
    library: &str,
    options: &[&str],
    dir: &Path,
    edit: impl FnOnce(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) -> String {
    let bytes = std::fs::read(fixture_dir().join(format!("{name}.state.safetensors"))).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> =
        st.tensors().into_iter().map(|(k, v)| (k, v.dtype(), v.shape().to_vec(), v.data().to_vec())).collect();
    edit(&mut tensors);
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(k, dt, shape, data)| {
            (k.clone(), safetensors::tensor::TensorView::new(*dt, shape.clone(), data).unwrap())
        })
        .collect();
    let path = dir.join("edited.safetensors");
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    let options: Vec<String> = options.iter().map(|s| s.to_string()).collect();
    let out = convert(&path, library, &options, &dir.join("out.safetensors"));
    assert!(!out.status.success(), "{name}: conversion should fail");
    assert!(!dir.join("out.safetensors").exists(), "a failed conversion left an output file");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn missing_unknown_and_mismatched_keys_are_named() {
    let dir = common::tempdir();
    let d = dir.path();
    let readme = ["--keyless", "swap", "--flows", "24"];
    // a missing key
    let key = "flows.2.flows.1.param_map.net.2.bias";
    let err = convert_edited("normflows_readme", "normflows", &readme, d, |t| t.retain(|e| e.0 != key));
    assert!(err.contains(key), "{err}");
    // an unknown key
    let err = convert_edited("normflows_masked_actnorm", "normflows", &["--activation", "leaky_relu:0.01"], d, |t| {
        let extra = t[0].clone();
        t.push(("flows.0.s.net.0.scale".into(), extra.1, extra.2, extra.3));
    });
    assert!(err.contains("flows.0.s.net.0.scale"), "{err}");
    // an uninitialised ActNorm
    let err = convert_edited("normflows_masked_actnorm", "normflows", &[], d, |t| {
        let e = t.iter_mut().find(|e| e.0 == "flows.1.data_dep_init_done").unwrap();
        e.3 = 0f32.to_le_bytes().to_vec();
    });
    assert!(err.contains("flows.1.data_dep_init_done") && err.contains("never initialised"), "{err}");
    // a parameter-free flow without --keyless
    let err = convert_edited("normflows_readme", "normflows", &[], d, |_| {});
    assert!(err.contains("flows.1 has no tensors") && err.contains("--keyless swap"), "{err}");
    // a pickle (torch.save) instead of a safetensors file
    std::fs::write(d.join("model.pt"), b"\x80\x02ctorch\n").unwrap();
    let out = convert(&d.join("model.pt"), "normflows", &[], &d.join("out.safetensors"));
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("safetensors.torch.save_file"));
    // mismatched options: split mode, hidden width, batch norm
    let err = convert_edited("normflows_shuffle_odd", "normflows", &["--split-mode", "channel"], d, |_| {});
    assert!(err.contains("flows.0.flows.1.param_map.net") && err.contains("--split-mode"), "{err}");
    let nflows = [
        "--arch",
        "simple-realnvp",
        "--features",
        "6",
        "--layers",
        "4",
        "--blocks-per-layer",
        "2",
        "--batch-norm-between",
    ];
    let err = convert_edited("nflows_realnvp_bn", "nflows", &[&nflows[..], &["--hidden", "16"]].concat(), d, |_| {});
    assert!(err.contains("_transform._transforms.0.transform_net.initial_layer.weight"), "{err}");
    let err = convert_edited("nflows_realnvp_bn", "nflows", &[&nflows[..8], &["--hidden", "32"]].concat(), d, |_| {});
    assert!(err.contains("running_mean") && err.contains("--batch-norm-between"), "{err}");
}

/// `--flows N` names the model's length: equal to the highest `flows.K` key + 1 it converts
/// the same model as without it (more would append keyless flows, fewer is refused, naming
/// the key); a weight that is not a matrix is refused with its key and shape, not indexed.
#[test]
fn flows_count_and_weight_shapes_are_checked() {
    let dir = common::tempdir();
    let d = dir.path();
    let state = fixture_dir().join("normflows_masked_actnorm.state.safetensors");
    let bytes = std::fs::read(&state).unwrap();
    let seen = SafeTensors::deserialize(&bytes)
        .unwrap()
        .names()
        .iter()
        .filter_map(|k| k.strip_prefix("flows.")?.split('.').next()?.parse::<usize>().ok())
        .max()
        .unwrap()
        + 1;
    let options = ["--activation", "leaky_relu:0.01", "--s-output", "tanh"];
    let run = |flows: Option<usize>, out: &str| {
        let mut o: Vec<String> = options.iter().map(|s| s.to_string()).collect();
        if let Some(n) = flows {
            o.extend(["--flows".to_string(), n.to_string()]);
        }
        convert(&state, "normflows", &o, &d.join(out))
    };
    assert!(run(None, "plain.safetensors").status.success());
    let exact = run(Some(seen), "exact.safetensors");
    assert!(exact.status.success(), "--flows {seen}: {}", String::from_utf8_lossy(&exact.stderr));
    assert_eq!(Flow::load(d.join("exact.safetensors")).unwrap(), Flow::load(d.join("plain.safetensors")).unwrap());
    let short = run(Some(seen - 1), "short.safetensors");
    let err = String::from_utf8_lossy(&short.stderr);
    assert!(!short.status.success() && err.contains(&format!("flows.{}", seen - 1)), "{err}");
    // a Linear weight flattened to a vector, or given a third axis
    let key = "flows.0.s.net.0.weight";
    for reshape in [|s: &[usize]| vec![s[0] * s[1]], |s: &[usize]| vec![1, s[0], s[1]]] {
        let err = convert_edited("normflows_masked_actnorm", "normflows", &options, d, |t| {
            let e = t.iter_mut().find(|e| e.0 == key).unwrap();
            e.2 = reshape(&e.2);
        });
        assert!(err.contains(key) && err.contains("expected [out, in]") && !err.contains("panicked"), "{err}");
    }
}
