//! The PyTorch fixtures (tests/fixtures/pytorch, made with the real libraries by
//! make_fixtures.sh): manifests, tensors, and conversion through the CLI.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use realnvp::model::Flow;
use safetensors::{Dtype, SafeTensors};

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pytorch")
}

/// One model of a manifest: its name, library and `realnvp convert` options.
pub struct Fixture {
    pub name: String,
    pub library: String,
    pub options: Vec<String>,
}

/// The fixtures listed in `manifest` (a JSON file of the fixture folder).
pub fn fixtures(manifest: &str) -> Vec<Fixture> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture_dir().join(manifest)).unwrap()).unwrap();
    manifest["fixtures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| Fixture {
            name: f["name"].as_str().unwrap().to_owned(),
            library: f["library"].as_str().unwrap().to_owned(),
            options: f["options"].as_array().unwrap().iter().map(|o| o.as_str().unwrap().to_owned()).collect(),
        })
        .collect()
}

/// Every tensor of a fixture file (F32 or F64), widened to float64, flattened.
pub fn tensors(file: &str) -> HashMap<String, Vec<f64>> {
    let bytes = std::fs::read(fixture_dir().join(file)).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| {
            let values = match v.dtype() {
                Dtype::F64 => v.data().chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect(),
                Dtype::F32 => {
                    v.data().chunks_exact(4).map(|b| f64::from(f32::from_le_bytes(b.try_into().unwrap()))).collect()
                }
                other => panic!("{file}: {k} has dtype {other:?}"),
            };
            (k, values)
        })
        .collect()
}

pub fn realnvp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_realnvp")).args(args).output().expect("run realnvp")
}

pub fn convert(state: &Path, library: &str, options: &[String], out: &Path) -> Output {
    let mut args = vec!["convert", "--from", library, state.to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend(options.iter().map(String::as_str));
    realnvp(&args)
}

/// Converts `{prefix}{name}.state.safetensors` with the fixture's options into `dir`.
pub fn converted(f: &Fixture, prefix: &str, dir: &Path) -> Flow {
    let out = dir.join(format!("{}.safetensors", f.name));
    let state = fixture_dir().join(format!("{prefix}{}.state.safetensors", f.name));
    let run = convert(&state, &f.library, &f.options, &out);
    assert!(run.status.success(), "{}: {}", f.name, String::from_utf8_lossy(&run.stderr));
    Flow::load(&out).unwrap()
}
