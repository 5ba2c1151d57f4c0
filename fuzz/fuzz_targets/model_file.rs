//! A model file's bytes → `flow_from_bytes` (safetensors header, JSON config, tensors,
//! validation). Any input must give a model or an error, never a panic, abort or huge
//! allocation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(flow) = realnvp::format::flow_from_bytes(data) {
        // a model that loads must also save and load again to the same thing
        let bytes =
            realnvp::format::flow_to_bytes(&flow, realnvp::format::TensorDtype::F64).expect("save a loaded model");
        let again = realnvp::format::flow_from_bytes(&bytes).expect("reload a saved model");
        assert_eq!(again.dim, flow.dim);
        assert_eq!(again.layers.len(), flow.layers.len());
    }
});
