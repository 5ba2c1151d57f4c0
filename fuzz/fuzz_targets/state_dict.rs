//! A PyTorch state_dict (safetensors) → the normflows or nflows converter. The first four
//! bytes pick the converter and its options (byte 0 bit 0: nflows; normflows: bit 1 keyless
//! swap, bits 2–3 split mode, bit 4 sigmoid_inv; nflows: features, hidden, layers from bytes
//! 1–3, bit 1 two blocks per layer, bit 2 batch norm); the rest is the file.
#![no_main]

use realnvp::convert::{self, NflowsArch, NflowsOptions, NormflowsOptions, ScaleMap, SplitMode, StateDict};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((options, file)) = data.split_first_chunk::<4>() else { return };
    let Ok(mut sd) = StateDict::from_bytes(file) else { return };
    let flow = if options[0] & 1 == 0 {
        let split = [SplitMode::Channel, SplitMode::ChannelInv, SplitMode::Checkerboard, SplitMode::CheckerboardInv];
        let o = NormflowsOptions {
            keyless: (options[0] & 2 != 0).then_some(convert::Keyless::Swap),
            split_modes: vec![split[usize::from(options[0] >> 2) % 4]],
            scale_map: if options[0] & 16 != 0 { ScaleMap::SigmoidInv } else { ScaleMap::Exp },
            ..NormflowsOptions::default()
        };
        convert::from_normflows(&mut sd, &o)
    } else {
        let o = NflowsOptions {
            arch: NflowsArch::SimpleRealNvp,
            features: usize::from(options[1]),
            hidden: usize::from(options[2]),
            layers: usize::from(options[3]),
            blocks_per_layer: 1 + usize::from(options[0] >> 1 & 1),
            batch_norm_between: options[0] & 4 != 0,
            activation: realnvp::model::Activation::Relu,
        };
        convert::from_nflows(&mut sd, &o)
    };
    if let Ok(flow) = flow {
        // a converted model is valid: it saves and loads
        let bytes = realnvp::format::flow_to_bytes(&flow, realnvp::format::TensorDtype::F64).expect("save");
        realnvp::format::flow_from_bytes(&bytes).expect("a converted model loads");
    }
});
