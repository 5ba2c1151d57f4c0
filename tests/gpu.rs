//! The GPU engine against the float64 reference. Runs on any wgpu adapter; in CI on lavapipe
//! (Mesa's Vulkan on the CPU), executing the real WGSL kernels. Without an adapter the GPU
//! tests report a skip, unless REALNVP_REQUIRE_GPU is set (CI sets it): then they fail.

use std::process::Command;
use std::sync::Arc;

use realnvp::engine::Engine;
use realnvp::gpu::kernel::unrolled;
use realnvp::gpu::kernel::{self, KernelForm};
use realnvp::gpu::{self, GpuEngine, GpuOptions};
use realnvp::model::Flow;
use realnvp::npy::{read_all, write_all, NpyDtype};
use realnvp::random::{init_flow, random_mixed_flow, InitSpec};
use realnvp::verify::FLOAT32_TOLERANCE;

mod common;
use common::agreement;

fn best_adapter() -> Option<wgpu::Adapter> {
    let mut adapters = gpu::adapters(&gpu::instance());
    let found = gpu::best_adapter(&adapters).map(|k| adapters.swap_remove(k));
    if found.is_none() {
        if std::env::var_os("REALNVP_REQUIRE_GPU").is_some() {
            panic!("REALNVP_REQUIRE_GPU is set but no wgpu adapter was found");
        }
        eprintln!("SKIPPED: no wgpu adapter (install mesa-vulkan-drivers for lavapipe)");
    }
    found
}

fn engine(flow: &Flow, chunk_rows: usize, kernel: KernelForm) -> Option<GpuEngine> {
    let adapter = best_adapter()?;
    Some(GpuEngine::new(Arc::new(flow.clone()), &adapter, &GpuOptions { chunk_rows, kernel }).expect("GPU engine"))
}

/// The suite runs twice: with the plan interpreter forced, and with the automatic choice,
/// which unrolls every model up to `unrolled::MAX_MULTIPLY_ADDS` (most random test models).
mod interpreted {
    use super::*;
    agreement_suite!(&|flow: &Flow, chunk_rows| open(flow, chunk_rows, KernelForm::Interpreted));
}

mod auto_kernel {
    use super::*;
    agreement_suite!(&|flow: &Flow, chunk_rows| open(flow, chunk_rows, KernelForm::Auto));
}

fn open(flow: &Flow, chunk_rows: usize, kernel: KernelForm) -> Option<Box<dyn Engine>> {
    engine(flow, chunk_rows, kernel).map(|e| Box::new(e) as Box<dyn Engine>)
}

#[test]
fn lavapipe_refuses_to_unroll_huge_models() {
    let Some(adapter) = best_adapter() else { return };
    if !adapter.get_info().driver.to_lowercase().contains("llvmpipe") {
        return;
    }
    let d64 = Arc::new(realnvp::random::reference_model("d64").unwrap());
    let options = GpuOptions { chunk_rows: 0, kernel: KernelForm::Unrolled };
    let err = GpuEngine::new(d64, &adapter, &options).err().expect("d64 unrolled must be refused on llvmpipe");
    assert!(err.to_string().contains("--kernel interpreted"), "{err}");
}

#[test]
fn auto_unrolls_small_models_only() {
    let seed4d = realnvp::random::reference_model("seed4d").unwrap();
    let d64 = realnvp::random::reference_model("d64").unwrap();
    assert_eq!(KernelForm::Auto.resolve(&seed4d), KernelForm::Unrolled);
    assert_eq!(KernelForm::Auto.resolve(&d64), KernelForm::Interpreted);
    let small = agreement::CASES.iter().zip(common::seeds(9)).filter(|&(&(d, depth, h), s)| {
        KernelForm::Auto.resolve(&random_mixed_flow(d, depth, h, s)) == KernelForm::Unrolled
    });
    assert!(small.count() >= 4, "the agreement cases must exercise the unrolled kernel");
}

#[test]
fn naga_validates_every_generated_variant() {
    let mut flows: Vec<Flow> = agreement::CASES
        .iter()
        .zip(common::seeds(9))
        .map(|(&(d, depth, h), s)| random_mixed_flow(d, depth, h, s))
        .collect();
    flows.push(init_flow(&InitSpec::seed4d(6), 1).unwrap());
    for flow in flows {
        let mut forms = vec![KernelForm::Interpreted];
        if unrolled::fits(&flow) {
            forms.push(KernelForm::Unrolled);
        }
        for form in forms {
            let source = kernel::generate(&flow, form);
            assert_eq!(source.form, form);
            let module = naga::front::wgsl::parse_str(&source.wgsl)
                .unwrap_or_else(|e| panic!("{}", e.emit_to_string(&source.wgsl)));
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
                .validate(&module)
                .unwrap_or_else(|e| panic!("naga rejects the {form:?} kernel for D = {}: {e:?}", flow.dim));
        }
    }
}

fn realnvp(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_realnvp")).args(args).output().expect("run realnvp")
}

#[test]
fn cli_streams_files_on_gpu_with_bounded_memory() {
    if best_adapter().is_none() {
        return;
    }
    let dir = common::tempdir();
    let d = dir.path();
    let model = d.join("m.safetensors");
    let path = |name: &str| d.join(name).to_str().unwrap().to_owned();
    assert!(realnvp(&["init", "--dim", "4", "--layers", "1", "--hidden", "8", "-o", &path("m.safetensors")])
        .status
        .success());
    let flow = Flow::load(&model).unwrap();

    // per-row output through several chunks against the reference
    let x = common::gaussian_rows(5000, 4, 9);
    write_all(&d.join("x.npy"), &[5000, 4], &x, NpyDtype::F32).unwrap();
    let out = realnvp(&[
        "score",
        "--model",
        &path("m.safetensors"),
        "--input",
        &path("x.npy"),
        "--output",
        &path("lp.npy"),
        "--device",
        "gpu",
        "--chunk-rows",
        "1000",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(summary["engine"].as_str().unwrap().starts_with("gpu"));
    let (lp, _, _) = read_all(&d.join("lp.npy")).unwrap();
    let x32: Vec<f64> = x.iter().map(|&v| f64::from(v as f32)).collect();
    let mut expected = vec![0.0; 5000];
    realnvp::reference::log_prob(&flow, &x32, &mut expected);
    for (r, (got, want)) in lp.iter().zip(&expected).enumerate() {
        assert!((got - want).abs() / (1.0 + want.abs()) < FLOAT32_TOLERANCE, "row {r}: {got} vs reference {want}");
    }

    // peak memory must not grow with the number of rows
    let rss = |rows: usize| -> u64 {
        let name = format!("big{rows}.npy");
        write_all(&d.join(&name), &[rows, 4], &vec![0.25; rows * 4], NpyDtype::F32).unwrap();
        let out = realnvp(&[
            "score",
            "--model",
            &path("m.safetensors"),
            "--input",
            &path(&name),
            "--device",
            "gpu",
            "--json",
        ]);
        assert!(out.status.success());
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        std::fs::remove_file(d.join(&name)).unwrap();
        s["peak_rss_bytes"].as_u64().unwrap_or(0)
    };
    let (small, large) = (rss(1_500_000), rss(4_500_000));
    assert!(large < small + (8 << 20), "peak RSS grew from {small} to {large} bytes for 3× the rows");

    // `verify` exits 0 on a good device
    let out = realnvp(&["verify", "--model", &path("m.safetensors"), "-n", "2000", "--device", "gpu"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("PASS"));
}
