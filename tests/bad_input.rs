//! The bad-input matrix (issue #16), one test per row, through the `realnvp` binary: each bad
//! input must exit non-zero with a message that names the problem, never panic, leave an
//! existing output of the same name as it was, and leave no other file behind. Zero rows is
//! the one valid row: an empty output and a summary that says so.

use std::path::PathBuf;
use std::process::{Command, Output};

use realnvp::format::TensorDtype;
use realnvp::npy::{write_all, NpyDtype};
use realnvp::random::{init_flow, InitSpec};
use safetensors::tensor::TensorView;
use safetensors::SafeTensors;
use serde_json::Value;

mod common;

/// What an existing output holds before a refused run; it must hold it after.
const PREVIOUS: &[u8] = b"an earlier run's output";

/// A directory with a valid 4-D model `m.safetensors`, valid rows `x.npy` [20, 4], and an
/// existing output `out.npy` holding [`PREVIOUS`].
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = common::tempdir();
        let flow = init_flow(&InitSpec { dim: 4, layers: 2, hidden: vec![8], ..InitSpec::seed4d(2) }, 3).unwrap();
        flow.save(dir.path().join("m.safetensors"), TensorDtype::F32).unwrap();
        let x: Vec<f32> = (0..80).map(|i| (i as f32 * 0.37).sin()).collect();
        write_all(&dir.path().join("x.npy"), &[20, 4], &x, NpyDtype::F32).unwrap();
        std::fs::write(dir.path().join("out.npy"), PREVIOUS).unwrap();
        Setup { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_owned()
    }

    fn write(&self, name: &str, bytes: &[u8]) -> String {
        std::fs::write(self.path(name), bytes).unwrap();
        self.arg(name)
    }

    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// Runs `args`; asserts the refusal: non-zero exit, no panic, every needle in the message,
    /// `out.npy` unchanged, no new file.
    fn refused(&self, args: &[&str], needles: &[&str]) -> String {
        let before = self.files();
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?} succeeded; stderr: {stderr}");
        assert!(out.status.code().is_some(), "{args:?} died of a signal: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "{args:?}: the message {stderr:?} does not mention {needle:?}");
        }
        assert_eq!(std::fs::read(self.path("out.npy")).unwrap(), PREVIOUS, "{args:?} replaced the existing output");
        assert_eq!(self.files(), before, "{args:?} left files behind");
        stderr
    }

    /// `score` of `input` into the existing `out.npy`, refused with `needles`.
    fn score_refused(&self, input: &str, needles: &[&str]) {
        let (m, out) = (self.arg("m.safetensors"), self.arg("out.npy"));
        self.refused(&["score", "--model", &m, "--input", input, "--output", &out, "--device", "native"], needles);
    }

    /// `score` of `x.npy` with the model `model`, refused with `needles`.
    fn model_refused(&self, model: &str, needles: &[&str]) {
        let (x, out) = (self.arg("x.npy"), self.arg("out.npy"));
        self.refused(&["score", "--model", model, "--input", &x, "--output", &out, "--device", "native"], needles);
    }

    /// The model file with its config and tensors edited.
    fn edited_model(&self, edit: impl FnOnce(&mut Value, &mut Vec<(String, Vec<usize>, Vec<u8>)>)) -> Vec<u8> {
        let bytes = std::fs::read(self.path("m.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        let mut config: Value = serde_json::from_str(&meta.metadata().as_ref().unwrap()["realnvp"]).unwrap();
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> =
            st.tensors().into_iter().map(|(name, v)| (name, v.shape().to_vec(), v.data().to_vec())).collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        edit(&mut config, &mut tensors);
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .map(|(name, shape, data)| {
                (name.clone(), TensorView::new(safetensors::Dtype::F32, shape.clone(), data).unwrap())
            })
            .collect();
        let meta = std::collections::HashMap::from([("realnvp".to_owned(), config.to_string())]);
        safetensors::serialize(views, Some(meta)).unwrap()
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_realnvp")).args(args).env("RUST_BACKTRACE", "0").output().expect("run realnvp")
}

/// An `.npy` file: the header dict as given (NumPy's layout: magic, version 1.0, padded to 64
/// bytes) and `data`.
fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

#[test]
fn wrong_dimension() {
    let s = Setup::new();
    let f = s.write("x3.npy", &npy("<f4", false, "(10, 3)", &[0; 120]));
    s.score_refused(&f, &["x3.npy", "D = 4", "3 columns"]);
}

#[test]
fn one_dimensional_array_for_a_multivariate_model() {
    let s = Setup::new();
    let f = s.write("x1.npy", &npy("<f4", false, "(8,)", &[0; 32]));
    s.score_refused(&f, &["x1.npy", "D = 4", "1 column"]);
}

#[test]
fn three_dimensional_array() {
    let s = Setup::new();
    let f = s.write("x3d.npy", &npy("<f4", false, "(2, 2, 4)", &[0; 64]));
    s.score_refused(&f, &["x3d.npy", "2-D", "[2, 2, 4]"]);
}

#[test]
fn zero_dimensional_array() {
    let s = Setup::new();
    let f = s.write("x0d.npy", &npy("<f4", false, "()", &[0; 4]));
    s.score_refused(&f, &["x0d.npy", "2-D", "[]"]);
}

#[test]
fn integer_dtype() {
    let s = Setup::new();
    let f = s.write("xi.npy", &npy("<i4", false, "(5, 4)", &[0; 80]));
    s.score_refused(&f, &["xi.npy", "'<i4'", "'<f4'"]);
}

#[test]
fn float16_dtype() {
    let s = Setup::new();
    let f = s.write("xh.npy", &npy("<f2", false, "(5, 4)", &[0; 40]));
    s.score_refused(&f, &["xh.npy", "'<f2'", "'<f4'"]);
}

#[test]
fn complex_dtype() {
    let s = Setup::new();
    let f = s.write("xc.npy", &npy("<c8", false, "(5, 4)", &[0; 160]));
    s.score_refused(&f, &["xc.npy", "'<c8'", "'<f4'"]);
}

/// Fortran-order and big-endian arrays (what `np.save` writes for `df.to_numpy()` of a float
/// DataFrame, or for data from a big-endian source) read as the same rows as C-order
/// little-endian ones, in chunks of 3 rows so that every column run after the first chunk
/// starts mid-column.
#[test]
fn fortran_order_and_big_endian_arrays_read_the_same_rows() {
    let s = Setup::new();
    let x = std::fs::read(s.path("x.npy")).unwrap();
    let values: Vec<f32> = bytemuck::pod_collect_to_vec(&x[x.len() - 320..]);
    let (rows, cols) = (20, 4);
    let (m, reference) = (s.arg("m.safetensors"), s.arg("ref.npy"));
    let score = |input: &str, output: &str| {
        let out = run(&[
            "score",
            "--model",
            &m,
            "--input",
            input,
            "--output",
            output,
            "--device",
            "cpu",
            "--chunk-rows",
            "3",
            "--quiet",
        ]);
        assert!(out.status.success(), "{input}: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::read(output).unwrap()
    };
    // the elements in C or Fortran order, as float32 or float64 bytes of either byte order
    let bytes = |fortran: bool, f64_: bool, big: bool| -> Vec<u8> {
        let order: Vec<usize> = if fortran {
            (0..cols).flat_map(|c| (0..rows).map(move |r| r * cols + c)).collect()
        } else {
            (0..rows * cols).collect()
        };
        order
            .into_iter()
            .flat_map(|k| match (f64_, big) {
                (false, false) => values[k].to_le_bytes().to_vec(),
                (false, true) => values[k].to_be_bytes().to_vec(),
                (true, false) => f64::from(values[k]).to_le_bytes().to_vec(),
                (true, true) => f64::from(values[k]).to_be_bytes().to_vec(),
            })
            .collect()
    };
    let want = score(&s.arg("x.npy"), &reference);
    for (name, descr, fortran) in [("f.npy", "<f4", true), ("b.npy", ">f4", false), ("fb.npy", ">f4", true)] {
        let f = s.write(name, &npy(descr, fortran, "(20, 4)", &bytes(fortran, false, descr == ">f4")));
        assert_eq!(score(&f, &s.arg("o.npy")), want, "{name}");
    }
    let want64 = score(&s.write("c64.npy", &npy("<f8", false, "(20, 4)", &bytes(false, true, false))), &reference);
    for (name, descr, fortran) in [("f64.npy", "<f8", true), ("b64.npy", ">f8", false), ("fb64.npy", ">f8", true)] {
        let f = s.write(name, &npy(descr, fortran, "(20, 4)", &bytes(fortran, true, descr == ">f8")));
        assert_eq!(score(&f, &s.arg("o.npy")), want64, "{name}");
    }
}

/// `'=f4'` and `'f4'` are native order, which NumPy reads as little-endian here: accepted, and
/// the same values as `'<f4'`.
#[test]
fn native_order_dtypes_are_read_as_little_endian() {
    let s = Setup::new();
    let x = std::fs::read(s.path("x.npy")).unwrap();
    let data = &x[x.len() - 320..];
    let (m, reference) = (s.arg("m.safetensors"), s.arg("ref.npy"));
    let score = |input: &str, output: &str| {
        let out = run(&["score", "--model", &m, "--input", input, "--output", output, "--device", "cpu", "--quiet"]);
        assert!(out.status.success(), "{input}: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::read(output).unwrap()
    };
    let want = score(&s.arg("x.npy"), &reference);
    for (name, descr) in [("eq.npy", "=f4"), ("bare.npy", "f4")] {
        let f = s.write(name, &npy(descr, false, "(20, 4)", data));
        assert_eq!(score(&f, &s.arg("o.npy")), want, "{descr}");
    }
}

#[test]
fn empty_file() {
    let s = Setup::new();
    let f = s.write("empty.npy", b"");
    s.score_refused(&f, &["empty.npy", "empty"]);
}

#[test]
fn truncated_data() {
    let s = Setup::new();
    let x = std::fs::read(s.path("x.npy")).unwrap();
    let f = s.write("cut.npy", &x[..x.len() - 6]);
    s.score_refused(&f, &["cut.npy", "truncated"]);
}

#[test]
fn header_that_promises_more_rows_than_the_file_holds() {
    let s = Setup::new();
    let f = s.write("lie.npy", &npy("<f4", false, "(500000000000, 4)", &[0; 80]));
    s.score_refused(&f, &["lie.npy", "500000000000×4", "80 data bytes"]);
}

#[test]
fn header_that_promises_fewer_rows_than_the_file_holds() {
    let s = Setup::new();
    let f = s.write("short.npy", &npy("<f4", false, "(2, 4)", &[0; 80]));
    s.score_refused(&f, &["short.npy", "2×4", "80 data bytes"]);
}

#[test]
fn not_an_npy_file() {
    let s = Setup::new();
    let f = s.write("text.npy", b"id,a,b,c,d\n1,2,3,4,5\n");
    s.score_refused(&f, &["text.npy", "not a valid .npy"]);
}

#[cfg(unix)]
#[test]
fn fifo_input_is_refused_without_blocking() {
    let s = Setup::new();
    let fifo = s.path("pipe.npy");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    s.score_refused(fifo.to_str().unwrap(), &["pipe.npy", "not a regular file"]);
}

/// Zero rows is valid: exit 0, an empty `[0]` output, a summary that says there were no rows.
#[test]
fn zero_rows_give_an_empty_output_and_say_so() {
    let s = Setup::new();
    let f = s.write("none.npy", &npy("<f4", false, "(0, 4)", &[]));
    let (m, out) = (s.arg("m.safetensors"), s.arg("out.npy"));
    let run = run(&["score", "--model", &m, "--input", &f, "--output", &out, "--device", "native", "--quiet"]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("rows                 0") && stdout.contains("no rows"), "{stdout}");
    let (values, rows, cols) = realnvp::npy::read_all(&s.path("out.npy")).unwrap();
    assert_eq!((values.len(), rows, cols), (0, 0, 1));
}

// ---- model files ----

#[test]
fn model_with_a_missing_tensor() {
    let s = Setup::new();
    let m = s.write("bad.safetensors", &s.edited_model(|_, t| t.retain(|(n, _, _)| n != "layers.1.t.0.weight")));
    s.model_refused(&m, &["bad.safetensors", "layers.1.t.0.weight", "missing"]);
}

#[test]
fn model_with_an_extra_tensor() {
    let s = Setup::new();
    let m =
        s.write("bad.safetensors", &s.edited_model(|_, t| t.push(("layers.9.s.0.weight".into(), vec![2], vec![0; 8]))));
    s.model_refused(&m, &["bad.safetensors", "layers.9.s.0.weight"]);
}

#[test]
fn model_with_a_misshapen_tensor() {
    let s = Setup::new();
    let m = s.write(
        "bad.safetensors",
        &s.edited_model(|_, t| {
            let w = t.iter_mut().find(|(n, _, _)| n == "layers.0.s.0.weight").unwrap();
            w.1 = vec![4, 8]; // stored [8, 4]: out × in
        }),
    );
    s.model_refused(&m, &["bad.safetensors", "layers.0.s.0.weight", "[8, 4]", "[4, 8]"]);
}

#[test]
fn model_with_a_non_finite_tensor() {
    let s = Setup::new();
    let m = s.write(
        "bad.safetensors",
        &s.edited_model(|_, t| {
            let b = t.iter_mut().find(|(n, _, _)| n == "layers.1.s.1.bias").unwrap();
            b.2[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
        }),
    );
    s.model_refused(&m, &["bad.safetensors", "layers.1.s.1.bias", "finite"]);
}

#[test]
fn model_with_an_unknown_layer_type() {
    let s = Setup::new();
    let m = s.write("bad.safetensors", &s.edited_model(|c, _| c["layers"][1]["type"] = "glow_conv".into()));
    s.model_refused(&m, &["bad.safetensors", "glow_conv"]);
}

#[test]
fn model_with_an_unknown_scale_function() {
    let s = Setup::new();
    let m = s.write("bad.safetensors", &s.edited_model(|c, _| c["layers"][0]["scale"]["fn"] = "softplus".into()));
    s.model_refused(&m, &["bad.safetensors", "softplus"]);
}

#[test]
fn model_with_an_unknown_activation() {
    let s = Setup::new();
    let m =
        s.write("bad.safetensors", &s.edited_model(|c, _| c["layers"][0]["nets"]["t"]["activation"] = "swish2".into()));
    s.model_refused(&m, &["bad.safetensors", "swish2"]);
}

#[test]
fn model_with_a_mask_of_all_ones() {
    let s = Setup::new();
    let m =
        s.write("bad.safetensors", &s.edited_model(|c, _| c["layers"][1]["mask"] = serde_json::json!([1, 1, 1, 1])));
    s.model_refused(&m, &["bad.safetensors", "layer 1", "mask"]);
}

#[test]
fn model_with_a_mask_of_all_zeros() {
    let s = Setup::new();
    let m =
        s.write("bad.safetensors", &s.edited_model(|c, _| c["layers"][0]["mask"] = serde_json::json!([0, 0, 0, 0])));
    s.model_refused(&m, &["bad.safetensors", "layer 0", "mask"]);
}

#[test]
fn model_with_a_permutation_that_is_not_one() {
    let s = Setup::new();
    let m = s.write(
        "bad.safetensors",
        &s.edited_model(|c, _| {
            c["layers"].as_array_mut().unwrap().push(serde_json::json!({"type": "permutation", "perm": [0, 1, 1, 3]}))
        }),
    );
    s.model_refused(&m, &["bad.safetensors", "layer 2", "not a permutation"]);
}

/// A declared dimension of 10¹² with a 4-long permutation: refused from the lengths, nothing
/// sized by the declared dimension is allocated (it aborted with an allocation failure).
#[test]
fn model_with_a_gigantic_declared_dimension() {
    let s = Setup::new();
    let m = s.write(
        "bad.safetensors",
        &s.edited_model(|c, t| {
            c["dim"] = 1_000_000_000_000u64.into();
            c["layers"] = serde_json::json!([{"type": "permutation", "perm": [1, 0, 3, 2]}]);
            t.clear();
        }),
    );
    s.model_refused(&m, &["bad.safetensors", "not a permutation of 0..1000000000000"]);
}

#[test]
fn model_with_a_gigantic_tensor_shape() {
    let s = Setup::new();
    let mut bytes = std::fs::read(s.path("m.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
    // claim a shape whose element count overflows; same header length
    let lied = header.replacen("\"shape\":[8,4]", "\"shape\":[99999999999999,4]", 1);
    assert_ne!(lied, header);
    bytes.splice(8..8 + n, lied.bytes());
    bytes[..8].copy_from_slice(&(lied.len() as u64).to_le_bytes());
    let m = s.write("bad.safetensors", &bytes);
    s.model_refused(&m, &["bad.safetensors", "safetensors"]);
}

#[test]
fn model_file_that_is_not_a_regular_file() {
    let s = Setup::new();
    s.model_refused("/dev/zero", &["/dev/zero", "not a regular file"]);
}

#[test]
fn init_with_a_gigantic_size_is_refused_before_allocating() {
    let s = Setup::new();
    let out = s.arg("out.npy");
    for (args, needle) in [
        (vec!["--dim", "4", "--layers", "2", "--hidden", "100000000000"], "parameters"),
        (vec!["--dim", "4", "--layers", "1000000000000"], "layers"),
        (vec!["--dim", "1000000000", "--layers", "2"], "parameters"),
    ] {
        let mut all = vec!["init"];
        all.extend(args);
        all.extend(["-o", &out]);
        s.refused(&all, &[needle]);
    }
}

#[test]
fn verify_with_a_gigantic_row_count_is_refused_before_allocating() {
    let s = Setup::new();
    let m = s.arg("m.safetensors");
    for n in ["10000000000000", "18446744073709551615", "4611686018427387904"] {
        s.refused(&["verify", "--model", &m, "-n", n, "--device", "native"], &["holds its rows in memory", n]);
    }
}

#[test]
fn verify_input_with_the_wrong_column_count() {
    let s = Setup::new();
    let f = s.write("x3.npy", &npy("<f4", false, "(10, 3)", &[0; 120]));
    s.refused(
        &["verify", "--model", &s.arg("m.safetensors"), "--input", &f, "--device", "native"],
        &["x3.npy", "3 columns"],
    );
}

// ---- outputs ----

#[test]
fn output_in_a_missing_directory() {
    let s = Setup::new();
    let (m, x, out) = (s.arg("m.safetensors"), s.arg("x.npy"), s.arg("nowhere/lp.npy"));
    s.refused(&["score", "--model", &m, "--input", &x, "--output", &out], &["nowhere", "does not exist"]);
}

/// A directory the process cannot write to (as root, which may write anywhere, `/proc`).
#[cfg(unix)]
#[test]
fn output_in_a_read_only_directory() {
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::new();
    let ro = s.path("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let root = std::fs::File::create(ro.join("probe")).is_ok();
    let _ = std::fs::remove_file(ro.join("probe"));
    let out = if root { PathBuf::from("/proc/lp.npy") } else { ro.join("lp.npy") };
    let (m, x) = (s.arg("m.safetensors"), s.arg("x.npy"));
    let dir = out.parent().unwrap().to_str().unwrap().to_owned();
    s.refused(&["score", "--model", &m, "--input", &x, "--output", out.to_str().unwrap()], &[&dir]);
    assert!(!out.exists());
}

#[test]
fn output_that_is_a_directory_leaves_the_other_output_as_it_was() {
    let s = Setup::new();
    std::fs::create_dir(s.path("ld")).unwrap();
    let (m, x, out, ld) = (s.arg("m.safetensors"), s.arg("x.npy"), s.arg("out.npy"), s.arg("ld"));
    s.refused(&["forward", "--model", &m, "--input", &x, "--output", &out, "--logdet", &ld], &["ld", "is a directory"]);
}

#[test]
fn output_equal_to_the_input() {
    let s = Setup::new();
    let (m, x) = (s.arg("m.safetensors"), s.arg("x.npy"));
    let before = std::fs::read(s.path("x.npy")).unwrap();
    s.refused(&["score", "--model", &m, "--input", &x, "--output", &x], &["is the input"]);
    assert_eq!(std::fs::read(s.path("x.npy")).unwrap(), before);
}

/// A file system that fills up mid-run: the file-size limit (RLIMIT_FSIZE, with SIGXFSZ
/// ignored so that writes fail with EFBIG as on a full disk) stops the writes after 64 KiB of
/// a 1.6 MB output.
#[cfg(target_os = "linux")]
#[test]
fn disk_full_mid_run() {
    use std::os::unix::process::CommandExt;
    let s = Setup::new();
    let big = s.path("big.npy");
    write_all(&big, &[100_000, 4], &vec![0.25f32; 400_000], NpyDtype::F32).unwrap();
    let (m, out) = (s.arg("m.safetensors"), s.arg("out.npy"));
    let before = s.files();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_realnvp"));
    cmd.args(["forward", "--model", &m, "--input", big.to_str().unwrap(), "--output", &out, "--device", "native"]);
    cmd.args(["--chunk-rows", "1000"]);
    // SAFETY: only async-signal-safe calls between fork and exec
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 64 << 10, rlim_max: 64 << 10 };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0
                || libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let run = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && run.status.code().is_some(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("out.npy") && stderr.contains("too large"), "{stderr}");
    assert_eq!(std::fs::read(s.path("out.npy")).unwrap(), PREVIOUS);
    assert_eq!(s.files(), before, "a partial file was left");
}

/// Outputs that are not regular files are written through, not replaced: `/dev/null` stays a
/// device (issue #16: as root it became a regular file), a FIFO gets the bytes; a symbolic
/// link is followed: its target gets the output, the link stays a link.
#[cfg(unix)]
#[test]
fn special_outputs_are_written_through_and_links_followed() {
    use std::os::unix::fs::FileTypeExt;
    let s = Setup::new();
    let (m, x) = (s.arg("m.safetensors"), s.arg("x.npy"));
    let score =
        |out: &str| run(&["score", "--model", &m, "--input", &x, "--output", out, "--device", "cpu", "--quiet"]);
    let reference = s.arg("ref.npy");
    assert!(score(&reference).status.success());
    let want = std::fs::read(&reference).unwrap();

    // Some sandboxes (the CI's among them) give no device at /dev/null; the check needs one.
    if std::fs::metadata("/dev/null").is_ok_and(|m| m.file_type().is_char_device()) {
        let null = score("/dev/null");
        assert!(null.status.success(), "{}", String::from_utf8_lossy(&null.stderr));
        assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device(), "/dev/null was replaced");
    } else {
        eprintln!("/dev/null is not a character device here: that part of the test is skipped");
    }

    let fifo = s.path("out.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    assert!(score(fifo.to_str().unwrap()).status.success());
    assert_eq!(reader.join().unwrap(), want, "the FIFO got other bytes");
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());

    let link = s.path("link.npy");
    std::os::unix::fs::symlink("target.npy", &link).unwrap();
    assert!(score(link.to_str().unwrap()).status.success());
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
    assert_eq!(std::fs::read(s.path("target.npy")).unwrap(), want);
}

/// `convert --flows 10¹²` (a count the converter would fill with keyless flows) is refused
/// before anything is allocated for it (it aborted with an allocation failure).
#[test]
fn convert_with_a_gigantic_flow_count_is_refused_before_allocating() {
    let s = Setup::new();
    let state = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pytorch/normflows_swap_odd.state.safetensors");
    let out = s.arg("out.npy");
    let args = ["convert", "--from", "normflows", state, "--keyless", "swap", "--flows", "1000000000000", "-o", &out];
    s.refused(&args, &["1000000000000 flows", "layers"]);
}
