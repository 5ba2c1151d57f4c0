//! `realnvp info`: a model's dimension, layers, parameters and FLOPs per row.

use std::path::PathBuf;

use anyhow::Result;

use realnvp::gpu::kernel::unrolled;
use realnvp::gpu::KernelForm;
use realnvp::model::{Base, Conditioner, Flow, Layer, ScaleFn};

#[derive(clap::Args)]
pub struct Args {
    /// A model file, or a built-in model: seed4d, d16, d64.
    model: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    print!("{}", describe(&super::options::load_model(&args.model)?));
    Ok(())
}

/// A human-readable description of a flow for `realnvp info`.
fn describe(flow: &Flow) -> String {
    let mut out = format!("dimension        {}\n", flow.dim);
    let base = match &flow.base {
        Base::StandardNormal => "standard_normal",
        Base::DiagonalNormal { .. } => "diagonal_normal",
    };
    out += &format!("base             {base}\n");
    if let Some(names) = &flow.features {
        out += &format!("features         {}\n", names.join(", "));
    }
    out += &format!("layers           {}\n", flow.layers.len());
    out += &format!("parameters       {}\n", flow.parameter_count());
    out += &format!("FLOPs per row    {} (log p, mask-pruned)\n", flow.flops_per_row());
    let default = if KernelForm::Auto.tiered(flow) {
        "tiered (interpreted while the unrolled kernel builds, then unrolled)"
    } else {
        "tiled (interpreted where the adapter's workgroup memory holds no tile)"
    };
    out += &format!(
        "GPU kernel       {default} by default (--kernel auto: tiered up to {} operations per row, this model has {}: {} multiply-adds and {} per layer)\n",
        unrolled::MAX_OPERATIONS,
        unrolled::operations(flow),
        unrolled::multiply_adds(flow),
        flow.dim as u64 + unrolled::LAYER_OVERHEAD,
    );
    out += "\n  #  kind                details                                             params    FLOPs/row\n";
    for (i, layer) in flow.layers.iter().enumerate() {
        out += &format!(
            "{i:>3}  {:<19} {:<50} {:>8} {:>12}\n",
            layer.kind(),
            layer_details(layer),
            layer.parameter_count(),
            layer.flops_per_row()
        );
    }
    out
}

fn layer_details(layer: &Layer) -> String {
    match layer {
        Layer::Coupling(c) => {
            let mask: String = c.mask.iter().map(|&b| if b { '1' } else { '0' }).collect();
            let mask = if mask.len() > 16 { format!("{}…", &mask[..16]) } else { mask };
            let cond = match &c.conditioner {
                Conditioner::MaskedSt { s, .. } => format!("masked_st {:?}", s.sizes()),
                Conditioner::Shared { st, .. } if st.residual_blocks > 0 => {
                    format!("shared residual×{} {:?}", st.residual_blocks, st.sizes())
                }
                Conditioner::Shared { st, .. } => format!("shared {:?}", st.sizes()),
            };
            let scale = match c.scale {
                ScaleFn::Exp => "exp",
                ScaleFn::TanhExp { .. } => "tanh_exp",
                ScaleFn::Sigmoid { .. } => "sigmoid",
                ScaleFn::SoftClampExp { .. } => "soft_clamp_exp",
            };
            format!("b={mask} {cond} {scale}")
        }
        Layer::ElementwiseAffine { direction, .. } => format!("{direction:?}"),
        Layer::Permutation { perm } => format!("{perm:?}").chars().take(50).collect(),
    }
}
