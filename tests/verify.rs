//! `verify` itself: it passes every correct engine on trained models (rows from the model, the
//! user's data, far-tail rows that leave float32's range), and it fails an engine that is
//! wrong in any one output, in its reduction, or that turns in-range rows non-finite.

use std::sync::Arc;

use realnvp::cpu::CpuReference;
use realnvp::device::{open_engine, Device};
use realnvp::engine::{Engine, LogLikelihoodSum, Pass};
use realnvp::model::Flow;
use realnvp::random::random_mixed_flow;
use realnvp::real::Batch;
use realnvp::verify::{model_rows, verify};

mod common;
use common::pytorch;

fn devices() -> Vec<Device> {
    let mut devices = vec![Device::Native];
    if !realnvp::gpu::adapters(&realnvp::gpu::instance()).is_empty() {
        devices.push(Device::Gpu(None));
    } else if std::env::var_os("REALNVP_REQUIRE_GPU").is_some() {
        panic!("REALNVP_REQUIRE_GPU is set but no wgpu adapter was found");
    }
    devices
}

#[test]
fn verify_passes_trained_models_on_model_rows_their_data_and_the_far_tail() {
    let dir = common::tempdir();
    let mut ill_conditioned = 0;
    for f in pytorch::fixtures("acc_manifest.json") {
        let flow = Arc::new(pytorch::converted(&f, "acc_", dir.path()));
        let t = pytorch::tensors(&format!("acc_{}.peer.safetensors", f.name));
        // N(0, 3²) in data space: far outside the training data; for the exp-scale models many
        // of these rows leave float32's range in float64, which verify must report, not fail.
        let tail: Vec<f64> = common::gaussian_rows(2000, flow.dim, 3).iter().map(|v| 3.0 * v).collect();
        for device in devices() {
            let engine = open_engine(flow.clone(), &device, &Default::default()).unwrap();
            for (what, x) in [
                ("model rows", model_rows(&flow, 3000, 1).unwrap()),
                ("data rows", t["x_data"].clone()),
                ("N(0, 3²) rows", tail.clone()),
            ] {
                let report = verify(engine.as_ref(), &x).unwrap();
                assert!(report.passed(), "{} on {device}, {what}:\n{report}", f.name);
                let checks =
                    [&report.latent, &report.logdet, &report.log_prob, &report.inverse, &report.inverse_logdet];
                for c in checks {
                    assert!(
                        c.ill_conditioned <= c.compared && c.failed == 0,
                        "{} on {device}, {what}:\n{report}",
                        f.name
                    );
                    ill_conditioned += c.ill_conditioned;
                }
                // no input row was NaN/±Inf: the report has no line for them
                assert!(!report.to_string().contains("NaN/±Inf input"), "{report}");
            }
        }
    }
    eprintln!("ill-conditioned rows over every model, device and row set: {ill_conditioned}");
}

/// z = (x + 10⁴) − 10⁴ in two layers: float32 holds the intermediate 10⁴ + x only to 5e-4, so
/// every float32 engine (and plain float32) errs beyond the tolerance on z for many rows.
/// verify counts them as ill-conditioned, names the worst, and passes.
#[test]
fn ill_conditioned_rows_are_counted_not_failed() {
    let flow = Arc::new(common::elementwise_flow(2, [1e4, -1e4].map(|b| (vec![0.0, 0.0], vec![b, b]))));
    let x = common::gaussian_rows(400, 2, 6);
    let engine = open_engine(flow.clone(), &Device::Native, &Default::default()).unwrap();
    let report = verify(engine.as_ref(), &x).unwrap();
    assert!(report.passed(), "{report}");
    let c = &report.latent;
    assert!(c.ill_conditioned > 10 && c.ill_conditioned <= c.compared && c.failed == 0, "{report}");
    let (row, err, f32_err) = c.worst_ill_conditioned.unwrap();
    assert!(row < 400 && err > realnvp::verify::FLOAT32_TOLERANCE && f32_err > 0.0, "{report}");
    assert!(
        report.to_string().contains(&format!("ill-conditioned z (data→latent): {} rows", c.ill_conditioned)),
        "{report}"
    );
}

#[test]
fn out_of_range_rows_are_reported_not_compared() {
    // one coupling with exp scales of a large net: rows far out give e^{s} beyond float32
    let dir = common::tempdir();
    let f = pytorch::fixtures("acc_manifest.json").into_iter().find(|f| f.name == "normflows_masked_exp").unwrap();
    let flow = Arc::new(pytorch::converted(&f, "acc_", dir.path()));
    let far: Vec<f64> = common::gaussian_rows(2000, flow.dim, 4).iter().map(|v| 1e4 * v).collect();
    let engine = open_engine(flow.clone(), &Device::Native, &Default::default()).unwrap();
    let report = verify(engine.as_ref(), &far).unwrap();
    assert!(report.out_of_range > 0, "{report}");
    assert!(report.first_out_of_range.is_some());
    assert!(report.passed(), "{report}");
    assert!(report.to_string().contains("out of float32 range"));

    // z = (x·e¹⁰⁰)·e⁻¹⁰⁰: z and x are ordinary numbers, but both directions pass through
    // e¹⁰⁰ ≈ 2.7e43, beyond float32: every row is out of range both ways, none compared
    let flow = Arc::new(common::elementwise_flow(2, [100.0, -100.0].map(|a| (vec![a, a], vec![0.0, 0.0]))));
    let x = common::gaussian_rows(50, 2, 8);
    let engine = open_engine(flow, &Device::Native, &Default::default()).unwrap();
    let report = verify(engine.as_ref(), &x).unwrap();
    assert!(report.passed(), "{report}");
    assert_eq!((report.out_of_range, report.inverse_out_of_range), (50, 50), "{report}");
    assert_eq!((report.latent.compared, report.inverse.compared), (0, 0), "{report}");
}

/// Which output a [`Wrong`] engine gets wrong.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Latent,
    LogDet,
    LogProb,
    InverseX,
    InverseLogDet,
    /// The reduction's mean is off.
    Mean,
    /// The reduction counts one finite row too few.
    FiniteCount,
    /// Every 100th in-range row gets NaN log p.
    NonFinite,
}

/// The float64 reference with one deliberate fault.
struct Wrong(CpuReference, Fault);

fn nudge(v: &mut [f64]) {
    v.iter_mut().for_each(|x| *x += 1e-3 * (1.0 + x.abs()));
}

impl Engine for Wrong {
    fn name(&self) -> String {
        format!("wrong {:?}", self.1)
    }
    fn flow(&self) -> &Flow {
        self.0.flow()
    }
    fn run(&self, pass: Pass, batch: Batch<'_>, sum: &mut LogLikelihoodSum) -> realnvp::Result<()> {
        let Batch::F64(io) = batch else { panic!("verify hands engines float64 rows") };
        let reference: &dyn Engine = &self.0;
        match pass {
            Pass::ToLatent => {
                reference.forward_to_latent(io.input, io.rows, io.per_row)?;
                match self.1 {
                    Fault::Latent => nudge(&mut io.rows[..1]),
                    Fault::LogDet => nudge(&mut io.per_row[..1]),
                    _ => {}
                }
            }
            Pass::ToData => {
                reference.inverse_to_data(io.input, io.rows, io.per_row)?;
                match self.1 {
                    Fault::InverseX => {
                        let n = io.rows.len();
                        nudge(&mut io.rows[n - 1..])
                    }
                    Fault::InverseLogDet => nudge(&mut io.per_row[..1]),
                    _ => {}
                }
            }
            Pass::LogProb => {
                let lp = io.per_row;
                reference.log_prob(io.input, lp, &mut LogLikelihoodSum::default())?;
                match self.1 {
                    Fault::LogProb => nudge(&mut lp[..1]),
                    Fault::NonFinite => lp.iter_mut().step_by(100).for_each(|v| *v = f64::NAN),
                    _ => {}
                }
                let before = sum.clone();
                sum.add_rows(lp);
                match self.1 {
                    Fault::Mean => sum.sum += 1e-2 * (sum.finite_rows - before.finite_rows) as f64,
                    Fault::FiniteCount => sum.finite_rows -= 1,
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

#[test]
fn verify_fails_an_engine_wrong_in_any_one_output() {
    let flow = Arc::new(random_mixed_flow(4, 6, 16, 9));
    let x = model_rows(&flow, 500, 2).unwrap();
    assert!(verify(&CpuReference::new(flow.clone()), &x).unwrap().passed());
    // native float32: the mean is taken over every row (all agree), its metric |Δ|/(1+|ref|)
    let ok = verify(open_engine(flow.clone(), &Device::Native, &Default::default()).unwrap().as_ref(), &x).unwrap();
    assert!(ok.passed(), "{ok}");
    let m = &ok.mean;
    assert!(m.engine != m.reference, "float32 and float64 means agree to the last bit: the check below proves nothing");
    assert_eq!(m.rows, 500, "{ok}");
    assert!(m.metric == (m.engine - m.reference).abs() / (1.0 + m.reference.abs()), "{ok}");
    // NaN input rows must give NaN, and the report counts them
    let mut with_nan = x.clone();
    with_nan[4 * 7 + 2] = f64::NAN;
    let report = verify(&CpuReference::new(flow.clone()), &with_nan).unwrap();
    assert!(report.passed() && report.non_finite_input == 1, "{report}");
    assert!(report.to_string().contains("rows with NaN/±Inf input (must give NaN): 1"), "{report}");
    assert!(report.to_string().contains("rows in float32 range: 499 data→latent, 499 latent→data"), "{report}");
    for fault in [
        Fault::Latent,
        Fault::LogDet,
        Fault::LogProb,
        Fault::InverseX,
        Fault::InverseLogDet,
        Fault::Mean,
        Fault::FiniteCount,
        Fault::NonFinite,
    ] {
        let report = verify(&Wrong(CpuReference::new(flow.clone()), fault), &x).unwrap();
        assert!(!report.passed(), "{fault:?} passed:\n{report}");
        assert!(report.to_string().ends_with("FAIL"));
        // the report names the wrong output, how many rows and which
        let n = x.len() / 4;
        let (check, rows, first) = match fault {
            Fault::Latent => (&report.latent, 1, 0),
            Fault::LogDet => (&report.logdet, 1, 0),
            Fault::LogProb => (&report.log_prob, 1, 0),
            Fault::InverseX => (&report.inverse, 1, n - 1),
            Fault::InverseLogDet => (&report.inverse_logdet, 1, 0),
            Fault::NonFinite => (&report.log_prob, n.div_ceil(100), 0),
            Fault::Mean => {
                assert!(report.reduction.metric > realnvp::verify::FLOAT32_TOLERANCE, "{report}");
                continue;
            }
            Fault::FiniteCount => {
                assert_eq!(report.reduction.finite_rows + 1, report.reduction.expected_finite_rows, "{report}");
                continue;
            }
        };
        assert_eq!((check.failed, check.first_failed), (rows, Some(first)), "{fault:?}:\n{report}");
        assert!(report.to_string().contains(&format!("{rows} rows, first row {first}")), "{report}");
    }
}

#[test]
fn verify_needs_rows_of_the_model_width() {
    let flow = Arc::new(random_mixed_flow(3, 2, 8, 1));
    let engine = CpuReference::new(flow);
    assert!(verify(&engine, &[]).is_err());
    assert!(verify(&engine, &[0.0; 4]).is_err());
}

#[test]
fn cli_verify_draws_from_the_model_and_checks_input_width() {
    let dir = common::tempdir();
    let d = dir.path();
    let model = d.join("m.safetensors");
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    assert!(pytorch::realnvp(&["init", "--dim", "3", "--layers", "2", "--hidden", "8", "-o", &path(&model)])
        .status
        .success());
    let out = pytorch::realnvp(&["verify", "--model", &path(&model), "-n", "300", "--device", "native"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("300 drawn from the model") && stdout.contains("PASS"), "{stdout}");
    // a [100, 4] file for a D = 3 model is refused, not read as 133 rows
    let x = d.join("x.npy");
    realnvp::npy::write_all(&x, &[100, 4], &vec![0.5; 400], realnvp::npy::NpyDtype::F32).unwrap();
    let out = pytorch::realnvp(&["verify", "--model", &path(&model), "--input", &path(&x), "--device", "native"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("4 columns"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `verify` holds its rows and about ten result arrays in memory, so the library call refuses
/// more than `MAX_VALUES` values up front, as the CLI does (the zeroed rows here are never
/// touched: the allocation stays virtual).
#[test]
fn verify_refuses_more_values_than_it_can_hold() {
    let flow = Arc::new(random_mixed_flow(4, 2, 8, 1));
    let x = vec![0.0; realnvp::verify::MAX_VALUES + 4];
    let err = verify(&CpuReference::new(flow), &x).expect_err("refused");
    assert!(err.to_string().contains("verify holds its rows in memory"), "{err}");
}

/// The mean is compared over every in-range row whose log p passes, judged relatively: far
/// tail rows (log p ≈ −10⁴, where float32's absolute error is ~10⁻³ but its relative error
/// ~10⁻⁷) all count. A flow of elementwise affine layers keeps them well-conditioned.
#[test]
fn the_mean_counts_far_tail_rows_by_relative_error() {
    let d = 4;
    let flow = Arc::new(common::elementwise_flow(
        d,
        (0..3).map(|k| {
            ((0..d).map(|j| 0.1 * (j + k) as f64 - 0.2).collect(), (0..d).map(|j| 0.3 * j as f64 - 0.4).collect())
        }),
    ));
    let n = 400;
    let x: Vec<f64> = (0..n * d).map(|i| 100.0 * (((i * 7919) % 1000) as f64 / 500.0 - 1.0) + 0.37).collect();
    let native = open_engine(flow.clone(), &Device::Native, &Default::default()).unwrap();
    let report = verify(native.as_ref(), &x).unwrap();
    assert!(report.passed() && report.out_of_range == 0, "{report}");
    let m = &report.mean;
    assert!((m.engine - m.reference).abs() > 2e-4, "float32 and float64 means are this close: nothing is shown");
    assert_eq!(m.rows, n, "{report}");
}
