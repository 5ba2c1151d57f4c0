//! # realnvp
//!
//! Real NVP normalizing flows evaluated in bulk: exact log-likelihoods, data→latent and
//! latent→data maps, and sampling, over batches of any size.
//!
//! - [`model`]: what a flow is (layers in data→latent order, parameters).
//! - [`format`](mod@format): the `.safetensors` model file (docs/FORMAT.md).
//! - [`convert`]: importers for flows trained with normflows and nflows (PyTorch).
//! - [`reference`](mod@reference): the float64 CPU reference, the ground truth.
//! - [`engine`]: the [`Engine`](engine::Engine) trait every device implements, and device selection.
//! - [`gpu`]: the fused WGSL engine on any wgpu adapter.
//! - [`native`]: the fused float32 SIMD engine on the CPU (`--device native`).
//! - [`bench`](mod@bench): timed passes per device next to the FMA ceiling (`realnvp bench`).
//! - [`split`]: one batch split across several engines (`--device all`).
//! - [`pipeline`]: streaming `.npy` files through an engine with bounded memory.
//! - [`npy`]: chunked `.npy` reading and atomic writing.
//! - [`random`]: random non-trivial flows (`realnvp init`, tests).
//!
//! ```
//! use std::sync::Arc;
//! use realnvp::{engine::{open_engine, Device}, random::{init_flow, InitSpec}};
//!
//! let flow = Arc::new(init_flow(&InitSpec::seed4d(6), 0).unwrap());
//! let engine = open_engine(flow, &Device::Cpu, &Default::default()).unwrap();
//! let x = vec![0.1, -0.3, 0.7, 1.2, /* second row */ 0.0, 0.5, -1.0, 2.0];
//! let mut logp = vec![0.0; 2];
//! let mut sum = realnvp::engine::LogLikelihoodSum::default();
//! engine.log_prob(&x, &mut logp, &mut sum).unwrap();
//! assert!(logp.iter().all(|v| v.is_finite()));
//! ```

pub mod bench;
pub mod convert;
pub mod engine;
pub mod error;
pub mod format;
pub mod gpu;
pub mod model;
pub mod native;
pub mod npy;
pub mod pipeline;
pub mod random;
pub mod reference;
pub mod split;
pub mod verify;

pub use error::{Error, Result};
