//! fbnet's shared core: everything that runs on the phone, in plain Rust.
//!
//! The FBNet search space and its architectures ([`space`], [`arch`], [`ops`]), ONNX graphs of blocks and
//! whole networks ([`onnx`]), operator timing with ONNX Runtime ([`runtime`], [`profile`]) and the latency
//! lookup tables it produces ([`lut`]). Images become a network's input through [`preprocess`], which the
//! host's evaluation shares. The host trainer and the phone
//! apps both build on it.

pub mod arch;
pub mod attribution;
pub mod device;
pub mod error;
pub mod in_network;
pub mod lut;
pub mod model_meta;
pub mod onnx;
pub mod ops;
/// Decoding images and turning them into a network's input, shared by the host and the phone.
pub mod preprocess;
pub mod profile;
pub mod runtime;
pub mod space;
pub mod timing;
pub mod validate;

pub use arch::{Arch, BUILTINS, Builtin, builtin};
pub use error::{Error, Result};
pub use ops::{Cost, Op};
pub use space::{Block, LayerSpec, Space};
