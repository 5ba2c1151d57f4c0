// Entry points that evaluate one row per invocation, alone (the unrolled kernel and the plan
// interpreter with private scratch, shaders/interpreter_rows.wgsl): an invocation past the
// end of the chunk returns at once. Shared pieces: shaders/flow.wgsl.

// Data→latent log p(x) per row, and per-workgroup partial sums of the finite values.
@compute @workgroup_size(WG)
fn log_prob_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = group_index(wid) * WG + lid;
    var lp = 0.0;
    if row < params.rows {
        if load_row(row) {
            lp = base_log_density(flow_to_latent());
        } else {
            lp = nan();
        }
        row_scalar[row] = lp;
    }
    reduce_group(wid, lid, lp, row < params.rows && is_finite(lp));
}

// Data→latent: z and log|det ∂z/∂x| per row.
@compute @workgroup_size(WG)
fn to_latent_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = group_index(wid) * WG + lid;
    if row >= params.rows {
        return;
    }
    let finite = load_row(row);
    var ld = nan();
    if finite {
        let acc = flow_to_latent();
        ld = acc.x + acc.y;
    }
    store_row(row, finite);
    row_scalar[row] = ld;
}

// Latent→data: x and log|det ∂x/∂z| per row.
@compute @workgroup_size(WG)
fn to_data_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = group_index(wid) * WG + lid;
    if row >= params.rows {
        return;
    }
    let finite = load_row(row);
    var ld = nan();
    if finite {
        let acc = flow_to_data();
        ld = acc.x + acc.y;
    }
    store_row(row, finite);
    row_scalar[row] = ld;
}

// Sampling: ε → z → x = f⁻¹(z) into rows_out, and log q(x) into row_scalar.
@compute @workgroup_size(WG)
fn sample_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = group_index(wid) * WG + lid;
    if row >= params.rows {
        return;
    }
    let q = draw_latent(row);
    let ld = flow_to_data();
    store_row(row, true);
    row_scalar[row] = sample_log_density(q, ld);
}
