//! The contract between the host and the WGSL kernels, named once. [`wgsl`] emits every
//! item here as WGSL (`const`s and the binding declarations) at the top of each generated
//! module, so the shaders and the Rust code read the same names and no number is kept in
//! step by hand.

use std::fmt::Write;

/// Rows per workgroup of the row-per-invocation forms (`WG` in their shaders; one invocation
/// per row), and the unit in which chunks and engine splits are counted. The tiled form's
/// workgroups take a divisor of it ([`MIN_WORKGROUP_ROWS`] or more).
pub const WORKGROUP_ROWS: usize = 256;

/// The fewest rows per workgroup of any form (the partial sums are sized for it).
pub const MIN_WORKGROUP_ROWS: usize = 8;

/// Outputs per accumulator block of the interpreter's matrix loops (`BLOCK`).
pub const BLOCK: usize = 8;

/// One storage or uniform binding of group 0.
pub struct Binding {
    pub index: u32,
    /// Variable name in the shaders.
    pub name: &'static str,
    /// WGSL address space and access, e.g. `storage, read`.
    pub space: &'static str,
    /// WGSL type.
    pub ty: &'static str,
    /// Shape and meaning, for the generated source.
    pub doc: &'static str,
}

/// Packed float32 parameters (interpreter: all; unrolled: the base's).
pub const WEIGHTS: Binding =
    Binding { index: 0, name: "weights", space: "storage, read", ty: "array<f32>", doc: "packed parameters" };
/// The chunk's input rows `[rows, D]`.
pub const ROWS_IN: Binding =
    Binding { index: 1, name: "rows_in", space: "storage, read", ty: "array<f32>", doc: "[rows, D]" };
/// Output rows `[rows, D]`: z or x.
pub const ROWS_OUT: Binding =
    Binding { index: 2, name: "rows_out", space: "storage, read_write", ty: "array<f32>", doc: "[rows, D]: z or x" };
/// One value per row `[rows]`: the log-det, or log p.
pub const ROW_SCALAR: Binding = Binding {
    index: 3,
    name: "row_scalar",
    space: "storage, read_write",
    ty: "array<f32>",
    doc: "[rows]: log-det or log p",
};
/// Per-workgroup `[groups, 2]`: Σ of finite log p, and their count.
pub const PARTIALS: Binding = Binding {
    index: 4,
    name: "partials",
    space: "storage, read_write",
    ty: "array<f32>",
    doc: "[groups, 2]: sum of finite log p, count",
};
/// Bytes of the dispatch's `Params` (see [`params`]).
pub const PARAMS_BYTES: u64 = 48;

/// The words of `Params`: rows and groups along x of the dispatch; for sampling the seed, the
/// global index of the chunk's first row, the temperature T and −D ln T.
pub fn params(rows: u32, groups_x: u32, sample: Option<(u64, u64, f32, f32)>) -> [u32; 12] {
    let (seed, first_row, temperature, log_t) = sample.unwrap_or((0, 0, 1.0, 0.0));
    [
        rows,
        groups_x,
        0,
        0,
        seed as u32,
        (seed >> 32) as u32,
        first_row as u32,
        (first_row >> 32) as u32,
        temperature.to_bits(),
        log_t.to_bits(),
        0,
        0,
    ]
}

/// The dispatch's `Params` ([`params`]).
pub const PARAMS: Binding =
    Binding { index: 5, name: "params", space: "uniform", ty: "Params", doc: "rows, groups_x, 0, 0" };
/// The interpreter's layer plan (u32 records; `[0]` for the unrolled form).
pub const PLAN: Binding =
    Binding { index: 6, name: "plan", space: "storage, read", ty: "array<u32>", doc: "layer plan" };

/// Every binding of the fused kernel, in binding order.
pub const BINDINGS: [Binding; 7] = [WEIGHTS, ROWS_IN, ROWS_OUT, ROW_SCALAR, PARTIALS, PARAMS, PLAN];

/// Record kinds of the interpreter's plan (`LAYER_*`).
pub const LAYER_COUPLING: u32 = 0;
pub const LAYER_ELEMENTWISE: u32 = 1;
pub const LAYER_PERMUTATION: u32 = 2;

/// Activation codes of the interpreter (`ACT_*`); `ACT_IDENTITY` is "none".
pub const ACT_RELU: u32 = 0;
pub const ACT_LEAKY_RELU: u32 = 1;
pub const ACT_TANH: u32 = 2;
pub const ACT_ELU: u32 = 3;
pub const ACT_SILU: u32 = 4;
pub const ACT_GELU: u32 = 5;
pub const ACT_IDENTITY: u32 = 6;

/// Scale-function codes of the interpreter (`SCALE_*`).
pub const SCALE_EXP: u32 = 0;
pub const SCALE_TANH_EXP: u32 = 1;
pub const SCALE_SIGMOID: u32 = 2;
pub const SCALE_SOFT_CLAMP_EXP: u32 = 3;

/// The ABI as WGSL for a module whose workgroups take `group_rows` rows (`WG`): constants,
/// the `Params` struct and the binding declarations.
pub fn wgsl(group_rows: usize) -> String {
    let mut out = String::from("// kernel ABI, generated from src/gpu/kernel/abi.rs\n");
    let consts: [(&str, u32); 16] = [
        ("WG", group_rows as u32),
        ("BLOCK", BLOCK as u32),
        ("LAYER_COUPLING", LAYER_COUPLING),
        ("LAYER_ELEMENTWISE", LAYER_ELEMENTWISE),
        ("LAYER_PERMUTATION", LAYER_PERMUTATION),
        ("ACT_RELU", ACT_RELU),
        ("ACT_LEAKY_RELU", ACT_LEAKY_RELU),
        ("ACT_TANH", ACT_TANH),
        ("ACT_ELU", ACT_ELU),
        ("ACT_SILU", ACT_SILU),
        ("ACT_GELU", ACT_GELU),
        ("ACT_IDENTITY", ACT_IDENTITY),
        ("SCALE_EXP", SCALE_EXP),
        ("SCALE_TANH_EXP", SCALE_TANH_EXP),
        ("SCALE_SIGMOID", SCALE_SIGMOID),
        ("SCALE_SOFT_CLAMP_EXP", SCALE_SOFT_CLAMP_EXP),
    ];
    for (name, value) in consts {
        let _ = writeln!(out, "const {name}: u32 = {value}u;");
    }
    out += "\nstruct Params {\n    rows: u32,      // rows in this dispatch\n    groups_x: u32,  // workgroups along x; group index = wid.y * groups_x + wid.x\n    zero: u32,      // always 0, unknown to the compiler: added to the interpreter's layer-loop bound\n                    // (so it is not unrolled) and OR-ed into float bits by `keep` (math.wgsl)\n    _pad1: u32,\n    seed_lo: u32,   // sampling: the seed, and the global index of the chunk's first row\n    seed_hi: u32,\n    first_row_lo: u32,\n    first_row_hi: u32,\n    temperature: f32,\n    log_t: f32,     // −D ln T\n    _pad2: u32,\n    _pad3: u32,\n}\n\n";
    for b in BINDINGS {
        let _ = writeln!(out, "@group(0) @binding({}) var<{}> {}: {}; // {}", b.index, b.space, b.name, b.ty, b.doc);
    }
    out
}

/// The bind group layout entries of [`BINDINGS`] (compute stage only).
pub fn layout_entries() -> Vec<wgpu::BindGroupLayoutEntry> {
    BINDINGS
        .iter()
        .map(|b| wgpu::BindGroupLayoutEntry {
            binding: b.index,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: match b.space {
                    "uniform" => wgpu::BufferBindingType::Uniform,
                    space => wgpu::BufferBindingType::Storage { read_only: space.ends_with("read") },
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect()
}
