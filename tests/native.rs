//! The native float32 CPU engine against the float64 reference: the same agreement suite as
//! the GPU engine, same tolerances, plus the CLI path.

use std::process::Command;
use std::sync::Arc;

use realnvp::engine::Engine;
use realnvp::model::Flow;
use realnvp::native::NativeEngine;

mod common;

fn open(flow: &Flow, _chunk_rows: usize) -> Option<Box<dyn Engine>> {
    Some(Box::new(NativeEngine::new(Arc::new(flow.clone()))))
}

agreement_suite!(&open);

#[test]
fn cli_verify_passes_on_native_for_init_models() {
    let dir = common::tempdir();
    for (dim, hidden) in [("4", "32,32"), ("16", "64,64"), ("64", "256,256")] {
        let model = dir.path().join(format!("m{dim}.safetensors"));
        let model = model.to_str().unwrap();
        let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_realnvp")).args(args).output().unwrap();
        let out = run(&["init", "--dim", dim, "--layers", "8", "--hidden", hidden, "-o", model]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out = run(&["verify", "--model", model, "-n", "5000", "--device", "native"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("PASS"),
            "D = {dim}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("native"), "{stdout}");
    }
}

#[test]
fn auto_prefers_native_over_cpu_emulated_adapters() {
    let flow = Arc::new(realnvp::random::reference_model("seed4d").unwrap());
    let engine = realnvp::device::open_engine(flow, &realnvp::device::Device::Auto, &Default::default()).unwrap();
    let adapters = realnvp::gpu::adapters(&realnvp::gpu::instance());
    let hardware = adapters.iter().any(|a| !realnvp::gpu::is_cpu_adapter(&a.get_info()));
    let name = engine.name();
    if hardware {
        assert!(name.starts_with("gpu"), "a hardware adapter exists but auto chose {name}");
    } else {
        assert!(name.starts_with("native") && name.contains("auto:"), "auto chose {name}");
    }
}
