//! The model file format: round trips, and one test per validation error. Hostile and
//! truncated files must give errors, never panics.

use std::collections::{BTreeMap, HashMap};

use realnvp::format::{flow_from_bytes, flow_to_bytes, TensorDtype};
use realnvp::model::{Base, Conditioner, Coupling, Direction, Flow, Layer, Layout, OutputFn, ScaleFn};
use realnvp::random::{random_mixed_flow, random_mlp, random_residual_net};
use realnvp::Error;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::{json, Value};

mod common;

/// A flow with every layer kind, conditioner and a diagonal base.
fn full_flow() -> Flow {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let act = realnvp::model::Activation::LeakyRelu { negative_slope: 0.2 };
    let masked = Coupling {
        mask: vec![true, true, false, false],
        direction: Direction::DataToLatent,
        conditioner: Conditioner::MaskedSt {
            s: random_mlp(&mut rng, &[4, 8, 4], act, OutputFn::Tanh),
            t: random_mlp(&mut rng, &[4, 8, 4], act, OutputFn::Identity),
        },
        scale: ScaleFn::TanhExp { alpha: vec![0.5, 0.6, 0.7, 0.8] },
    };
    let shared = Coupling {
        mask: vec![false, true, false, true],
        direction: Direction::LatentToData,
        conditioner: Conditioner::Shared {
            st: random_mlp(&mut rng, &[2, 6, 4], act, OutputFn::Identity),
            layout: Layout::Interleaved,
        },
        scale: ScaleFn::Sigmoid { offset: 2.0, eps: 1e-3 },
    };
    let residual = Coupling {
        mask: vec![true, false, true, false],
        direction: Direction::DataToLatent,
        conditioner: Conditioner::Shared {
            st: random_residual_net(&mut rng, 2, 6, 4, 1, act, OutputFn::Identity),
            layout: Layout::ShiftScale,
        },
        scale: ScaleFn::Sigmoid { offset: 2.0, eps: 1e-3 },
    };
    Flow {
        features: None,
        dim: 4,
        base: Base::DiagonalNormal { loc: vec![0.1, -0.2, 0.3, 0.0], log_scale: vec![0.1, 0.2, -0.1, 0.05] },
        layers: vec![
            Layer::Coupling(masked),
            Layer::ElementwiseAffine {
                direction: Direction::LatentToData,
                log_scale: vec![0.1, 0.2, 0.3, 0.4],
                shift: vec![1.0, 2.0, 3.0, 4.0],
            },
            Layer::Permutation { perm: vec![2, 3, 0, 1] },
            Layer::Coupling(shared),
            Layer::Coupling(residual),
        ],
    }
}

type Tensors = BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

/// Takes the valid file of `full_flow`, lets the caller edit its config and tensors, and
/// serializes the result.
fn edited(edit_config: impl FnOnce(&mut Value), edit_tensors: impl FnOnce(&mut Tensors)) -> Vec<u8> {
    let bytes = flow_to_bytes(&full_flow(), TensorDtype::F32).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let mut config: Value = serde_json::from_str(&meta.metadata().as_ref().unwrap()["realnvp"]).unwrap();
    let mut tensors: Tensors =
        st.tensors().into_iter().map(|(name, v)| (name, (v.dtype(), v.shape().to_vec(), v.data().to_vec()))).collect();
    edit_config(&mut config);
    edit_tensors(&mut tensors);
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(name, (dtype, shape, data))| (name.clone(), TensorView::new(*dtype, shape.clone(), data).unwrap()))
        .collect();
    safetensors::serialize(views, Some(HashMap::from([("realnvp".to_owned(), config.to_string())]))).unwrap()
}

fn load_error(bytes: &[u8]) -> String {
    match flow_from_bytes(bytes) {
        Ok(_) => panic!("the model loaded but should have been rejected"),
        Err(e) => e.to_string(),
    }
}

fn expect_error(bytes: &[u8], needles: &[&str]) {
    let msg = load_error(bytes);
    for needle in needles {
        assert!(msg.contains(needle), "error {msg:?} does not mention {needle:?}");
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn round_trip_float64_is_exact() {
    for seed in common::seeds(12) {
        let flow = random_mixed_flow(1 + (seed as usize % 6), 8, 12, seed);
        let back = flow_from_bytes(&flow_to_bytes(&flow, TensorDtype::F64).unwrap()).unwrap();
        assert_eq!(back, flow);
    }
    let flow = full_flow();
    assert_eq!(flow_from_bytes(&flow_to_bytes(&flow, TensorDtype::F64).unwrap()).unwrap(), flow);
}

#[test]
fn round_trip_float32_rounds_parameters_once() {
    let flow = full_flow();
    let once = flow_from_bytes(&flow_to_bytes(&flow, TensorDtype::F32).unwrap()).unwrap();
    let twice = flow_from_bytes(&flow_to_bytes(&once, TensorDtype::F32).unwrap()).unwrap();
    assert_eq!(once, twice);
    assert_ne!(once, flow, "float32 storage should round the float64 weights");
}

#[test]
fn save_and_load_through_a_file() {
    let dir = common::tempdir();
    let path = dir.path().join("m.safetensors");
    Flow::save(&full_flow(), &path, TensorDtype::F64).unwrap();
    assert_eq!(Flow::load(&path).unwrap(), full_flow());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file may remain");
}

#[test]
fn unedited_file_loads() {
    flow_from_bytes(&edited(|_| {}, |_| {})).unwrap();
}

#[test]
fn shape_mismatch_names_the_tensor() {
    let bytes = edited(
        |_| {},
        |t| {
            t.insert("layers.0.s.0.weight".into(), (Dtype::F32, vec![4, 8], f32_bytes(&[0.5; 32])));
        },
    );
    expect_error(&bytes, &["layers.0.s.0.weight", "[4, 8]", "[8, 4]"]);
}

#[test]
fn missing_tensor_names_the_tensor() {
    let bytes = edited(
        |_| {},
        |t| {
            t.remove("layers.3.st.1.bias");
        },
    );
    expect_error(&bytes, &["missing tensor layers.3.st.1.bias"]);
}

#[test]
fn unexpected_tensor_is_reported() {
    let bytes = edited(
        |_| {},
        |t| {
            t.insert("layers.2.extra".into(), (Dtype::F32, vec![1], f32_bytes(&[1.0])));
        },
    );
    expect_error(&bytes, &["unexpected", "layers.2.extra"]);
}

#[test]
fn unknown_field_is_rejected() {
    let bytes = edited(|c| c["layers"][1]["colour"] = json!("red"), |_| {});
    expect_error(&bytes, &["colour"]);
    let bytes = edited(|c| c["layers"][0]["nets"]["s"]["dropout"] = json!(0.1), |_| {});
    expect_error(&bytes, &["dropout"]);
    let bytes = edited(|c| c["frobnicate"] = json!(true), |_| {});
    expect_error(&bytes, &["frobnicate"]);
}

#[test]
fn unknown_kinds_are_rejected() {
    expect_error(&edited(|c| c["layers"][2]["type"] = json!("glow"), |_| {}), &["glow"]);
    expect_error(&edited(|c| c["layers"][0]["nets"]["s"]["activation"] = json!("swish"), |_| {}), &["swish"]);
    expect_error(&edited(|c| c["layers"][0]["scale"]["fn"] = json!("softplus"), |_| {}), &["softplus"]);
    expect_error(&edited(|c| c["layers"][0]["conditioner"] = json!("resnet"), |_| {}), &["resnet"]);
    expect_error(&edited(|c| c["base"] = json!("student_t"), |_| {}), &["student_t"]);
    expect_error(&edited(|c| c["layers"][3]["layout"] = json!("scale_shift"), |_| {}), &["scale_shift"]);
}

#[test]
fn bad_masks_are_rejected() {
    expect_error(&edited(|c| c["layers"][0]["mask"] = json!([1, 2, 0, 0]), |_| {}), &["layer 0", "mask entry 2"]);
    expect_error(&edited(|c| c["layers"][0]["mask"] = json!([1, 1, 1, 1]), |_| {}), &["layer 0", "at least one"]);
    expect_error(&edited(|c| c["layers"][0]["mask"] = json!([0, 0, 0, 0]), |_| {}), &["layer 0", "at least one"]);
    expect_error(&edited(|c| c["layers"][0]["mask"] = json!([1, 0, 0]), |_| {}), &["layer 0", "length 3", "dim is 4"]);
}

#[test]
fn non_permutation_is_rejected() {
    expect_error(&edited(|c| c["layers"][2]["perm"] = json!([0, 0, 1, 2]), |_| {}), &["layer 2", "not a permutation"]);
    expect_error(&edited(|c| c["layers"][2]["perm"] = json!([0, 1, 2, 4]), |_| {}), &["layer 2", "not a permutation"]);
    expect_error(&edited(|c| c["layers"][2]["perm"] = json!([0, 1, 2]), |_| {}), &["layer 2", "not a permutation"]);
}

#[test]
fn non_finite_weights_are_rejected() {
    let bytes = edited(
        |_| {},
        |t| {
            let mut w = vec![0.25f32; 8];
            w[5] = f32::NAN;
            t.insert("layers.0.t.0.bias".into(), (Dtype::F32, vec![8], f32_bytes(&w)));
        },
    );
    expect_error(&bytes, &["layers.0.t.0.bias", "non-finite", "index 5"]);
    let bytes = edited(
        |_| {},
        |t| {
            t.insert("base.loc".into(), (Dtype::F32, vec![4], f32_bytes(&[0.0, f32::INFINITY, 0.0, 0.0])));
        },
    );
    expect_error(&bytes, &["base.loc", "non-finite"]);
}

#[test]
fn other_dtypes_are_rejected() {
    let bytes = edited(
        |_| {},
        |t| {
            t.insert("layers.1.shift".into(), (Dtype::I32, vec![4], vec![0u8; 16]));
        },
    );
    expect_error(&bytes, &["layers.1.shift", "I32", "F32 and F64"]);
    let bytes = edited(
        |_| {},
        |t| {
            t.insert("layers.1.shift".into(), (Dtype::F16, vec![4], vec![0u8; 8]));
        },
    );
    expect_error(&bytes, &["layers.1.shift", "F16"]);
}

#[test]
fn dimension_mismatches_are_rejected() {
    // config says D = 5: every vector of length 4 is now wrong
    expect_error(&edited(|c| c["dim"] = json!(5), |_| {}), &["base.loc", "expected [5]"]);
    let bytes = edited(
        |_| {},
        |t| {
            t.insert("layers.0.alpha".into(), (Dtype::F32, vec![3], f32_bytes(&[0.5; 3])));
        },
    );
    expect_error(&bytes, &["layers.0.alpha", "[3]", "[4]"]);
    let bytes = edited(|c| c["layers"][0]["nets"]["s"]["sizes"] = json!([3, 8, 4]), |_| {});
    expect_error(&bytes, &["layers.0.s.0.weight"]);
    expect_error(&edited(|c| c["dim"] = json!(0), |_| {}), &["dim"]);
}

#[test]
fn conditioner_and_net_mismatches_are_rejected() {
    expect_error(
        &edited(
            |c| {
                c["layers"][3].as_object_mut().unwrap().remove("layout");
            },
            |_| {},
        ),
        &["layer 3", "layout"],
    );
    expect_error(&edited(|c| c["layers"][0]["layout"] = json!("interleaved"), |_| {}), &["layer 0", "layout"]);
    expect_error(&edited(|c| c["layers"][0]["conditioner"] = json!("shared"), |_| {}), &["layer 0", "st"]);
    expect_error(
        &edited(
            |c| {
                c["layers"][0]["nets"]["s"]["activation"] = json!("relu");
                c["layers"][0]["nets"]["s"]["negative_slope"] = json!(0.1);
            },
            |_| {},
        ),
        &["layers.0.s", "negative_slope"],
    );
    expect_error(
        &edited(|c| c["layers"][1]["scale"] = json!({"fn": "soft_clamp_exp", "bound": -1.0}), |_| {}),
        &["scale"],
    );
    expect_error(
        &edited(|c| c["layers"][0]["scale"] = json!({"fn": "soft_clamp_exp", "bound": -1.0}), |_| {}),
        &["layer 0", "bound"],
    );
    // a residual net's block count must match its Linears (1 block: 4 Linears, not 2 + 2·2)
    expect_error(
        &edited(|c| c["layers"][4]["nets"]["st"]["residual_blocks"] = json!(2), |_| {}),
        &["layers.4.st", "residual"],
    );
    expect_error(&edited(|c| c["layers"][4]["nets"]["st"]["residual_blocks"] = json!(-1), |_| {}), &["expected usize"]);
}

#[test]
fn unsupported_version_and_missing_config_are_rejected() {
    expect_error(&edited(|c| c["version"] = json!(2), |_| {}), &["version 2"]);
    let plain = safetensors::serialize(Vec::<(String, TensorView)>::new(), None).unwrap();
    expect_error(&plain, &["__metadata__", "realnvp"]);
    let not_json = safetensors::serialize(
        Vec::<(String, TensorView)>::new(),
        Some(HashMap::from([("realnvp".into(), "{oops".into())])),
    )
    .unwrap();
    expect_error(&not_json, &["config JSON"]);
}

#[test]
fn truncated_files_are_rejected_at_every_length() {
    let bytes = edited(|_| {}, |_| {});
    for len in (0..bytes.len()).step_by(7) {
        let msg = load_error(&bytes[..len]);
        assert!(msg.contains("safetensors"), "truncated at {len}: {msg}");
    }
}

#[test]
fn lying_header_length_is_rejected() {
    let mut bytes = edited(|_| {}, |_| {});
    bytes[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    expect_error(&bytes, &["safetensors"]);
    let mut bytes = edited(|_| {}, |_| {});
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    bytes[..8].copy_from_slice(&(n + 1000).to_le_bytes());
    expect_error(&bytes, &["safetensors"]);
}

#[test]
fn huge_shapes_in_the_header_are_rejected_without_allocating() {
    let header = json!({
        "__metadata__": {"realnvp": "{}"},
        "layers.0.s.0.weight": {"dtype": "F32", "shape": [1u64 << 40, 1u64 << 40], "data_offsets": [0, 16]}
    })
    .to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0u8; 16]);
    expect_error(&bytes, &["safetensors"]);
}

#[test]
fn corrupted_bytes_never_panic() {
    let bytes = edited(|_| {}, |_| {});
    for pos in (0..bytes.len()).step_by(3) {
        for value in [0u8, 0xff, b'"', b'9'] {
            let mut bad = bytes.clone();
            bad[pos] = value;
            let _ = flow_from_bytes(&bad);
        }
    }
}

#[test]
fn load_flow_names_the_file() {
    let dir = common::tempdir();
    let path = dir.path().join("broken.safetensors");
    std::fs::write(&path, b"not a model").unwrap();
    match Flow::load(&path) {
        Err(e @ Error::ModelFile { .. }) => assert!(e.to_string().contains("broken.safetensors")),
        other => panic!("expected a model file error, got {other:?}"),
    }
}
