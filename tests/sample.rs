//! Sampling (issue #13): a row is a pure function of (seed, row index) on every engine,
//! whatever the chunking, threads or row ranges; the base draws are standard normal; log q is
//! the density of the (tempered) model.

use std::sync::Arc;

use realnvp::cpu::CpuReference;
use realnvp::device::{open_engine, Device};
use realnvp::engine::{Engine, LogLikelihoodSum};
use realnvp::model::{Base, Direction, Flow, Layer};
use realnvp::native::NativeEngine;
use realnvp::npy::{read_all, NpyDtype};
use realnvp::pipeline::{sample_to_file, StreamOptions};
use realnvp::random::{init_flow, random_mixed_flow, sample_base, InitSpec};
use realnvp::sample::Draw;
use realnvp::split::SplitEngine;
use realnvp::verify::FLOAT32_TOLERANCE;

mod common;

/// Every engine of this machine for `flow`: the reference, native, a split of two natives,
/// and the best GPU adapter where there is one (lavapipe in CI).
fn engines(flow: &Flow) -> Vec<Box<dyn Engine>> {
    let flow = Arc::new(flow.clone());
    let natives: Vec<Box<dyn Engine>> =
        (0..2).map(|_| Box::new(NativeEngine::new(flow.clone())) as Box<dyn Engine>).collect();
    let mut engines: Vec<Box<dyn Engine>> = vec![
        Box::new(CpuReference::new(flow.clone())),
        Box::new(NativeEngine::new(flow.clone())),
        Box::new(SplitEngine::new(flow.clone(), natives).unwrap()),
    ];
    // the GPU twice: its default chunks, and chunks of 256 rows (each chunk its own offset)
    let small_chunks = realnvp::gpu::GpuOptions { chunk_rows: 256, ..Default::default() };
    match open_engine(flow.clone(), &Device::Gpu(None), &Default::default()) {
        Ok(gpu) => {
            engines.push(gpu);
            engines.push(open_engine(flow, &Device::Gpu(None), &small_chunks).unwrap());
        }
        Err(e) if std::env::var_os("REALNVP_REQUIRE_GPU").is_some() => panic!("no GPU engine: {e}"),
        Err(_) => eprintln!("SKIPPED the GPU engine: no adapter"),
    }
    engines
}

fn draw_rows(engine: &dyn Engine, draw: &Draw, n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut x = vec![0.0f32; n * engine.flow().dim];
    let mut log_q = vec![0.0f32; n];
    engine.sample_rows(draw, &mut x, &mut log_q).unwrap();
    (x, log_q)
}

fn seed4d_like(seed: u64) -> Flow {
    init_flow(&InitSpec::seed4d(6), seed).unwrap()
}

#[test]
fn rows_depend_only_on_seed_and_row_index() {
    let flow = random_mixed_flow(5, 6, 24, 31);
    let dir = common::tempdir();
    for engine in engines(&flow) {
        let name = engine.name();
        let draw = Draw { seed: 99, first_row: 0, temperature: 1.0 };
        let (x, lq) = draw_rows(engine.as_ref(), &draw, 1000);
        // row ranges stitched together: rows 0…399 and 400…999
        let (a, la) = draw_rows(engine.as_ref(), &draw, 400);
        let (b, lb) = draw_rows(engine.as_ref(), &draw.skip(400), 600);
        assert_eq!([a, b].concat(), x, "{name}: stitched row ranges");
        assert_eq!([la, lb].concat(), lq, "{name}: stitched log q");
        // streamed to a file in chunks of 1, 7 and 4096 rows
        for chunk_rows in [1, 7, 4096] {
            let path = dir.path().join(format!("s{chunk_rows}.npy"));
            let opts =
                StreamOptions { chunk_rows, output_dtype: NpyDtype::F32, progress: false, ..StreamOptions::default() };
            sample_to_file(engine.as_ref(), 1000, &draw, &path, None, &opts).unwrap();
            let (file, _, _) = read_all(&path).unwrap();
            assert!(file.iter().zip(&x).all(|(f, &v)| *f == f64::from(v)), "{name}: chunks of {chunk_rows}");
        }
        // another seed draws other rows
        let (other, _) = draw_rows(engine.as_ref(), &Draw { seed: 100, ..draw }, 1000);
        assert!(other.iter().zip(&x).filter(|(a, b)| a == b).count() < 10, "{name}: seed 100 = seed 99");
    }
}

#[test]
fn rows_do_not_depend_on_the_thread_count() {
    let flow = seed4d_like(4);
    let native = NativeEngine::new(Arc::new(flow));
    let draw = Draw { seed: 5, first_row: 123_456_789_012, temperature: 0.8 };
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| draw_rows(&native, &draw, 3000))
    };
    assert_eq!(run(1), run(2));
}

#[test]
fn engines_draw_the_references_rows_within_float32_tolerance() {
    for seed in common::seeds(3) {
        let flow = seed4d_like(seed);
        let reference = CpuReference::new(Arc::new(flow.clone()));
        let draw = Draw { seed, first_row: 1 << 40, temperature: 1.0 };
        let n = 2000;
        let (x_ref, lq_ref) = draw_rows(&reference, &draw, n);
        for engine in engines(&flow).into_iter().skip(1) {
            let (x, lq) = draw_rows(engine.as_ref(), &draw, n);
            let rel = |a: f32, b: f32| (f64::from(a) - f64::from(b)).abs() / (1.0 + f64::from(b).abs());
            let worst_x = x.iter().zip(&x_ref).map(|(&a, &b)| rel(a, b)).fold(0.0, f64::max);
            let worst_lq = lq.iter().zip(&lq_ref).map(|(&a, &b)| rel(a, b)).fold(0.0, f64::max);
            assert!(worst_x <= FLOAT32_TOLERANCE, "{}: x differs from the reference by {worst_x}", engine.name());
            assert!(worst_lq <= FLOAT32_TOLERANCE, "{}: log q differs by {worst_lq}", engine.name());
        }
    }
}

/// Φ, the standard normal distribution function.
fn normal_cdf(x: f64) -> f64 {
    0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}

#[test]
fn base_draws_pass_kolmogorov_smirnov_against_the_standard_normal() {
    let n = 1_000_000;
    // D = 4: features 0, 1 are the cosine and sine of one Box–Muller pair, 2, 3 of the other
    let z = sample_base(&Base::StandardNormal, 4, n, 2026);
    for feature in 0..4 {
        let mut col: Vec<f64> = z.iter().skip(feature).step_by(4).copied().collect();
        col.sort_by(f64::total_cmp);
        let ks = col
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let f = normal_cdf(v);
                (f - i as f64 / n as f64).abs().max(((i + 1) as f64 / n as f64 - f).abs())
            })
            .fold(0.0, f64::max);
        // the critical value at α = 0.001 is 1.949/√n
        assert!(ks < 1.949 / (n as f64).sqrt(), "feature {feature}: KS statistic {ks}");
    }
    // the two normals of one pair, and of two pairs, are uncorrelated
    for (i, j) in [(0, 1), (0, 2), (1, 3)] {
        let r: f64 = z.chunks(4).map(|row| row[i] * row[j]).sum::<f64>() / n as f64;
        assert!(r.abs() < 5.0 / (n as f64).sqrt(), "features {i}, {j}: correlation {r}");
    }
}

#[test]
fn log_q_at_temperature_one_is_the_models_log_p() {
    let flow = random_mixed_flow(4, 5, 16, 8);
    for engine in engines(&flow) {
        let (x, lq) = draw_rows(engine.as_ref(), &Draw::new(11, 0), 1500);
        let mut lp = vec![0.0f32; 1500];
        engine.log_prob(&x, &mut lp, &mut LogLikelihoodSum::default()).unwrap();
        for (r, (&a, &b)) in lq.iter().zip(&lp).enumerate() {
            let err = f64::from(a - b).abs() / (1.0 + f64::from(b).abs());
            assert!(err <= FLOAT32_TOLERANCE, "{} row {r}: log q {a} vs score {b}", engine.name());
        }
    }
}

/// One elementwise-affine layer (data→latent z = x·e^a + b) on a diagonal base N(m, e^{2s}):
/// at temperature T, x ~ N((m − b)·e^{−a}, diag T²·e^{2(s − a)}) exactly, so the sample moments and
/// every row's log q have a closed form.
#[test]
fn tempered_samples_and_log_q_match_the_closed_form() {
    let (a, b, m, s) = ([0.7, -0.4, 0.1], [1.5, -2.0, 0.3], [0.3, -1.2, 2.0], [0.5, -0.8, 0.0]);
    let flow = Flow {
        features: None,
        dim: 3,
        base: Base::DiagonalNormal { loc: m.to_vec(), log_scale: s.to_vec() },
        layers: vec![Layer::ElementwiseAffine {
            direction: Direction::DataToLatent,
            log_scale: a.to_vec(),
            shift: b.to_vec(),
        }],
    };
    let n = 40_000;
    for temperature in [0.5, 1.0, 1.7] {
        for engine in engines(&flow) {
            let name = format!("{} at T = {temperature}", engine.name());
            let (x, lq) = draw_rows(engine.as_ref(), &Draw { seed: 3, first_row: 7, temperature }, n);
            let mean: Vec<f64> = (0..3).map(|i| (m[i] - b[i]) * (-a[i]).exp()).collect();
            let sd: Vec<f64> = (0..3).map(|i| temperature * (s[i] - a[i]).exp()).collect();
            for i in 0..3 {
                let col: Vec<f64> = x.iter().skip(i).step_by(3).map(|&v| f64::from(v)).collect();
                let got_mean = col.iter().sum::<f64>() / n as f64;
                let got_sd = (col.iter().map(|v| (v - got_mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
                // 5 standard errors
                assert!((got_mean - mean[i]).abs() < 5.0 * sd[i] / (n as f64).sqrt(), "{name}: mean {i} {got_mean}");
                assert!((got_sd - sd[i]).abs() < 5.0 * sd[i] / (2.0 * n as f64).sqrt(), "{name}: sd {i} {got_sd}");
            }
            // the covariance is diagonal: off-diagonal correlations within 5 standard errors of 0
            for (i, j) in [(0, 1), (0, 2), (1, 2)] {
                let r: f64 = x
                    .chunks(3)
                    .map(|row| (f64::from(row[i]) - mean[i]) * (f64::from(row[j]) - mean[j]) / (sd[i] * sd[j]))
                    .sum::<f64>()
                    / n as f64;
                assert!(r.abs() < 5.0 / (n as f64).sqrt(), "{name}: correlation of {i} and {j} is {r}");
            }
            for (r, row) in x.chunks(3).enumerate() {
                let expected: f64 = (0..3)
                    .map(|i| {
                        let u = (f64::from(row[i]) - mean[i]) / sd[i];
                        -0.5 * u * u - sd[i].ln() - 0.5 * (2.0 * std::f64::consts::PI).ln()
                    })
                    .sum();
                let err = (f64::from(lq[r]) - expected).abs() / (1.0 + expected.abs());
                assert!(err <= FLOAT32_TOLERANCE, "{name} row {r}: log q {} vs {expected}", lq[r]);
            }
        }
    }
}

#[test]
fn bad_temperatures_and_row_ranges_are_refused() {
    let flow = seed4d_like(1);
    for engine in engines(&flow) {
        for temperature in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let mut x = vec![0.0f32; 8];
            let mut lq = vec![0.0f32; 2];
            let err = engine.sample_rows(&Draw { seed: 0, first_row: 0, temperature }, &mut x, &mut lq);
            assert!(err.is_err(), "{}: temperature {temperature} accepted", engine.name());
        }
        // row indices past 2^64 − 1 would wrap around to the stream's first rows
        let mut x = vec![0.0f32; 8];
        let mut lq = vec![0.0f32; 2];
        let last = Draw { seed: 0, first_row: u64::MAX - 1, temperature: 1.0 };
        assert!(engine.sample_rows(&last, &mut x, &mut lq).is_err(), "{}: rows past 2^64 accepted", engine.name());
        let fits = Draw { first_row: u64::MAX - 2, ..last };
        engine.sample_rows(&fits, &mut x, &mut lq).unwrap();
    }
}
