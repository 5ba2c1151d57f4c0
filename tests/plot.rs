//! `realnvp plot density|scores|bench` and `score --lowest` through the binary: valid PNG and
//! SVG files of the requested size, the density's peak where the closed form puts it, the
//! histogram's counts, the quantile and the lowest rows against a full sort, bad input.

use std::path::Path;
use std::process::{Command, Output};

use realnvp::model::{Base, Direction, Flow, Layer};
use realnvp::npy::{read_all, write_all, NpyDtype};

mod common;

fn realnvp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_realnvp")).args(args).output().expect("run realnvp")
}

fn ok(args: &[&str]) -> String {
    let out = realnvp(args);
    assert!(out.status.success(), "realnvp {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that must fail: no panic, the message names `words`, `output` not created.
fn refused(args: &[&str], words: &[&str], output: &Path) {
    let out = realnvp(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "realnvp {args:?} succeeded");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for w in words {
        assert!(stderr.contains(w), "realnvp {args:?}: {w:?} not in: {stderr}");
    }
    assert!(!output.exists(), "realnvp {args:?} left {}", output.display());
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Width, height and 8-bit RGB pixels of a PNG.
fn read_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb, "{}", path.display());
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// Width and height of an SVG's root element.
fn svg_size(path: &Path) -> (u32, u32) {
    let text = std::fs::read_to_string(path).unwrap();
    let root = &text[text.find("<svg").expect("an <svg> element")..];
    let root = &root[..root.find('>').unwrap()];
    let attr = |name: &str| -> u32 {
        let at = root.find(&format!("{name}=\"")).unwrap_or_else(|| panic!("no {name} in {root}")) + name.len() + 2;
        root[at..root[at..].find('"').unwrap() + at].parse().unwrap()
    };
    assert!(text.trim_end().ends_with("</svg>"), "{} is not complete", path.display());
    (attr("width"), attr("height"))
}

/// One elementwise-affine layer (data→latent z = x·e^a + b) on N(m, e^{2s}): x is normal with
/// mean (m − b)·e^{−a} (the density's peak) and standard deviation e^{s − a}.
fn gaussian_flow() -> (Flow, [f64; 2]) {
    let (a, b, m, s_) = ([0.3, -0.5], [0.4, -1.0], [1.1, -0.9], [0.2, -0.3]);
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
    let mean = [(m[0] - b[0]) * (-a[0]).exp(), (m[1] - b[1]) * (-a[1]).exp()];
    (flow, mean)
}

/// The heat map's pixel box (first, last column; first, last row): the leftmost run of
/// columns holding coloured (not grey) pixels — the colour bar is a separate run to its right.
fn heat_map_box(w: u32, h: u32, rgb: &[u8]) -> (usize, usize, usize, usize) {
    let coloured = |x: usize, y: usize| {
        let p = &rgb[3 * (y * w as usize + x)..][..3];
        p.iter().max().unwrap() - p.iter().min().unwrap() > 20
    };
    let column_has = |x: usize| (0..h as usize).filter(|&y| coloured(x, y)).count() > h as usize / 4;
    let c0 = (0..w as usize).find(|&x| column_has(x)).expect("no heat map");
    let c1 = (c0..w as usize).take_while(|&x| column_has(x)).last().unwrap();
    let rows: Vec<usize> = (0..h as usize).filter(|&y| coloured((c0 + c1) / 2, y)).collect();
    (c0, c1, rows[0], *rows.last().unwrap())
}

#[test]
fn density_peak_of_a_gaussian_flow_is_at_its_mean() {
    let dir = common::tempdir();
    let d = dir.path();
    let (flow, mean) = gaussian_flow();
    let model = d.join("gauss.safetensors");
    flow.save(&model, realnvp::format::TensorDtype::F64).unwrap();
    // an asymmetric range: the mean is nowhere near the picture's centre
    let range = [-1.0, 3.5, -2.5, 1.2];
    let range_arg = range.map(|v| v.to_string()).join(",");
    for device in ["cpu", "native"] {
        let png = d.join(format!("density-{device}.png"));
        let range_flag = format!("--range={range_arg}");
        ok(&["plot", "density", "--model", s(&model), &range_flag, "--device", device, "--quiet", "-o", s(&png)]);
        let (w, h, rgb) = read_png(&png);
        assert_eq!((w, h), (800, 600), "the default size");
        let (c0, c1, r0, r1) = heat_map_box(w, h, &rgb);
        let (pw, ph) = ((c1 - c0 + 1) as f64, (r1 - r0 + 1) as f64);
        assert!(pw > 400.0 && ph > 300.0, "plotting area {pw}×{ph}");
        let lum = |x: usize, y: usize| {
            let p = &rgb[3 * (y * w as usize + x)..][..3];
            0.2126 * p[0] as f64 + 0.7152 * p[1] as f64 + 0.0722 * p[2] as f64
        };
        let brightest =
            (r0..=r1).flat_map(|y| (c0..=c1).map(move |x| (x, y))).map(|(x, y)| lum(x, y)).fold(0.0, f64::max);
        // the centroid of the brightest plateau (colours are 8-bit: the top level spans a few pixels)
        let top: Vec<(usize, usize)> =
            (r0..=r1).flat_map(|y| (c0..=c1).map(move |x| (x, y))).filter(|&(x, y)| lum(x, y) == brightest).collect();
        let cx = top.iter().map(|p| p.0 as f64).sum::<f64>() / top.len() as f64;
        let cy = top.iter().map(|p| p.1 as f64).sum::<f64>() / top.len() as f64;
        let x = range[0] + (cx - c0 as f64 + 0.5) / pw * (range[1] - range[0]);
        let y = range[3] - (cy - r0 as f64 + 0.5) / ph * (range[3] - range[2]);
        let (px, py) = ((range[1] - range[0]) / pw, (range[3] - range[2]) / ph);
        assert!(
            (x - mean[0]).abs() <= px && (y - mean[1]).abs() <= py,
            "{device}: brightest at ({x}, {y}), the mean is ({}, {}); a pixel is {px} × {py}",
            mean[0],
            mean[1]
        );
    }
}

#[test]
fn every_plot_writes_png_and_svg_of_the_requested_size() {
    let dir = common::tempdir();
    let d = dir.path();
    let model = d.join("m.safetensors");
    ok(&["init", "--dim", "3", "--layers", "4", "--hidden", "16", "--seed", "2", "-o", s(&model)]);
    let x = d.join("x.npy");
    ok(&["sample", "--model", s(&model), "-n", "3000", "--output", s(&x), "--device", "native", "--quiet"]);
    let logp = d.join("logp.npy");
    ok(&["score", "--model", s(&model), "--input", s(&x), "--output", s(&logp), "--device", "native", "--quiet"]);
    let bench = d.join("bench.json");
    ok(&["bench", "--model", "seed4d", "-n", "20000", "--device", "native,cpu", "--repeats", "1", "--json", s(&bench)]);
    for (ext, size) in [("png", (640, 480)), ("svg", (900, 500)), ("png", (800, 600))] {
        let size_arg = format!("{}x{}", size.0, size.1);
        let pictures = [
            (
                "density",
                vec!["--model", s(&model), "--dims", "2,0", "--samples", "20000", "--device", "native", "--quiet"],
            ),
            (
                "density-data",
                vec![
                    "density",
                    "--model",
                    s(&model),
                    "--samples",
                    "20000",
                    "--data",
                    s(&x),
                    "--device",
                    "native",
                    "--quiet",
                ],
            ),
            ("scores", vec!["--input", s(&logp), "--quantile", "0.05", "--model", s(&model)]),
            ("bench", vec!["--json", s(&bench)]),
        ];
        for (name, args) in pictures {
            let out = d.join(format!("{name}-{size_arg}.{ext}"));
            let mut cmd = vec!["plot"];
            if name == "density-data" {
                cmd.extend(&args);
            } else {
                cmd.push(name);
                cmd.extend(&args);
            }
            cmd.extend(["--size", &size_arg, "-o", s(&out)]);
            ok(&cmd);
            let got = if ext == "png" {
                let (w, h, _) = read_png(&out);
                (w, h)
            } else {
                svg_size(&out)
            };
            assert_eq!(got, size, "{}", out.display());
            let files: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert!(
                files.iter().all(|f| !f.to_string_lossy().starts_with('.')),
                "a temporary file was left: {files:?}"
            );
        }
    }
}

/// log p values with NaN and ±∞ rows and a long left tail.
fn scores_file(path: &Path, n: usize) -> Vec<f64> {
    let mut v: Vec<f64> = common::gaussian_rows(n, 1, 8).iter().map(|z| -2.0 - z * z * 1.5).collect();
    for k in (0..n).step_by(97) {
        v[k] = [f64::NAN, f64::NEG_INFINITY, f64::INFINITY][k % 3];
    }
    write_all(path, &[n], &v, NpyDtype::F32).unwrap();
    // as stored: float32
    v.iter().map(|&x| x as f32 as f64).collect()
}

#[test]
fn score_histogram_counts_and_quantile_match_a_full_sort() {
    let dir = common::tempdir();
    let d = dir.path();
    let n = 50_000;
    let values = scores_file(&d.join("lp.npy"), n);
    let mut finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    finite.sort_by(f64::total_cmp);
    let q = 0.013;
    let out = ok(&[
        "plot",
        "scores",
        "--input",
        s(&d.join("lp.npy")),
        "--quantile",
        &q.to_string(),
        "--dim",
        "3",
        "--bins",
        "37",
        "--chunk-rows",
        "4096",
        "--json",
        "-o",
        s(&d.join("h.png")),
    ]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["rows"], n as u64);
    assert_eq!(j["finite_rows"], finite.len() as u64);
    assert_eq!(j["nonfinite_rows"], (n - finite.len()) as u64);
    let bins = j["bins"].as_array().unwrap();
    assert_eq!(bins.len(), 37);
    let counts: u64 = bins.iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(counts, finite.len() as u64, "the bars hold every finite row once");
    // each bar holds the values in its range
    for b in bins {
        let (from, to) = (b["from"].as_f64().unwrap(), b["to"].as_f64().unwrap());
        let last = b == bins.last().unwrap();
        let want = finite.iter().filter(|&&v| v >= from && (v < to || (last && v <= to))).count() as u64;
        let got = b["count"].as_u64().unwrap();
        // a value on a bar's edge may round into its neighbour
        assert!(got.abs_diff(want) <= 1, "bar [{from}, {to}): {got} vs {want}");
    }
    let mean = finite.iter().sum::<f64>() / finite.len() as f64;
    assert!((j["mean_log_likelihood"].as_f64().unwrap() - mean).abs() < 1e-9 * mean.abs());
    let bpd = j["bits_per_dim"].as_f64().unwrap();
    assert!((bpd + mean / (3.0 * std::f64::consts::LN_2)).abs() < 1e-9);
    // NumPy's default quantile: linear between the order statistics around q(n − 1)
    let pos = q * (finite.len() - 1) as f64;
    let (lo, hi) = (finite[pos.floor() as usize], finite[pos.ceil() as usize]);
    let want = lo + (pos - pos.floor()) * (hi - lo);
    let t = &j["threshold"];
    assert_eq!(t["exact"], true);
    assert!((t["log_p"].as_f64().unwrap() - want).abs() <= 1e-12 * want.abs(), "{t} vs {want}");
    let below = finite.iter().filter(|&&v| v < want).count() as u64;
    assert_eq!(t["rows_below"], below);
}

#[test]
fn score_lowest_equals_a_full_sort() {
    let dir = common::tempdir();
    let d = dir.path();
    let model = d.join("m.safetensors");
    ok(&["init", "--dim", "4", "--layers", "4", "--hidden", "16", "--seed", "11", "-o", s(&model)]);
    let n = 20_000;
    let mut x = common::gaussian_rows(n, 4, 5);
    for k in (0..n).step_by(501) {
        x[4 * k + 1] = f64::NAN;
    }
    let input = d.join("x.npy");
    write_all(&input, &[n, 4], &x, NpyDtype::F32).unwrap();
    for device in ["native", "cpu"] {
        let logp = d.join(format!("lp-{device}.npy"));
        let k = 25;
        let out = ok(&[
            "score",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--output",
            s(&logp),
            "--device",
            device,
            "--chunk-rows",
            "999",
            "--lowest",
            &k.to_string(),
            "--json",
            "--quiet",
        ]);
        let j: serde_json::Value = serde_json::from_str(&out).unwrap();
        let (lp, rows, _) = read_all(&logp).unwrap();
        assert_eq!(rows, n);
        let mut order: Vec<usize> = (0..n).filter(|&r| lp[r].is_finite()).collect();
        assert!(order.len() < n, "NaN rows are not scored");
        order.sort_by(|&a, &b| lp[a].total_cmp(&lp[b]).then(a.cmp(&b)));
        let got: Vec<(u64, f64)> = j["lowest"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["row"].as_u64().unwrap(), r["log_p"].as_f64().unwrap()))
            .collect();
        let want: Vec<(u64, f64)> = order[..k].iter().map(|&r| (r as u64, lp[r])).collect();
        assert_eq!(got, want, "{device}");
    }
    // absent unless asked for
    let out = ok(&["score", "--model", s(&model), "--input", s(&input), "--device", "native", "--json", "--quiet"]);
    assert!(!out.contains("lowest"), "{out}");
}

#[test]
fn bad_plot_input_is_refused_and_writes_nothing() {
    let dir = common::tempdir();
    let d = dir.path();
    let (flow, _) = gaussian_flow();
    let model = d.join("gauss.safetensors");
    flow.save(&model, realnvp::format::TensorDtype::F64).unwrap();
    let m = s(&model);
    let png = d.join("out.png");
    let o = s(&png);
    refused(&["plot", "density", "--model", m, "--dims", "0,2", "-o", o], &["--dims 0,2", "D = 2"], &png);
    refused(&["plot", "density", "--model", m, "--dims", "1,1", "-o", o], &["two different dimensions"], &png);
    refused(&["plot", "density", "--model", m, "--dims", "speed,1", "-o", o], &["\"speed\"", "feature name"], &png);
    refused(&["plot", "density", "--model", m, "--range=1,0,0,1", "-o", o], &["--range"], &png);
    refused(&["plot", "density", "--model", m, "-o", s(&d.join("out.jpg"))], &[".png or .svg"], &d.join("out.jpg"));
    refused(&["plot", "density", "--model", m, "--size", "50x50", "-o", o], &["200 to 4096"], &png);
    let x3 = d.join("x3.npy");
    write_all(&x3, &[10, 3], &[0.5; 30], NpyDtype::F32).unwrap();
    refused(&["plot", "density", "--model", m, "--data", s(&x3), "-o", o], &["D = 2", "3 columns"], &png);
    // scores: empty, no finite value, more than one column, a bad quantile
    let empty = d.join("empty.npy");
    write_all::<f32>(&empty, &[0], &[], NpyDtype::F32).unwrap();
    refused(&["plot", "scores", "--input", s(&empty), "-o", o], &["no rows"], &png);
    let nans = d.join("nans.npy");
    write_all(&nans, &[3], &[f64::NAN, f64::INFINITY, f64::NAN], NpyDtype::F32).unwrap();
    refused(&["plot", "scores", "--input", s(&nans), "-o", o], &["none of its 3 rows"], &png);
    refused(&["plot", "scores", "--input", s(&x3), "-o", o], &["one log p per row", "3 columns"], &png);
    let lp = d.join("lp.npy");
    write_all(&lp, &[3], &[-1.0, -2.0, -3.0], NpyDtype::F32).unwrap();
    refused(&["plot", "scores", "--input", s(&lp), "--quantile", "1", "-o", o], &["--quantile 1"], &png);
    // bench: not a report
    let junk = d.join("junk.json");
    std::fs::write(&junk, "{\"model\": 3}").unwrap();
    refused(&["plot", "bench", "--json", s(&junk), "-o", o], &["realnvp bench --json"], &png);
    // an existing picture is left as it was when a run fails
    std::fs::write(&png, b"previous").unwrap();
    let out = realnvp(&["plot", "scores", "--input", s(&empty), "-o", o]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read(&png).unwrap(), b"previous");
}
