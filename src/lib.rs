//! # realnvp
//!
//! Real NVP normalizing flows evaluated in bulk: exact log-likelihoods, data→latent and
//! latent→data maps, and sampling, over batches of any size.
//!
//! - [`model`]: what a flow is (layers in data→latent order, parameters); [`Flow::load`]
//!   and [`Flow::save`] ([`format`](mod@format): the `.safetensors` file, docs/FORMAT.md).
//! - [`convert`]: importers for flows trained with normflows and nflows (PyTorch).
//! - [`reference`](mod@reference): the float64 CPU reference, the ground truth;
//!   [`cpu`]: it as an engine.
//! - [`engine`]: the [`Engine`] trait every engine implements, [`Pass`], the reduction;
//!   [`real`]: rows in float32 or float64 ([`real::Batch`]).
//! - [`device`]: [`Device`], [`device::open_engine`] and [`Flow::engine`].
//! - [`gpu`]: the fused WGSL engine on any wgpu adapter; [`native`]: the fused float32 SIMD
//!   engine on the CPU; [`split`]: one batch split across several engines (`--device all`).
//! - [`pipeline`]: streaming `.npy` files through an engine with bounded memory
//!   ([`npy`]: chunked reading and writing; [`parquet`](mod@parquet): Parquet tables;
//!   [`output`]: every output file appears whole or not at all).
//! - [`sample`]: sampling as a pure function of (seed, row) ([`sample::Draw`]), on
//!   [`philox`] (Philox4x32-10); every engine's [`Engine::sample`].
//! - [`verify`]: an engine against the reference; [`bench`](mod@bench): timed passes next to
//!   the FMA ceiling; [`random`]: random non-trivial flows (`realnvp init`, tests).
//!
//! docs/ARCHITECTURE.md describes how they fit together.
//!
//! ```
//! use realnvp::{Device, Flow, LogLikelihoodSum};
//!
//! let flow = Flow::load("tests/fixtures/python/model.safetensors")?;
//! let engine = flow.engine(&Device::Native)?;
//! // two rows of D = 5, row-major
//! let x: Vec<f32> = vec![0.1, -0.3, 0.7, 1.2, 0.4, /* second row */ 0.0, 0.5, -1.0, 2.0, -0.2];
//! let mut logp = vec![0.0f32; 2];
//! engine.log_prob(&x, &mut logp, &mut LogLikelihoodSum::default())?;
//! assert!(logp.iter().all(|v| v.is_finite()));
//! # Ok::<(), realnvp::Error>(())
//! ```

pub mod bench;
pub mod convert;
pub mod cpu;
pub mod device;
pub mod engine;
pub mod error;
pub mod format;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod model;
pub mod native;
pub mod npy;
pub mod output;
pub mod parquet;
pub mod philox;
pub mod pipeline;
pub mod plot;
pub mod random;
pub mod real;
pub mod reference;
pub mod sample;
pub mod split;
pub mod verify;

pub use device::Device;
pub use engine::{Engine, LogLikelihoodSum, Pass};
pub use error::{Error, Result};
pub use model::Flow;

/// README.md's code is compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
