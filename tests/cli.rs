//! The `realnvp` binary end to end on temporary files.

use std::path::Path;
use std::process::{Command, Output};

use realnvp::model::Flow;
use realnvp::npy::{read_all, write_all, NpyDtype};
use realnvp::reference;

mod common;

fn realnvp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_realnvp")).args(args).output().expect("run realnvp")
}

fn ok(args: &[&str]) -> String {
    let out = realnvp(args);
    assert!(out.status.success(), "realnvp {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[test]
fn init_score_forward_inverse_sample_round_trip() {
    let dir = common::tempdir();
    let d = dir.path();
    let model = d.join("m.safetensors");
    ok(&[
        "init",
        "--dim",
        "5",
        "--layers",
        "4",
        "--hidden",
        "16,16",
        "--activation",
        "leaky_relu:0.2",
        "--scale-fn",
        "tanh-exp",
        "--seed",
        "3",
        "-o",
        s(&model),
    ]);
    let info = ok(&["info", s(&model)]);
    assert!(info.contains("dimension        5") && info.contains("coupling"), "{info}");
    assert!(
        info.contains(
            "GPU kernel       tiered (interpreted while the unrolled kernel builds, then unrolled) by default"
        ),
        "{info}"
    );

    let x = common::gaussian_rows(1000, 5, 21);
    let x_path = d.join("x.npy");
    write_all(&x_path, &[1000, 5], &x, NpyDtype::F64).unwrap();
    let logp_path = d.join("logp.npy");
    let json = ok(&[
        "score",
        "--model",
        s(&model),
        "--input",
        s(&x_path),
        "--output",
        s(&logp_path),
        "--json",
        "--f64",
        "--chunk-rows",
        "77",
        "--device",
        "cpu",
    ]);
    let summary: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(summary["rows"], 1000);
    assert_eq!(summary["nonfinite_rows"], 0);

    let flow = Flow::load(&model).unwrap();
    let mut expected = vec![0.0; 1000];
    reference::log_prob(&flow, &x, &mut expected);
    let (logp, n, _) = read_all(&logp_path).unwrap();
    assert_eq!(n, 1000);
    assert_eq!(logp, expected, "--f64 output must equal the reference exactly");
    let mean = expected.iter().sum::<f64>() / 1000.0;
    assert!((summary["mean_log_likelihood"].as_f64().unwrap() - mean).abs() < 1e-9);
    let bpd = -mean / (5.0 * std::f64::consts::LN_2);
    assert!((summary["bits_per_dim"].as_f64().unwrap() - bpd).abs() < 1e-9);

    let (z_path, ld_path, back_path, ldi_path) =
        (d.join("z.npy"), d.join("ld.npy"), d.join("back.npy"), d.join("ldi.npy"));
    ok(&[
        "forward",
        "--model",
        s(&model),
        "--input",
        s(&x_path),
        "--output",
        s(&z_path),
        "--logdet",
        s(&ld_path),
        "--f64",
        "--device",
        "cpu",
    ]);
    ok(&[
        "inverse",
        "--model",
        s(&model),
        "--input",
        s(&z_path),
        "--output",
        s(&back_path),
        "--logdet",
        s(&ldi_path),
        "--f64",
        "--device",
        "cpu",
    ]);
    let (back, _, _) = read_all(&back_path).unwrap();
    let (ld, _, _) = read_all(&ld_path).unwrap();
    let (ldi, _, _) = read_all(&ldi_path).unwrap();
    for (a, b) in x.iter().zip(&back) {
        assert!((a - b).abs() < 1e-10 * a.abs().max(1.0));
    }
    for (a, b) in ld.iter().zip(&ldi) {
        assert!((a + b).abs() < 1e-10 * a.abs().max(1.0));
    }

    // float32 output by default: the float64 run's values rounded once (a byte-swapped or
    // otherwise garbled payload of the right size fails here)
    let z32 = d.join("z32.npy");
    ok(&["forward", "--model", s(&model), "--input", s(&x_path), "--output", s(&z32), "--device", "cpu"]);
    assert_eq!(std::fs::metadata(&z32).unwrap().len(), 128 + 1000 * 5 * 4);
    let (z32_values, _, _) = read_all(&z32).unwrap();
    let (z64_values, _, _) = read_all(&z_path).unwrap();
    for (k, (a, b)) in z32_values.iter().zip(&z64_values).enumerate() {
        assert_eq!(*a, f64::from(*b as f32), "float32 z[{k}]");
    }

    let samples = d.join("samples.npy");
    ok(&["sample", "--model", s(&model), "-n", "500", "--seed", "4", "--output", s(&samples), "--chunk-rows", "64"]);
    let again = d.join("samples2.npy");
    ok(&["sample", "--model", s(&model), "-n", "500", "--seed", "4", "--output", s(&again), "--chunk-rows", "500"]);
    assert_eq!(read_all(&samples).unwrap(), read_all(&again).unwrap(), "samples must not depend on chunking");
}

#[test]
fn wrong_dimension_fails_clearly_and_writes_nothing() {
    let dir = common::tempdir();
    let d = dir.path();
    let model = d.join("m.safetensors");
    ok(&["init", "--dim", "4", "--layers", "2", "--hidden", "8", "-o", s(&model)]);
    let x_path = d.join("x3.npy");
    write_all(&x_path, &[10, 3], &[0.5; 30], NpyDtype::F32).unwrap();
    let before = files_in(d);
    for cmd in ["score", "forward", "inverse"] {
        let out = realnvp(
            &[
                cmd,
                "--model",
                s(&model),
                "--input",
                s(&x_path),
                "--output",
                s(&d.join("out.npy")),
                "--logdet",
                s(&d.join("ld.npy")),
            ][..if cmd == "score" { 7 } else { 9 }],
        );
        assert!(!out.status.success(), "{cmd} accepted a 3-column input for a 4-D model");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("D = 4") && err.contains("3 columns"), "{cmd}: unclear message {err}");
        assert_eq!(files_in(d), before, "{cmd} left files behind");
    }
}

#[test]
fn bad_inputs_fail_with_messages() {
    let dir = common::tempdir();
    let d = dir.path();
    let model = d.join("m.safetensors");
    ok(&["init", "--dim", "2", "--layers", "2", "--hidden", "4", "-o", s(&model)]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("garbage.npy", b"hello".to_vec(), "not a valid .npy"),
        (
            "truncated.npy",
            {
                let p = d.join("full.npy");
                write_all(&p, &[100, 2], &[0.1; 200], NpyDtype::F32).unwrap();
                let b = std::fs::read(&p).unwrap();
                b[..b.len() - 10].to_vec()
            },
            "truncated",
        ),
    ];
    for (name, bytes, needle) in cases {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        let out = realnvp(&["score", "--model", s(&model), "--input", s(&p), "--output", s(&d.join("o.npy"))]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle) && err.contains(name), "{name}: {err}");
        assert!(!d.join("o.npy").exists());
    }
    let out = realnvp(&["score", "--model", s(&d.join("missing.safetensors")), "--input", "x.npy"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("missing.safetensors"));
    let out = realnvp(&["init", "--dim", "1", "--layers", "2", "-o", s(&d.join("one.safetensors"))]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("dim ≥ 2"));
    let out = realnvp(&["score", "--model", s(&model), "--input", "x.npy", "--device", "tpu"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("unknown device"));
    let out = realnvp(&["score", "--model", s(&model), "--input", "x.npy", "--kernel", "jit"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("unknown kernel form"));
}

#[test]
fn nan_rows_are_counted_and_isolated() {
    let dir = common::tempdir();
    let d = dir.path();
    let model = d.join("m.safetensors");
    ok(&["init", "--dim", "3", "--layers", "3", "--hidden", "8", "-o", s(&model)]);
    let mut x = common::gaussian_rows(50, 3, 2);
    let clean: Vec<f64> = x.iter().enumerate().filter(|(i, _)| i / 3 != 7 && i / 3 != 30).map(|(_, v)| *v).collect();
    x[7 * 3 + 1] = f64::NAN;
    x[30 * 3] = f64::NEG_INFINITY;
    let (x_path, clean_path) = (d.join("x.npy"), d.join("clean.npy"));
    write_all(&x_path, &[50, 3], &x, NpyDtype::F64).unwrap();
    write_all(&clean_path, &[48, 3], &clean, NpyDtype::F64).unwrap();
    let (lp, lp_clean) = (d.join("lp.npy"), d.join("lpc.npy"));
    let dirty: serde_json::Value = serde_json::from_str(&ok(&[
        "score",
        "--model",
        s(&model),
        "--input",
        s(&x_path),
        "--output",
        s(&lp),
        "--json",
        "--f64",
        "--chunk-rows",
        "8",
        "--device",
        "cpu",
    ]))
    .unwrap();
    let tidy: serde_json::Value = serde_json::from_str(&ok(&[
        "score",
        "--model",
        s(&model),
        "--input",
        s(&clean_path),
        "--output",
        s(&lp_clean),
        "--json",
        "--f64",
        "--device",
        "cpu",
    ]))
    .unwrap();
    assert_eq!(dirty["nonfinite_rows"], 2);
    assert_eq!(dirty["finite_rows"], 48);
    assert_eq!(dirty["mean_log_likelihood"], tidy["mean_log_likelihood"]);
    let (a, _, _) = read_all(&lp).unwrap();
    let (b, _, _) = read_all(&lp_clean).unwrap();
    assert!(a[7].is_nan() && a[30].is_nan());
    let finite: Vec<f64> = a.iter().copied().filter(|v| v.is_finite()).collect();
    assert_eq!(finite, b);
}

#[test]
fn demo_runs() {
    let out = ok(&["demo", "-n", "2000"]);
    assert!(out.contains("mean log-likelihood") && out.contains("OK"), "{out}");
}

/// `sample` draws x = f⁻¹(ε) with ε from the model's base: for one elementwise-affine layer
/// (data→latent z = x·e^a + b) and a diagonal normal base N(m, e^{2s}), x is normal with mean
/// (m − b)·e^{−a} and standard deviation e^{s − a} per feature, in closed form.
#[test]
fn sample_draws_from_the_model_distribution() {
    use realnvp::model::{Base, Direction, Flow, Layer};
    let dir = common::tempdir();
    let d = dir.path();
    let (a, b, m, s_) = ([0.7, -0.4], [1.5, -2.0], [0.3, -1.2], [0.5, -0.8]);
    let flow = Flow {
        features: None,
        dim: 2,
        base: Base::DiagonalNormal { loc: m.to_vec(), log_scale: s_.to_vec() },
        layers: vec![Layer::ElementwiseAffine {
            direction: Direction::DataToLatent,
            log_scale: a.to_vec(),
            shift: b.to_vec(),
        }],
    };
    let model = d.join("affine.safetensors");
    flow.save(&model, realnvp::format::TensorDtype::F64).unwrap();
    let n = 40_000;
    for device in ["cpu", "native"] {
        let out = d.join(format!("x_{device}.npy"));
        ok(&[
            "sample",
            "--model",
            s(&model),
            "-n",
            &n.to_string(),
            "--seed",
            "5",
            "--output",
            s(&out),
            "--device",
            device,
        ]);
        let (x, rows, cols) = read_all(&out).unwrap();
        assert_eq!((rows, cols), (n, 2));
        for i in 0..2 {
            let (mean, sd) = ((m[i] - b[i]) * (-a[i]).exp(), (s_[i] - a[i]).exp());
            let col: Vec<f64> = x.iter().skip(i).step_by(2).copied().collect();
            let got_mean = col.iter().sum::<f64>() / n as f64;
            let got_sd = (col.iter().map(|v| (v - got_mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
            // 5 standard errors: mean ± 5·sd/√n, sd ± 5·sd/√(2n)
            assert!(
                (got_mean - mean).abs() < 5.0 * sd / (n as f64).sqrt(),
                "{device} feature {i}: mean {got_mean} vs {mean}"
            );
            assert!(
                (got_sd - sd).abs() < 5.0 * sd / (2.0 * n as f64).sqrt(),
                "{device} feature {i}: sd {got_sd} vs {sd}"
            );
        }
    }
}

#[test]
fn init_stores_the_leaky_relu_slope_it_is_given() {
    let dir = common::tempdir();
    let model = dir.path().join("m.safetensors");
    ok(&["init", "--dim", "3", "--layers", "2", "--hidden", "8", "--activation", "leaky_relu:0.2", "-o", s(&model)]);
    let flow = Flow::load(&model).unwrap();
    let mut slopes = Vec::new();
    for layer in &flow.layers {
        if let realnvp::model::Layer::Coupling(c) = layer {
            if let realnvp::model::Conditioner::MaskedSt { s, t } = &c.conditioner {
                slopes.extend([s.activation, t.activation]);
            }
        }
    }
    assert!(!slopes.is_empty());
    for a in slopes {
        assert_eq!(a, realnvp::model::Activation::LeakyRelu { negative_slope: 0.2 });
    }
}

/// A float32 file with float32 outputs streams through in float32 (no float64 buffer); its
/// per-row results must be the float64 path's (`--f64`) rounded once, bit for bit, and the
/// mean must not depend on the output precision — on every CPU engine, for every pass.
#[test]
fn float32_files_give_the_float64_paths_results_rounded_once() {
    let dir = common::tempdir();
    let d = dir.path();
    let p = |name: &str| d.join(name).to_str().unwrap().to_owned();
    ok(&["init", "--dim", "5", "--layers", "4", "--hidden", "16", "--seed", "3", "-o", &p("m.safetensors")]);
    // 1000 rows: several native tiles and a partial one
    let x: Vec<f64> = common::gaussian_rows(1000, 5, 12).iter().map(|v| 2.0 * v).collect();
    write_all(Path::new(&p("x.npy")), &[1000, 5], &x, NpyDtype::F32).unwrap();
    let bits_equal_rounded = |f32_file: &str, f64_file: &str| {
        let (a, _, _) = read_all(Path::new(f32_file)).unwrap();
        let (b, _, _) = read_all(Path::new(f64_file)).unwrap();
        assert_eq!(a.len(), b.len());
        for (i, (a, b)) in a.iter().zip(&b).enumerate() {
            assert_eq!((*a as f32).to_bits(), (*b as f32).to_bits(), "{f32_file} value {i}: {a} vs {b} rounded");
        }
    };
    for device in ["native", "cpu"] {
        let common = ["--model", &p("m.safetensors"), "--input", &p("x.npy"), "--device", device];
        let mean = |extra: &[&str]| -> String {
            let out = ok(&[&["score", "--json"][..], &common, extra].concat());
            let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
            json["mean_log_likelihood"].to_string()
        };
        let m32 = mean(&["--output", &p("lp32.npy")]);
        let m64 = mean(&["--output", &p("lp64.npy"), "--f64"]);
        assert_eq!(m32, m64, "{device}: the mean depends on the output precision");
        bits_equal_rounded(&p("lp32.npy"), &p("lp64.npy"));
        for pass in ["forward", "inverse"] {
            ok(&[&[pass][..], &common, &["--output", &p("y32.npy"), "--logdet", &p("ld32.npy")]].concat());
            ok(&[&[pass][..], &common, &["--output", &p("y64.npy"), "--logdet", &p("ld64.npy"), "--f64"]].concat());
            bits_equal_rounded(&p("y32.npy"), &p("y64.npy"));
            bits_equal_rounded(&p("ld32.npy"), &p("ld64.npy"));
        }
    }
}

/// `sample --first-row K -n N` writes rows K…K+N−1 of one stream (shards stitch into one
/// run), `--with-log-prob` writes log q = `score` of the rows at temperature 1, and a
/// temperature spreads the rows.
#[test]
fn sample_row_ranges_stitch_and_log_q_is_the_score() {
    let dir = common::tempdir();
    let d = dir.path();
    let p = |name: &str| d.join(name).to_str().unwrap().to_owned();
    ok(&["init", "--dim", "3", "--layers", "4", "--hidden", "16", "--seed", "8", "-o", &p("m.safetensors")]);
    let sample = |extra: &[&str]| {
        ok(&[&["sample", "--model", &p("m.safetensors"), "--seed", "21", "--device", "native"][..], extra].concat())
    };
    sample(&["-n", "1000", "--output", &p("all.npy"), "--with-log-prob", &p("lq.npy")]);
    sample(&["-n", "300", "--output", &p("a.npy")]);
    sample(&["-n", "700", "--first-row", "300", "--output", &p("b.npy")]);
    let (all, _, _) = read_all(Path::new(&p("all.npy"))).unwrap();
    let (a, _, _) = read_all(Path::new(&p("a.npy"))).unwrap();
    let (b, _, _) = read_all(Path::new(&p("b.npy"))).unwrap();
    assert_eq!([a, b].concat(), all, "rows 0…299 and 300…999 are rows 0…999");
    ok(&[
        "score",
        "--model",
        &p("m.safetensors"),
        "--input",
        &p("all.npy"),
        "--output",
        &p("lp.npy"),
        "--device",
        "native",
    ]);
    let (lq, _, _) = read_all(Path::new(&p("lq.npy"))).unwrap();
    let (lp, _, _) = read_all(Path::new(&p("lp.npy"))).unwrap();
    for (r, (q, s)) in lq.iter().zip(&lp).enumerate() {
        assert!((q - s).abs() <= 2e-4 * (1.0 + s.abs()), "row {r}: log q {q} vs score {s}");
    }
    sample(&["-n", "1000", "--temperature", "0.25", "--output", &p("cold.npy")]);
    let (cold, _, _) = read_all(Path::new(&p("cold.npy"))).unwrap();
    let spread = |x: &[f64]| x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    assert!(spread(&cold) < spread(&all), "temperature 0.25 must concentrate the rows");
    let out =
        realnvp(&["sample", "--model", &p("m.safetensors"), "-n", "5", "--temperature", "0", "--output", &p("t0.npy")]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("temperature"));
    assert!(!d.join("t0.npy").exists());
}

/// Outputs get mode 0666 less the umask, like any program's files (issue #16: every output was
/// 0600, the temporary file's mode, and an overwritten 0644 file became 0600).
#[cfg(target_os = "linux")]
#[test]
fn outputs_get_the_umask_mode_not_the_temporary_files() {
    use std::os::unix::fs::PermissionsExt;

    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let umask = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .map(|m| u32::from_str_radix(m.trim(), 8).unwrap())
        .expect("Umask in /proc/self/status");
    let want = 0o666 & !umask;
    let dir = common::tempdir();
    let (model, x, lp, samples) = (
        dir.path().join("m.safetensors"),
        dir.path().join("x.npy"),
        dir.path().join("lp.npy"),
        dir.path().join("s.parquet"),
    );
    ok(&["init", "--dim", "3", "--layers", "2", "--hidden", "4", "-o", s(&model)]);
    write_all(&x, &[5, 3], &[0.5f32; 15], NpyDtype::F32).unwrap();
    std::fs::write(&lp, b"an older file").unwrap();
    std::fs::set_permissions(&lp, std::fs::Permissions::from_mode(0o640)).unwrap();
    ok(&["score", "--model", s(&model), "--input", s(&x), "--output", s(&lp), "--device", "cpu", "--quiet"]);
    ok(&["sample", "--model", s(&model), "-n", "10", "--output", s(&samples), "--device", "cpu", "--quiet"]);
    for path in [&model, &x, &lp, &samples] {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, want, "{}: mode {mode:o}, umask {umask:o}", path.display());
    }
}

/// Outputs that are an input (the data, the model, the state_dict; by inode, so `./x.npy` and
/// hard links count) or each other are refused before anything is written (issue #16: they
/// were accepted and destroyed the input).
#[test]
fn outputs_that_overlap_inputs_are_refused_and_the_inputs_survive() {
    let dir = common::tempdir();
    let (model, x) = (dir.path().join("m.safetensors"), dir.path().join("x.npy"));
    ok(&["init", "--dim", "3", "--layers", "2", "--hidden", "4", "-o", s(&model)]);
    write_all(&x, &[5, 3], &[0.5f32; 15], NpyDtype::F32).unwrap();
    let link = dir.path().join("x-link.npy");
    std::fs::hard_link(&x, &link).unwrap();
    let dotted = format!("{}/./x.npy", dir.path().display());
    let ld = dir.path().join("ld.npy");
    let (m, xs) = (s(&model), s(&x));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["score", "--model", m, "--input", xs, "--output", xs], "is the input"),
        (vec!["score", "--model", m, "--input", xs, "--output", &dotted], "is the input"),
        (vec!["score", "--model", m, "--input", xs, "--output", s(&link)], "is the input"),
        (vec!["score", "--model", m, "--input", xs, "--output", m], "is the input"),
        (vec!["forward", "--model", m, "--input", xs, "--output", s(&ld), "--logdet", s(&ld)], "given as two outputs"),
        (vec!["inverse", "--model", m, "--input", xs, "--output", xs], "is the input"),
        (vec!["sample", "--model", m, "-n", "3", "--output", m], "is the input"),
        (vec!["convert", "--from", "normflows", m, "-o", m], "is the input"),
    ];
    let (model_bytes, x_bytes) = (std::fs::read(&model).unwrap(), std::fs::read(&x).unwrap());
    for (args, message) in cases {
        let out = realnvp(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(message), "{args:?}: {stderr}");
        assert_eq!(std::fs::read(&model).unwrap(), model_bytes, "{args:?} changed the model");
        assert_eq!(std::fs::read(&x).unwrap(), x_bytes, "{args:?} changed the input");
        assert!(!ld.exists());
    }
}

/// The built-in reference models (`--model seed4d|d16|d64`) are exactly the `realnvp init`
/// models their documentation names (src/random.rs), so a benchmark of `d64` is a 64-D flow.
#[test]
fn builtin_models_are_the_init_models_they_document() {
    let dir = common::tempdir();
    let documented: [(&str, &[&str]); 3] = [
        ("seed4d", &["--dim", "4", "--layers", "6", "--hidden", "32,32", "--seed", "2024"]),
        (
            "d16",
            &[
                "--dim",
                "16",
                "--layers",
                "8",
                "--hidden",
                "64,64",
                "--activation",
                "leaky_relu",
                "--s-output",
                "tanh",
                "--seed",
                "16",
            ],
        ),
        ("d64", &["--dim", "64", "--layers", "8", "--hidden", "256,256", "--seed", "64"]),
    ];
    for (name, init) in documented {
        let path = dir.path().join(format!("{name}.safetensors"));
        let mut args = vec!["init", "--f64"];
        args.extend(init);
        args.extend(["-o", s(&path)]);
        ok(&args);
        let built_in = realnvp::random::reference_model(name).unwrap();
        assert_eq!(Flow::load(&path).unwrap(), built_in, "{name}");
        // and the command line resolves the name to it
        let info = ok(&["info", name]);
        assert!(info.contains(&format!("dimension        {}", built_in.dim)), "{info}");
    }
}

/// Issue #31: `--device all` split its rows across one CPU emulation's two backends (llvmpipe
/// under Vulkan and GL, 59 % / 41 % at 223 k rows/s, where native runs 8.8 M). Every backend is
/// enumerated here (WGPU_BACKEND removed, as a user's environment has it): `devices` names the
/// adapter it merges, and `all` on CPU emulations alone runs the native engine.
#[test]
fn device_all_runs_each_device_once_and_native_on_cpu_emulations() {
    let out = Command::new(env!("CARGO_BIN_EXE_realnvp")).arg("devices").env_remove("WGPU_BACKEND").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // "gpu:N  NAME  backend=B type=T …" per adapter
    let adapters: Vec<(&str, bool)> = text
        .lines()
        .filter(|l| l.contains("  backend="))
        .filter_map(|l| Some((l.split("  ").nth(1)?, l.contains(" type=Cpu "))))
        .collect();
    let named_twice = adapters.iter().enumerate().any(|(k, a)| adapters[..k].iter().any(|b| b.0 == a.0));
    if named_twice {
        assert!(text.contains("'s device under another backend"), "{text}");
    }
    if std::env::var("REALNVP_REQUIRE_GPU").as_deref() == Ok("1") {
        assert!(!adapters.is_empty(), "no adapter listed: {text}");
    }
    if adapters.iter().all(|a| a.1) {
        if !adapters.is_empty() {
            assert!(text.contains("every adapter is a CPU emulation"), "{text}");
        }
        let dir = common::tempdir();
        let out = Command::new(env!("CARGO_BIN_EXE_realnvp"))
            .args(["sample", "--model", "seed4d", "-n", "1000", "--device", "all", "--output"])
            .arg(dir.path().join("x.npy"))
            .env_remove("WGPU_BACKEND")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("device: native"), "{err}");
    }
}
