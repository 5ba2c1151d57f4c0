//! The GPU engine against the float64 reference. Runs on any wgpu adapter; in CI on lavapipe
//! (Mesa's Vulkan on the CPU), executing the real WGSL kernels. Without an adapter the GPU
//! tests report a skip, unless REALNVP_REQUIRE_GPU is set (CI sets it): then they fail.

use std::process::Command;
use std::sync::Arc;

use realnvp::engine::{Engine, LogLikelihoodSum};
use realnvp::gpu::kernel::unrolled;
use realnvp::gpu::kernel::{self, KernelForm};
use realnvp::gpu::{self, GpuEngine, GpuOptions, TierSwitch};
use realnvp::model::{Base, Flow, Layer};
use realnvp::npy::{read_all, write_all, NpyDtype};
use realnvp::random::{init_flow, random_mixed_flow, InitSpec};
use realnvp::sample::Draw;
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

fn engine(flow: &Flow, options: GpuOptions) -> Option<GpuEngine> {
    let adapter = best_adapter()?;
    Some(GpuEngine::new(Arc::new(flow.clone()), &adapter, &options).expect("GPU engine"))
}

/// The suite runs for every kernel form: the plan interpreter; the unrolled kernel (every
/// model it fits, most random test models; the rest interpreted); tiered, switching from
/// the interpreter to the unrolled kernel mid-batch at row 256 of each pass; and tiled.
mod interpreted {
    use super::*;
    agreement_suite!(&|flow: &Flow, chunk_rows| open(flow, chunk_rows, KernelForm::Interpreted, TierSwitch::Auto));
}

mod unrolled_kernel {
    use super::*;
    agreement_suite!(&|flow: &Flow, chunk_rows| {
        let form = if unrolled::fits(flow) { KernelForm::Unrolled } else { KernelForm::Interpreted };
        open(flow, chunk_rows, form, TierSwitch::Auto)
    });
}

mod tiered {
    use super::*;
    agreement_suite!(&|flow: &Flow, chunk_rows| open(flow, chunk_rows, KernelForm::Auto, TierSwitch::AtRow(256)));
}

mod tiled {
    use super::*;
    agreement_suite!(&|flow: &Flow, chunk_rows| open(flow, chunk_rows, KernelForm::Tiled, TierSwitch::Auto));
}

fn open(flow: &Flow, chunk_rows: usize, kernel: KernelForm, switch: TierSwitch) -> Option<Box<dyn Engine>> {
    engine(flow, GpuOptions { chunk_rows, kernel, switch }).map(|e| Box::new(e) as Box<dyn Engine>)
}

fn form(flow: &Flow, kernel: KernelForm, switch: TierSwitch) -> Option<GpuEngine> {
    engine(flow, GpuOptions { kernel, switch, ..GpuOptions::default() })
}

/// log p of `x` on `engine`, in batches of `batch` rows.
fn log_prob_in_batches(engine: &dyn Engine, x: &[f64], d: usize, batch: usize) -> Vec<f64> {
    let mut logp = vec![0.0; x.len() / d];
    for (xs, out) in x.chunks(batch * d).zip(logp.chunks_mut(batch)) {
        engine.log_prob(xs, out, &mut LogLikelihoodSum::default()).unwrap();
    }
    logp
}

/// A tiered engine with a fixed switch row runs every row before it exactly as the
/// interpreter does and every row from it on exactly as the unrolled kernel does, in every
/// pass, across batches and mid-batch.
#[test]
fn tiered_engine_switches_exactly_at_the_row() {
    let flow = random_mixed_flow(5, 6, 32, common::seeds(1)[0]);
    assert!(KernelForm::Auto.tiered(&flow));
    let Some(tiered) = form(&flow, KernelForm::Auto, TierSwitch::AtRow(768)) else { return };
    let interpreted = form(&flow, KernelForm::Interpreted, TierSwitch::Auto).unwrap();
    let unrolled = form(&flow, KernelForm::Unrolled, TierSwitch::Auto).unwrap();
    let (interpreted, unrolled): (&dyn Engine, &dyn Engine) = (&interpreted, &unrolled);
    let (n, d) = (2000, 5);
    let x = common::gaussian_rows(n, d, 9);
    // batches of 500: the switch falls inside the second
    let got = log_prob_in_batches(&tiered, &x, d, 500);
    let (before, after) = (log_prob_in_batches(interpreted, &x, d, n), log_prob_in_batches(unrolled, &x, d, n));
    assert_ne!(before, after, "the two forms must differ somewhere for this test to see the switch");
    assert_eq!(got[..768], before[..768]);
    assert_eq!(got[768..], after[768..]);
    // the latent→data pass counts its own rows
    let (mut got, mut ld) = (vec![0.0; n * d], vec![0.0; n]);
    (&tiered as &dyn Engine).inverse_to_data(&x, &mut got, &mut ld).unwrap();
    let (mut want, mut want_after) = (vec![0.0; n * d], vec![0.0; n * d]);
    interpreted.inverse_to_data(&x, &mut want, &mut ld).unwrap();
    unrolled.inverse_to_data(&x, &mut want_after, &mut ld).unwrap();
    assert_eq!(got[..768 * d], want[..768 * d]);
    assert_eq!(got[768 * d..], want_after[768 * d..]);
    assert_eq!(tiered.rows_by_tier(), Some((2 * 768, 2 * (2000 - 768))));
    assert!(tiered.name().contains("1536 rows interpreted"), "{}", tiered.name());
    // sampling never switches: the stream's rows are the unrolled kernel's from row 0
    let draw = Draw { seed: 4, first_row: 0, temperature: 1.0 };
    let sample = |engine: &dyn Engine| {
        let (mut x, mut log_q) = (vec![0.0f32; n * d], vec![0.0f32; n]);
        engine.sample_rows(&draw, &mut x, &mut log_q).unwrap();
        (x, log_q)
    };
    assert_eq!(sample(&tiered), sample(unrolled));
    assert_ne!(sample(interpreted), sample(unrolled), "the forms must differ for this check to mean anything");
}

/// The tiled kernel does each output's arithmetic in the row interpreter's order (two chains,
/// bias, residual), so on one device its rows equal the interpreter's bit for bit: log p and
/// its partial sums, both directions and sampling, on random models of every layer kind
/// (residual and multi-net conditioners, every activation), with a last tile part-filled.
#[test]
fn tiled_kernel_equals_the_row_interpreter_bit_for_bit() {
    if best_adapter().is_none() {
        return;
    }
    for (&(d, depth, hidden), seed) in agreement::CASES.iter().zip(common::seeds(9)).skip(3).take(4) {
        let flow = random_mixed_flow(d, depth, hidden, seed + 7);
        let tiled = form(&flow, KernelForm::Tiled, TierSwitch::Auto).unwrap();
        let interpreted = form(&flow, KernelForm::Interpreted, TierSwitch::Auto).unwrap();
        assert!(tiled.name().contains("tiled kernel"), "{}", tiled.name());
        let (tiled, interpreted): (&dyn Engine, &dyn Engine) = (&tiled, &interpreted);
        let n = 1001;
        let x = common::gaussian_rows(n, d, seed);
        let (mut sum_t, mut sum_i) = (LogLikelihoodSum::default(), LogLikelihoodSum::default());
        let (mut lp_t, mut lp_i) = (vec![0.0; n], vec![0.0; n]);
        tiled.log_prob(&x, &mut lp_t, &mut sum_t).unwrap();
        interpreted.log_prob(&x, &mut lp_i, &mut sum_i).unwrap();
        assert_eq!(lp_t, lp_i, "log p, D = {d}, seed {seed}");
        // the partial sums group other rows (tiles, not 256-row workgroups) in float32: each
        // group's sum of m ≤ 256 values is within (m − 1)·2⁻²⁴·Σ|values| of exact
        let finite: Vec<f64> = lp_i.iter().copied().filter(|v| v.is_finite()).collect();
        let bound =
            255.0 * f64::from(f32::EPSILON) / 2.0 * finite.iter().map(|v| v.abs()).sum::<f64>() / finite.len() as f64;
        assert!((sum_t.mean() - sum_i.mean()).abs() <= 2.0 * bound, "mean, D = {d}, seed {seed}");
        for to_latent in [true, false] {
            let pass = |engine: &dyn Engine| {
                let (mut y, mut ld) = (vec![0.0; n * d], vec![0.0; n]);
                if to_latent {
                    engine.forward_to_latent(&x, &mut y, &mut ld).unwrap();
                } else {
                    engine.inverse_to_data(&x, &mut y, &mut ld).unwrap();
                }
                (y, ld)
            };
            assert_eq!(pass(tiled), pass(interpreted), "to_latent = {to_latent}, D = {d}, seed {seed}");
        }
        let draw = Draw { seed, first_row: 5, temperature: 0.8 };
        let sample = |engine: &dyn Engine| {
            let (mut x, mut log_q) = (vec![0.0f32; n * d], vec![0.0f32; n]);
            engine.sample_rows(&draw, &mut x, &mut log_q).unwrap();
            (x, log_q)
        };
        assert_eq!(sample(tiled), sample(interpreted), "sampling, D = {d}, seed {seed}");
    }
}

/// `WhenBuilt` (a hardware GPU's default) keeps running the interpreter while the unrolled
/// kernel builds on a background thread, then switches; every row matches the reference.
#[test]
fn tiered_engine_switches_when_the_build_is_ready() {
    let flow = random_mixed_flow(4, 6, 32, common::seeds(1)[0] + 1);
    let Some(engine) = form(&flow, KernelForm::Auto, TierSwitch::WhenBuilt) else { return };
    let d = 4;
    let x = common::gaussian_rows(1024, d, 3);
    let mut want = vec![0.0; 1024];
    realnvp::reference::log_prob(&flow, &x, &mut want);
    let start = std::time::Instant::now();
    while engine.rows_by_tier().unwrap().1 == 0 {
        assert!(start.elapsed().as_secs() < 600, "no switch after 10 minutes: {}", engine.name());
        for (got, want) in log_prob_in_batches(&engine, &x, d, 1024).iter().zip(&want) {
            assert!((got - want).abs() <= FLOAT32_TOLERANCE * (1.0 + want.abs()), "{got} vs {want}");
        }
    }
    let (interpreted, unrolled) = engine.rows_by_tier().unwrap();
    assert!(interpreted > 0 && unrolled > 0, "{}", engine.name());
}

/// On a CPU adapter `Auto` builds nothing in the background: a short batch runs interpreted,
/// one of CPU_WAIT_ROWS rows unrolled, and from then on every batch unrolled.
#[test]
fn tiered_engine_on_a_cpu_adapter_picks_the_form_by_batch_size() {
    let Some(adapter) = best_adapter() else { return };
    if !gpu::is_cpu_adapter(&adapter.get_info()) {
        return;
    }
    let flow = random_mixed_flow(3, 4, 16, common::seeds(1)[0] + 2);
    let engine = form(&flow, KernelForm::Auto, TierSwitch::Auto).unwrap();
    let x = common::gaussian_rows(gpu::CPU_WAIT_ROWS, 3, 5);
    let short = 3 * (gpu::CPU_WAIT_ROWS - 256);
    log_prob_in_batches(&engine, &x[..short], 3, gpu::CPU_WAIT_ROWS);
    assert_eq!(engine.rows_by_tier(), Some((gpu::CPU_WAIT_ROWS as u64 - 256, 0)));
    log_prob_in_batches(&engine, &x, 3, gpu::CPU_WAIT_ROWS);
    log_prob_in_batches(&engine, &x[..300], 3, 100);
    assert_eq!(engine.rows_by_tier(), Some((gpu::CPU_WAIT_ROWS as u64 - 256, gpu::CPU_WAIT_ROWS as u64 + 100)));
}

#[test]
fn lavapipe_refuses_to_unroll_huge_models() {
    let Some(adapter) = best_adapter() else { return };
    if !adapter.get_info().driver.to_lowercase().contains("llvmpipe") {
        return;
    }
    let d64 = Arc::new(realnvp::random::reference_model("d64").unwrap());
    let options = GpuOptions { kernel: KernelForm::Unrolled, ..GpuOptions::default() };
    let err = GpuEngine::new(d64, &adapter, &options).err().expect("d64 unrolled must be refused on llvmpipe");
    assert!(err.to_string().contains("--kernel interpreted"), "{err}");
}

#[test]
fn auto_unrolls_small_models_only() {
    let seed4d = realnvp::random::reference_model("seed4d").unwrap();
    let d64 = realnvp::random::reference_model("d64").unwrap();
    assert_eq!(KernelForm::Auto.resolve(&seed4d), KernelForm::Unrolled);
    assert_eq!(KernelForm::Auto.resolve(&d64), KernelForm::Tiled);
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
        let mut forms = vec![KernelForm::Interpreted, KernelForm::Tiled];
        if unrolled::fits(&flow) {
            forms.push(KernelForm::Unrolled);
        }
        for form in forms {
            // an adapter with 32 KiB of workgroup memory (lavapipe, Apple M-series) for the tile
            let limits = wgpu::Limits { max_compute_workgroup_storage_size: 32 << 10, ..wgpu::Limits::default() };
            let source = kernel::generate(&flow, form, &limits, "test").unwrap();
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
        match s["peak_rss_bytes"].as_u64() {
            Some(bytes) => bytes,
            // Linux reports it (/proc/self/status); elsewhere this check cannot run
            None if cfg!(target_os = "linux") => panic!("no peak_rss_bytes on Linux: {s}"),
            None => 0,
        }
    };
    let (small, large) = (rss(1_500_000), rss(4_500_000));
    assert!(large < small + (8 << 20), "peak RSS grew from {small} to {large} bytes for 3× the rows");

    // `verify` exits 0 on a good device
    let out = realnvp(&["verify", "--model", &path("m.safetensors"), "-n", "2000", "--device", "gpu"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("PASS"));
}

/// Runs `entry` of the WGSL `source` once over `groups` workgroups with `buffers` bound at
/// group 0, bindings 0, 1, …; returns the bytes of `buffers[read]` afterwards.
fn run_harness(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    source: &str,
    entry: &str,
    buffers: &[&wgpu::Buffer],
    read: usize,
    groups: u32,
) -> Vec<u8> {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(entry),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: None,
        module: &module,
        entry_point: Some(entry),
        compilation_options: Default::default(),
        cache: None,
    });
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .enumerate()
        .map(|(k, b)| wgpu::BindGroupEntry { binding: k as u32, resource: b.as_entire_binding() })
        .collect();
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(entry),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    let size = buffers[read].size();
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups, 1, 1);
    }
    encoder.copy_buffer_to_buffer(buffers[read], 0, &readback, 0, size);
    queue.submit([encoder.finish()]);
    readback.slice(..).map_async(wgpu::MapMode::Read, |r| r.expect("map"));
    device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    let bytes = readback.slice(..).get_mapped_range().unwrap().to_vec();
    bytes
}

/// Random123's known answers for Philox4x32-10 (as in src/philox.rs), computed by
/// shaders/philox.wgsl on the device: the sampling kernel's generator, bit for bit.
#[test]
fn philox_known_answers_on_the_gpu() {
    let Some(adapter) = best_adapter() else { return };
    let (device, queue, _) = gpu::open_device(&adapter, "philox known answers").unwrap();
    let kat: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
        ([0, 0, 0, 0], [0, 0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]),
        ([u32::MAX; 4], [u32::MAX; 2], [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]),
        (
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0],
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
        ),
    ];
    // io: 3 × (counter, key) in, then 3 × 4 words out
    let mut words: Vec<u32> = kat.iter().flat_map(|(c, k, _)| c.iter().chain(k).copied()).collect();
    words.resize(18 + 12, 0);
    let harness = r#"
@group(0) @binding(0) var<storage, read_write> io: array<u32>;
@compute @workgroup_size(1)
fn kat_main(@builtin(workgroup_id) wid: vec3<u32>) {
    let b = wid.x * 6u;
    let r = philox4x32_10(vec4<u32>(io[b], io[b + 1u], io[b + 2u], io[b + 3u]), vec2<u32>(io[b + 4u], io[b + 5u]));
    let o = 18u + wid.x * 4u;
    io[o] = r.x;
    io[o + 1u] = r.y;
    io[o + 2u] = r.z;
    io[o + 3u] = r.w;
}"#;
    // philox.wgsl's normals4 uses math.wgsl's log_acc; the harness only needs it to exist
    let source = format!("fn log_acc(x: f32) -> f32 {{ return log(x); }}\n{}{harness}", kernel::PHILOX_WGSL);
    use wgpu::util::DeviceExt;
    let io = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("io"),
        contents: bytemuck::cast_slice(&words),
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    });
    let out: Vec<u32> = bytemuck::cast_slice(&run_harness(&device, &queue, &source, "kat_main", &[&io], 0, 3)).to_vec();
    for (k, (counter, key, expected)) in kat.iter().enumerate() {
        assert_eq!(&out[18 + 4 * k..22 + 4 * k], expected, "counter {counter:08x?} key {key:08x?}");
    }
}

/// The GPU's float32 functions (shaders/math.wgsl) against float64 on this device, in ulps of
/// the float32 result: their documented bounds must hold whatever the shader compiler does.
/// (lavapipe reassociates float expressions; without `keep` its exp was off by 1.6 ulp and
/// x·f + t, where x·f and t cancel, by thousands: both fail here.)
#[test]
fn device_math_is_within_its_bounds() {
    let Some(adapter) = best_adapter() else { return };
    let (device, queue, _) = gpu::open_device(&adapter, "device math").unwrap();
    const ROWS: usize = 65_536;
    const IN: usize = 8;
    const OUT: usize = 6;
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed);
    let mut u = |lo: f64, hi: f64| rng.random_range(lo..hi);
    let mut input = vec![0f32; ROWS * IN];
    for r in input.chunks_exact_mut(IN) {
        r[0] = u(-87.0, 88.0) as f32; // exp
        r[1] = u(-87.0, 88.0).exp() as f32; // log, over the whole normal range
        let (a, b) = ((u(0.5, 2.0) * u(-20.0, 20.0).exp2()) as f32, (u(-2.0, 2.0) * u(-20.0, 20.0).exp2()) as f32);
        r[2] = a;
        r[3] = b;
        r[4] = (-(a as f64) * (b as f64) * u(0.5, 1.5)) as f32; // x·f + t, cancelling
        r[5] = u(-10.0, 10.0) as f32; // tanh
        r[6] = u(-30.0, 30.0) as f32; // sigmoid
        r[7] = (u(-1.0, 1.0).signum() * u(-30.0, 30.0).exp2()) as f32; // reciprocal
    }
    let harness = format!(
        r#"
struct Params {{ zero: u32 }}
@group(0) @binding(0) var<storage, read> inp: array<f32>;
@group(0) @binding(1) var<storage, read_write> outp: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
@compute @workgroup_size(64)
fn math_main(@builtin(global_invocation_id) id: vec3<u32>) {{
    let i = {IN}u * id.x;
    let o = {OUT}u * id.x;
    outp[o] = exp_acc(inp[i]);
    outp[o + 1u] = log_acc(inp[i + 1u]);
    outp[o + 2u] = mul_add_acc(inp[i + 2u], inp[i + 3u], inp[i + 4u]);
    outp[o + 3u] = tanh_safe(inp[i + 5u]);
    outp[o + 4u] = sigmoid(inp[i + 6u]);
    outp[o + 5u] = recip(inp[i + 7u]);
}}"#
    );
    let source = format!("{}{harness}", kernel::MATH_WGSL);
    use wgpu::util::DeviceExt;
    let buffer = |contents: &[u8], usage| {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: None, contents, usage })
    };
    let inp = buffer(bytemuck::cast_slice(&input), wgpu::BufferUsages::STORAGE);
    let outp = buffer(&vec![0u8; ROWS * OUT * 4], wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC);
    let params = buffer(bytemuck::cast_slice(&[0u32; 4]), wgpu::BufferUsages::UNIFORM);
    let bytes = run_harness(&device, &queue, &source, "math_main", &[&inp, &outp, &params], 1, (ROWS / 64) as u32);
    let out: Vec<f32> = bytemuck::cast_slice(&bytes).to_vec();

    // error in units of the float32 spacing at the true value
    let ulps = |got: f32, want: f64| {
        let w = want.abs() as f32;
        let spacing = f64::from(f32::from_bits(w.to_bits() + 1)) - f64::from(w);
        (f64::from(got) - want).abs() / spacing
    };
    let f64_of = |r: &[f32], k: usize| -> f64 {
        let x: Vec<f64> = r.iter().map(|&v| f64::from(v)).collect();
        match k {
            0 => x[0].exp(),
            1 => x[1].ln(),
            2 => x[2] * x[3] + x[4],
            3 => x[5].tanh(),
            4 => 1.0 / (1.0 + (-x[6]).exp()),
            _ => 1.0 / x[7],
        }
    };
    // (name, RMS bound, max bound) in ulps: a correctly rounded function is 0.29 / 0.5.
    // Measured on lavapipe: exp 0.32 / 0.95 (1.22 max when its reduction is reassociated),
    // log 0.29 / 0.71, x·f + t 0.29 / 0.50 (514 ulp RMS with its
    // Dekker steps written as nested fma and not kept: the compiler cancelled them),
    // tanh 0.29 / 1.22, sigmoid 0.48 / 2.15 (an exp, an add and a reciprocal: 2.65 with exp
    // reassociated), reciprocal 0.33 / 0.75.
    let bounds = [
        ("exp_acc", 0.4, 1.1),
        ("log_acc", 0.4, 1.0),
        ("mul_add_acc", 0.35, 1.0),
        ("tanh_safe", 0.6, 2.0),
        ("sigmoid", 0.55, 2.5),
        ("recip", 0.4, 1.0),
    ];
    let mut failures = Vec::new();
    for (k, (name, rms_bound, max_bound)) in bounds.into_iter().enumerate() {
        let e: Vec<f64> =
            input.chunks_exact(IN).zip(out.chunks_exact(OUT)).map(|(r, o)| ulps(o[k], f64_of(r, k))).collect();
        let rms = (e.iter().map(|v| v * v).sum::<f64>() / e.len() as f64).sqrt();
        let max = e.iter().copied().fold(0.0, f64::max);
        println!("{name:<12} {rms:.3} ulp RMS, {max:.3} max");
        // NaN fails too
        if !(rms <= rms_bound && max <= max_bound) {
            failures.push(format!("{name}: {rms:.3} ulp RMS, {max:.3} max (bounds {rms_bound}, {max_bound})"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `model` followed by `m` elementwise affine layers (log-scales ±1e-4·(j+1), alternating
/// by layer, and shifts: each layer moves every feature, so a skipped one shows).
fn with_elementwise_layers(model: &Flow, m: usize) -> Flow {
    let d = model.dim;
    let mut flow = model.clone();
    flow.layers.extend(
        common::elementwise_flow(
            d,
            (0..m).map(|k| {
                let sign = if k % 2 == 0 { 1e-4 } else { -1e-4 };
                ((0..d).map(|j| sign * (j + 1) as f64).collect(), (0..d).map(|j| 1e-4 * (j as f64 - 3.0)).collect())
            }),
        )
        .layers,
    );
    flow
}

/// Mesa's llvmpipe ends every loop of a shader after 65,535 iterations per invocation in
/// total (its loop limiter) and says nothing: the rows come out wrong. So every model the
/// kernel choice accepts there must run right, up to the limit. For models of several kinds
/// (elementwise layers alone at D = 2, 16, 64, whose short loops Mesa unrolls or not; seed4d's
/// and d16's couplings; residual nets), as many elementwise layers are appended as the choice
/// still accepts on this adapter, and log p, the inverse and a draw are checked against the
/// float64 reference, interpreted and tiled. (Measured before the limiter count was calibrated: at D = 16 the
/// choice accepted 3,849 layers where lavapipe broke from 2,525 on.) The tolerance: a few
/// thousand float32 layers, each rounding values of size ≤ 10 by 2⁻²⁴, move log p by ≲ 4e-3;
/// a shader stopped by the limiter is off by O(1) or more.
#[test]
fn llvmpipe_runs_every_model_it_accepts() {
    let Some(adapter) = best_adapter() else { return };
    let info = adapter.get_info();
    if !info.driver.to_lowercase().contains("llvmpipe") {
        eprintln!("not llvmpipe ({}): no loop limiter to check", info.name);
        return;
    }
    let limits = adapter.limits();
    let elementwise = |dim| common::elementwise_flow(dim, []);
    // with what an appended elementwise layer costs llvmpipe's limiter, where measured (Mesa
    // 22.3.6: 9 at D = 2, 26 at D = 16, 75 at D = 64)
    let models = [
        (with_elementwise_layers(&elementwise(2), 1), Some(9.0)),
        (with_elementwise_layers(&elementwise(16), 1), Some(26.0)),
        (with_elementwise_layers(&elementwise(64), 1), Some(75.0)),
        (realnvp::random::reference_model("seed4d").unwrap(), None),
        (realnvp::random::reference_model("d16").unwrap(), None),
        (random_mixed_flow(6, 6, 24, 31), None),
    ];
    for ((model, cost), kernel) in models.iter().flat_map(|m| [(m, KernelForm::Interpreted), (m, KernelForm::Tiled)]) {
        let accepted = |m: usize| kernel::choose(&with_elementwise_layers(model, m), &info, &limits, kernel).is_ok();
        assert!(accepted(0));
        let (mut good, mut refused) = (0, 1);
        while accepted(refused) {
            (good, refused) = (refused, refused * 2);
        }
        while refused - good > 1 {
            let mid = (good + refused) / 2;
            if accepted(mid) {
                good = mid
            } else {
                refused = mid
            }
        }
        // the bound is conservative, not wasteful: at least half of what lavapipe runs
        if let Some(cost) = cost {
            let runs = kernel::LLVMPIPE_LOOP_LIMIT as f64 / cost;
            assert!(
                good as f64 >= 0.5 * runs,
                "{kernel:?}, D = {}: {good} layers accepted of about {runs:.0} that run",
                model.dim
            );
        }
        let flow = with_elementwise_layers(model, good);
        let (d, n) = (flow.dim, 64);
        let engine = form(&flow, kernel, TierSwitch::Auto).unwrap();
        let engine: &dyn Engine = &engine;
        let x: Vec<f64> = (0..n * d).map(|i| ((i * 7919) % 1000) as f64 / 500.0 - 1.0).collect();
        let worst = |got: &[f64], want: &[f64]| {
            got.iter()
                .zip(want)
                .map(|(g, w)| if g.is_finite() { (g - w).abs() } else { f64::INFINITY })
                .fold(0.0, f64::max)
        };
        let what = format!("{kernel:?}, D = {d}, {} layers ({good} appended)", flow.layers.len());
        eprintln!("{what}");
        let (mut got, mut want) = (vec![0.0; n], vec![0.0; n]);
        engine.log_prob(&x, &mut got, &mut LogLikelihoodSum::default()).unwrap();
        realnvp::reference::log_prob(&flow, &x, &mut want);
        assert!(worst(&got, &want) < 1e-2, "log p, {what}: off by {:e}", worst(&got, &want));
        let (mut got, mut got_ld, mut want, mut want_ld) =
            (vec![0.0; n * d], vec![0.0; n], vec![0.0; n * d], vec![0.0; n]);
        engine.inverse_to_data(&x, &mut got, &mut got_ld).unwrap();
        realnvp::reference::inverse_to_data(&flow, &x, &mut want, &mut want_ld);
        assert!(worst(&got, &want) < 1e-2, "inverse, {what}: off by {:e}", worst(&got, &want));
        let (mut drawn, mut log_q) = (vec![0.0; n * d], vec![0.0; n]);
        engine.sample_rows(&Draw::new(3, 0), &mut drawn, &mut log_q).unwrap();
        let mut want = vec![0.0; n];
        realnvp::reference::log_prob(&flow, &drawn, &mut want);
        assert!(worst(&log_q, &want) < 1e-2, "sample, {what}: log q off by {:e}", worst(&log_q, &want));
    }
}

/// The kernel choice is a pure function of the model and the adapter's description, so what
/// it refuses is checked for a CPU rasterizer and for a hardware GPU on any machine.
#[test]
fn kernel_choice_refuses_only_what_llvmpipe_cannot_run() {
    let adapter = |driver: &str, device_type| {
        let mut info = wgpu::AdapterInfo::new(device_type, wgpu::Backend::Vulkan);
        info.name = format!("test {driver}");
        info.driver = driver.into();
        info
    };
    let lavapipe = adapter("llvmpipe", wgpu::DeviceType::Cpu);
    let hardware = adapter("NVIDIA", wgpu::DeviceType::DiscreteGpu);
    let limits = wgpu::Limits { max_storage_buffer_binding_size: 1 << 30, ..wgpu::Limits::default() };
    let d64 = realnvp::random::reference_model("d64").unwrap();
    assert!(unrolled::operations(&d64) > unrolled::LLVMPIPE_MAX_OPERATIONS);
    let err = kernel::choose(&d64, &lavapipe, &limits, KernelForm::Unrolled).err().expect("refused on llvmpipe");
    assert!(err.to_string().contains("--kernel interpreted"), "{err}");
    let unrolled_on_hardware = kernel::choose(&d64, &hardware, &limits, KernelForm::Unrolled).unwrap();
    assert_eq!(unrolled_on_hardware.source.form, KernelForm::Unrolled);
    assert!(unrolled_on_hardware.note.is_some(), "a large unrolled kernel comes with the compile note");
    // auto runs d64 tiled where a tile fits (lavapipe's 32 KiB: 8 rows of 608 floats; an H200's
    // 48 KiB: 16), interpreted where none does (saying why); asking for tiled there is an error
    // naming the limit
    let roomy = |kib: u32| wgpu::Limits { max_compute_workgroup_storage_size: kib << 10, ..limits.clone() };
    for (adapter, kib, rows) in [(&lavapipe, 32, 8), (&hardware, 48, 16)] {
        let auto_d64 = kernel::choose(&d64, adapter, &roomy(kib), KernelForm::Auto).unwrap();
        assert_eq!(auto_d64.source.form, KernelForm::Tiled);
        assert_eq!(auto_d64.source.group_rows, rows);
        assert!(auto_d64.upgrade.is_none() && auto_d64.note.is_none());
    }
    let auto_d64 = kernel::choose(&d64, &hardware, &roomy(4), KernelForm::Auto).unwrap();
    assert_eq!(auto_d64.source.form, KernelForm::Interpreted);
    assert!(auto_d64.note.as_deref().is_some_and(|n| n.contains("max_compute_workgroup_storage_size")));
    let err = kernel::choose(&d64, &hardware, &roomy(4), KernelForm::Tiled).err().expect("no room for a tile");
    assert!(err.to_string().contains("max_compute_workgroup_storage_size"), "{err}");
    let seed4d = realnvp::random::reference_model("seed4d").unwrap();
    for adapter in [&lavapipe, &hardware] {
        let tiered = kernel::choose(&seed4d, adapter, &limits, KernelForm::Auto).unwrap();
        assert_eq!(tiered.source.form, KernelForm::Interpreted);
        assert_eq!(tiered.upgrade.map(|u| u.form), Some(KernelForm::Unrolled));
        assert!(kernel::choose(&seed4d, adapter, &limits, KernelForm::Unrolled).unwrap().upgrade.is_none());
    }
    // a model whose interpreter loops exceed llvmpipe's limiter: refused there only
    let deep = init_flow(&InitSpec { dim: 64, layers: 40, hidden: vec![512, 512], ..InitSpec::seed4d(40) }, 1).unwrap();
    let err = kernel::choose(&deep, &lavapipe, &limits, KernelForm::Interpreted).err().expect("loop limit");
    assert!(err.to_string().contains("loop"), "{err}");
    assert!(kernel::choose(&deep, &hardware, &limits, KernelForm::Interpreted).is_ok());
    // parameter-free layers count toward the unrolled size (issue 16: 20,000 permutations
    // took minutes and gigabytes to build): auto tiles them, llvmpipe refuses to unroll
    let permutations = Flow {
        features: None,
        dim: 2,
        base: Base::StandardNormal,
        layers: vec![Layer::Permutation { perm: vec![1, 0] }; 20_000],
    };
    assert_eq!(unrolled::multiply_adds(&permutations), 0);
    assert_eq!(KernelForm::Auto.resolve(&permutations), KernelForm::Tiled);
    let more = Flow { layers: vec![Layer::Permutation { perm: vec![1, 0] }; 25_000], ..permutations };
    assert!(kernel::choose(&more, &lavapipe, &limits, KernelForm::Unrolled).is_err());
    // auto unrolls up to MAX_OPERATIONS inclusive, and an unrolled kernel past it comes with
    // the compile note: 2,000 two-feature permutations are 2,000 × (2 + LAYER_OVERHEAD) = 20,000
    assert_eq!(2 + unrolled::LAYER_OVERHEAD, 10);
    assert_eq!(unrolled::MAX_OPERATIONS, 20_000);
    let at = |layers: usize| Flow { layers: vec![Layer::Permutation { perm: vec![1, 0] }; layers], ..more.clone() };
    assert_eq!(unrolled::operations(&at(2_000)), unrolled::MAX_OPERATIONS);
    assert_eq!(KernelForm::Auto.resolve(&at(2_000)), KernelForm::Unrolled);
    assert_eq!(KernelForm::Auto.resolve(&at(2_001)), KernelForm::Tiled);
    assert!(kernel::choose(&at(2_000), &hardware, &limits, KernelForm::Unrolled).unwrap().note.is_none());
    assert!(kernel::choose(&at(2_001), &hardware, &limits, KernelForm::Unrolled).unwrap().note.is_some());
    // parameters beyond the storage binding size: refused everywhere
    let small = wgpu::Limits { max_storage_buffer_binding_size: 1 << 16, ..limits };
    assert!(kernel::choose(&d64, &hardware, &small, KernelForm::Interpreted).is_err());
    // the limit is in bytes of float32 parameters: exactly 4 per weight fits, one byte less not
    let floats = kernel::choose(&d64, &hardware, &limits, KernelForm::Interpreted).unwrap().source.weights.len() as u64;
    let exact = wgpu::Limits { max_storage_buffer_binding_size: 4 * floats, ..limits };
    assert!(kernel::choose(&d64, &hardware, &exact, KernelForm::Interpreted).is_ok());
    let short = wgpu::Limits { max_storage_buffer_binding_size: 4 * floats - 1, ..limits };
    let err = kernel::choose(&d64, &hardware, &short, KernelForm::Interpreted).err().expect("one byte short");
    assert!(err.to_string().contains(&format!("{} bytes of parameters", 4 * floats)), "{err}");
}
