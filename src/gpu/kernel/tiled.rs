//! The tiled kernel form, `--kernel auto`'s choice for every model it does not unroll: the plan interpreter
//! (same plan, same arithmetic per output) whose workgroup evaluates the nets of a tile of
//! rows together, activations in workgroup memory and 4-row × BLOCK-output register blocks per
//! invocation (`shaders/interpreter_tiles.wgsl`). This file picks the tile for an adapter's
//! limits and checks them.
//!
//! Why: one row per invocation keeps up to `SCRATCH` floats of scratch per row in private
//! memory (spilled to local memory on GPUs for nets 64 wide and more) and loads every weight
//! once per multiply-add. A tile loads each weight once per 4 rows and each activation once per
//! BLOCK outputs, from on-chip memory; its expected speed on an H200 and Apple M-series GPUs
//! is worked out as a roofline in BENCHMARKS.md. On lavapipe it runs 2–2.5× the row
//! interpreter's rows/s (d16, d64 and narrow deep nets, BENCHMARKS.md 2026-12-01 session 4).

use crate::error::{Error, Result};
use crate::model::Flow;

use super::abi::{MIN_WORKGROUP_ROWS, WORKGROUP_ROWS};
use super::interpreter;
use super::source::KernelSource;

/// Invocations per workgroup: two 32-wide SIMD groups (NVIDIA warps, Apple SIMD groups) or
/// one 64-wide wave (AMD), whatever the tile, so that the nets' register blocks fill them.
pub const INVOCATIONS: usize = 64;

/// Tile sizes tried, largest first: a larger tile shares each weight load among more rows.
/// Each divides [`WORKGROUP_ROWS`], is at least [`MIN_WORKGROUP_ROWS`] and at most [`INVOCATIONS`].
const TILE_ROWS: [usize; 4] = [64, 32, 16, MIN_WORKGROUP_ROWS];

/// Bytes of workgroup memory a tile of `rows` rows needs: the scratch of every row plus the
/// log p reduction's (shaders/flow.wgsl: WG + WG + RED + RED floats, RED ≤ 16).
fn workgroup_bytes(scratch_floats: usize, rows: usize) -> u64 {
    ((scratch_floats * rows + 2 * rows + 32) * 4) as u64
}

/// The tiled kernel of a validated flow with the largest tile that fits `limits` (workgroup
/// memory and invocations per workgroup); an error naming the limit when none does.
pub(super) fn generate(flow: &Flow, limits: &wgpu::Limits, adapter_name: &str) -> Result<KernelSource> {
    let packed = interpreter::pack(flow);
    let fits = |rows: usize| {
        workgroup_bytes(packed.scratch_floats, rows) <= u64::from(limits.max_compute_workgroup_storage_size)
    };
    if INVOCATIONS as u32 > limits.max_compute_invocations_per_workgroup.min(limits.max_compute_workgroup_size_x) {
        return Err(Error::Gpu(format!(
            "the tiled kernel runs {INVOCATIONS} invocations per workgroup but {adapter_name} allows {}; use --kernel interpreted",
            limits.max_compute_invocations_per_workgroup.min(limits.max_compute_workgroup_size_x)
        )));
    }
    let Some(rows) = TILE_ROWS.into_iter().find(|&rows| fits(rows)) else {
        return Err(Error::Gpu(format!(
            "the tiled kernel needs {} bytes of workgroup memory for {MIN_WORKGROUP_ROWS} rows of this model's nets ({} floats of scratch per row) but {adapter_name} has {} (max_compute_workgroup_storage_size); use --kernel interpreted",
            workgroup_bytes(packed.scratch_floats, MIN_WORKGROUP_ROWS),
            packed.scratch_floats,
            limits.max_compute_workgroup_storage_size
        )));
    };
    debug_assert_eq!(WORKGROUP_ROWS % rows, 0);
    Ok(interpreter::generate_tiled(flow, packed, rows, INVOCATIONS))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every tile divides the row forms' workgroup (chunks are counted in those) and is a
    /// whole number of 4-row register blocks.
    #[test]
    fn tiles_divide_the_workgroup() {
        for rows in TILE_ROWS {
            assert_eq!(WORKGROUP_ROWS % rows, 0, "{rows}");
            assert!((MIN_WORKGROUP_ROWS..=INVOCATIONS).contains(&rows), "{rows}");
            assert_eq!(rows % 4, 0, "{rows}");
        }
    }
}
