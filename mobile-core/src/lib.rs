//! fbnet's shared core: everything that runs on the phone, in plain Rust.
//!
//! The FBNet search space and its architectures ([`space`], [`arch`], [`ops`]), ONNX graphs of blocks and
//! whole networks ([`onnx`]), operator timing with ONNX Runtime ([`runtime`], [`profile`]) and the latency
//! lookup tables it produces ([`lut`]). An exported model is loaded, fed and timed by [`model`], with the
//! image preprocessing of [`preprocess`] that the host's evaluation shares. The host trainer and the phone
//! apps both build on it.

pub mod arch;
pub mod device;
pub mod error;
/// What the phones call: the uniffi API (Swift, Python) and, on Android, the JNI facade over it.
pub mod ffi;
/// Durable atomic file writes (temporary file, sync, rename, sync of the folder).
pub mod files;
pub mod lut;
/// Timing a graph, the inputs it runs on, and building a network's graph at a dtype.
pub mod measure;
/// A loaded exported model: its description, classification of images, and a latency benchmark.
pub mod model;
pub mod model_meta;
pub mod onnx;
pub mod ops;
/// Decoding images and turning them into a network's input, shared by the host and the phone.
pub mod preprocess;
pub mod profile;
pub mod reference;
/// The seeded random generator (SplitMix64).
pub mod rng;
pub mod runtime;
pub mod space;
pub mod validate;

pub use arch::{Arch, BUILTINS, Builtin, builtin};
pub use error::{Error, Result};
pub use model::{BenchConfig, BenchReport, Class, Model};
pub use ops::{Cost, Op};
pub use space::{Block, LayerSpec, Space};

uniffi::setup_scaffolding!();
